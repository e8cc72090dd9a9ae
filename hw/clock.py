"""Clocks: where the daemon's sense of time comes from, and how far to trust it.

Time is passed in (a `Clock`), never read from the `time` module directly, so
tests and the mock hardware can record events on the same clock the player
paces itself by.
"""

import logging
import subprocess
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
        # The system clock as such vouches only for itself, which `clock.trust =
        # "auto"` treats as untrusted; UnitClock below asks NTP, GPS and the RTC.
        return "system"


NTP_CHECK_EVERY_S = 60.0  # `timedatectl` costs a process; the answer changes rarely
GPS_AGREES_S = 1.0  # the system clock within this of GPS time counts as GPS time
RTC_HCTOSYS = "/sys/class/rtc/rtc0/hctosys"


class UnitClock(SystemClock):
    """The system clock, and which source vouches for it: NTP, GPS, an RTC, or none.

    `source()` is "ntp" when systemd says the clock is NTP-synchronised; else "gps"
    when a GPS clock source (`attach_gps`) has a recent time and the system clock
    agrees with it within GPS_AGREES_S; else "rtc" when the kernel set the clock
    from a battery RTC at boot (a Pi 5 with its battery); else "system".

    With `step_from_gps` (the Pi factory sets it), a system clock that disagrees
    with GPS while NTP is not synchronised is stepped to GPS time, when the
    process may (CAP_SYS_TIME); a vehicle unit out of network reach then still
    plays on time. Time is never read from anything but the system clock, so
    everything that uses `time.time()` (the scheduler too) agrees with it.
    """

    def __init__(self, *, ntp_check=None, rtc_path: str = RTC_HCTOSYS, step_from_gps: bool = False):
        self._ntp_check = ntp_check or ntp_synchronized
        self._rtc_path = rtc_path
        self._gps = None
        self.step_from_gps = step_from_gps
        self._ntp_cache = (None, False)  # (monotonic when checked, answer)
        self._step_refused = False

    def attach_gps(self, gps_source) -> None:
        """Use a `hw.gps.GpsClockSource` (anything with `time() -> float | None`)."""
        self._gps = gps_source

    def source(self) -> str:
        if self._ntp():
            return "ntp"
        if self._gps_agrees():
            return "gps"
        if _read_text(self._rtc_path) == "1":
            return "rtc"
        return "system"

    def _ntp(self) -> bool:
        checked, answer = self._ntp_cache
        now = time.monotonic()
        if checked is None or now - checked >= NTP_CHECK_EVERY_S:
            answer = bool(self._ntp_check())
            self._ntp_cache = (now, answer)
        return answer

    def _gps_agrees(self) -> bool:
        gps_time = self._gps.time() if self._gps is not None else None
        if gps_time is None:
            return False
        offset = gps_time - time.time()
        if abs(offset) <= GPS_AGREES_S:
            return True
        return self._step(gps_time, offset)

    def _step(self, gps_time: float, offset: float) -> bool:
        if not self.step_from_gps or self._step_refused:
            return False
        try:
            time.clock_settime(time.CLOCK_REALTIME, gps_time)
        except (PermissionError, OSError, AttributeError) as exc:
            self._step_refused = True
            logging.getLogger("loaxa.clock").warning(
                "system clock is %.1f s off GPS time and cannot be set (%s)", offset, exc)
            return False
        logging.getLogger("loaxa.clock").warning("system clock stepped %.1f s to GPS time", offset)
        return True


def ntp_synchronized() -> bool:
    """systemd's view: `timedatectl show -p NTPSynchronized --value` says "yes"."""
    try:
        done = subprocess.run(["timedatectl", "show", "-p", "NTPSynchronized", "--value"],
                              capture_output=True, text=True, timeout=3)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0 and done.stdout.strip() == "yes"


def _read_text(path: str) -> str | None:
    try:
        with open(path, encoding="ascii") as f:
            return f.read().strip()
    except (OSError, UnicodeDecodeError):
        return None
