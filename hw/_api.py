"""The hardware API: relays and the factory that makes every hardware part.

Like gpiozero's pin factories, one factory object stands for one kind of
hardware (the real Pi, or the mock); code above it asks the factory for parts
and never imports a driver itself.
"""

from abc import ABC, abstractmethod

from audio import AudioSink
from loaxa.errors import HardwareError

from .clock import Clock, SystemClock


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


class HardwareFactory(ABC):
    """Makes the hardware parts of one unit and closes them all, in reverse, on `close`.

    A subclass must provide `_make_relay` and `_make_speaker`, and may override
    `_close_backend` to release what the factory itself holds. Making a part
    on a closed factory raises HardwareError, as does a part that cannot be
    opened. Use it as a context manager, or call `close` (safe twice).
    """

    mock: bool = False

    def __init__(self, clock: Clock | None = None):
        self.clock = clock or SystemClock()
        self._parts = []  # (part, how to release it), in the order made
        self._speaker = None
        self._closed = False

    def relay(self, role: str, pin: int, active_high: bool = True) -> Relay:
        """A relay on BCM `pin`, off to begin with."""
        self._check_open()
        relay = self._make_relay(role, pin, active_high)
        self._parts.append((relay, relay.close))
        return relay

    def speaker(self) -> AudioSink:
        """The unit's audio output (one per factory: there is one amplifier input)."""
        self._check_open()
        if self._speaker is None:
            self._speaker = self._make_speaker()
            # abort, not close: at shutdown nobody waits for queued audio.
            self._parts.append((self._speaker, self._speaker.abort))
        return self._speaker

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

    @abstractmethod
    def _make_relay(self, role: str, pin: int, active_high: bool) -> Relay:
        """Open a relay; raise HardwareError when its line cannot be opened."""

    @abstractmethod
    def _make_speaker(self) -> AudioSink:
        """Make the audio output (opening a playback happens later, in `open`)."""

    def _close_backend(self) -> None:
        """Release what the factory holds beyond its parts (a pin factory, a file)."""

    def _check_open(self) -> None:
        if self._closed:
            raise HardwareError(f"{type(self).__name__} is closed")
