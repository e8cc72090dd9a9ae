"""Mock hardware: a real backend that remembers what happened.

Relays drive real gpiozero devices on a `MockFactory`, so pin states can be
read back as on a Pi; the speaker writes one WAV per playback and paces itself
like a sound card. Everything is recorded on one `Timeline`, in memory for
tests in this process and as JSON lines in `hardware.jsonl` for tests that
watch a daemon running in another process.
"""

import json
import re
import threading
import wave
from pathlib import Path

from gpiozero.pins.mock import MockFactory

from audio import AudioSink
from loaxa.errors import HardwareError

from ._api import HardwareFactory, Relay
from ._gpio import GpioRelay
from .clock import Clock, SystemClock

TIMELINE_FILE = "hardware.jsonl"
_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]")
MAX_LABEL = 120


class Timeline:
    """A thread-safe, append-only record of `{"t": clock.time(), "kind": ..., **fields}`.

    With `path`, each event is also appended to that file as one JSON line and
    flushed at once, so another process can follow it.
    """

    def __init__(self, path=None, clock: Clock | None = None):
        self.clock = clock or SystemClock()
        self.path = Path(path) if path is not None else None
        self._events = []
        self._changed = threading.Condition()
        self._file = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a", encoding="utf-8")

    def record(self, kind: str, **fields) -> dict:
        """Add an event stamped with the clock's wall time; returns it."""
        with self._changed:
            event = {"t": self.clock.time(), "kind": kind, **fields}
            self._events.append(event)
            if self._file is not None:
                self._file.write(json.dumps(event, ensure_ascii=False) + "\n")
                self._file.flush()
            self._changed.notify_all()
        return event

    def events(self, kind: str | None = None) -> list[dict]:
        """Copies of the events so far, of one kind or all."""
        with self._changed:
            return [dict(e) for e in self._events if kind is None or e["kind"] == kind]

    def wait_for(self, kind: str, timeout: float, count: int = 1) -> list[dict]:
        """Block until `count` events of `kind` exist (wall seconds); HardwareError on timeout."""
        with self._changed:
            found = self._changed.wait_for(lambda: len(self._matching(kind)) >= count, timeout)
            if not found:
                raise HardwareError(f"timeline: no {count} x {kind!r} within {timeout:g} s")
            return [dict(e) for e in self._matching(kind)]

    def _matching(self, kind: str) -> list[dict]:
        return [e for e in self._events if e["kind"] == kind]

    def close(self) -> None:
        with self._changed:
            if self._file is not None:
                self._file.close()
                self._file = None

    @staticmethod
    def read(path) -> list[dict]:
        """The events in a timeline file; a last line still being written is skipped."""
        text = Path(path).read_text(encoding="utf-8")
        return [json.loads(line) for line in text.splitlines(keepends=True)
                if line.endswith("\n") and line.strip()]


class MockRelay(GpioRelay):
    """A relay on a MockFactory pin that records every change on the timeline."""

    def __init__(self, role: str, pin: int, *, pin_factory: MockFactory, timeline: Timeline,
                 active_high: bool = True):
        self.timeline = timeline
        super().__init__(role, pin, active_high, pin_factory)

    def _changed(self, on: bool) -> None:
        self.timeline.record("relay", role=self.role, pin=self.pin, on=on)


