"""Preparation before air: decode, measure loudness, apply gain under a true-peak ceiling.

`prepare(src, dst, lufs=-16)` turns an uploaded bulletin (MP3, WAV, Ogg/Opus,
M4A/AAC, FLAC: whatever ffmpeg decodes) into a WAV in the output format whose
integrated loudness is `lufs` (EBU R128 / BS.1770) and whose true peak stays at or
under `ceiling_dbtp` (-1.5 dBTP). Gain alone cannot promise both for speech, whose
peaks sit 15-20 dB above its loudness, so the peaks that the gain would push over
the ceiling are limited (`loudness.TruePeakLimiter`).

Two passes, each decoding the file to PCM that Python takes one second at a time
(the ffmpeg command on a pipe; in the unit's preparing child, PyAV in the process:
see DECODERS): the first measures, the second applies gain and limiter and
writes the WAV. Memory stays flat whatever the length (a second of audio, plus one
float per 100 ms for the meter), and decoding twice costs less than writing and
re-reading a temporary copy on a Pi's SD card. The result is written beside `dst`
and renamed over it, so `dst` is absent, the old file, or the complete new one.
"""

import argparse
import importlib.util
import json
import math
import sys
import threading
import time
import wave
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from loaxa.errors import MediaError

from ._api import CEILING_DBTP, DEFAULT_LUFS, OUTPUT_FORMAT, PREPARE_VERSION, PcmFormat
from .ffmpeg import (PcmDecoder, _check_length, _commit, _decode_limit, _temp_beside,
                     duration_is_estimated, probe_file)
from .isolated import EXIT_MEDIA_ERROR, PrepareCancelled
from .loudness import LoudnessMeter, TruePeakLimiter, db_to_gain, gain_to_db, loudness_after, plan_gain

# How a file is probed and decoded. "command": ffprobe, then ffmpeg on a pipe, decoding on
# another core while numpy works (the faster). "in-process": FFmpeg's libraries through
# PyAV (audio/libav.py), no second process of ~52 MB: what the unit's preparing child
# uses, where the unit's whole process tree counts (docs/performance.md). Both run the
# same filter chain and give the same samples. PyAV is imported only when used: beside
# an ffmpeg process it would only add its 24 MB.
DECODERS = ("command", "in-process")


def _decoding(decoder: str):
    """(probe, decoder class) for a key of DECODERS."""
    if decoder == "in-process":
        from .libav import LibavDecoder, probe_file as libav_probe_file
        return libav_probe_file, LibavDecoder
    return probe_file, PcmDecoder


# Where no PyAV wheel installs, the child runs the command too.
CHILD_DECODER = "in-process" if importlib.util.find_spec("av") is not None else "command"

__all__ = ["CEILING_DBTP", "DEFAULT_LUFS", "PREPARE_VERSION", "PrepareCancelled", "Prepared", "prepare"]

LUFS_RANGE = (-40.0, -5.0)
# A whisper-quiet upload is raised at most this much: more would bring up its noise
# floor with it, and such a file is better sent back to whoever recorded it.
MAX_GAIN_DB = 24.0
BLOCK_S = 1.0
# The gain plan simulates the limiter on sample peaks; true peaks of decoded speech
# sit a few tenths of a dB higher, so the plan assumes peaks this much higher.
PEAK_ALLOWANCE_DB = 0.3
# A decode this much shorter than the length the file declares means the file was cut.
TRUNCATED_SHARE = 0.9
TRUNCATED_MIN_S = 1.0
# Two decodes take a fraction of real time even on a Pi 3; past this something hangs.
TIMEOUT_BASE_S = 300.0
TIMEOUT_PER_AUDIO_S = 1.0


