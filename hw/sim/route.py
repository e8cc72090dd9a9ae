"""A vehicle's route for the GPS simulator: waypoints with speeds, or a GPX file, and the
faults a real drive meets (lost fix in a valley, a jump, jitter at a boundary). Pure:
`Route.at(t)` and `RouteFault` take the seconds since the route's start.

    route = Route.from_waypoints([(12.70, 108.05, 30), (12.71, 108.06, 20, 60), (12.72, 108.06, 0)])
    route = load_route("drive.gpx")  # tracks (their <time>s kept), else routes, else waypoints
    faults = parse_faults("lost@120+30,jump@200+5=300,jitter@250+60=15")

A waypoint is (lat, lon, speed_kmh[, dwell_s]): the vehicle waits `dwell_s` at the point,
then drives to the next one at `speed_kmh` in a straight line (local projection; legs
are a few kilometres at most). After the last point it stays there, stopped.

GPX is read with the standard library's ElementTree (defusedxml when installed); a file
that declares a DOCTYPE or entities is refused outright, since GPX never needs one and
entity tricks (billion laughs) are the one danger of parsing XML.
"""

import json
import math
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from loaxa.errors import LoaxaError

__all__ = ["RouteError", "Route", "RouteFault", "RoutePoint", "load_route", "parse_faults", "parse_gpx"]

EARTH_RADIUS_M = 6_371_008.8
DEFAULT_SPEED_KMH = 30.0
MAX_GPX_BYTES = 20 * 1024 * 1024
_FAULT = re.compile(r"(lost|jump|jitter)@([0-9.]+)\+([0-9.]+)(?:=([0-9.]+))?(?:/([0-9.]+))?")


class RouteError(LoaxaError, ValueError):
    """A route or fault description that cannot be driven."""


@dataclass(frozen=True)
class RoutePoint:
    lat: float
    lon: float
    speed_kmh: float
    course_deg: float | None  # None when stopped


@dataclass(frozen=True)
class _Leg:
    t0: float
    t1: float
    a: tuple[float, float]
    b: tuple[float, float]


def _distance_m(a, b) -> float:
    lat0 = math.radians((a[0] + b[0]) / 2)
    dx = math.radians(b[1] - a[1]) * EARTH_RADIUS_M * math.cos(lat0)
    dy = math.radians(b[0] - a[0]) * EARTH_RADIUS_M
    return math.hypot(dx, dy)


def _course_deg(a, b) -> float:
    lat0 = math.radians((a[0] + b[0]) / 2)
    dx = math.radians(b[1] - a[1]) * math.cos(lat0)
    dy = math.radians(b[0] - a[0])
    return math.degrees(math.atan2(dx, dy)) % 360


def offset(lat: float, lon: float, metres: float, bearing_deg: float) -> tuple[float, float]:
    """The point `metres` away on `bearing_deg` (0 north, 90 east), locally flat."""
    b = math.radians(bearing_deg)
    dlat = metres * math.cos(b) / EARTH_RADIUS_M
    dlon = metres * math.sin(b) / (EARTH_RADIUS_M * math.cos(math.radians(lat)))
    return lat + math.degrees(dlat), lon + math.degrees(dlon)


