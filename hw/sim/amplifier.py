"""An LXA1 amplifier on a pty (docs/amplifier-protocol.md), with faults on demand.

    sim = AmplifierSimulator().start()
    amp = Lxa1Amplifier(SerialLink(sim.port))
    sim.fail("protect", cause="short")   # the loudspeaker line shorted
    sim.fail("silent")                   # stops answering (a dead controller board)
    sim.unplug(); sim.replug()           # the USB-serial adapter vanishes and returns
    sim.clear()                          # every fault gone

`mains` (a callable) says whether the mains relay feeds the amplifier: without
mains it is dead and silent; when mains returns it boots (`boot_s`), says `!BOOT`
and starts muted with its output stage on, as a real amplifier powers up. It is
asked every `mains_poll_s`; with `mains_poll_s=None` only when `wake()` says it
changed (MockHardware wakes it from the mains relay, so an idle amplifier costs
nothing).
"""

import threading
import time

from ..amplifier import ERROR, NOTICE, PROTOCOL, REPLY, REQUEST, frame, parse_frame
from ._pty import PtySimulator

FAULTS = ("overtemp", "overcurrent", "short", "dc", "mains", "fan")


class AmplifierSimulator(PtySimulator):
    name = "amplifier"
    boot_tick_s = 0.05  # boots and announces itself from tick(): the driver expects its HELLO answered within 0.3 s

    def __init__(self, *, link_path=None, model: str = "LXA-PA350", firmware: str = "1.4",
                 vol_max: int = 63, inputs: int = 2, boot_s: float = 0.0, mains=None,
                 mains_poll_s: float | None = 0.05, line_ohm: float | None = 8.2, timeline=None):
        super().__init__(link_path=link_path)
        self.mains_poll_s = mains_poll_s
        self.model, self.firmware, self.vol_max, self.inputs = model, firmware, vol_max, inputs
        self.boot_s = boot_s
        self.mains = mains or (lambda: True)
        self.line_ohm = line_ohm
        self.timeline = timeline
        self.commands: list[tuple[str, tuple[str, ...]]] = []  # every request understood
        self.bad_lines = 0  # requests dropped: bad checksum or not a request
        self.silent = False
        self.reply_delay_s = 0.0  # answer this late (a slow controller: tests stale replies)
        self.fault_cause: str | None = None
        self.power, self.mute, self.volume, self.input = True, True, vol_max // 2, 1
        self._powered_since = None  # monotonic time mains came on; None while off
        self._announced = False
        self._protect_said = False
        self._state_lock = threading.RLock()
        self.booted = threading.Event()  # set once its first !BOOT is out

    # ---- what tests and the demo do ----
    def fail(self, what: str, *, cause: str = "overtemp") -> None:
        """"protect" (with a fault `cause`), "silent", "unplugged" or "garbage"."""
        if what == "protect":
            if cause not in FAULTS:
                raise ValueError(f"unknown fault cause {cause!r} (known: {', '.join(FAULTS)})")
            with self._state_lock:
                self.fault_cause = cause
                self._say_protect()
        elif what == "silent":
            self.silent = True
        elif what == "unplugged":
            self.unplug()
        elif what == "garbage":
            self.send(b"\x00\xff\x13 noise=1 *ZZ\r\n\x81\x82" + b"#" * 300 + b"\r\n")
        else:
            raise ValueError(f"unknown amplifier failure {what!r}")

    def clear(self) -> None:
        """Every fault gone: cause removed, answering again, plugged in."""
        with self._state_lock:
            self.silent = False
            self.fault_cause = None
            self._say_protect()
        self.replug()

    @property
    def protect(self) -> bool:
        return self.fault_cause is not None and self.alive

    @property
    def alive(self) -> bool:
        """Mains on and booted."""
        since = self._powered_since
        return since is not None and time.monotonic() - since >= self.boot_s

    @property
    def temp_c(self) -> float:
        if self.fault_cause == "overtemp":
            return 92.5
        return 38.0 + (6.0 if self.power and not self.mute else 0.0)

    # ---- the device ----
    def next_tick_s(self) -> float | None:
        if self._powered_since is not None and not self._announced:
            return self.boot_tick_s  # booting: its !BOOT comes on time
        return self.mains_poll_s

    def tick(self) -> None:
        with self._state_lock:
            if not self.mains():
                self._powered_since, self._announced = None, False
                return
            if self._powered_since is None:
                self._powered_since = time.monotonic()
                self.power, self.mute = True, True  # power-up state of a real amplifier
                self._protect_said = False
            if self.alive and not self._announced:
                self._announced = True
                self._notice(f"BOOT {PROTOCOL} model={self.model}")
                self._say_protect()
                self.booted.set()

    def on_line(self, line: bytes) -> None:
        parsed = parse_frame(line)
        if parsed is None or parsed[0] != REQUEST or len(parsed[1]) < 2:
            self.bad_lines += 1
            return  # LXA1: a line that fails its checksum gets no answer
        tag, command, *args = parsed[1]
        with self._state_lock:
            self.tick()
            if self.silent or not self.alive:
                return
            self.commands.append((command, tuple(args)))
            if self.timeline is not None and command != "STATUS":  # polls would drown the rest
                self.timeline.record("amp", command=command, args=list(args))
            reply = self._handle(command, args)
        start, body = reply
        line = frame(start, f"{tag} {command}{' ' if body else ''}{body}")
        if self.reply_delay_s > 0:
            threading.Timer(self.reply_delay_s, self.send, args=(line,)).start()
        else:
            self.send(line)

    def _handle(self, command: str, args: list[str]) -> tuple[str, str]:
        handler = getattr(self, f"_cmd_{command.lower()}", None)
        if handler is None:
            return ERROR, "UNKNOWN"
        try:
            return handler(*args)
        except (TypeError, ValueError):
            return ERROR, "ARGS"

    def _cmd_hello(self):
        return REPLY, (f"{PROTOCOL} model={self.model} fw={self.firmware} vol_max={self.vol_max} "
                       f"inputs={self.inputs}")

    def _cmd_pwr(self, value):
        if value not in ("0", "1"):
            return ERROR, "RANGE"
        if value == "1" and self.fault_cause:
            return ERROR, f"PROTECT fault={self.fault_cause}"
        self.power = value == "1"
        return REPLY, value

    def _cmd_mute(self, value):
        if value not in ("0", "1"):
            return ERROR, "RANGE"
        self.mute = value == "1"
        return REPLY, value

    def _cmd_vol(self, value):
        steps = int(value)
        if not 0 <= steps <= self.vol_max:
            return ERROR, "RANGE"
        self.volume = steps
        return REPLY, str(steps)

    def _cmd_input(self, value):
        number = int(value)
        if not 1 <= number <= self.inputs:
            return ERROR, "RANGE"
        self.input = number
        return REPLY, str(number)

    def _cmd_status(self):
        fields = [f"pwr={int(self.power)}", f"mute={int(self.mute)}", f"vol={self.volume}",
                  f"input={self.input}", f"temp={self.temp_c:.1f}", f"prot={int(self.protect)}",
                  f"fault={self.fault_cause or 'none'}"]
        if self.line_ohm is not None and self.power:
            ohm = 0.4 if self.fault_cause == "short" else self.line_ohm
            fields += [f"line_a={0.0 if self.mute or self.protect else 0.85:.2f}", f"line_ohm={ohm:.1f}"]
        return REPLY, " ".join(fields)

    def _cmd_clear(self):
        if self.fault_cause:
            return ERROR, f"BUSY fault={self.fault_cause}"
        return REPLY, "1"

    def _say_protect(self) -> None:
        """Announce a change of protect state, once, while alive."""
        protect = self.protect
        if self.alive and protect != self._protect_said:
            self._protect_said = protect
            if protect:
                self.power = False  # protect cuts the output stage
            self._notice(f"PROTECT 1 fault={self.fault_cause}" if protect else "PROTECT 0")

    def _notice(self, body: str) -> None:
        if not self.silent:
            self.send(frame(NOTICE, body))
