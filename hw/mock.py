"""Mock hardware: a real backend that remembers what happened.

Relays, inputs and the status LED drive real gpiozero devices on a `MockFactory`,
so pin states can be read back (and inputs driven) as on a Pi; the speaker writes
one WAV per playback and paces itself like a sound card; a serial device without a
port gets its simulator on a pty (`simulators["amplifier"|"gps"|"modem"]`), which
the real drivers talk to. Everything is recorded on one `Timeline`, in memory for
tests in this process and as JSON lines in `hardware.jsonl` for tests that watch a
daemon running in another process.
"""

import json
import logging
import os
import re
import shutil
import tempfile
import threading
import wave
from pathlib import Path

from gpiozero.pins.mock import MockConnectedPin, MockFactory

from audio import AudioSink
from loaxa.errors import HardwareError

from ._api import BatteryAdc, HardwareFactory, InputLine, Relay, StatusLed
from ._gpio import GpioInput, GpioRelay, GpioStatusLed
from .clock import Clock, SystemClock
from .probes import MockProbes

log = logging.getLogger("loaxa.mock")

TIMELINE_FILE = "hardware.jsonl"
FAULTS_ENV = "LOAXA_MOCK_FAULTS"
SIMULATED = ("amplifier", "gps", "modem")
INPUT_ROLES = ("fault", "door", "button_test", "button_stop", "ignition")
_FAULT_STEP = re.compile(
    r"(?P<part>[a-z_]+):(?P<action>[a-z_]+)(?:=(?P<cause>[a-z_]+))?@(?P<after>\d+(?:\.\d+)?)s?")
_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]")
MAX_LABEL = 120


class Timeline:
    """A thread-safe, append-only record of `{"t": clock.time(), "kind": ..., **fields}`.

    With `path`, each event is also appended to that file as one JSON line and
    flushed at once, so another process can follow it. A full or read-only disk
    never stops the mock (a real unit has no such file): lines that cannot be written
    wait in memory (the newest MAX_UNWRITTEN) and go out, whole, once writes work.
    """

    MAX_UNWRITTEN = 10_000

    def __init__(self, path=None, clock: Clock | None = None):
        self.clock = clock or SystemClock()
        self.path = Path(path) if path is not None else None
        self._events = []
        self._changed = threading.Condition()
        self._file = None
        self._unwritten: list[bytes] = []
        if self.path is not None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._file = open(self.path, "ab", buffering=0)
            except OSError as exc:
                log.warning("mock timeline %s cannot be written (%s); kept in memory only", self.path, exc)

    def record(self, kind: str, **fields) -> dict:
        """Add an event stamped with the clock's wall time; returns it."""
        with self._changed:
            event = {"t": self.clock.time(), "kind": kind, **fields}
            self._events.append(event)
            if self._file is not None:
                self._append((json.dumps(event, ensure_ascii=False) + "\n").encode("utf-8"))
            self._changed.notify_all()
        return event

    def _append(self, line: bytes) -> None:
        self._unwritten.append(line)
        del self._unwritten[:-self.MAX_UNWRITTEN]
        while self._unwritten:
            try:
                written = self._file.write(self._unwritten[0])
            except OSError as exc:
                if len(self._unwritten) == 1:
                    log.warning("mock timeline %s: %s; lines wait in memory", self.path, exc)
                return
            if written < len(self._unwritten[0]):  # a short write: the rest next time
                self._unwritten[0] = self._unwritten[0][written:]
            else:
                self._unwritten.pop(0)

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
        self.listeners = []  # called with the new state after each change is recorded
        super().__init__(role, pin, active_high, pin_factory)

    def _changed(self, on: bool) -> None:
        self.timeline.record("relay", role=self.role, pin=self.pin, on=on)
        for listener in self.listeners:
            listener(on)


class MockInput(GpioInput):
    """An input on a MockFactory pin (drive it with `pin_factory.pin(n).drive_high()`);
    every change is recorded on the timeline before handlers run."""

    def __init__(self, role: str, pin: int, *, pin_factory: MockFactory, timeline: Timeline,
                 active_high: bool = True, bounce_s: float | None = None):
        self.timeline = timeline
        super().__init__(role, pin, active_high, pin_factory, bounce_s)

    def _changed(self, active: bool) -> None:
        self.timeline.record("input", role=self.role, pin=self.pin, active=active)
        super()._changed(active)


