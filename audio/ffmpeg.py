"""Decoding with ffmpeg/ffprobe: the only module in loaxa that runs them.

Media arrives as whatever the province uploads (mp3, wav, ogg/opus, m4a/aac,
flac); the unit decodes it once, ahead of air time, into a WAV in the output
format, so playback never depends on a codec or on ffmpeg being fast enough.
Every failure is a MediaError whose message is one plain line naming the file.
"""

import fcntl
import json
import os
import re
import select
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
# Raw PCM sample formats a PcmDecoder can deliver: (ffmpeg muxer/codec name, bytes per sample).
RAW_FORMATS = {"s16le": ("pcm_s16le", 2), "f32le": ("pcm_f32le", 4)}
# Live streams: how much ffmpeg may read before it starts decoding. Its defaults (5 MB,
# 5 s) would hold the first sample of an Icecast stream back by seconds.
STREAM_PROBE_BYTES = 65536
STREAM_ANALYZE_US = 500_000
_ESTIMATED_DURATION = "Estimating duration from bitrate"
# A roomy pipe lets ffmpeg decode ahead while Python works on the block before
# (the kernel's 64 KiB default holds a third of a second of float PCM). Kernel
# memory, not the process's; 1 MiB is what an unprivileged process may ask for.
DECODER_PIPE_BYTES = 1 << 20
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
    rate: int | None = None  # sample rate of the audio stream


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
                   "format=format_name,duration:stream=codec_type,codec_name,duration,sample_rate",
                   "-of", "json", str(path)], PROBE_TIMEOUT_S, path)
    if result.returncode != 0:
        reason = _reason(result.stderr, path)
        raise MediaError(f"{path.name}: not a readable audio file ({reason})")
    probe = _parse_probe(result.stdout, path)
    if probe.codec is None:
        raise MediaError(f"{path.name}: no audio stream (format {probe.format_name})")
    if probe.codec in ("unknown", "none"):
        raise MediaError(f"{path.name}: unsupported audio codec in a {probe.format_name} file")
    return probe


def duration_is_estimated(path) -> bool:
    """True when ffprobe guesses `path`'s duration from its bitrate (an MP3 without a
    Xing/Info header): a short decode is then no sign of a truncated file."""
    path = Path(path)
    result = _run(["ffprobe", "-v", "warning", "-show_entries", "format=duration", "-of", "json",
                   str(path)], PROBE_TIMEOUT_S, path)
    return _ESTIMATED_DURATION in result.stderr


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
    rate = _float_or_none(audio.get("sample_rate"))
    return Probe(fmt.get("format_name", "unknown"), audio.get("codec_name", "unknown"), duration,
                 int(rate) if rate else None)


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