class Route:
    """Legs in time: each moves from a to b between t0 and t1 (a == b: a stop)."""

    def __init__(self, legs: list[_Leg], start: tuple[float, float]):
        self.legs = legs
        self.start = start

    @classmethod
    def from_waypoints(cls, waypoints) -> "Route":
        points = [_waypoint(w, i) for i, w in enumerate(waypoints)]
        if not points:
            raise RouteError("a route needs at least one waypoint")
        legs, t = [], 0.0
        for i, (lat, lon, speed, dwell) in enumerate(points):
            here = (lat, lon)
            if dwell > 0:
                legs.append(_Leg(t, t + dwell, here, here))
                t += dwell
            if i + 1 < len(points):
                there = points[i + 1][:2]
                if speed <= 0:
                    raise RouteError(f"waypoint {i + 1}: a speed above 0 is needed to reach the next one")
                duration = _distance_m(here, there) / (speed / 3.6)
                legs.append(_Leg(t, t + duration, here, there))
                t += duration
        return cls(legs, points[0][:2])

    @classmethod
    def from_timed(cls, points) -> "Route":
        """[(t_s, lat, lon), ...] with times ascending (a GPX track's <time>s)."""
        points = sorted(points)
        if not points:
            raise RouteError("a route needs at least one point")
        t0 = points[0][0]
        legs = [_Leg(a[0] - t0, b[0] - t0, a[1:], b[1:]) for a, b in zip(points, points[1:]) if b[0] > a[0]]
        return cls(legs, points[0][1:])

    @property
    def duration_s(self) -> float:
        return self.legs[-1].t1 if self.legs else 0.0

    def at(self, t: float) -> RoutePoint:
        """Where the vehicle is `t` seconds after the start (clamped to the ends)."""
        if not self.legs or t <= 0:
            return RoutePoint(self.start[0], self.start[1], 0.0, None)
        leg = self._leg(t)
        if leg is None:
            last = self.legs[-1].b
            return RoutePoint(last[0], last[1], 0.0, None)
        if leg.a == leg.b:
            return RoutePoint(leg.a[0], leg.a[1], 0.0, None)
        f = (t - leg.t0) / (leg.t1 - leg.t0)
        lat = leg.a[0] + f * (leg.b[0] - leg.a[0])
        lon = leg.a[1] + f * (leg.b[1] - leg.a[1])
        speed = _distance_m(leg.a, leg.b) / (leg.t1 - leg.t0) * 3.6
        return RoutePoint(lat, lon, speed, _course_deg(leg.a, leg.b))

    def _leg(self, t: float) -> _Leg | None:
        lo, hi = 0, len(self.legs) - 1
        if t > self.legs[-1].t1:
            return None
        while lo < hi:  # the first leg ending at or after t
            mid = (lo + hi) // 2
            if self.legs[mid].t1 < t:
                lo = mid + 1
            else:
                hi = mid
        return self.legs[lo]


def _waypoint(value, index: int) -> tuple[float, float, float, float]:
    try:
        lat, lon, speed, *rest = value
        dwell = rest[0] if rest else 0.0
        lat, lon, speed, dwell = float(lat), float(lon), float(speed), float(dwell)
    except (TypeError, ValueError) as exc:
        raise RouteError(f"waypoint {index + 1}: expected (lat, lon, speed_kmh[, dwell_s]), got {value!r}") from exc
    if not (-90 <= lat <= 90 and -180 <= lon <= 180) or not all(math.isfinite(v) for v in (speed, dwell)):
        raise RouteError(f"waypoint {index + 1}: out of range: {value!r}")
    if speed < 0 or dwell < 0 or len(rest) > 1:
        raise RouteError(f"waypoint {index + 1}: speed and dwell must be 0 or more: {value!r}")
    return lat, lon, speed, dwell


# ---- faults ----

@dataclass(frozen=True)
class RouteFault:
    """`lost`: no fix; `jump`: the position is off by `metres` (a multipath jump);
    `jitter`: the position swings `metres` either side each second (at a boundary, it
    flips in and out). Active from `at_s` for `duration_s` seconds of route time."""

    kind: str
    at_s: float
    duration_s: float
    metres: float = 0.0
    bearing_deg: float = 0.0

    def active(self, t: float) -> bool:
        return self.at_s <= t < self.at_s + self.duration_s

    def shift(self, t: float) -> float:
        """Metres to move the position along `bearing_deg` at time t."""
        if self.kind == "jump":
            return self.metres
        if self.kind == "jitter":
            return self.metres if int(math.floor(t)) % 2 == 0 else -self.metres
        return 0.0


