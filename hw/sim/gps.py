"""A GPS receiver on a pty: GGA, RMC, GSA and GSV once per `interval_s`, faults on demand.

    sim = GpsSimulator(lat=12.6797, lon=108.0446, talker="GN").start()
    sim.fail("lost")       # under a bridge: sentences go on, with no fix
    sim.fail("silent")     # the receiver stops talking
    sim.fail("unplugged")  # the USB cable is out
    sim.clear()
"""

import time
from datetime import datetime, timezone

from ..nmea import with_checksum
from ._pty import PtySimulator


class GpsSimulator(PtySimulator):
    name = "gps"

    def __init__(self, *, lat: float = 12.6797, lon: float = 108.0446, altitude_m: float = 512.3,
                 talker: str = "GN", interval_s: float = 1.0, satellites: int = 9,
                 link_path=None, utc=None):
        super().__init__(link_path=link_path)
        self.lat, self.lon, self.altitude_m = lat, lon, altitude_m
        self.talker, self.interval_s, self.satellites = talker, interval_s, satellites
        self.utc = utc or time.time  # seconds since the epoch the receiver reports
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

    def epoch(self, epoch_s: float) -> bytes:
        """One second's sentences, as a receiver sends them together."""
        moment = datetime.fromtimestamp(epoch_s, timezone.utc)
        hms = moment.strftime("%H%M%S") + f".{moment.microsecond // 10000:02d}"
        lines = [self._gga(hms), self._rmc(hms, moment), self._gsa(), *self._gsv()]
        return "".join(with_checksum(body) + "\r\n" for body in lines).encode("ascii")

    def _gga(self, hms: str) -> str:
        t = self.talker
        if self.lost:
            return f"{t}GGA,{hms},,,,,0,00,99.99,,,,,,"
        return (f"{t}GGA,{hms},{_lat(self.lat)},{_lon(self.lon)},1,{self.satellites:02d},0.9,"
                f"{self.altitude_m:.1f},M,-2.1,M,,")

    def _rmc(self, hms: str, moment: datetime) -> str:
        t, day = self.talker, moment.strftime("%d%m%y")
        if self.lost:
            return f"{t}RMC,{hms},V,,,,,,,{day},,,N"
        return f"{t}RMC,{hms},A,{_lat(self.lat)},{_lon(self.lon)},0.02,,{day},,,A"

    def _gsa(self) -> str:
        used = [] if self.lost else [5, 13, 15, 18, 20, 24, 29, 10, 2][: self.satellites]
        ids = [f"{n:02d}" for n in used] + [""] * (12 - len(used))
        mode = "1" if self.lost else "3"
        return f"{self.talker}GSA,A,{mode},{','.join(ids)},1.6,0.9,1.3"

    def _gsv(self) -> list[str]:
        sats = [(5, 41, 112, 38), (13, 60, 24, 42), (15, 22, 310, 30), (18, 77, 190, 45)]
        body = ",".join(f"{n:02d},{el:02d},{az:03d},{'' if self.lost else snr}" for n, el, az, snr in sats)
        return [f"GPGSV,1,1,04,{body}"]


def _lat(value: float) -> str:
    degrees, minutes = divmod(abs(value) * 60, 60)
    return f"{int(degrees):02d}{minutes:08.5f},{'N' if value >= 0 else 'S'}"


def _lon(value: float) -> str:
    degrees, minutes = divmod(abs(value) * 60, 60)
    return f"{int(degrees):03d}{minutes:08.5f},{'E' if value >= 0 else 'W'}"
