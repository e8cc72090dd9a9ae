"""A relay driven through a gpiozero DigitalOutputDevice, shared by the Pi and the mock.

gpiozero is imported only when a relay is made: importing loaxa on a PC must
not go looking for GPIO chips.
"""

import threading
import warnings

from loaxa.errors import HardwareError

from ._api import Relay


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
    try:
        from gpiozero import DigitalOutputDevice

        with warnings.catch_warnings():
            # PinFactoryFallback warnings list every driver tried; the error says enough.
            warnings.simplefilter("ignore")
            return DigitalOutputDevice(pin, active_high=active_high, initial_value=False,
                                       pin_factory=pin_factory)
    except Exception as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise HardwareError(f"cannot open GPIO{pin} for relay {role}: {reason}") from exc