class MockBatteryAdc(BatteryAdc):
    """The vehicle battery's ADC in mock mode: `set_volts(v)` (None: the ADC does not
    answer) as a technician's bench supply would; each change is on the timeline."""

    def __init__(self, channel: int, divider: float, vref: float, *, timeline: Timeline,
                 volts: float | None = 12.6):
        super().__init__(channel, divider, vref)
        self.timeline = timeline
        self._volts = volts

    def set_volts(self, volts: float | None) -> None:
        self._volts = volts
        self.timeline.record("battery", volts=volts)

    def _fraction(self) -> float | None:
        if self._volts is None:
            return None
        return min(1.0, max(0.0, self._volts / (self.vref * self.divider)))

    def close(self) -> None:
        pass


class MockStatusLed(GpioStatusLed):
    """The status LED on a MockFactory pin; each pattern change is recorded (not each blink)."""

    MAX_PIN_HISTORY = 1000  # MockPin keeps every state change; a blinking LED must not grow it forever

    def __init__(self, pin: int, *, pin_factory: MockFactory, timeline: Timeline,
                 active_high: bool = True):
        self.timeline = timeline
        super().__init__(pin, active_high, pin_factory)

    def _show(self, pattern: str) -> None:
        self.timeline.record("led", pattern=pattern)
        super()._show(pattern)

    def _cycle_done(self) -> None:
        device = self._device
        if device is not None and len(device.pin.states) > self.MAX_PIN_HISTORY:
            device.pin.clear_states()


