"""GPIO parts through gpiozero, shared by the Pi and the mock: relays, inputs, the status LED.

gpiozero is imported only when a relay is made: importing loaxa on a PC must
not go looking for GPIO chips.
"""

import logging
import threading
import warnings

from loaxa.errors import HardwareError

log = logging.getLogger("loaxa.gpio")

from ._api import LED_PATTERNS, BatteryAdc, InputLine, Relay, StatusLed


class GpioRelay(Relay):
    """A relay on a gpiozero output; `pin_factory=None` means gpiozero's default."""

    def __init__(self, role: str, pin: int, active_high: bool = True, pin_factory=None):
        self.role, self.pin = role, pin
        self._lock = threading.Lock()  # the player and the status thread may both switch
        self._device = open_output(role, pin, active_high, pin_factory)

    @property
    def is_on(self) -> bool:
        device = self._device
        return device is not None and bool(device.value)

    def on(self) -> None:
        self._switch(True)

    def off(self) -> None:
        self._switch(False)

    def close(self) -> None:
        if self._device is None:
            return
        try:
            self.off()
        finally:
            with self._lock:
                device, self._device = self._device, None
                device.close()

    def _switch(self, on: bool) -> None:
        with self._lock:
            device = self._device
            if device is None:
                raise HardwareError(f"relay {self.role} (GPIO{self.pin}) is closed")
            if bool(device.value) == on:
                return
            try:
                device.value = on
            except Exception as exc:  # gpiozero and lgpio raise their own types
                raise HardwareError(f"relay {self.role} (GPIO{self.pin}): {exc}") from exc
            self._changed(on)

    def _changed(self, on: bool) -> None:
        """Called, under the lock, after every real change; the mock records it."""

    def __repr__(self) -> str:
        state = "closed" if self._device is None else ("on" if self.is_on else "off")
        return f"<{type(self).__name__} {self.role} GPIO{self.pin} {state}>"


def open_output(role: str, pin: int, active_high: bool, pin_factory):
    """A gpiozero DigitalOutputDevice, initially inactive; HardwareError in one line."""
    def make():
        from gpiozero import DigitalOutputDevice

        return DigitalOutputDevice(pin, active_high=active_high, initial_value=False,
                                   pin_factory=pin_factory)

    return _open_device(make, f"GPIO{pin} for relay {role}")


def _open_device(make, what: str):
    """`make()`, its gpiozero PinFactoryFallback warnings logged; HardwareError in one line.

    gpiozero tries its drivers in turn (lgpio, RPi.GPIO, pigpio, native) for the first
    device and warns of each that failed. They say why a Pi's GPIO does not work (no
    lgpio on a Pi 5, where a fallback may even load and drive no pin), so they go to the
    log, hence the journal, and a failure names them. Other warnings pass through."""
    error = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            device = make()
        except Exception as exc:  # gpiozero and lgpio raise their own types
            error = exc
    fallbacks = []
    for warning in caught:
        if warning.category.__name__ == "PinFactoryFallback":
            fallbacks.append(" ".join(str(warning.message).split()))
            log.warning("GPIO: %s", fallbacks[-1])
        else:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno,
                                   source=warning.source)
    if error is not None:
        reason = " ".join(str(error).split()) or type(error).__name__
        if fallbacks:
            reason = f"{reason} ({'; '.join(fallbacks)})"
        raise HardwareError(f"cannot open {what}: {reason}") from error
    return device


class GpioInput(InputLine):
    """An input on a gpiozero DigitalInputDevice.

    The internal pull holds the line at its inactive level (pull-up for an
    active-low line, pull-down for an active-high one), so an input nobody wired
    reads inactive: a unit without a door switch never reports tamper.
    """

    def __init__(self, role: str, pin: int, active_high: bool = True, pin_factory=None,
                 bounce_s: float | None = None):
        self.role, self.pin, self.active_high = role, pin, active_high
        self._device = open_input(role, pin, active_high, bounce_s, pin_factory)
        self._device.when_activated = lambda: self._changed(True)
        self._device.when_deactivated = lambda: self._changed(False)

    @property
    def is_active(self) -> bool:
        device = self._device
        if device is None:
            raise HardwareError(f"input {self.role} (GPIO{self.pin}) is closed")
        return bool(device.is_active)

    def close(self) -> None:
        device, self._device = self._device, None
        if device is not None:
            device.close()

    def __repr__(self) -> str:
        state = "closed" if self._device is None else ("active" if self.is_active else "inactive")
        return f"<{type(self).__name__} {self.role} GPIO{self.pin} {state}>"


class GpioStatusLed(StatusLed):
    """The status LED on a gpiozero output, blinking its pattern on its own thread."""

    def __init__(self, pin: int, active_high: bool = True, pin_factory=None):
        super().__init__()
        self.pin = pin
        self._device = open_output("status_led", pin, active_high, pin_factory)
        self._steps = ()
        self._changed_pattern = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._blink, name="status-led", daemon=True)
        self._thread.start()
        self.set_connection("starting")

    @property
    def is_lit(self) -> bool:
        device = self._device
        return device is not None and bool(device.value)

    def _show(self, pattern: str) -> None:
        self._steps = LED_PATTERNS[pattern]
        self._changed_pattern.set()

    def _blink(self) -> None:
        while not self._stop.is_set():
            self._changed_pattern.clear()  # before reading: a change after this wakes the wait
            steps = self._steps
            if len(steps) <= 1:
                self._light(bool(steps))
                self._changed_pattern.wait()
                continue
            for index, seconds in enumerate(steps):
                self._light(index % 2 == 0)
                if self._changed_pattern.wait(seconds):
                    break
            self._cycle_done()

    def _light(self, on: bool) -> None:
        device = self._device
        if device is None or bool(device.value) == on:
            return
        try:
            device.value = on
        except Exception:  # noqa: BLE001 - a status light must never take the unit down
            pass

    def _cycle_done(self) -> None:
        """After each blink cycle; the mock trims its pin's history here."""

    def close(self) -> None:
        self._stop.set()
        self._changed_pattern.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(1.0)
        device, self._device = self._device, None
        if device is not None:
            device.off()
            device.close()


def open_input(role: str, pin: int, active_high: bool, bounce_s, pin_factory):
    """A gpiozero DigitalInputDevice pulled to its inactive level; HardwareError in one line."""
    def make():
        from gpiozero import DigitalInputDevice

        return DigitalInputDevice(pin, pull_up=not active_high, bounce_time=bounce_s,
                                  pin_factory=pin_factory)

    return _open_device(make, f"GPIO{pin} for input {role}")


class GpioBatteryAdc(BatteryAdc):
    """The vehicle battery on an MCP3008 channel (gpiozero, SPI), behind a divider."""

    def __init__(self, channel: int, divider: float, vref: float, pin_factory=None):
        super().__init__(channel, divider, vref)

        def make():
            from gpiozero import MCP3008

            return MCP3008(channel=channel, pin_factory=pin_factory)

        self._device = _open_device(make, f"MCP3008 channel {channel} for the vehicle battery")

    def _fraction(self) -> float | None:
        device = self._device
        return None if device is None else float(device.value)

    def close(self) -> None:
        device, self._device = self._device, None
        if device is not None:
            device.close()