class MockSpeaker(AudioSink):
    """An audio output that writes each playback to `output_dir/<label>.wav`.

    Writes are paced by the clock's monotonic time so that audio advances at
    `speed` times real time, as a sound card would at speed 1.
    """

    def __init__(self, output_dir, timeline: Timeline, clock: Clock | None = None,
                 speed: float = 1.0):
        if not speed > 0:
            raise ValueError(f"speed must be > 0, got {speed}")
        self.output_dir = Path(output_dir)
        self.timeline, self.clock, self.speed = timeline, clock or timeline.clock, speed
        self.path = None  # the WAV of the current (or last) playback
        # A shutdown may abort from another thread while the player is in write().
        self._lock = threading.Lock()
        self._wav = None
        self._frames = 0
        self._start = None  # monotonic time of the first sample

    @property
    def is_open(self) -> bool:
        return self._wav is not None

    def open(self, label: str) -> None:
        with self._lock:
            if self._wav is not None:
                raise HardwareError(f"mock speaker is already playing {self.path.name}")
            self.output_dir.mkdir(parents=True, exist_ok=True)
            self.path = self._free_path(safe_label(label))
            self._wav = self._new_wav(self.path)
            self._frames, self._start = 0, None
        self.timeline.record("speaker.open", file=self.path.name, label=label)

    def write(self, pcm: bytes) -> None:
        if len(pcm) % self.fmt.bytes_per_frame:
            raise ValueError(f"write of {len(pcm)} bytes is not whole frames")
        with self._lock:
            if self._wav is None:
                raise HardwareError("mock speaker is not open")
            if not pcm:
                return
            if self._start is None:
                self._start = self.clock.monotonic()
                self.timeline.record("speaker.first_sample", file=self.path.name)
            # writeframes keeps the header current: a daemon killed mid-play leaves a valid WAV.
            self._wav.writeframes(pcm)
            self._frames += self.fmt.frames(len(pcm))
        self._pace()  # outside the lock: an abort need not wait for the audio to "play"

    def close(self) -> None:
        self._finish(aborted=False)

    def abort(self) -> None:
        self._finish(aborted=True)

    @property
    def audio_s(self) -> float:
        """Seconds of audio in the current (or last) playback."""
        return self._frames / self.fmt.rate

    def _pace(self) -> None:
        due = self._start + self.audio_s / self.speed
        self.clock.sleep(due - self.clock.monotonic())

    def _finish(self, aborted: bool) -> None:
        with self._lock:
            if self._wav is None:
                return
            wav, self._wav = self._wav, None
            wav.close()
        self.timeline.record("speaker.close", file=self.path.name,
                             audio_s=round(self.audio_s, 6), aborted=aborted)

    def _new_wav(self, path: Path) -> wave.Wave_write:
        wav = wave.open(str(path), "wb")
        wav.setnchannels(self.fmt.channels)
        wav.setsampwidth(self.fmt.width)
        wav.setframerate(self.fmt.rate)
        return wav

    def _free_path(self, stem: str) -> Path:
        """`stem.wav`, or `stem-2.wav`... when a playback of that name exists: never overwrite."""
        path, n = self.output_dir / f"{stem}.wav", 1
        while path.exists():
            n += 1
            path = self.output_dir / f"{stem}-{n}.wav"
        return path


def safe_label(label: str) -> str:
    """`label` as a portable file stem: only [A-Za-z0-9._+-], no leading dot, never empty."""
    stem = _UNSAFE.sub("_", label).lstrip(".")[:MAX_LABEL]
    return stem or "playback"


class MockHardware(HardwareFactory):
    """Mock relays and speaker on one MockFactory and one Timeline (`output_dir/hardware.jsonl`)."""

    mock = True

    def __init__(self, output_dir, *, speed: float = 1.0, clock: Clock | None = None):
        if not speed > 0:
            raise ValueError(f"mock speed must be > 0, got {speed}")
        super().__init__(clock)
        self.output_dir = Path(output_dir)
        self.speed = speed
        self.timeline = Timeline(self.output_dir / TIMELINE_FILE, self.clock)
        self.pin_factory = MockFactory()

    def _make_relay(self, role: str, pin: int, active_high: bool) -> Relay:
        return MockRelay(role, pin, pin_factory=self.pin_factory, timeline=self.timeline,
                         active_high=active_high)

    def _make_speaker(self) -> MockSpeaker:
        return MockSpeaker(self.output_dir, self.timeline, self.clock, self.speed)

    def _close_backend(self) -> None:
        self.pin_factory.close()
        self.timeline.close()