class MockSpeaker(AudioSink):
    """An audio output that writes each playback to `output_dir/<label>.wav`.

    Writes are paced by the clock's monotonic time so that audio advances at
    `speed` times real time, as a sound card would at speed 1. The WAV is a recording
    for inspection: when the disk refuses it (full, read-only) the speaker still
    "plays" (a real one writes no file) and the timeline says `recording: "failed"`.
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
            self.path = self.output_dir / f"{safe_label(label)}.wav"
            try:
                self.output_dir.mkdir(parents=True, exist_ok=True)
                self.path = self._free_path(safe_label(label))
                self._wav = self._new_wav(self.path)
                failed = None
            except OSError as exc:
                self._wav, failed = _NoRecording(), exc.strerror or str(exc)
            self._frames, self._start = 0, None
        extra = {"recording": f"failed: {failed}"} if failed else {}
        self.timeline.record("speaker.open", file=self.path.name, label=label, **extra)

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
            try:
                self._wav.writeframes(pcm)
            except OSError as exc:  # the disk filled mid-play: the audio goes on, unrecorded
                log.warning("mock speaker: recording %s stopped: %s", self.path.name, exc)
                broken, self._wav = self._wav, _NoRecording()
                try:
                    broken.close()
                except OSError:
                    pass
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
            try:
                wav.close()
            except OSError as exc:
                log.warning("mock speaker: recording %s not finished: %s", self.path.name, exc)
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


class _NoRecording:
    """Stands in for the WAV when the disk refuses it."""

    def writeframes(self, pcm: bytes) -> None:
        pass

    def close(self) -> None:
        pass


def safe_label(label: str) -> str:
    """`label` as a portable file stem: only [A-Za-z0-9._+-], no leading dot, never empty."""
    stem = _UNSAFE.sub("_", label).lstrip(".")[:MAX_LABEL]
    return stem or "playback"


def parse_fault_plan(text: str) -> list[dict]:
    """`LOAXA_MOCK_FAULTS`: comma-separated `part:action[=cause]@seconds`, e.g.
    `amplifier:protect=short@45,amplifier:clear@90,gps:lost@30,door:on@60,door:off@70`.

    Parts: the simulators (amplifier, gps, modem; actions are their `fail()` names, or
    `clear`) and the inputs (fault, door, button_test, button_stop, and a vehicle's
    ignition when `[vehicle].ignition` is set; actions `on`, `off`).
    Seconds count from the factory's start. HardwareError names a bad step.
    """
    plan = []
    for step in filter(None, (part.strip() for part in text.split(","))):
        match = _FAULT_STEP.fullmatch(step)
        part = match and match["part"]
        if not match or part not in SIMULATED + INPUT_ROLES or (
                part in INPUT_ROLES and match["action"] not in ("on", "off")):
            raise HardwareError(f"${FAULTS_ENV}: cannot read {step!r} (like 'amplifier:protect=short@45' "
                                f"or 'door:on@60'; parts: {', '.join(SIMULATED + INPUT_ROLES)})")
        plan.append({"part": part, "action": match["action"], "cause": match["cause"],
                     "after_s": float(match["after"])})
    return plan


class MockHardware(HardwareFactory):
    """Mock parts on one MockFactory and one Timeline (`output_dir/hardware.jsonl`).

    `simulators` holds the simulator started for each serial device asked for
    without a port ("amplifier", "gps", "modem"); tell them to fail with their
    `fail(...)`. The amplifier simulator is fed by the "amp_power" relay, if one
    was made: with the mains relay off it is dead, as a real amplifier is.
    `amp_boot_s` is how long it takes to answer after mains on. `faults` (default
    `$LOAXA_MOCK_FAULTS`) schedules failures for a demo: see `parse_fault_plan`.
    `fitted` names the serial devices the unit has: one left out is absent, as on a
    Pi with no port for it (a fixed commune cluster without GPS, say). `route` (a file,
    default `$LOAXA_DEMO_ROUTE`) makes the GPS simulator drive it.
    """

    mock = True

    def __init__(self, output_dir, *, speed: float = 1.0, clock: Clock | None = None,
                 amp_boot_s: float = 0.2, gps_interval_s: float = 1.0, faults: str | None = None,
                 fitted=SIMULATED, route: str | None = None):
        if not speed > 0:
            raise ValueError(f"mock speed must be > 0, got {speed}")
        unknown = set(fitted) - set(SIMULATED)
        if unknown:
            raise ValueError(f"mock: unknown serial device(s) {', '.join(sorted(unknown))} "
                             f"(known: {', '.join(SIMULATED)})")
        self.fitted = tuple(fitted)
        super().__init__(clock)
        self.output_dir = Path(output_dir)
        self.speed = speed
        self.amp_boot_s, self.gps_interval_s = amp_boot_s, gps_interval_s
        self.route = route  # a route file for the GPS simulator; default $LOAXA_DEMO_ROUTE
        self.timeline = Timeline(self.output_dir / TIMELINE_FILE, self.clock)
        self.pin_factory = MockFactory()
        self.simulators: dict = {}
        self._relays: dict[str, Relay] = {}
        self._inputs: dict[str, InputLine] = {}
        self._sim_dir = None
        plan = parse_fault_plan(os.environ.get(FAULTS_ENV, "") if faults is None else faults)
        self._fault_timers = [threading.Timer(step["after_s"], self._inject, args=(step,))
                              for step in plan]
        for timer in self._fault_timers:
            timer.daemon = True
            timer.start()

    def wire(self, output_pin: int, input_pin: int) -> None:
        """Join two pins with a jumper wire (before either is used): the output drives the input."""
        self.pin_factory.pin(output_pin, pin_class=MockConnectedPin,
                             input_pin=self.pin_factory.pin(input_pin))

    def _make_relay(self, role: str, pin: int, active_high: bool) -> Relay:
        relay = MockRelay(role, pin, pin_factory=self.pin_factory, timeline=self.timeline,
                          active_high=active_high)
        if role == "amp_power":
            relay.listeners.append(self._mains_changed)
        self._relays[role] = relay
        return relay

    def _make_input(self, role: str, pin: int, active_high: bool, bounce_s) -> InputLine:
        line = MockInput(role, pin, pin_factory=self.pin_factory, timeline=self.timeline,
                         active_high=active_high, bounce_s=bounce_s)
        self._inputs[role] = line
        if role == "ignition":  # the demo vehicle starts with its engine running
            self.drive(role, True)
        return line

    def drive(self, role: str, active: bool) -> None:
        """Set the input of `role` to its active (or inactive) level, as its switch would."""
        line = self._inputs.get(role)
        if line is None:
            raise HardwareError(f"mock: no input {role!r} made yet")
        pin = self.pin_factory.pin(line.pin)
        (pin.drive_high if active == line.active_high else pin.drive_low)()

    def _inject(self, step: dict) -> None:
        """One step of the fault plan."""
        if self._closed:
            return
        part, action = step["part"], step["action"]
        self.timeline.record("mock.fault", part=part, action=action, cause=step["cause"])
        log.warning("mock fault plan: %s %s%s", part, action, f" ({step['cause']})" if step["cause"] else "")
        try:
            if part in INPUT_ROLES:
                self.drive(part, action == "on")
                return
            sim = self.simulators.get(part)
            if sim is None:
                raise HardwareError(f"mock: no {part} simulator running")
            if action == "clear":
                sim.clear()
            elif step["cause"]:
                sim.fail(action, cause=step["cause"])
            else:
                sim.fail(action)
        except (HardwareError, ValueError, TypeError) as exc:
            log.warning("mock fault plan: %s", exc)

    def _make_battery_adc(self, channel: int, divider: float, vref: float) -> MockBatteryAdc:
        self.battery = MockBatteryAdc(channel, divider, vref, timeline=self.timeline)
        return self.battery

    def _make_status_led(self, pin: int, active_high: bool) -> StatusLed:
        return MockStatusLed(pin, pin_factory=self.pin_factory, timeline=self.timeline,
                             active_high=active_high)

    def _make_speaker(self) -> MockSpeaker:
        return MockSpeaker(self.output_dir, self.timeline, self.clock, self.speed)

    def _make_probes(self) -> MockProbes:
        return MockProbes(self.timeline, clock=self.clock)

    def _simulated_port(self, kind: str) -> str | None:
        from .sim import AmplifierSimulator, GpsSimulator, ModemSimulator

        if kind not in self.fitted:
            return None

        if kind in self.simulators:
            raise HardwareError(f"mock {kind} simulator already in use")
        if self._sim_dir is None:
            self._sim_dir = tempfile.mkdtemp(prefix="loaxa-sim-")
        # A stable path, like udev's /dev/serial/by-id/ link: the same after an unplug.
        link = Path(self._sim_dir) / f"tty-{kind}"
        if kind == "amplifier":
            sim = AmplifierSimulator(link_path=link, boot_s=self.amp_boot_s, mains=self._mains_on,
                                     mains_poll_s=None, timeline=self.timeline)
        elif kind == "gps":
            sim = GpsSimulator(link_path=link, interval_s=self.gps_interval_s, **_route_from_env(self.route))
        else:
            sim = ModemSimulator(link_path=link)
        self.simulators[kind] = sim.start()
        self._parts.append((sim, sim.close))
        return sim.port

    def _mains_changed(self, on: bool) -> None:
        sim = self.simulators.get("amplifier")
        if sim is not None:
            sim.wake()

    def _mains_on(self) -> bool:
        relay = self._relays.get("amp_power")
        try:
            return True if relay is None else relay.is_on
        except HardwareError:
            return False

    def _close_backend(self) -> None:
        for timer in self._fault_timers:
            timer.cancel()
        self.pin_factory.close()
        self.timeline.close()
        if self._sim_dir is not None:
            shutil.rmtree(self._sim_dir, ignore_errors=True)


ROUTE_ENV = "LOAXA_DEMO_ROUTE"


def _route_from_env(path: str | None = None) -> dict:
    """`$LOAXA_DEMO_ROUTE` (a GPX file, or JSON waypoints and faults: `hw.sim.route`) makes
    the mock GPS drive that route from the unit's start; unreadable, the GPS stays put and
    the log says why (a demo's stray variable must not stop the unit)."""
    path = path or os.environ.get(ROUTE_ENV)
    if not path:
        return {}
    from .sim.route import RouteError, load_route

    try:
        route, faults = load_route(path)
    except RouteError as exc:
        log.error("%s: %s; the simulated GPS stays at a fixed position", ROUTE_ENV, exc)
        return {}
    return {"route": route, "faults": faults}
