"""GPS for mobile units: NMEA read on its own thread; position, fix quality and UTC time.

`GpsReceiver` keeps the latest fix from a `SerialLink` (a receiver, a simulator on a
pty, or a `replay://` recording); `GpsClockSource` turns its UTC time into a clock
source for `hw.clock.UnitClock`. A fix older than `lost_after_s` is no fix: the unit
then reports `gps.lost` once, and `gps.recovered` when a fix returns.
"""

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Callable

from . import nmea
from .serialport import SerialLink, SerialLinkError

log = logging.getLogger("loaxa.gps")

AUTOBAUD_RATES = (9600, 4800, 38400, 115200, 19200, 57600)  # most common first
AUTOBAUD_AFTER_S = 3.0  # this long with no valid sentence: try the next speed
# A GPS only talks (a burst of sentences a second) and nothing else writes to its port,
# so the reader waits in long slices: fewer wake-ups on an idle unit.
LISTEN_SLICE_S = 0.5


@dataclass(frozen=True)
class GpsFix:
    lat: float
    lon: float
    quality: int  # GGA fix quality (nmea.FIX_QUALITY)
    satellites: int | None
    hdop: float | None
    altitude_m: float | None
    at: float  # monotonic time it arrived

    @property
    def fix(self) -> str:
        return nmea.FIX_QUALITY.get(self.quality, "gps")


@dataclass(frozen=True)
class UtcReference:
    utc: datetime  # GPS time from a valid RMC
    at: float  # monotonic time the sentence arrived


EventHandler = Callable[..., None]  # (kind, detail, **extra), like the daemon's records.event


