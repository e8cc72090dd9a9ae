"""Decoding with ffmpeg/ffprobe: the only module in loaxa that runs them.

Media arrives as whatever the province uploads (mp3, wav, ogg/opus, m4a/aac,
flac); the unit decodes it once, ahead of air time, into a WAV in the output
format, so playback never depends on a codec or on ffmpeg being fast enough.
Every failure is a MediaError whose message is one plain line naming the file.
"""

import json
import os
import re
import subprocess
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path

from loaxa.errors import MediaError
from loaxa.fsio import fsync_dir

from ._api import OUTPUT_FORMAT, PcmFormat

PROBE_TIMEOUT_S = 30.0
DECODE_TIMEOUT_S = 600.0  # an hour-long bulletin on a Pi 3 decodes in about a minute
# Probed durations are estimates (mp3 padding, AAC priming): allow this much over a limit.
LIMIT_SLACK_S = 0.25

_PCM_CODECS = {1: "pcm_u8", 2: "pcm_s16le", 3: "pcm_s24le", 4: "pcm_s32le"}
_NOISE = ("Conversion failed!", "Exiting normally")
# errno texts that say nothing to a technician: replaced by what they mean here.
_GENERIC = {"Invalid argument", "Operation not permitted", "End of file"}
_LOG_PREFIX = re.compile(r"^\[[^\]]*@ 0x[0-9a-fA-F]+\]\s*")


@dataclass(frozen=True)
class Probe:
    """What ffprobe found: the container, the first audio codec, its duration."""

    format_name: str
    codec: str | None  # None when the file has no audio stream
    duration: float | None  # None when the container does not say


def decode_to_wav(src, dst, fmt: PcmFormat = OUTPUT_FORMAT, max_seconds=None,
                  *, timeout: float = DECODE_TIMEOUT_S) -> Path:
    """Decode the first audio stream of `src` into a WAV in `fmt` at `dst`.

    The WAV is written to a temporary file beside `dst` and renamed over it, so
    `dst` is either absent, the old file, or the complete new one. Raises
    MediaError for a missing or empty file, no audio, a codec or data ffmpeg
    cannot read, audio longer than `max_seconds`, or a decode that yields nothing.
    """
    src, dst = Path(src), Path(dst)
    probe = probe_file(src)
    _check_length(src, probe.duration, max_seconds)
    tmp = _temp_beside(dst)
    try:
        _run_decoder(src, tmp, fmt, _decode_limit(max_seconds), timeout)
        _check_length(src, _decoded_seconds(src, tmp), max_seconds)
        _commit(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return dst


def duration_s(path) -> float:
    """Seconds of audio in `path` as ffprobe reports it; MediaError if unknown."""
    path = Path(path)
    duration = probe_file(path).duration
    if duration is None:
        raise MediaError(f"{path.name}: duration unknown")
    return duration


def probe_file(path) -> Probe:
    """Run ffprobe on `path`; MediaError unless it is a file holding an audio stream."""
    path = Path(path)
    _check_exists(path)
    result = _run(["ffprobe", "-v", "error", "-show_entries",
                   "format=format_name,duration:stream=codec_type,codec_name,duration",
                   "-of", "json", str(path)], PROBE_TIMEOUT_S, path)
    if result.returncode != 0:
        reason = _reason(result.stderr, path)
        raise MediaError(f"{path.name}: not a readable audio file ({reason})")
    probe = _parse_probe(result.stdout, path)
    if probe.codec is None:
        raise MediaError(f"{path.name}: no audio stream (format {probe.format_name})")
    return probe


def _check_exists(path: Path) -> None:
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise MediaError(f"{path.name}: file not found ({path})") from None
    except OSError as exc:
        raise MediaError(f"{path.name}: cannot read ({exc.strerror})") from exc
    if not path.is_file():
        raise MediaError(f"{path.name}: not a regular file")
    if size == 0:
        raise MediaError(f"{path.name}: file is empty")


def _parse_probe(stdout: str, path: Path) -> Probe:
    try:
        info = json.loads(stdout or "{}")
    except json.JSONDecodeError as exc:
        raise MediaError(f"{path.name}: ffprobe gave unreadable output") from exc
    fmt = info.get("format", {})
    audio = next((s for s in info.get("streams", []) if s.get("codec_type") == "audio"), None)
    if audio is None:
        return Probe(fmt.get("format_name", "unknown"), None, None)
    duration = _float_or_none(audio.get("duration")) or _float_or_none(fmt.get("duration"))
    return Probe(fmt.get("format_name", "unknown"), audio.get("codec_name", "unknown"), duration)


def _float_or_none(value) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):  # absent, or "N/A"
        return None


