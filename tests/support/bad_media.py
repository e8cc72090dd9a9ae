"""Media that must never stop a unit: each maker writes one kind of bad file.

Used by the preparation, cache, sync and command-line tests, which check that
every one of them ends in a MediaError with a plain reason (and exit 1, one line,
for `loaxa media prepare`).
"""

import random
import struct
import subprocess
from pathlib import Path

from tests.support.media import make_tone


def empty(folder: Path) -> Path:
    path = Path(folder) / "empty.mp3"
    path.write_bytes(b"")
    return path


def not_audio(folder: Path) -> Path:
    path = Path(folder) / "lich-phat-thanh.mp3"
    path.write_text("Lịch phát thanh tuần 48 — không phải âm thanh\n" * 50, encoding="utf-8")
    return path


def truncated(folder: Path) -> Path:
    """The first third of a 6 s MP3 (with its Xing header, which declares 6 s)."""
    whole = make_tone(Path(folder) / "whole", 6.0, codec_ext="mp3")
    path = Path(folder) / "cut.mp3"
    path.write_bytes(whole.read_bytes()[: whole.stat().st_size // 3])
    whole.unlink()
    return path


def unsupported_codec(folder: Path) -> Path:
    """A WAV whose format tag (0x1234) names no codec ffmpeg knows."""
    data = b"\x00\x01" * 48000
    fmt = struct.pack("<HHIIHH", 0x1234, 1, 48000, 96000, 2, 16)
    riff = (b"RIFF" + struct.pack("<I", 4 + 8 + len(fmt) + 8 + len(data)) + b"WAVE"
            + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data)
    path = Path(folder) / "odd-codec.wav"
    path.write_bytes(riff)
    return path


def silent(folder: Path) -> Path:
    path = Path(folder) / "silence.flac"
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    "anullsrc=r=48000:cl=mono", "-t", "3", str(path)], check=True, timeout=60)
    return path


def ten_hours(folder: Path) -> Path:
    """A real, decodable 10-hour MP3 (8 kHz, 8 kbit/s: 36 MB): one second of quiet
    tone encoded once, its frames repeated (MPEG frames stand alone; no Xing header,
    so ffprobe reads the length from the bitrate, as for any such upload)."""
    one = Path(folder) / "one-second.mp3"
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    "sine=frequency=300:sample_rate=8000:duration=1", "-b:a", "8k",
                    "-write_xing", "0", "-id3v2_version", "0", "-write_id3v1", "0", str(one)],
                   check=True, timeout=60)
    frames = one.read_bytes()
    one.unlink()
    path = Path(folder) / "ten-hours.mp3"
    with open(path, "wb") as out:
        for _ in range(10 * 3600):
            out.write(frames)
    return path


def corrupt(folder: Path) -> Path:
    """A 6 s MP3 whose frames after the first kilobytes are overwritten with noise."""
    whole = make_tone(Path(folder) / "whole", 6.0, codec_ext="mp3")
    data = whole.read_bytes()
    whole.unlink()
    path = Path(folder) / "corrupt.mp3"
    path.write_bytes(data[:2048] + random.Random(7).randbytes(len(data) - 2048))
    return path


# Each maker, and words its reason must contain, where a reason is the cache's or the
# command line's (the preparation tests check theirs more closely).
REASONS = {
    "empty": (empty, "file is empty"),
    "not audio": (not_audio, "audio"),
    "truncated": (truncated, "truncated"),
    "corrupt": (corrupt, "damaged"),
    "unsupported codec": (unsupported_codec, "unsupported audio codec"),
    "ten hours": (ten_hours, "over the limit of 10800 s"),
}
