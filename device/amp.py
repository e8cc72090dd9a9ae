"""Amplifier sequencing over relays: warm before air, muted while switching, off after silence.

The power relay goes on `warmup_s` before the first sample; the mute relay is
released only once the amplifier has settled and engaged again before power is
cut, so no relay ever clicks into the loudspeakers while audio plays.
"""

import logging
import threading

log = logging.getLogger("loaxa.amp")


class AmpControl:
    def __init__(self, *, power, mute, clock, warmup_s: float, cooldown_s: float):
        self._power = power
        self._mute = mute
        self._clock = clock
        self.warmup_s = warmup_s
        self.cooldown_s = cooldown_s
        self._powered_at = None  # monotonic time the power relay closed
        self._idle_since = None  # monotonic time the last playback ended
        self._lock = threading.Lock()
        self._mute.on()  # muted until a playback asks for sound

    @property
    def powered(self) -> bool:
        return self._powered_at is not None

    def power_on(self) -> float:
        """Switch on if off; return the monotonic time the amplifier is ready for audio."""
        with self._lock:
            self._idle_since = None
            if self._powered_at is None:
                self._mute.on()
                self._power.on()
                self._powered_at = self._clock.monotonic()
                log.info("amplifier on (warming up %.1f s)", self.warmup_s)
            return self._powered_at + self.warmup_s

    def unmute(self) -> None:
        self._mute.off()

    def mute(self) -> None:
        with self._lock:
            self._mute.on()
            self._idle_since = self._clock.monotonic()

    def seconds_until_cooldown(self) -> float | None:
        """None while playing or off; else seconds left before power off."""
        with self._lock:
            if self._powered_at is None or self._idle_since is None:
                return None
            return max(0.0, self._idle_since + self.cooldown_s - self._clock.monotonic())

    def power_off(self) -> None:
        with self._lock:
            if self._powered_at is None:
                return
            self._mute.on()
            self._power.off()
            self._powered_at = None
            self._idle_since = None
            log.info("amplifier off")
