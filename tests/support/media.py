"""Real audio files for tests, and measurements on WAVs for their assertions."""

import math
import subprocess
import wave
from array import array
from pathlib import Path

SINE_SOURCE_DBFS = 20 * math.log10(1 / 8)  # lavfi's sine source peaks at 1/8 of full scale


def make_tone(path, seconds: float, freq: float = 440, codec_ext: str = "mp3", *,
              rate: int = 44100, channels: int = 1, level_dbfs: float = -6.0) -> Path:
    """Encode a sine with ffmpeg's lavfi source; the format follows `codec_ext`.

    The suffix of `path` is replaced by `.codec_ext` (mp3, wav, ogg, opus, flac,
    m4a: anything ffmpeg picks an encoder for by extension). Returns the path written.
    """
    path = Path(path).with_suffix(f".{codec_ext}")
    source = f"sine=frequency={freq}:sample_rate={rate}:duration={seconds}"
    gain_db = level_dbfs - SINE_SOURCE_DBFS
    filters = f"volume={gain_db:.2f}dB"
    if channels == 2:  # the same signal at full level in both channels (-ac 2 would drop 3 dB)
        filters += ",pan=stereo|c0=c0|c1=c0"
    subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
                    "-f", "lavfi", "-i", source, "-af", filters,
                    "-ac", str(channels), str(path)],
                   check=True, timeout=60)
    return path


def write_wav(path, seconds: float, freq: float = 440, *, rate: int = 48000,
              level_dbfs: float = -6.0, channels: int = 1) -> Path:
    """A s16le sine WAV written block by block in Python (no ffmpeg): fast for long files."""
    path = Path(path)
    amp = 32767 * 10 ** (level_dbfs / 20)
    period = [round(amp * math.sin(2 * math.pi * freq * i / rate)) for i in range(rate)]
    one_second = array("h", (s for s in period for _ in range(channels))).tobytes()
    whole, rest = divmod(round(seconds * rate), rate)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        for _ in range(whole):
            w.writeframes(one_second)
        w.writeframes(one_second[: rest * 2 * channels])
    return path


def wav_duration(path) -> float:
    """Seconds of audio in a WAV."""
    with wave.open(str(path), "rb") as w:
        return w.getnframes() / w.getframerate()


def wav_samples(path, start_s: float = 0.0, end_s: float | None = None) -> array:
    """The 16-bit samples (all channels interleaved) between two times."""
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2:
            raise ValueError(f"{path}: only 16-bit WAVs are measured here")
        rate = w.getframerate()
        first = min(round(start_s * rate), w.getnframes())
        last = w.getnframes() if end_s is None else min(round(end_s * rate), w.getnframes())
        w.setpos(first)
        return array("h", w.readframes(max(0, last - first)))


def wav_rms(path, start_s: float = 0.0, end_s: float | None = None) -> float:
    """RMS level between two times, as a fraction of full scale (0.0 for silence or no samples)."""
    samples = wav_samples(path, start_s, end_s)
    if not samples:
        return 0.0
    return math.sqrt(sum(s * s for s in samples) / len(samples)) / 32768


def wav_peak(path, start_s: float = 0.0, end_s: float | None = None) -> float:
    """Peak level between two times, as a fraction of full scale."""
    samples = wav_samples(path, start_s, end_s)
    return max((abs(s) for s in samples), default=0) / 32768


def dbfs(level: float) -> float:
    """A fraction of full scale in dBFS (-inf for 0)."""
    return 20 * math.log10(level) if level > 0 else float("-inf")