@dataclass(frozen=True)
class Prepared:
    """What preparation did: lengths in seconds, levels in LUFS / dB / dBTP."""

    path: Path
    seconds: float
    input_lufs: float
    gain_db: float
    output_lufs: float | None
    true_peak_dbtp: float  # of the output, as the limiter's 4x oversampling estimates it
    limited_s: float  # seconds of audio during which the limiter held peaks down

    def as_dict(self) -> dict:
        """JSON-ready: the path as a string, levels rounded to 0.01."""
        report = asdict(self)
        report["path"] = str(self.path)
        for key in ("seconds", "input_lufs", "gain_db", "output_lufs", "true_peak_dbtp", "limited_s"):
            if report[key] is not None:
                finite = math.isfinite(report[key])
                report[key] = round(report[key], 3 if key == "seconds" else 2) if finite else None
        return report

    def summary(self) -> str:
        out = "n/a" if self.output_lufs is None else f"{self.output_lufs:.1f}"
        return (f"{self.seconds:.1f} s, input {self.input_lufs:.1f} LUFS, gain {self.gain_db:+.1f} dB, "
                f"output {out} LUFS, true peak {self.true_peak_dbtp:.1f} dBTP, "
                f"peaks limited during {self.limited_s:.1f} s")


def prepare(src, dst, *, lufs: float = DEFAULT_LUFS, ceiling_dbtp: float = CEILING_DBTP,
            fmt: PcmFormat = OUTPUT_FORMAT, max_seconds: float | None = None,
            cancel: threading.Event | None = None, decoder: str = "command") -> Prepared:
    """Decode `src`, bring it to `lufs` under `ceiling_dbtp`, write a WAV in `fmt` at `dst`.

    Raises MediaError (one plain line naming the file) for a missing, empty or
    unreadable file, no audio stream, an unsupported codec, audio longer than
    `max_seconds`, a truncated file, or silence; PrepareCancelled when `cancel` is set.
    `decoder` is a key of DECODERS.
    """
    src, dst = Path(src), Path(dst)
    _check_settings(lufs, ceiling_dbtp, fmt)
    probe, decoder_class = _decoding(decoder)
    found = probe(src)
    _check_length(src, found.duration, max_seconds)
    deadline = time.monotonic() + TIMEOUT_BASE_S + TIMEOUT_PER_AUDIO_S * (found.duration or 3600.0)
    job = _Job(src, fmt, _decode_limit(max_seconds), cancel, deadline, decoder_class)
    meter = job.measure(_measuring_rate(found.rate, fmt.rate))
    _check_length(src, meter.seconds, max_seconds)
    _check_truncation(src, found.duration, meter.seconds)
    input_lufs = meter.integrated()
    if input_lufs is None:
        raise MediaError(f"{src.name}: silent (no audio above -70 LUFS)")
    ceiling = db_to_gain(ceiling_dbtp)
    gain_db = plan_gain(meter, lufs, ceiling, MAX_GAIN_DB, PEAK_ALLOWANCE_DB)
    tmp = _temp_beside(dst)
    try:
        limiter = job.render(tmp, db_to_gain(gain_db), ceiling)
        _commit(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    output_lufs = loudness_after(meter, limiter.window_power(), gain_db)
    return Prepared(dst, meter.seconds, input_lufs, gain_db, output_lufs,
                    gain_to_db(limiter.peak) if limiter.peak > 0 else -math.inf, limiter.limited_s)


def _check_settings(lufs: float, ceiling_dbtp: float, fmt: PcmFormat) -> None:
    low, high = LUFS_RANGE
    if not low <= lufs <= high:
        raise MediaError(f"target loudness must be between {low:g} and {high:g} LUFS, got {lufs:g}")
    if not ceiling_dbtp <= 0:
        raise MediaError(f"true-peak ceiling must be at or under 0 dBTP, got {ceiling_dbtp:g}")
    if fmt.width != 2:
        raise MediaError(f"preparation writes 16-bit WAVs, not {fmt.width * 8}-bit")


def _measuring_rate(source_rate: int | None, output_rate: int) -> int:
    """Measure at the source's own rate when its 10 ms windows are whole samples
    (44.1, 48, 32, 16, 8 kHz...): the first pass then skips resampling, and its
    windows line up with the output's. Other rates are resampled like the output."""
    if source_rate and source_rate % 100 == 0 and source_rate >= 8000:
        return source_rate
    return output_rate


def _check_truncation(src: Path, declared: float | None, decoded: float) -> None:
    if declared is None or decoded >= declared * TRUNCATED_SHARE or declared - decoded < TRUNCATED_MIN_S:
        return
    if duration_is_estimated(src):  # a guess from the bitrate proves nothing
        return
    raise MediaError(f"{src.name}: truncated or damaged: only {decoded:.1f} s of the "
                     f"{declared:.1f} s it declares could be decoded")


class _Job:
    """The two passes over one source, each a fresh ffmpeg decoding it to float PCM."""

    def __init__(self, src: Path, fmt: PcmFormat, limit_s, cancel, deadline: float, decoder_class=PcmDecoder):
        self.src, self.fmt, self.limit_s, self.decoder_class = src, fmt, limit_s, decoder_class
        self.cancel, self.deadline = cancel, deadline

    def measure(self, rate: int) -> LoudnessMeter:
        """First pass, at `rate`: loudness, and peak and energy per 10 ms window."""
        meter = LoudnessMeter(rate, self.fmt.channels)
        # 16-bit is plenty to measure, and half the bytes through the pipe of float.
        for block in self._blocks(PcmFormat(rate, self.fmt.channels, 2), "s16le"):
            meter.add(block)
        if meter.frames == 0:
            raise MediaError(f"{self.src.name}: decoding produced no audio")
        return meter

    def render(self, path: Path, gain: float, ceiling: float) -> TruePeakLimiter:
        """Second pass: gain and limiter into a WAV at `path`; the limiter tells what it did."""
        limiter = TruePeakLimiter(gain, ceiling, self.fmt.rate, self.fmt.channels)
        try:
            with wave.open(str(path), "wb") as wav:
                wav.setnchannels(self.fmt.channels)
                wav.setsampwidth(self.fmt.width)
                wav.setframerate(self.fmt.rate)
                for block in self._blocks(self.fmt, "f32le"):
                    _write(wav, limiter.process(block))
                _write(wav, limiter.flush())
        except OSError as exc:
            raise MediaError(f"cannot write {path.name}: {exc.strerror or exc}") from exc
        return limiter

    def _blocks(self, fmt: PcmFormat, sample_format: str):
        """Float32 blocks shaped (frames, channels) of one decode of the whole source."""
        with self.decoder_class(self.src, fmt, sample_format=sample_format, limit_s=self.limit_s) as decoder:
            size = round(BLOCK_S * fmt.rate) * decoder.bytes_per_frame
            while data := decoder.read(size):
                self._check_go_on()
                whole = len(data) - len(data) % decoder.bytes_per_frame
                yield _floats(data[:whole], sample_format).reshape(-1, fmt.channels)
            decoder.finish(timeout=max(1.0, self.deadline - time.monotonic()))

    def _check_go_on(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise PrepareCancelled(f"{self.src.name}: preparation cancelled")
        if time.monotonic() > self.deadline:
            raise MediaError(f"{self.src.name}: preparation took too long")


def _floats(data: bytes, sample_format: str) -> np.ndarray:
    if sample_format == "f32le":
        return np.frombuffer(data, dtype="<f4")
    return np.frombuffer(data, dtype="<i2").astype(np.float32) * np.float32(1 / 32768)


def _write(wav: wave.Wave_write, block: np.ndarray) -> None:
    if not len(block):
        return
    scaled = np.multiply(block, np.float32(32768.0))
    np.rint(scaled, out=scaled)
    np.clip(scaled, -32768, 32767, out=scaled)
    wav.writeframesraw(scaled.astype("<i2").tobytes())


def main(argv=None) -> int:
    """`python -m audio.preparation SRC DST [--lufs X] [--ceiling Y] [--max-seconds Z]`:
    what `audio.isolated.prepare_isolated` runs. The report as one JSON line on stdout;
    a MediaError as one line on stderr with exit code EXIT_MEDIA_ERROR."""
    parser = argparse.ArgumentParser(prog="python -m audio.preparation")
    parser.add_argument("src")
    parser.add_argument("dst")
    parser.add_argument("--lufs", type=float, default=DEFAULT_LUFS)
    parser.add_argument("--ceiling", type=float, default=CEILING_DBTP)
    parser.add_argument("--max-seconds", type=float, default=None)
    parser.add_argument("--decoder", choices=DECODERS, default=CHILD_DECODER)
    args = parser.parse_args(argv)
    try:
        result = prepare(args.src, args.dst, lufs=args.lufs, ceiling_dbtp=args.ceiling,
                         max_seconds=args.max_seconds, decoder=args.decoder)
    except MediaError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_MEDIA_ERROR
    print(json.dumps(result.as_dict()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
