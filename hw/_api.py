"""The hardware API: GPIO parts (relays, inputs, the status LED) and the factory
that makes every hardware part (those, the speaker, the amplifier driver, GPS,
modem and health probes).

Like gpiozero's pin factories, one factory object stands for one kind of
hardware (the real Pi, or the mock); code above it asks the factory for parts
and never imports a driver itself.
"""

import logging
import threading
from abc import ABC, abstractmethod
from typing import Callable

from audio import AudioSink
from loaxa.errors import HardwareError

from .clock import Clock, SystemClock

log = logging.getLogger("loaxa.hw")

# Status LED patterns: (on s, off s, on s, off s...) repeated; (1,) is steady on.
LED_PATTERNS = {
    "off": (),
    "starting": (0.25, 0.25),  # 2 Hz blink: booting, not yet ready
    "online": (1.0,),  # steady: ready and reporting to the province
    "offline": (0.1, 1.9),  # a short blip every 2 s: ready, broker out of reach
    "playing": (0.1, 0.1, 0.1, 0.7),  # heartbeat double flash: on air
    "fault": (0.15, 0.15, 0.15, 0.15, 0.15, 1.05),  # three quick flashes: call a technician
}
LED_CONNECTION = ("starting", "online", "offline")
LED_FLAGS = ("fault", "playing")  # overlays, in order of precedence, over the connection state


class Relay(ABC):
    """One relay (amplifier power, mute, a loudspeaker zone) on a GPIO output.

    A subclass must provide `on`, `off`, `is_on` and `close`. Switching to the
    state the relay is already in does nothing. A line that cannot be driven,
    or a relay used after `close`, raises HardwareError. `close` switches the
    relay off, then releases the line; it is safe to call twice.
    """

    role: str  # what the relay switches, e.g. "amp_power", "zone1"
    pin: int  # BCM number

    @abstractmethod
    def on(self) -> None:
        """Energise the relay."""

    @abstractmethod
    def off(self) -> None:
        """Release the relay."""

    @property
    @abstractmethod
    def is_on(self) -> bool:
        """True while the relay is energised."""

    @abstractmethod
    def close(self) -> None:
        """Switch off and release the GPIO line; safe twice."""


class InputLine(ABC):
    """One GPIO input (the amplifier's fault line, the door switch, a button).

    A subclass must provide `is_active` and `close`, and call `_changed(active)` on
    every change. `when_changed(active: bool)` is called from the GPIO library's
    thread: keep it short. `close` is safe twice.
    """

    role: str
    pin: int
    when_changed: Callable[[bool], None] | None = None

    @property
    @abstractmethod
    def is_active(self) -> bool:
        """True while the line is at its active level (config: active-high or -low)."""

    @abstractmethod
    def close(self) -> None:
        """Release the line; safe twice."""

    def _changed(self, active: bool) -> None:
        callback = self.when_changed
        if callback is not None:
            try:
                callback(active)
            except Exception:  # noqa: BLE001 - never let a handler kill the GPIO thread
                log.exception("handler for input %s", self.role)


class StatusLed(ABC):
    """The unit's status LED: a connection state with overlays for playing and fault.

    `set_connection("starting"|"online"|"offline")`, `set_flag("playing"|"fault", on)`;
    the pattern shown is the first flag set (fault before playing), else the
    connection state (LED_PATTERNS). A subclass must provide `_show(pattern)` and
    `close` (LED off, line released; safe twice).
    """

    role = "status_led"
    pin: int

    def __init__(self):
        self._connection = "starting"
        self._flags: set[str] = set()
        self._state_lock = threading.Lock()
        self.pattern = None

    def set_connection(self, state: str) -> None:
        if state not in LED_CONNECTION:
            raise ValueError(f"LED connection state must be one of {LED_CONNECTION}, got {state!r}")
        with self._state_lock:
            self._connection = state
            self._update()

    def set_flag(self, flag: str, on: bool) -> None:
        if flag not in LED_FLAGS:
            raise ValueError(f"LED flag must be one of {LED_FLAGS}, got {flag!r}")
        with self._state_lock:
            (self._flags.add if on else self._flags.discard)(flag)
            self._update()

    def _update(self) -> None:
        pattern = next((f for f in LED_FLAGS if f in self._flags), self._connection)
        if pattern != self.pattern:
            self.pattern = pattern
            self._show(pattern)

    @abstractmethod
    def _show(self, pattern: str) -> None:
        """Start showing LED_PATTERNS[pattern]."""

    @abstractmethod
    def close(self) -> None: ...


