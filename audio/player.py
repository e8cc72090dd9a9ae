"""Stream prepared WAVs to an AudioSink in small blocks, with volume and fade-out.

Prepared means already decoded to the sink's format (see `ffmpeg.decode_to_wav`
and `builtin.builtin_wav`): playback does no decoding, so it cannot stall on a
codec, and it reads one block at a time, so memory stays flat for any length.

Volume: `None` or 100 is unity (the samples pass untouched); 0 is silence;
in between the gain falls linearly in dB, 0.4 dB per step:
gain_db = -40 * (1 - volume / 100), so 75 is -10 dB, 50 is -20 dB, 25 is -30 dB
and 1 is -39.6 dB. A 40 dB range over the slider is how loudness is heard,
unlike a linear amplitude scale that crowds all the change into the bottom.
"""

import sys
import threading
import time
import wave
import warnings
from array import array
from contextlib import closing
from itertools import chain
from pathlib import Path

from loaxa.errors import LoaxaError, MediaError

from ._api import AudioSink, PcmFormat

with warnings.catch_warnings():
    # audioop is deprecated (gone in 3.13) but C-fast; the array fallback below covers its absence.
    warnings.simplefilter("ignore", DeprecationWarning)
    try:
        import audioop
    except ImportError:  # Python 3.13+
        audioop = None

VOLUME_RANGE_DB = 40.0
FADE_S = 0.25  # fade-out on stop: long enough not to click, short enough to feel immediate
# Waiting for a start time: sleep in steps (a stop is noticed within one), then, from
# FINE_WAIT_S before the time, in short naps that land within a millisecond of it.
COARSE_STEP_S = 0.05
FINE_WAIT_S = 0.010
FINE_STEP_S = 0.0005
_ARRAY_CODES = {2: "h", 4: "i"}


