"""The audio API: the PCM format loaxa plays and the sink it plays into.

Everything above this layer (the player, the daemon) speaks only these names;
`alsa.py` and the hardware mock (`hw.mock.MockSpeaker`) implement `AudioSink`.
"""

from abc import ABC, abstractmethod
from dataclasses import dataclass


@dataclass(frozen=True)
class PcmFormat:
    """Interleaved little-endian signed PCM (unsigned for width 1, as in WAV)."""

    rate: int  # frames per second
    channels: int
    width: int  # bytes per sample

    @property
    def bytes_per_frame(self) -> int:
        return self.channels * self.width

    @property
    def bytes_per_second(self) -> int:
        return self.rate * self.bytes_per_frame

    def frames(self, nbytes: int) -> int:
        """Whole frames in `nbytes` of PCM."""
        return nbytes // self.bytes_per_frame

    def seconds(self, nbytes: int) -> float:
        """Seconds of audio in `nbytes` of PCM."""
        return self.frames(nbytes) / self.rate

    def nbytes(self, seconds: float) -> int:
        """Bytes of PCM for `seconds` of audio, rounded to whole frames."""
        return round(seconds * self.rate) * self.bytes_per_frame


# Loudspeaker lines are mono; ALSA's plug layer upmixes where a card needs it.
OUTPUT_FORMAT = PcmFormat(rate=48000, channels=1, width=2)

# Preparation before air (audio/preparation.py, docs/audio.md): the loudness every
# bulletin is brought to unless `audio.lufs` says otherwise, and the true-peak
# ceiling. PREPARE_VERSION is part of prepared file names: bump it when the chain
# changes, and units prepare their media again instead of playing stale copies.
DEFAULT_LUFS = -16.0
CEILING_DBTP = -1.5
PREPARE_VERSION = 1


class AudioSink(ABC):
    """Where PCM goes to be heard: a sound card, or a recording in the mock.

    One playback is `open(label)`, any number of `write(pcm)`, then `close()`
    (or `abort()` to cut it short). A sink may be opened again after closing.

    A subclass must provide `open`, `write`, `close` and `abort`, and may set
    `fmt` when it expects a format other than OUTPUT_FORMAT. Failures of the
    output itself (device missing, player process died) raise
    `loaxa.errors.HardwareError`; calling `write` on a sink that is not open is
    a programming error and raises `HardwareError` too, so a playout loop has
    one exception to report.
    """

    fmt: PcmFormat = OUTPUT_FORMAT

    @abstractmethod
    def open(self, label: str) -> None:
        """Start a playback; `label` names it in logs and recordings."""

    @abstractmethod
    def write(self, pcm: bytes) -> None:
        """Queue whole frames of PCM in `fmt`; blocks about as long as they take to play."""

    @abstractmethod
    def close(self) -> None:
        """Let queued audio finish, then end the playback. Safe to call twice,
        or on a sink that was never opened."""

    @abstractmethod
    def abort(self) -> None:
        """Drop queued audio and end the playback at once. Safe to call twice."""