class BatteryAdc(ABC):
    """The vehicle battery's voltage, read through an ADC channel behind a resistor
    divider (docs/hardware.md). A subclass provides `_fraction()` (the reading as a
    share of the reference, 0..1, or None when the ADC does not answer) and `close`."""

    def __init__(self, channel: int, divider: float, vref: float):
        self.channel, self.divider, self.vref = channel, divider, vref

    def volts(self) -> float | None:
        """The battery's voltage, 0.01 V; None when it cannot be read (never raises)."""
        try:
            fraction = self._fraction()
        except Exception:  # noqa: BLE001 - a failing ADC is an unknown voltage, not a dead probe
            return None
        return None if fraction is None else round(fraction * self.vref * self.divider, 2)

    @abstractmethod
    def _fraction(self) -> float | None: ...

    @abstractmethod
    def close(self) -> None: ...


class HardwareFactory(ABC):
    """Makes the hardware parts of one unit and closes them all, in reverse, on `close`.

    A subclass must provide `_make_relay`, `_make_input`, `_make_status_led`,
    `_make_speaker` and `_make_probes`; it may override `_simulated_port(kind)` (the
    mock starts a simulator for a serial device without a port) and
    `_close_backend` to release what the factory itself holds. Making a part on a
    closed factory raises HardwareError, as does a part that cannot be opened.
    Use it as a context manager, or call `close` (safe twice).
    """

    mock: bool = False

    def __init__(self, clock: Clock | None = None):
        self.clock = clock or SystemClock()
        self._parts = []  # (part, how to release it), in the order made
        self._speaker = None
        self._probes = None
        self._closed = False

    # ---- GPIO ----
    def relay(self, role: str, pin: int, active_high: bool = True) -> Relay:
        """A relay on BCM `pin`, off to begin with."""
        self._check_open()
        return self._keep(self._make_relay(role, pin, active_high))

    def input(self, role: str, pin: int, active_high: bool = True,
              bounce_s: float | None = None) -> InputLine:
        """An input on BCM `pin`, pulled to its inactive level (an unwired input reads inactive)."""
        self._check_open()
        return self._keep(self._make_input(role, pin, active_high, bounce_s))

    def status_led(self, pin: int, active_high: bool = True) -> StatusLed:
        """The status LED on BCM `pin`, showing "starting"."""
        self._check_open()
        return self._keep(self._make_status_led(pin, active_high))

    def battery_adc(self, channel: int = 0, *, divider: float = 6.0, vref: float = 3.3) -> BatteryAdc:
        """The vehicle battery's ADC channel (an MCP3008 on SPI on a Pi; docs/hardware.md)."""
        self._check_open()
        return self._keep(self._make_battery_adc(channel, divider, vref))

    def _make_battery_adc(self, channel: int, divider: float, vref: float) -> BatteryAdc:
        raise HardwareError(f"{type(self).__name__} has no battery ADC")

    # ---- audio ----
    def speaker(self) -> AudioSink:
        """The unit's audio output (one per factory: there is one amplifier input)."""
        self._check_open()
        if self._speaker is None:
            self._speaker = self._make_speaker()
            # abort, not close: at shutdown nobody waits for queued audio.
            self._parts.append((self._speaker, self._speaker.abort))
        return self._speaker

    # ---- serial devices ----
    def serial_link(self, url: str, *, baudrate: int, name: str):
        """A `SerialLink` (opened on first use, reopened after failures) closed with the factory."""
        from .serialport import SerialLink

        self._check_open()
        return self._keep(SerialLink(url, baudrate=baudrate, name=name))

    def amplifier(self, port: str | None = None, *, baudrate: int = 9600, driver: str = "auto",
                  timeout_s: float = 0.3):
        """The amplifier's driver: LXA1 over `port`, or relay-only.

        `driver` "auto" means LXA1 when there is a port (or, in mock mode, the
        simulator standing in for a missing one), relay-only otherwise; "relay"
        never opens the port; "lxa1" insists on a port.
        """
        from .amplifier import Lxa1Amplifier, RelayOnlyAmplifier

        self._check_open()
        if driver not in ("auto", "lxa1", "relay"):
            raise HardwareError(f"amplifier.driver must be 'auto', 'lxa1' or 'relay', got {driver!r}")
        if driver == "relay":
            return self._keep(RelayOnlyAmplifier())
        url = port or self._simulated_port("amplifier")
        if url is None:
            if driver == "lxa1":
                raise HardwareError("amplifier.driver = 'lxa1' needs amplifier.port (the amplifier's "
                                    "serial port)")
            return self._keep(RelayOnlyAmplifier())
        link = self.serial_link(url, baudrate=baudrate, name="amplifier")
        return self._keep(Lxa1Amplifier(link, timeout_s=timeout_s))

    def gps(self, port: str | None = None, *, lost_after_s: float = 10.0):
        """A started GpsReceiver on `port` (any pyserial URL; speed found by itself), or None
        when the unit has none (pi mode without a port)."""
        from .gps import GpsReceiver

        self._check_open()
        url = port or self._simulated_port("gps")
        if url is None:
            return None
        receiver = GpsReceiver(self.serial_link(url, baudrate=9600, name="gps"),
                               lost_after_s=lost_after_s)
        return self._keep(receiver.start())

    def modem(self, port: str | None = None, *, baudrate: int = 115200, timeout_s: float = 2.0):
        """The Modem on `port`, or None when the unit has none (pi mode without a port)."""
        from .modem import Modem

        self._check_open()
        url = port or self._simulated_port("modem")
        if url is None:
            return None
        return self._keep(Modem(self.serial_link(url, baudrate=baudrate, name="modem"),
                                timeout_s=timeout_s))

    def probes(self):
        """The health probes (CPU temperature, throttling, memory, disk, uptime)."""
        self._check_open()
        if self._probes is None:
            self._probes = self._make_probes()
        return self._probes

    # ---- lifetime ----
    def close(self) -> None:
        """Release every part made, newest first, then the factory; safe twice."""
        if self._closed:
            return
        self._closed = True
        errors = []
        for _, release in reversed(self._parts):
            try:
                release()
            except Exception as exc:  # release the rest; report the first failure after
                errors.append(exc)
        self._parts.clear()
        self._close_backend()
        if errors:
            raise errors[0]

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _keep(self, part):
        """Register a made part for release on `close`."""
        self._parts.append((part, part.close))
        return part

    @abstractmethod
    def _make_relay(self, role: str, pin: int, active_high: bool) -> Relay:
        """Open a relay; raise HardwareError when its line cannot be opened."""

    @abstractmethod
    def _make_input(self, role: str, pin: int, active_high: bool, bounce_s: float | None) -> InputLine:
        """Open an input; raise HardwareError when its line cannot be opened."""

    @abstractmethod
    def _make_status_led(self, pin: int, active_high: bool) -> StatusLed:
        """Open the status LED; raise HardwareError when its line cannot be opened."""

    @abstractmethod
    def _make_speaker(self) -> AudioSink:
        """Make the audio output (opening a playback happens later, in `open`)."""

    @abstractmethod
    def _make_probes(self):
        """Make the health probes (a `hw.probes.HealthProbes`)."""

    def _simulated_port(self, kind: str) -> str | None:
        """The port of a stand-in for a serial device configured without one; None: absent."""
        return None

    def _close_backend(self) -> None:
        """Release what the factory holds beyond its parts (a pin factory, a file)."""

    def _check_open(self) -> None:
        if self._closed:
            raise HardwareError(f"{type(self).__name__} is closed")
