"""Live relay: an Icecast/HTTP radio stream decoded by ffmpeg and streamed to the sink.

`play_stream` plays a stream for `duration_s` and never raises for the stream's
own troubles: a stream that cannot be opened, stalls or drops returns a
`StreamResult` whose `error` says why in one plain line, with the seconds that
did play. The caller (the unit's player) then plays the item's fallback
(`play_item` does exactly that). Only the output failing raises (HardwareError,
as from `play_files`).

The sink opens only once the first audio has arrived, so a stream that never
answers sounds nothing, and the fallback starts at once.
"""

import threading
from contextlib import closing
from dataclasses import dataclass
from urllib.parse import urlsplit

from loaxa.errors import LoaxaError, MediaError

from ._api import AudioSink
from .ffmpeg import PcmDecoder
from .player import FADE_S, _Writer, play_files, volume_gain, wait_until

READ_BYTES = 4096  # ~43 ms at 48 kHz s16 mono: small blocks keep a stop prompt


@dataclass(frozen=True)
class StreamResult:
    played_s: float  # seconds of audio written to the sink
    error: str | None  # why the stream ended early; None when it played its duration or was stopped


@dataclass(frozen=True)
class ItemResult:
    played_s: float  # seconds of audio in all, stream and fallback together
    source: str  # "media", "stream" or "fallback" (SPEC's playlog field)
    error: str | None  # the stream's error when the fallback played or nothing could
    stream_s: float = 0.0  # of played_s, the seconds that came from the stream


class _StreamEnded(Exception):
    """The stream stopped giving audio before its duration; str() is the reason."""


def play_stream(sink: AudioSink, label: str, url: str, duration_s: float,
                stop_event: threading.Event, volume: int | None = None, *,
                connect_timeout_s: float = 10.0, stall_timeout_s: float = 10.0) -> StreamResult:
    """Relay `url` (http/https) to `sink` for `duration_s` seconds of audio.

    Returns StreamResult(played_s, error). `error` is None when the duration was
    played, or when `stop_event` was set (the audio then fades out over FADE_S);
    otherwise it says why: a bad URL, no audio within `connect_timeout_s`, no audio
    for `stall_timeout_s` while playing, or the stream ending. The last 0.25 s
    before the duration fade out, so a cut never clicks. Raises ValueError for a
    volume out of range and HardwareError (with `played_s`) when the sink fails.
    """
    gain = volume_gain(volume)
    problem = _check_url(url)
    if problem:
        return StreamResult(0.0, problem)
    fmt = sink.fmt
    limit = fmt.nbytes(duration_s)
    try:
        decoder = PcmDecoder(url, fmt, sample_format="s16le", stream=True,
                             io_timeout_s=max(connect_timeout_s, stall_timeout_s))
    except MediaError as exc:
        return StreamResult(0.0, str(exc))
    with decoder:
        try:
            first = _first_audio(decoder, connect_timeout_s, fmt.bytes_per_frame)
        except _StreamEnded as exc:
            return StreamResult(0.0, f"cannot open stream {_short(url)}: {exc}")
        return _relay(sink, label, decoder, first[:limit], limit, gain, stop_event, stall_timeout_s)


def play_item(sink: AudioSink, label: str, stop_event: threading.Event, *, files=(),
              stream: str | None = None, duration_s: float | None = None, fallback=(),
              volume: int | None = None, repeat: int = 1, start_at: float | None = None,
              clock=None, connect_timeout_s: float = 10.0, stall_timeout_s: float = 10.0) -> ItemResult:
    """One schedule item: its prepared `files`, or its `stream` with `fallback` files.

    A media item is `play_files` (with `start_at` and `clock`), source "media". A
    stream item waits for `start_at`, relays the stream for `duration_s`; when the
    stream fails or drops and the stop was not asked for, the `fallback` files
    play from their start, and the source is "fallback" with the stream's error.
    With no fallback the source stays "stream" and the error is returned.
    """
    if stream is None:
        played = play_files(sink, label, files, stop_event, volume, repeat,
                            start_at=start_at, clock=clock)
        return ItemResult(played, "media", None)
    if start_at is not None and not wait_until(start_at, stop_event, clock):
        return ItemResult(0.0, "stream", None)
    result = play_stream(sink, label, stream, duration_s, stop_event, volume,
                         connect_timeout_s=connect_timeout_s, stall_timeout_s=stall_timeout_s)
    if result.error is None or not fallback or stop_event.is_set():
        return ItemResult(result.played_s, "stream", result.error, result.played_s)
    played = play_files(sink, f"{label}-fallback", fallback, stop_event, volume)
    return ItemResult(result.played_s + played, "fallback", result.error, result.played_s)


