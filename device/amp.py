"""Amplifier sequencing: warm before air, zones before audio, no relay while audio plays,
off after silence, and a safe state on a fault.

The order of one playback, as the player thread drives it:

    ready_at = amp.power_on()      # mute relay on, mains relay on; ready after warmup_s
    amp.select_zones(item.zones)   # zone relays, still muted (None: every zone)
    amp.unmute()                   # waits for ready_at, sets up the amplifier over serial
                                   # (power, input, volume, mute off), releases the mute
                                   # relay, lets it settle: audio may start on return
    ... play ...
    amp.mute()                     # after the speaker closed: mute relay on
    amp.seconds_until_cooldown()   # 0.0 once cooldown_s of silence passed: power_off()

Between `unmute()` and `mute()` no relay may switch: `select_zones` and `power_off`
raise HardwareError then (a click into the loudspeakers is the one thing a listener
notices). On a fault (the amplifier's fault input, or protect reported over serial)
`on_fault(reason)` is called so the integrator stops the audio; once the audio has
stopped (or `stop_timeout_s` passed) the amplifier is muted and switched off, the
LED shows "fault", and `on_event("amp.fault", detail)` reports it. The amplifier then
stays off for `fault_hold_s`; the next `power_on()` after that is a recovery attempt,
confirmed (`amp.recovered`) once the amplifier is ready with no fault.
"""

import logging
import threading

from hw.amplifier import AmpError
from loaxa.errors import HardwareError

log = logging.getLogger("loaxa.amp")


class AmpFault(HardwareError):
    """The amplifier is in a fault state: it cannot be switched on or unmuted now."""