def _check_length(src: Path, seconds: float | None, max_seconds) -> None:
    if max_seconds is None or seconds is None:
        return
    if seconds > max_seconds + LIMIT_SLACK_S:
        raise MediaError(f"{src.name}: {seconds:.1f} s long, over the limit of {max_seconds:g} s")


def _decode_limit(max_seconds) -> float | None:
    # Decode a little past the limit so an over-long file whose length the
    # container hid is still caught, without decoding hours of it.
    return None if max_seconds is None else max_seconds + 2 * LIMIT_SLACK_S


def _decoder_command(src: Path, dst: Path, fmt: PcmFormat, limit_s: float | None) -> list[str]:
    if fmt.width not in _PCM_CODECS:
        raise MediaError(f"unsupported output sample width: {fmt.width} bytes")
    argv = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
            "-i", str(src), "-map", "0:a:0",
            "-ac", str(fmt.channels), "-ar", str(fmt.rate), "-c:a", _PCM_CODECS[fmt.width],
            # No metadata chunks: a plain 44-byte header every WAV reader accepts.
            "-map_metadata", "-1", "-fflags", "+bitexact", "-flags:a", "+bitexact"]
    if limit_s is not None:
        argv += ["-t", f"{limit_s:.3f}"]
    return argv + ["-f", "wav", str(dst)]


def _run_decoder(src: Path, dst: Path, fmt: PcmFormat, limit_s, timeout: float) -> None:
    result = _run(_decoder_command(src, dst, fmt, limit_s), timeout, src)
    if result.returncode != 0:
        raise MediaError(f"{src.name}: cannot decode ({_reason(result.stderr, src)})")


def _decoded_seconds(src: Path, wav_path: Path) -> float:
    """Seconds of audio in the decoded WAV; MediaError when there are none."""
    try:
        with wave.open(str(wav_path), "rb") as w:
            frames, rate = w.getnframes(), w.getframerate()
    except (wave.Error, EOFError) as exc:
        raise MediaError(f"{src.name}: decoding produced no audio") from exc
    if frames == 0:
        raise MediaError(f"{src.name}: decoding produced no audio")
    return frames / rate


def _run(argv: list[str], timeout: float, subject: Path) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(argv, capture_output=True, text=True, errors="replace",
                              timeout=timeout, stdin=subprocess.DEVNULL)
    except FileNotFoundError as exc:
        raise MediaError(f"{argv[0]} is not installed (apt install ffmpeg)") from exc
    except OSError as exc:
        raise MediaError(f"cannot run {argv[0]}: {exc.strerror}") from exc
    except subprocess.TimeoutExpired as exc:
        raise MediaError(f"{subject.name}: {argv[0]} took longer than {timeout:g} s") from exc


def _reason(stderr: str, src: Path) -> str:
    """The last line of ffmpeg's stderr that says something, cleaned for a person."""
    lines = [_clean(line, src) for line in stderr.splitlines()]
    meaningful = [line for line in lines if line and not line.startswith(_NOISE)]
    if not meaningful:
        return "unknown error"
    reason = meaningful[-1]
    return "unrecognised or corrupt data" if reason in _GENERIC else reason


def _clean(line: str, src: Path) -> str:
    line = _LOG_PREFIX.sub("", line.strip())
    for prefix in (f"{src}: ", f"{src.name}: "):
        if line.startswith(prefix):
            line = line[len(prefix):]
    return line.rstrip(".").strip()


def _temp_beside(dst: Path) -> Path:
    """An empty temporary file in dst's folder, so the final rename is atomic."""
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
    except OSError as exc:
        raise MediaError(f"cannot write {dst}: {exc.strerror}") from exc
    os.close(fd)
    return Path(name)


def _commit(tmp: Path, dst: Path) -> None:
    """Make the decoded file durable, then put it in place."""
    try:
        _fsync_file(tmp)
        os.replace(tmp, dst)
        fsync_dir(dst.parent)
    except OSError as exc:
        raise MediaError(f"cannot write {dst}: {exc.strerror}") from exc


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