def _check_url(url: str) -> str | None:
    try:
        parts = urlsplit(url)
    except ValueError:
        return f"not a stream URL: {url!r}"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"only http and https streams are relayed, not {url!r}"
    return None


def _short(url: str) -> str:
    """The URL without credentials or query, for messages that end up in events."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}{parts.path}"


def _first_audio(decoder: PcmDecoder, timeout: float, frame: int) -> bytes:
    """The first whole frames of audio, or _StreamEnded saying why none came."""
    data = b""
    while len(data) < frame:
        try:
            chunk = decoder.read_some(READ_BYTES, timeout)
        except TimeoutError:
            raise _StreamEnded(f"no audio within {timeout:g} s") from None
        if not chunk:
            raise _StreamEnded(_ffmpeg_reason(decoder))
        data += chunk
    return data


def _relay(sink, label, decoder, first: bytes, limit: int, gain: float, stop_event,
           stall_timeout_s: float) -> StreamResult:
    fmt = sink.fmt
    ending = _Ending(stop_event, limit - fmt.nbytes(FADE_S))
    blocks = _stream_blocks(decoder, first, limit, stall_timeout_s, fmt.bytes_per_frame, ending)
    sink.open(label)
    writer = _Writer(sink, fmt, gain)
    error = None
    try:
        with closing(blocks):
            writer.stream(blocks, ending)
    except _StreamEnded as exc:
        error = f"stream dropped after {writer.seconds:.1f} s: {exc}"
    except BaseException as exc:
        if isinstance(exc, LoaxaError):
            exc.played_s = writer.seconds
        sink.abort()
        raise
    sink.close()
    return StreamResult(writer.seconds, error)


class _Ending:
    """`is_set()` for the writer: a stop was asked for, or the duration is nearly played
    (so its last FADE_S fades out)."""

    def __init__(self, stop_event, fade_from: int):
        self.stop_event, self.fade_from, self.position = stop_event, max(0, fade_from), 0

    def is_set(self) -> bool:
        return self.stop_event.is_set() or self.position >= self.fade_from


def _stream_blocks(decoder: PcmDecoder, first: bytes, limit: int, stall_timeout_s: float,
                   frame: int, ending: _Ending):
    """Whole-frame PCM blocks up to `limit` bytes; _StreamEnded when the stream stops first."""
    pending, sent = first, 0
    while sent < limit:
        # A block never straddles the start of the final fade, so the fade starts on it.
        boundary = ending.fade_from if sent < ending.fade_from else limit
        whole = min(len(pending) - len(pending) % frame, boundary - sent)
        if whole:
            block, pending = pending[:whole], pending[whole:]
            ending.position = sent
            sent += whole
            yield block
            continue
        try:
            chunk = decoder.read_some(READ_BYTES, stall_timeout_s)
        except TimeoutError:
            raise _StreamEnded(f"no audio for {stall_timeout_s:g} s") from None
        if not chunk:
            raise _StreamEnded(_ffmpeg_reason(decoder))
        pending += chunk


def _ffmpeg_reason(decoder: PcmDecoder) -> str:
    """Why ffmpeg stopped: its own complaint, or the stream simply ended."""
    try:
        decoder.finish(timeout=5.0)
    except MediaError:
        return decoder.reason()
    return "the stream ended"