def parse_faults(text: str) -> tuple[RouteFault, ...]:
    """`"lost@120+30,jump@200+5=300,jitter@250+60=15/90"`: KIND@START+DURATION[=METRES][/BEARING]."""
    faults = []
    for part in filter(None, (p.strip() for p in (text or "").split(","))):
        match = _FAULT.fullmatch(part)
        if not match:
            raise RouteError(f"route fault {part!r}: expected KIND@START+DURATION[=METRES][/BEARING], "
                             "KIND lost, jump or jitter")
        kind, at, duration, metres, bearing = match.groups()
        faults.append(RouteFault(kind, float(at), float(duration), float(metres or 0), float(bearing or 0)))
    return tuple(faults)


# ---- files ----

def _xml_root(data: bytes):
    head = data[:4096].upper()
    if b"<!DOCTYPE" in data.upper() or b"<!ENTITY" in head:
        raise RouteError("GPX with a DOCTYPE or entities is refused (GPX needs none)")
    try:
        from defusedxml import ElementTree as ET  # noqa: N817
    except ImportError:
        from xml.etree import ElementTree as ET  # noqa: N817
    try:
        return ET.fromstring(data)
    except Exception as exc:  # ParseError, or defusedxml's own refusals
        raise RouteError(f"not a GPX file: {exc}") from exc


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _points(parent, name: str) -> list:
    return [el for el in parent.iter() if _local(el.tag) == name]


def _latlon(el) -> tuple[float, float]:
    try:
        lat, lon = float(el.get("lat")), float(el.get("lon"))
    except (TypeError, ValueError) as exc:
        raise RouteError(f"GPX point without a lat/lon: {el.attrib}") from exc
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise RouteError(f"GPX point out of range: {lat}, {lon}")
    return lat, lon


def _time(el) -> float | None:
    for child in el:
        if _local(child.tag) == "time" and child.text:
            try:
                return datetime.fromisoformat(child.text.strip().replace("Z", "+00:00")).timestamp()
            except ValueError:
                return None
    return None


def parse_gpx(data: bytes, speed_kmh: float = DEFAULT_SPEED_KMH) -> Route:
    """Tracks (`trkpt`, timed when every point has a <time>), else routes (`rtept`), else
    waypoints (`wpt`) driven in file order at `speed_kmh`."""
    if len(data) > MAX_GPX_BYTES:
        raise RouteError(f"GPX file over {MAX_GPX_BYTES // (1024 * 1024)} MB")
    root = _xml_root(data)
    for name in ("trkpt", "rtept", "wpt"):
        elements = _points(root, name)
        if elements:
            break
    else:
        raise RouteError("GPX file with no track, route or waypoint")
    positions = [_latlon(el) for el in elements]
    times = [_time(el) for el in elements] if name == "trkpt" else [None]
    if None not in times and len(set(times)) == len(times):
        return Route.from_timed([(t, lat, lon) for t, (lat, lon) in zip(times, positions)])
    return Route.from_waypoints([(lat, lon, speed_kmh) for lat, lon in positions])


def load_route(path, speed_kmh: float = DEFAULT_SPEED_KMH) -> tuple[Route, tuple[RouteFault, ...]]:
    """A `.gpx` file, or JSON `{"waypoints": [[lat, lon, speed_kmh, dwell_s?], ...],
    "faults": "lost@120+30,..."}`; returns the route and its faults."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise RouteError(f"{path}: {exc.strerror or exc}") from exc
    if path.suffix.lower() == ".gpx" or data.lstrip()[:1] == b"<":
        return parse_gpx(data, speed_kmh), ()
    try:
        doc = json.loads(data)
        return Route.from_waypoints(doc["waypoints"]), parse_faults(doc.get("faults", ""))
    except RouteError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise RouteError(f"{path}: expected a GPX file or JSON {{\"waypoints\": [...]}}: {exc}") from exc
