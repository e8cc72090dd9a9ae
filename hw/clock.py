"""Clocks: where the daemon's sense of time comes from, and how far to trust it.

Time is passed in (a `Clock`), never read from the `time` module directly, so
tests and the mock hardware can record events on the same clock the player
paces itself by.
"""

import time
from abc import ABC, abstractmethod
from datetime import datetime, timezone

CLOCK_SOURCES = ("ntp", "gps", "rtc", "system", "untrusted")


class Clock(ABC):
    """Wall time, monotonic time and sleeping, plus where the wall time comes from.

    A subclass must provide `time`, `monotonic`, `sleep` and `source`; `now`
    follows from `time`. None of them raise.
    """

    @abstractmethod
    def time(self) -> float:
        """Seconds since the Unix epoch (wall time; may jump when it is corrected)."""

    def now(self) -> datetime:
        """The wall time as an aware UTC datetime."""
        return datetime.fromtimestamp(self.time(), tz=timezone.utc)

    @abstractmethod
    def monotonic(self) -> float:
        """Seconds from an arbitrary origin that never goes back: for durations and pacing."""

    @abstractmethod
    def sleep(self, seconds: float) -> None:
        """Wait `seconds` of monotonic time (nothing for zero or less)."""

    @abstractmethod
    def source(self) -> str:
        """Where the wall time comes from: one of CLOCK_SOURCES."""


class SystemClock(Clock):
    """The operating system's clocks."""

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)

    def source(self) -> str:
        # Where NTP detection goes: on the Pi, report "ntp" when
        # `timedatectl show -p NTPSynchronized --value` says "yes" (or when
        # adjtimex() returns without TIME_ERROR), cached for a minute since it
        # costs a process. GPS and RTC sources will be their own Clock
        # subclasses. Until then the system clock vouches only for itself,
        # which `clock.trust = "auto"` treats as untrusted on a Pi.
        return "system"
