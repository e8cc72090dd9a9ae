"""A GPS receiver on a pty: GGA, RMC, GSA and GSV once per `interval_s`, faults on demand.

    sim = GpsSimulator(lat=12.6797, lon=108.0446, talker="GN").start()
    sim.fail("lost")       # under a bridge: sentences go on, with no fix
    sim.fail("silent")     # the receiver stops talking
    sim.fail("unplugged")  # the USB cable is out
    sim.clear()

A vehicle: `GpsSimulator(route=Route.from_waypoints([...]), faults=parse_faults("lost@60+20"))`
drives the route (`hw.sim.route`), its time the seconds of `utc()` since `route_start`
(by default the first `utc()` reading): inject a faster `utc` to drive a route quickly.
Without a route the receiver stays at (`lat`, `lon`), as it always did.
"""

import time
from datetime import datetime, timezone

from ..nmea import with_checksum
from ._pty import PtySimulator
from .route import Route, RoutePoint, RouteFault, offset

KNOTS_PER_KMH = 1 / 1.852


class GpsSimulator(PtySimulator):
    name = "gps"

    def __init__(self, *, lat: float = 12.6797, lon: float = 108.0446, altitude_m: float = 512.3,
                 talker: str = "GN", interval_s: float = 1.0, satellites: int = 9,
                 link_path=None, utc=None, route: Route | None = None,
                 faults: tuple[RouteFault, ...] = (), route_start: float | None = None):
        super().__init__(link_path=link_path)
        self.lat, self.lon, self.altitude_m = lat, lon, altitude_m
        self.talker, self.interval_s, self.satellites = talker, interval_s, satellites
        self.utc = utc or time.time  # seconds since the epoch the receiver reports
        self.route, self.faults = route, tuple(faults)
        self.route_start = route_start if route_start is not None or route is None else self.utc()
        self.lost = self.silent = False
        self._next = 0.0
        self.epochs_sent = 0

    def fail(self, what: str) -> None:
        """"lost" (no fix), "silent", "unplugged" or "garbage"."""
        if what == "lost":
            self.lost = True
        elif what == "silent":
            self.silent = True
        elif what == "unplugged":
            self.unplug()
        elif what == "garbage":
            self.send(b"\xb5\x62\x01\x07\x5c\x00" + bytes(range(40)) + b"$GPGGA,1234\r\n")
        else:
            raise ValueError(f"unknown GPS failure {what!r}")

    def clear(self) -> None:
        self.lost = self.silent = False
        self.replug()

    def next_tick_s(self) -> float:
        return min(max(0.0, self._next - time.monotonic()), self.interval_s)

    def tick(self) -> None:
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + self.interval_s
        if not self.silent:
            self.send(self.epoch(self.utc()))
            self.epochs_sent += 1

    def position_at(self, epoch_s: float) -> tuple[RoutePoint | None, bool]:
        """What the receiver reports at `epoch_s`: (position, lost). With a route, the
        position includes the route's faults (a jump, jitter); `lost` is a lost fix."""
        if self.route is None:
            return RoutePoint(self.lat, self.lon, 0.0, None), self.lost
        t = epoch_s - self.route_start
        point = self.route.at(t)
        lat, lon, lost = point.lat, point.lon, self.lost
        for fault in self.faults:
            if fault.active(t):
                lost = lost or fault.kind == "lost"
                if fault.shift(t):
                    lat, lon = offset(lat, lon, fault.shift(t), fault.bearing_deg)
        return RoutePoint(lat, lon, point.speed_kmh, point.course_deg), lost

    def epoch(self, epoch_s: float) -> bytes:
        """One second's sentences, as a receiver sends them together."""
        moment = datetime.fromtimestamp(epoch_s, timezone.utc)
        hms = moment.strftime("%H%M%S") + f".{moment.microsecond // 10000:02d}"
        point, lost = self.position_at(epoch_s)
        lines = [self._gga(hms, point, lost), self._rmc(hms, moment, point, lost), self._gsa(lost),
                 *self._gsv(lost)]
        return "".join(with_checksum(body) + "\r\n" for body in lines).encode("ascii")

    def _gga(self, hms: str, point: RoutePoint, lost: bool) -> str:
        t = self.talker
        if lost:
            return f"{t}GGA,{hms},,,,,0,00,99.99,,,,,,"
        return (f"{t}GGA,{hms},{_lat(point.lat)},{_lon(point.lon)},1,{self.satellites:02d},0.9,"
                f"{self.altitude_m:.1f},M,-2.1,M,,")

    def _rmc(self, hms: str, moment: datetime, point: RoutePoint, lost: bool) -> str:
        t, day = self.talker, moment.strftime("%d%m%y")
        if lost:
            return f"{t}RMC,{hms},V,,,,,,,{day},,,N"
        if self.route is None:
            speed, course = "0.02", ""  # a parked receiver's noise, as before
        else:
            speed = f"{point.speed_kmh * KNOTS_PER_KMH:.2f}"
            course = "" if point.course_deg is None else f"{point.course_deg:.1f}"
        return f"{t}RMC,{hms},A,{_lat(point.lat)},{_lon(point.lon)},{speed},{course},{day},,,A"

    def _gsa(self, lost: bool = False) -> str:
        used = [] if lost else [5, 13, 15, 18, 20, 24, 29, 10, 2][: self.satellites]
        ids = [f"{n:02d}" for n in used] + [""] * (12 - len(used))
        mode = "1" if lost else "3"
        return f"{self.talker}GSA,A,{mode},{','.join(ids)},1.6,0.9,1.3"

    def _gsv(self, lost: bool = False) -> list[str]:
        sats = [(5, 41, 112, 38), (13, 60, 24, 42), (15, 22, 310, 30), (18, 77, 190, 45)]
        body = ",".join(f"{n:02d},{el:02d},{az:03d},{'' if lost else snr}" for n, el, az, snr in sats)
        return [f"GPGSV,1,1,04,{body}"]


def _lat(value: float) -> str:
    degrees, minutes = divmod(abs(value) * 60, 60)
    return f"{int(degrees):02d}{minutes:08.5f},{'N' if value >= 0 else 'S'}"


def _lon(value: float) -> str:
    degrees, minutes = divmod(abs(value) * 60, 60)
    return f"{int(degrees):03d}{minutes:08.5f},{'E' if value >= 0 else 'W'}"