class AmpControl:
    def __init__(self, *, power, mute, clock, warmup_s: float, cooldown_s: float,
                 zones=(), driver=None, fault_input=None, led=None, volume: int = 100,
                 input_number: int | None = None, settle_s: float = 0.05,
                 on_fault=None, on_event=None, poll_s: float = 1.0,
                 stop_timeout_s: float = 3.0, fault_hold_s: float = 60.0):
        """`power`, `mute` and `zones` are hw Relays, `driver` an hw Amplifier (None or
        relay-only: no serial), `fault_input` an hw InputLine, `led` an hw StatusLed.
        `on_fault(reason)` must stop the audio; `on_event(kind, detail, **extra)` gets
        amp.fault, amp.recovered, amp.link_lost and amp.link_restored."""
        self._power, self._mute, self._zones = power, mute, list(zones)
        self._clock = clock
        self.warmup_s, self.cooldown_s = warmup_s, cooldown_s
        self._driver = driver if driver is not None and driver.has_link else None
        self._fault_input, self._led = fault_input, led
        self.volume, self.input_number, self.settle_s = volume, input_number, settle_s
        self.on_fault, self.on_event = on_fault, on_event
        self.poll_s, self.stop_timeout_s, self.fault_hold_s = poll_s, stop_timeout_s, fault_hold_s
        self._powered_at = None  # monotonic time the power relay closed
        self._idle_since = None  # monotonic time the last playback ended
        self._playing = False  # between unmute() and mute()
        self._zones_selected = None  # the zones chosen for the coming or current playback
        self._fault = None  # why the amplifier is in a fault state
        self._fault_at = None
        self._recovering = False  # powered again after a fault, not yet confirmed healthy
        self._link_ok = None  # None: no serial link, or not talked to yet
        self.status = None  # the amplifier's last AmpStatus over serial
        self._lock = threading.RLock()
        self._idle = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._watching = threading.Event()  # set while powered (and at close): an amplifier off needs no watch
        self._monitor = None
        if driver is not None:
            driver.on_notice = self._notice
        if fault_input is not None:
            fault_input.when_changed = self._fault_line
        self._mute.on()  # muted until a playback asks for sound

    @classmethod
    def for_unit(cls, unit_hw, cfg, **options) -> "AmpControl":
        """Every part from an hw.UnitHardware and the [amplifier] config; `options` as __init__."""
        amp = cfg.amplifier
        options.setdefault("volume", getattr(amp, "volume", 100))
        options.setdefault("input_number", getattr(amp, "input", None))
        return cls(power=unit_hw.amp_power, mute=unit_hw.mute, zones=unit_hw.zones,
                   clock=unit_hw.clock, warmup_s=amp.warmup_s, cooldown_s=amp.cooldown_s,
                   driver=unit_hw.amplifier, fault_input=unit_hw.fault, led=unit_hw.led, **options)

    # ---- state ----
    @property
    def powered(self) -> bool:
        return self._powered_at is not None

    @property
    def playing(self) -> bool:
        return self._playing

    @property
    def fault(self) -> str | None:
        """Why the amplifier is in a fault state, or None."""
        return self._fault

    def health(self) -> dict:
        """SPEC's health `amp`: power, fault, temp_c, volume; plus link ("ok", "down", None)."""
        status = self.status
        link = None if self._driver is None else {True: "ok", False: "down", None: None}[self._link_ok]
        return {"power": self.powered, "fault": self._fault,
                "temp_c": status.temp_c if status else None, "volume": self.volume, "link": link}

    def faults(self) -> list[str]:
        """For health `faults`: "amp.fault" while faulted, "amp.link" while the link is down."""
        found = ["amp.fault"] if self._fault else []
        if self._link_ok is False:
            found.append("amp.link")
        return found

    # ---- the playback sequence ----
    def power_on(self) -> float:
        """Switch on if off; return the monotonic time the amplifier is ready for audio.

        Raises AmpFault while a fault holds the amplifier off.
        """
        with self._lock:
            self._idle_since = None
            if self._powered_at is None:
                self._check_may_power()
                self._switch(self._mute, True)
                self._switch(self._power, True)
                self._powered_at = self._clock.monotonic()
                self._watching.set()
                self._zones_selected = None
                log.info("amplifier on (warming up %.1f s)", self.warmup_s)
            return self._powered_at + self.warmup_s

    def select_zones(self, zones=None, *, wait_s: float = 0.0) -> tuple[int, ...]:
        """Switch the zone relays so exactly `zones` (1-based; None: all) are on.

        Refused (HardwareError) while audio plays, unless it stops within `wait_s`.
        Unknown zone numbers raise ValueError. Returns the zones now on.
        """
        wanted = self._zone_numbers(zones)
        with self._lock:
            if self._playing and wanted == self._zones_selected:
                return wanted  # nothing to switch
            self._wait_idle(wait_s, "zones cannot change while audio plays")
            for number, relay in enumerate(self._zones, start=1):
                if number not in wanted:
                    self._switch(relay, False)  # off first: never more lines than asked for
            for number in wanted:
                self._switch(self._zones[number - 1], True)
            self._zones_selected = wanted
            return wanted

    def unmute(self) -> None:
        """Release the mute once the amplifier is ready; audio may start when this returns.

        Waits for the end of the warm-up, switches every zone on if none were
        selected for this playback, sets the amplifier up over serial, then releases the mute relay
        and waits `settle_s`. Raises AmpFault (audio must not start) on a fault.
        """
        with self._lock:
            if self._powered_at is None:
                raise HardwareError("amplifier is off: power_on() first")
            self._check_no_fault()
            left = self._powered_at + self.warmup_s - self._clock.monotonic()
        if left > 0:
            self._clock.sleep(left)
        if self._zones_selected is None:
            self.select_zones(None)
        self._prepare_amplifier()
        with self._lock:
            self._check_no_fault()
            if self._powered_at is None:
                raise AmpFault("amplifier switched off before air")
            self._switch(self._mute, False)
            self._playing = True
        if self._led is not None:
            self._led.set_flag("playing", True)
        self._clock.sleep(self.settle_s)

    def mute(self) -> None:
        """Audio has stopped (the speaker closed): mute, and start counting the silence."""
        with self._lock:
            self._playing = False
            self._switch(self._mute, True)
            self._idle_since = self._clock.monotonic()
            self._zones_selected = None  # each playback chooses its zones (or gets all)
            self._idle.notify_all()
        if self._led is not None:
            self._led.set_flag("playing", False)

    def seconds_until_cooldown(self) -> float | None:
        """None while playing or off; else seconds left before power off."""
        with self._lock:
            if self._powered_at is None or self._idle_since is None:
                return None
            return max(0.0, self._idle_since + self.cooldown_s - self._clock.monotonic())

    def power_off(self) -> None:
        """Mute, mains off, then the zones (no signal left to click). Refused while audio plays."""
        with self._lock:
            if self._powered_at is None:
                return
            self._wait_idle(0.0, "the amplifier cannot switch off while audio plays")
            self._all_off()
            log.info("amplifier off")

    def set_volume(self, volume: int) -> None:
        """The amplifier's own volume (0-100 on its scale); applied now if it is on, else at
        the next power-on. Relay-only amplifiers have none (the player's gain remains)."""
        if isinstance(volume, bool) or not isinstance(volume, int) or not 0 <= volume <= 100:
            raise ValueError(f"volume must be 0-100, got {volume!r}")
        self.volume = volume
        if self._driver is not None and self.powered:
            self._talk(lambda d: d.set_volume(volume))

    # ---- monitoring ----
    def start(self) -> "AmpControl":
        """Watch the amplifier's status over serial every `poll_s` while it is on; safe twice."""
        if self._monitor is None:
            self._monitor = threading.Thread(target=self._watch, name="amp-monitor", daemon=True)
            self._monitor.start()
        return self

    def close(self) -> None:
        """Stop watching and let go of the callbacks (the relays belong to the factory)."""
        self._stop.set()
        self._watching.set()
        if self._monitor is not None and self._monitor is not threading.current_thread():
            self._monitor.join(5.0)
        if self._fault_input is not None:
            self._fault_input.when_changed = None

    def check(self) -> None:
        """One monitoring round now (the thread calls this every `poll_s`)."""
        if self._fault_input is not None and self._safe_active(self._fault_input) and self.powered:
            self._trip("the amplifier's fault line is active")
            return
        if not self._ready():
            return
        if self._driver is not None:
            status = self._talk(lambda d: d.status())
            if status is not None and (status.protect or status.fault):
                self._trip(_protect_reason(status))
                return
            if status is None:
                return
        if self._recovering:
            self._recovered()

    def _watch(self) -> None:
        while self._watching.wait() and not self._stop.wait(self.poll_s):
            try:
                self.check()
            except Exception:  # noqa: BLE001 - the watch must outlive any one bad moment
                log.exception("amplifier monitor")

    # ---- faults ----
    def _fault_line(self, active: bool) -> None:
        if active:
            self._trip_async("the amplifier's fault line is active")

    def _notice(self, name: str, fields: dict) -> None:
        if name == "PROTECT" and fields.get("state") == "1":
            self._trip_async(f"amplifier in protect ({fields.get('fault', 'unknown')})")

    def _trip_async(self, reason: str) -> None:
        # Off the GPIO or serial thread: the trip waits for the audio to stop.
        threading.Thread(target=self._trip, args=(reason,), name="amp-fault", daemon=True).start()

    def _trip(self, reason: str) -> None:
        """The safe state: audio stopped, muted, amplifier off, LED fault, event."""
        with self._lock:
            if self._fault is not None and not self._recovering:
                return  # already safe
            self._fault, self._fault_at, self._recovering = reason, self._clock.monotonic(), False
            playing = self._playing
        log.error("amplifier fault: %s", reason)
        if self._led is not None:
            self._led.set_flag("fault", True)
        if playing and self.on_fault is not None:
            try:
                self.on_fault(reason)
            except Exception:  # noqa: BLE001 - the amplifier must still go off
                log.exception("on_fault handler")
        with self._lock:
            stopped = self._idle.wait_for(lambda: not self._playing, self.stop_timeout_s)
            if not stopped:
                log.error("audio did not stop within %.1f s of the fault; switching off anyway",
                          self.stop_timeout_s)
                self._playing = False
            self._all_off()
        self._emit("amp.fault", f"amplifier fault: {reason}; amplifier switched off",
                   reason=reason)

    def _check_may_power(self) -> None:
        if self._fault is None:
            return
        held = self._clock.monotonic() - self._fault_at
        if held < self.fault_hold_s:
            raise AmpFault(f"amplifier fault: {self._fault} (off for another "
                           f"{self.fault_hold_s - held:.0f} s)")
        if self._fault_input is not None and self._safe_active(self._fault_input):
            raise AmpFault(f"amplifier fault: {self._fault} (fault line still active)")
        self._recovering = True
        log.info("amplifier fault held %.0f s: switching on to try again", held)

    def _check_no_fault(self) -> None:
        if self._fault is not None and not self._recovering:
            raise AmpFault(f"amplifier fault: {self._fault}")

    def _recovered(self) -> None:
        with self._lock:
            if not self._recovering:
                return
            reason, self._fault, self._recovering = self._fault, None, False
        if self._led is not None:
            self._led.set_flag("fault", False)
        self._emit("amp.recovered", f"amplifier working again after: {reason}", reason=reason)

    # ---- serial ----
    def _prepare_amplifier(self) -> None:
        """Power, input, volume and mute over serial; a fault found here trips."""
        if self._driver is not None:
            def setup(driver):
                driver.set_power(True)
                if self.input_number:
                    driver.set_input(self.input_number)
                driver.set_volume(self.volume)
                driver.set_mute(False)
                return driver.status()
            status = self._talk(setup)
            if status is not None and (status.protect or status.fault):
                self._trip(_protect_reason(status))
        if self._fault_input is not None and self._safe_active(self._fault_input):
            self._trip("the amplifier's fault line is active")
        with self._lock:
            self._check_no_fault()
        if self._recovering:
            self._recovered()

    def _talk(self, action):
        """Run `action(driver)`; a link failure is reported (once) and returns None."""
        try:
            result = action(self._driver)
        except AmpError as exc:
            # Refused: in protect (PWR 1 is refused then) or out of range. Ask why.
            log.warning("%s", exc)
            try:
                result = self._driver.status()
            except HardwareError:
                return None
        except HardwareError as exc:
            self._link(False, str(exc))
            return None
        self._link(True, self._driver.describe())
        if hasattr(result, "protect"):
            self.status = result
        return result

    def _link(self, ok: bool, detail: str) -> None:
        was, self._link_ok = self._link_ok, ok
        if was is not None and was != ok:
            kind = "amp.link_restored" if ok else "amp.link_lost"
            self._emit(kind, f"amplifier control link {'back' if ok else 'lost'}: {detail}")
        elif was is None and not ok:
            self._emit("amp.link_lost", f"amplifier control link not answering: {detail}")

    # ---- relays ----
    def _switch(self, relay, on: bool, *, force: bool = False) -> None:
        if self._playing and not force and relay.is_on != on:
            raise HardwareError(f"relay {relay.role} must not switch while audio plays")
        if on:
            relay.on()
        else:
            relay.off()

    def _all_off(self) -> None:
        """Mute, mains, zones: in that order, so nothing reaches the loudspeakers."""
        self._switch(self._mute, True, force=True)
        self._switch(self._power, False, force=True)
        for relay in self._zones:
            self._switch(relay, False, force=True)
        self._powered_at = self._idle_since = self._zones_selected = None
        if not self._stop.is_set():
            self._watching.clear()

    def _wait_idle(self, wait_s: float, refusal: str) -> None:
        if self._playing and not self._idle.wait_for(lambda: not self._playing, wait_s):
            raise HardwareError(refusal)

    def _zone_numbers(self, zones) -> tuple[int, ...]:
        count = len(self._zones)
        if zones is None:
            return tuple(range(1, count + 1))
        numbers = tuple(sorted(set(zones)))
        bad = [n for n in numbers if not (isinstance(n, int) and 1 <= n <= count)]
        if bad:
            raise ValueError(f"no zone {bad[0]!r}: this unit has zones 1-{count}")
        return numbers

    def _ready(self) -> bool:
        at = self._powered_at
        return at is not None and self._clock.monotonic() >= at + self.warmup_s

    @staticmethod
    def _safe_active(line) -> bool:
        try:
            return line.is_active
        except HardwareError:
            return False

    def _emit(self, kind: str, detail: str, **extra) -> None:
        if self.on_event is not None:
            try:
                self.on_event(kind, detail, **extra)
            except Exception:  # noqa: BLE001
                log.exception("event handler for %s", kind)


def _protect_reason(status) -> str:
    return f"amplifier in protect ({status.fault or 'no cause given'})"