class PcmDecoder:
    """ffmpeg decoding the first audio stream of a file or http(s) URL to raw PCM on a pipe.

    `sample_format` is "s16le" or "f32le"; frames are `fmt.channels` samples at
    `fmt.rate`. Read with `read(nbytes)` (a file: blocks until nbytes or the end)
    or `read_some(nbytes, timeout)` (a live stream: whatever has arrived, TimeoutError
    when nothing comes within `timeout` seconds). `finish()` waits for ffmpeg and
    raises MediaError with its reason when it failed; `close()` kills it and is safe
    twice. Use it as a context manager.
    """

    def __init__(self, source, fmt: PcmFormat = OUTPUT_FORMAT, *, sample_format: str = "s16le",
                 limit_s: float | None = None, stream: bool = False, io_timeout_s: float = 10.0):
        if sample_format not in RAW_FORMATS:
            raise MediaError(f"unsupported raw sample format {sample_format!r}")
        self.source, self.fmt = str(source), fmt
        self.name = self.source if stream else Path(source).name
        self.stream = stream
        self.bytes_per_frame = RAW_FORMATS[sample_format][1] * fmt.channels
        self._stderr = tempfile.TemporaryFile()
        argv = _pcm_command(self.source, fmt, sample_format, limit_s, stream, io_timeout_s)
        try:
            self._proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                          stderr=self._stderr)
        except FileNotFoundError as exc:
            self._stderr.close()
            raise MediaError("ffmpeg is not installed (apt install ffmpeg)") from exc
        except OSError as exc:
            self._stderr.close()
            raise MediaError(f"cannot run ffmpeg: {exc.strerror}") from exc
        self._fd = self._proc.stdout.fileno()
        try:
            fcntl.fcntl(self._fd, fcntl.F_SETPIPE_SZ, DECODER_PIPE_BYTES)
        except OSError:
            pass  # a smaller pipe only means less overlap between ffmpeg and us

    def read(self, nbytes: int) -> bytes:
        """Up to `nbytes`, fewer only at the end of the audio; b"" after it."""
        return self._proc.stdout.read(nbytes)

    def read_some(self, nbytes: int, timeout: float) -> bytes:
        """What has arrived (1 to `nbytes` bytes), b"" at the end; TimeoutError after
        `timeout` seconds without a byte."""
        ready, _, _ = select.select([self._fd], [], [], max(0.0, timeout))
        if not ready:
            raise TimeoutError(f"no audio for {timeout:g} s")
        return os.read(self._fd, nbytes)

    def finish(self, timeout: float = 30.0) -> None:
        """Wait for ffmpeg to exit; MediaError with its reason unless it succeeded."""
        try:
            code = self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.close()
            raise MediaError(f"{self.name}: ffmpeg did not finish") from None
        if code != 0:
            raise MediaError(f"{self.name}: cannot decode ({self.reason()})")

    def reason(self) -> str:
        """ffmpeg's last meaningful line of complaint, cleaned for a person."""
        self._stderr.seek(0)
        text = self._stderr.read().decode("utf-8", "replace")
        if not text.strip():
            return "no audio"
        return _stream_reason(text, self.source) if self.stream else _reason(text, Path(self.source))

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        self._proc.stdout.close()
        self._stderr.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


# What ffmpeg's errno texts mean when the input is a network stream.
_STREAM_MEANINGS = {"Input/output error": "cannot reach the server (no network, or an unknown host)",
                    "End of file": "the stream ended", "Connection timed out": "the server did not answer"}


def _stream_reason(stderr: str, url: str) -> str:
    """ffmpeg's last complaint about a stream, without the URL it prefixes (the caller names it)."""
    lines = [_LOG_PREFIX.sub("", line.strip()).removeprefix(f"{url}: ").rstrip(".").strip()
             for line in stderr.splitlines()]
    meaningful = [line for line in lines if line and not line.startswith(_NOISE)]
    if not meaningful:
        return "unknown error"
    return _STREAM_MEANINGS.get(meaningful[-1], meaningful[-1])


def _pcm_command(source: str, fmt: PcmFormat, sample_format: str, limit_s, stream: bool,
                 io_timeout_s: float) -> list[str]:
    argv = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error"]
    if stream:
        # rw_timeout: ffmpeg gives up on a silent connection itself (microseconds);
        # the reader's own timeout is the one that counts.
        # Only network protocols: a stream URL (or a redirect) must never read local files.
        argv += ["-protocol_whitelist", "http,https,tcp,tls,crypto",
                 "-rw_timeout", str(int(io_timeout_s * 1e6)), "-probesize", str(STREAM_PROBE_BYTES),
                 "-analyzeduration", str(STREAM_ANALYZE_US)]
    # rematrix_maxval 1: a downmix that never exceeds full scale, whatever the sample
    # format. ffmpeg normalises its stereo-to-mono matrix for integer output only, so
    # without it a float decode of the same file is 3 dB louder than a 16-bit one.
    argv += ["-i", source, "-map", "0:a:0", "-ac", str(fmt.channels), "-ar", str(fmt.rate),
             "-rematrix_maxval", "1.0"]
    if limit_s is not None:
        argv += ["-t", f"{limit_s:.3f}"]
    codec = RAW_FORMATS[sample_format][0]
    return argv + ["-c:a", codec, "-f", sample_format, "pipe:1"]