class _SystemTime:
    """The clock used when none is given: the `time` module (hw.clock.SystemClock's API)."""

    def time(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


def play_files(sink: AudioSink, label: str, files, stop_event: threading.Event,
               volume: int | None = None, repeat: int = 1, block_s: float = 0.02, *,
               start_at: float | None = None, clock=None, offset_s: float = 0.0) -> float:
    """Play `files` (prepared WAVs) `repeat` times through `sink`; return seconds written.

    With `start_at` (epoch seconds on `clock`, a hw.clock.Clock; default the system
    clock) everything slow happens first: the files are checked and opened, the
    first block read and the sink opened; then it waits, and the first sample is
    written at `start_at` (at once when that has passed). A stop while waiting
    returns 0.0 without a sound.

    `offset_s` starts that far into the whole (files one after another, `repeat`
    times): how a pre-empted item resumes where it stopped. The result does not
    count the skipped part.

    When `stop_event` is set, fades out over FADE_S and stops. The result is
    seconds of audio (frames / rate), not wall time, including the fade.
    Raises MediaError before the sink opens for a file that is missing or not
    in the sink's format, ValueError for a volume or repeat out of range, and
    whatever the sink raises (HardwareError) with `played_s` set on it.
    """
    fmt = sink.fmt
    paths = [Path(f) for f in files]
    for path in paths:
        check_prepared(path, fmt)
    gain = volume_gain(volume)
    if repeat < 1:
        raise ValueError(f"repeat must be at least 1, got {repeat}")
    block_frames = max(1, round(block_s * fmt.rate))
    skip_frames = max(0, round(offset_s * fmt.rate))
    with closing(_blocks(paths, repeat, block_frames, skip_frames)) as blocks:
        first = next(blocks, b"")  # opens the first file: nothing left to do at start_at
        sink.open(label)
        writer = _Writer(sink, fmt, gain)
        try:
            if start_at is not None and not wait_until(start_at, stop_event, clock):
                sink.abort()
                return 0.0
            writer.stream(chain((first,), blocks), stop_event)
        except BaseException as exc:
            if isinstance(exc, LoaxaError):
                exc.played_s = writer.seconds
            sink.abort()
            raise
    sink.close()
    return writer.seconds


def wait_until(epoch: float, stop_event: threading.Event, clock=None) -> bool:
    """Wait until `clock.time()` reaches `epoch`; False as soon as `stop_event` is set.

    Sleeps in COARSE_STEP_S steps (re-reading the clock, so a corrected clock is
    followed), then in FINE_STEP_S naps for the last FINE_WAIT_S: the return lands
    within about a millisecond of `epoch` without spinning a core.
    """
    clock = clock or _SystemTime()
    while True:
        if stop_event.is_set():
            return False
        left = epoch - clock.time()
        if left <= 0:
            return True
        if left > FINE_WAIT_S:
            clock.sleep(min(COARSE_STEP_S, left - FINE_WAIT_S))
        else:
            clock.sleep(min(FINE_STEP_S, left))


def volume_gain(volume: int | None) -> float:
    """Linear gain for a 0-100 volume on the dB curve described in the module docstring."""
    if volume is None or volume == 100:
        return 1.0
    if not 0 <= volume <= 100:
        raise ValueError(f"volume must be 0-100, got {volume}")
    if volume == 0:
        return 0.0
    return 10 ** (-VOLUME_RANGE_DB * (1 - volume / 100) / 20)


def check_prepared(path: Path, fmt: PcmFormat) -> None:
    """MediaError unless `path` is an uncompressed WAV in `fmt`."""
    try:
        with wave.open(str(path), "rb") as w:
            found = PcmFormat(w.getframerate(), w.getnchannels(), w.getsampwidth())
            compressed = w.getcomptype() != "NONE"
    except FileNotFoundError:
        raise MediaError(f"{path.name}: prepared file not found") from None
    except (wave.Error, EOFError, OSError) as exc:
        raise MediaError(f"{path.name}: not a prepared WAV ({exc})") from exc
    if compressed or found != fmt:
        raise MediaError(f"{path.name}: prepared WAV is {found.rate} Hz, {found.channels} ch, "
                         f"{found.width * 8} bit; playback needs {fmt.rate} Hz, "
                         f"{fmt.channels} ch, {fmt.width * 8} bit")


def _blocks(paths: list[Path], repeat: int, block_frames: int, skip_frames: int = 0):
    """Raw PCM blocks of every file, `repeat` times over, after the first `skip_frames`;
    one file open at a time."""
    for _ in range(repeat):
        for path in paths:
            skip_frames = yield from _file_blocks(path, block_frames, skip_frames)


def _file_blocks(path: Path, block_frames: int, skip_frames: int = 0):
    """Yield a file's blocks from `skip_frames` on; return what is left to skip after it."""
    try:
        with wave.open(str(path), "rb") as w:
            if skip_frames >= w.getnframes():
                return skip_frames - w.getnframes()
            w.setpos(skip_frames)
            while block := w.readframes(block_frames):
                yield block
    except (wave.Error, EOFError, OSError) as exc:  # replaced or removed since the check
        raise MediaError(f"{path.name}: cannot read while playing ({exc})") from exc
    return 0


class _Writer:
    """Applies gain, then the fade once a stop is asked for, and counts what was written."""

    def __init__(self, sink: AudioSink, fmt: PcmFormat, gain: float):
        self.sink, self.fmt, self.gain = sink, fmt, gain
        self.frames = 0

    @property
    def seconds(self) -> float:
        return self.frames / self.fmt.rate

    def stream(self, blocks, stop_event) -> None:
        """Write `blocks` until they end, or fade out once `stop_event` is set (anything
        with `is_set()`)."""
        fade = None
        for block in blocks:
            if not block:
                continue
            if fade is None and stop_event.is_set():
                if self.frames == 0:
                    return  # nothing sounded yet: nothing to fade
                fade = _Fade(self.fmt, self.gain, round(FADE_S * self.fmt.rate))
            self._write(fade.apply(block) if fade else scale(block, self.fmt.width, self.gain))
            if fade and fade.done:
                return

    def _write(self, pcm: bytes) -> None:
        self.sink.write(pcm)
        self.frames += self.fmt.frames(len(pcm))


class _Fade:
    """A linear ramp from the playing gain to silence over `length` frames, across blocks."""

    def __init__(self, fmt: PcmFormat, gain: float, length: int):
        self.fmt, self.gain, self.length = fmt, gain, max(1, length)
        self.position = 0

    @property
    def done(self) -> bool:
        return self.position >= self.length

    def apply(self, block: bytes) -> bytes:
        """The block, shortened to what is left of the fade, with the ramp applied."""
        frames = min(self.fmt.frames(len(block)), self.length - self.position)
        samples = _to_array(block[: frames * self.fmt.bytes_per_frame], self.fmt.width)
        channels = self.fmt.channels
        for i in range(len(samples)):
            left = 1 - (self.position + i // channels) / self.length
            samples[i] = int(samples[i] * self.gain * left)
        self.position += frames
        return _from_array(samples)


def scale(pcm: bytes, width: int, gain: float) -> bytes:
    """PCM multiplied by `gain` (0..1), saturating; unity returns the bytes untouched."""
    if gain == 1.0:
        return pcm
    if audioop is not None:
        return audioop.mul(pcm, width, gain)
    return scale_array(pcm, width, gain)


def scale_array(pcm: bytes, width: int, gain: float) -> bytes:
    """`scale` in pure Python, for when audioop is gone; fast enough for 0.02 s blocks."""
    samples = _to_array(pcm, width)
    for i in range(len(samples)):
        samples[i] = int(samples[i] * gain)
    return _from_array(samples)


def _to_array(pcm: bytes, width: int) -> array:
    if width not in _ARRAY_CODES:
        raise MediaError(f"unsupported sample width for volume: {width} bytes")
    samples = array(_ARRAY_CODES[width], pcm)
    if sys.byteorder == "big":  # WAV PCM is little-endian
        samples.byteswap()
    return samples


def _from_array(samples: array) -> bytes:
    if sys.byteorder == "big":
        samples.byteswap()
    return samples.tobytes()
