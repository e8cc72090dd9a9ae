"""Built-in media: `chime` (the attention signal before a bulletin) and `test-tone`.

Both are synthesised here in pure Python, so they exist on a unit that has
never reached the media server. Each is written once into the media folder;
the file name carries a version, so changing the sound below (and bumping
BUILTIN_VERSION) makes units write the new one instead of playing a stale copy.
"""

import io
import math
import sys
import wave
from array import array
from pathlib import Path

from loaxa.errors import MediaError
from loaxa.fsio import atomic_write

from ._api import OUTPUT_FORMAT

BUILTIN = ("chime", "test-tone")
BUILTIN_VERSION = 1

# Chime: three ascending notes of an E major triad, struck like bells and left
# to ring out. Bell-like = sharp attack, exponential decay, upper partials that
# die faster than the fundamental.
CHIME_SECONDS = 2.5
CHIME_NOTES = ((0.00, 659.26), (0.40, 830.61), (0.80, 987.77))  # (start s, Hz): E5 G#5 B5
CHIME_PARTIALS = ((1.0, 1.0, 1.0), (2.0, 0.30, 2.2), (3.0, 0.10, 3.5))  # (ratio, level, decay x)
CHIME_DECAY_S = 0.55  # time constant of the fundamental
CHIME_ATTACK_S = 0.004  # long enough not to click, short enough to sound struck
CHIME_PEAK_DBFS = -4.0  # below the -3 dBFS ceiling, with room for resampling overshoot

TONE_SECONDS = 3.0
TONE_HZ = 1000.0
TONE_DBFS = -12.0  # peak level of the sine
TONE_FADE_S = 0.020

EDGE_FADE_S = 0.050  # ends every built-in at true zero: no click when the sink closes


def builtin_wav(name: str, folder) -> Path:
    """The path of the prepared WAV for built-in `name`, writing it on first use."""
    if name not in BUILTIN:
        raise MediaError(f"unknown built-in media: {name!r} (known: {', '.join(BUILTIN)})")
    path = Path(folder) / _file_name(name)
    if path.exists():
        return path
    try:
        atomic_write(path, _wav_bytes(_samples(name)))
    except OSError:
        # A full or read-only media disk must not silence the chime before an emergency:
        # write it to memory-backed storage instead (it is 1-2 MB, made again next start).
        path = _spare_folder() / _file_name(name)
        if not path.exists():
            atomic_write(path, _wav_bytes(_samples(name)))
    return path


_spare = []  # the one memory-backed folder of this process, made on first need


def _spare_folder() -> Path:
    if not _spare:
        import tempfile
        shm = Path("/dev/shm")
        _spare.append(Path(tempfile.mkdtemp(prefix="loaxa-builtin-", dir=shm if shm.is_dir() else None)))
    return _spare[0]


def _file_name(name: str) -> str:
    fmt = OUTPUT_FORMAT
    return f"{name}.v{BUILTIN_VERSION}.{fmt.rate}-{fmt.channels}ch-s{fmt.width * 8}.wav"


def _samples(name: str) -> list[float]:
    return chime_samples() if name == "chime" else test_tone_samples()


def chime_samples(rate: int = OUTPUT_FORMAT.rate) -> list[float]:
    """The chime as floats in -1..1, peak at CHIME_PEAK_DBFS."""
    total = round(CHIME_SECONDS * rate)
    mix = [0.0] * total
    for start_s, freq in CHIME_NOTES:
        first = round(start_s * rate)
        for i, value in enumerate(_bell(freq, total - first, rate)):
            mix[first + i] += value
    _fade_edges(mix, 0.0, EDGE_FADE_S, rate)
    return _normalise_peak(mix, CHIME_PEAK_DBFS)


def _bell(freq: float, count: int, rate: int) -> list[float]:
    """One struck note: partials decaying exponentially, faster the higher they are."""
    note = [0.0] * count
    attack = CHIME_ATTACK_S * rate
    for ratio, level, decay_x in CHIME_PARTIALS:
        step = 2 * math.pi * freq * ratio / rate
        fall = math.exp(-decay_x / (CHIME_DECAY_S * rate))  # per-sample decay factor
        amp = level
        for i in range(count):
            note[i] += amp * math.sin(step * i)
            amp *= fall
    for i in range(min(count, int(attack))):
        note[i] *= i / attack
    return note


def test_tone_samples(rate: int = OUTPUT_FORMAT.rate) -> list[float]:
    """1 kHz sine at TONE_DBFS peak with short fades, as floats in -1..1."""
    amp = 10 ** (TONE_DBFS / 20)
    step = 2 * math.pi * TONE_HZ / rate
    tone = [amp * math.sin(step * i) for i in range(round(TONE_SECONDS * rate))]
    _fade_edges(tone, TONE_FADE_S, TONE_FADE_S, rate)
    return tone


def _fade_edges(samples: list[float], fade_in_s: float, fade_out_s: float, rate: int) -> None:
    n_in, n_out = round(fade_in_s * rate), round(fade_out_s * rate)
    for i in range(n_in):
        samples[i] *= i / n_in
    for i in range(n_out):
        samples[-1 - i] *= i / n_out


def _normalise_peak(samples: list[float], peak_dbfs: float) -> list[float]:
    scale = 10 ** (peak_dbfs / 20) / max(abs(s) for s in samples)
    return [s * scale for s in samples]


def _wav_bytes(samples: list[float]) -> bytes:
    """Mono float samples as a WAV file in OUTPUT_FORMAT (s16le)."""
    pcm = array("h", (round(s * 32767) for s in samples))
    if pcm.itemsize != OUTPUT_FORMAT.width:
        raise MediaError("this platform's C short is not 16 bits")
    if sys.byteorder == "big":  # WAV is little-endian
        pcm.byteswap()
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(OUTPUT_FORMAT.channels)
        w.setsampwidth(OUTPUT_FORMAT.width)
        w.setframerate(OUTPUT_FORMAT.rate)
        w.writeframes(pcm.tobytes())
    return buf.getvalue()