class GpsReceiver:
    """Reads NMEA from `link` on a thread started by `start()`; `close()` stops it (safe twice)."""

    def __init__(self, link: SerialLink, *, lost_after_s: float = 10.0,
                 on_event: EventHandler | None = None, autobaud: bool | None = None):
        self.link = link
        link.read_slice_s = LISTEN_SLICE_S
        self.lost_after_s = lost_after_s
        self.on_event = on_event
        # Only a real device node has a speed to guess; URLs and ptys ignore it.
        self.autobaud = ("://" not in link.url) if autobaud is None else autobaud
        self.decoder = nmea.NmeaDecoder()
        self.sentences = 0  # valid sentences so far
        self._fix: GpsFix | None = None
        self.speed_kmh: float | None = None  # over ground, from the last valid RMC that gave it
        self._quality = 0  # of the last GGA, fix or not
        self._satellites = None
        self._utc: UtcReference | None = None
        self._last_sentence = None  # monotonic
        self._lost = False
        self._had_fix = False
        self._baud_since = time.monotonic()
        self._lock = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gps", daemon=True)

    # ---- what the unit reads ----
    @property
    def fix(self) -> GpsFix | None:
        """The current fix, or None when there has been none for `lost_after_s`."""
        with self._lock:
            fix = self._fix
        if fix is None or time.monotonic() - fix.at > self.lost_after_s:
            return None
        return fix

    @property
    def receiving(self) -> bool:
        """Valid sentences (fix or not) arrived within `lost_after_s`."""
        last = self._last_sentence
        return last is not None and time.monotonic() - last <= self.lost_after_s

    def position(self) -> dict | None:
        """`{"lat", "lon"}` for a playlog, or None without a current fix."""
        fix = self.fix
        return None if fix is None else {"lat": fix.lat, "lon": fix.lon}

    def health(self) -> dict:
        """`{"lat", "lon", "fix"}` as SPEC's health message has it, plus satellites."""
        fix = self.fix
        if fix is None:
            return {"lat": None, "lon": None, "fix": "none", "satellites": self._satellites}
        return {"lat": fix.lat, "lon": fix.lon, "fix": fix.fix, "satellites": fix.satellites}

    def utc_reference(self) -> UtcReference | None:
        """The last valid RMC time and when it arrived, if within `lost_after_s`."""
        ref = self._utc
        if ref is None or time.monotonic() - ref.at > self.lost_after_s:
            return None
        return ref

    def wait_for_fix(self, timeout: float) -> GpsFix | None:
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                fix = self.fix
                left = deadline - time.monotonic()
                if fix is not None or left <= 0:
                    return fix
                self._lock.wait(min(left, 0.2))

    def describe(self) -> str:
        """One plain line for a self-test or a log."""
        fix = self.fix
        if fix is not None:
            sats = f", {fix.satellites} satellites" if fix.satellites is not None else ""
            return f"fix ({fix.fix}{sats}) at {fix.lat:.5f}, {fix.lon:.5f}"
        if self.receiving:
            sats = f", {self._satellites} satellites" if self._satellites is not None else ""
            return f"receiver answering, no fix yet{sats}"
        if not self.link.is_open:
            return f"no receiver on {self.link.url} ({self.link.last_error or 'not open'})"
        return f"no NMEA from {self.link.url}"

    # ---- the thread ----
    def start(self) -> "GpsReceiver":
        if not self._thread.is_alive() and not self._stop.is_set():
            self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(2.0)
        self.link.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                line = self.link.read_line(time.monotonic() + LISTEN_SLICE_S)
            except SerialLinkError:
                self._stop.wait(0.25)
                line = None
            except Exception:  # noqa: BLE001 - the reader must outlive any one bad moment
                log.exception("gps reader")
                self._stop.wait(1.0)
                line = None
            if line is not None:
                self.handle_line(line)
            self._check_lost()
            self._maybe_next_baud()

    def handle_line(self, line: bytes) -> None:
        """Take one line from the receiver (the thread does this; tests may too)."""
        decoded = self.decoder.line(line)
        if decoded is None:
            return
        now = time.monotonic()
        with self._lock:
            self.sentences += 1
            self._last_sentence = now
            self._baud_since = now
            if isinstance(decoded, nmea.GGA):
                self._take_gga(decoded, now)
            elif isinstance(decoded, nmea.RMC):
                self._take_rmc(decoded, now)
            self._lock.notify_all()

    def _take_gga(self, gga: nmea.GGA, now: float) -> None:
        self._quality, self._satellites = gga.quality, gga.satellites
        if gga.has_fix:
            self._fix = GpsFix(gga.lat, gga.lon, gga.quality, gga.satellites, gga.hdop,
                               gga.altitude_m, now)

    def _take_rmc(self, rmc: nmea.RMC, now: float) -> None:
        if not rmc.valid:
            return
        if nmea.plausible_utc(rmc.utc):  # a rolled-over date is no time at all
            self._utc = UtcReference(rmc.utc, now)
        self.speed_kmh = None if rmc.speed_kn is None else round(rmc.speed_kn * 1.852, 1)
        if rmc.lat is not None and rmc.lon is not None:
            old = self._fix
            # RMC has no quality: keep the last GGA's details, refresh the position.
            self._fix = GpsFix(rmc.lat, rmc.lon, old.quality if old else 1,
                               old.satellites if old else None, old.hdop if old else None,
                               old.altitude_m if old else None, now)

    def _check_lost(self) -> None:
        fix = self.fix
        if fix is not None:
            self._had_fix = True
            if self._lost:
                self._lost = False
                self._emit("gps.recovered", f"GPS fix again: {fix.lat:.5f}, {fix.lon:.5f}")
        elif self._had_fix and not self._lost:
            self._lost = True
            why = ("the receiver reports no fix" if self.receiving
                   else "the receiver is silent or unplugged")
            self._emit("gps.lost", f"no GPS fix for {self.lost_after_s:g} s: {why}")

    def _emit(self, kind: str, detail: str) -> None:
        log.warning("%s: %s", kind, detail) if kind == "gps.lost" else log.info("%s", detail)
        if self.on_event is not None:
            try:
                self.on_event(kind, detail)
            except Exception:  # noqa: BLE001 - a reporting failure must not stop the reader
                log.exception("gps event handler")

    def _maybe_next_baud(self) -> None:
        if not self.autobaud or not self.link.is_open:
            return
        now = time.monotonic()
        if now - self._baud_since < AUTOBAUD_AFTER_S:
            return
        rates = AUTOBAUD_RATES
        current = self.link.baudrate
        following = rates[(rates.index(current) + 1) % len(rates)] if current in rates else rates[0]
        log.info("gps: no NMEA at %d baud, trying %d", current, following)
        self._baud_since = now
        try:
            self.link.set_baudrate(following)
        except SerialLinkError:
            pass


class GpsClockSource:
    """GPS UTC as a clock source: the last valid RMC time carried forward on the monotonic clock.

    Good to about half a second (receivers send RMC some hundreds of milliseconds
    after the second it describes); enough to play on time and to judge whether
    the system clock can be trusted. `time()` is None without a recent valid RMC.
    """

    def __init__(self, gps: GpsReceiver):
        self.gps = gps

    def time(self) -> float | None:
        ref = self.gps.utc_reference()
        if ref is None:
            return None
        return ref.utc.timestamp() + (time.monotonic() - ref.at)

    @property
    def valid(self) -> bool:
        return self.time() is not None
