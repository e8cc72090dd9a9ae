"""Areas of a schedule: circles and polygons on the Earth, and whether a position is inside.

Pure geometry, no I/O. Positions are WGS 84 decimal degrees, as GPS receivers give them.

- A circle is `{"lat", "lon", "r_m"}`: inside means a haversine (great-circle) distance
  to the centre of at most `r_m`.
- A polygon is `[[lat, lon], ...]` (closed or not: a last point equal to the first is
  dropped). Its sides are straight in a local equirectangular projection centred on the
  polygon (x = R·Δlon·cos(lat0), y = R·Δlat). A commune is at most a few tens of
  kilometres across: there the projection's error against the geodesic is centimetres to
  a few metres, far under a consumer GPS's own error, so point-in-polygon is a plain ray
  cast in metres. Areas crossing the antimeridian or a pole are not meant to exist in a
  province's schedule; they are refused rather than computed wrongly.

`parse_area(value, path)` checks a document's area and raises `DocumentError` naming the
field (`areas.bong-krang.polygon: sides 1 and 3 cross (a self-intersecting polygon)`).
"""

import math
from dataclasses import dataclass
from functools import cached_property

from loaxa.errors import DocumentError

__all__ = ["Area", "Circle", "EARTH_RADIUS_M", "MAX_POLYGON_POINTS", "MAX_RADIUS_M", "MAX_SPAN_M",
           "Polygon", "haversine_m", "parse_area"]

EARTH_RADIUS_M = 6_371_008.8  # the mean radius (IUGG)
MAX_RADIUS_M = 50_000.0  # wider than any commune: a bigger circle is a typo (km for m)
MAX_SPAN_M = 100_000.0  # a polygon wider than this is not a village's area
MAX_POLYGON_POINTS = 2000
MIN_AREA_M2 = 1.0  # less is a line or a point, not an area


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


@dataclass(frozen=True)
class Circle:
    lat: float
    lon: float
    r_m: float

    def contains(self, lat: float, lon: float) -> bool:
        return haversine_m(self.lat, self.lon, lat, lon) <= self.r_m

    def distance_m(self, lat: float, lon: float) -> float:
        """Metres to the edge: 0 inside, else how far outside."""
        return max(0.0, haversine_m(self.lat, self.lon, lat, lon) - self.r_m)

    def as_dict(self) -> dict:
        return {"circle": {"lat": self.lat, "lon": self.lon, "r_m": self.r_m}}


@dataclass(frozen=True)
class Polygon:
    points: tuple[tuple[float, float], ...]  # (lat, lon), not closed, >= 3 distinct

    @cached_property
    def origin(self) -> tuple[float, float]:
        lats = [p[0] for p in self.points]
        lons = [p[1] for p in self.points]
        return (min(lats) + max(lats)) / 2, (min(lons) + max(lons)) / 2

    def project(self, lat: float, lon: float) -> tuple[float, float]:
        """Metres east and north of the polygon's centre (local equirectangular)."""
        lat0, lon0 = self.origin
        x = math.radians(lon - lon0) * EARTH_RADIUS_M * math.cos(math.radians(lat0))
        y = math.radians(lat - lat0) * EARTH_RADIUS_M
        return x, y

    def projected(self) -> list[tuple[float, float]]:
        return [self.project(lat, lon) for lat, lon in self.points]

    def contains(self, lat: float, lon: float) -> bool:
        x, y = point = self.project(lat, lon)
        west, south, east, north = self._bounds
        if not (west <= x <= east and south <= y <= north):
            return False  # most fixes of a drive are far from most areas: skip the sides
        return _ray_cast(point, self._ring)

    @cached_property
    def _bounds(self) -> tuple[float, float, float, float]:
        xs, ys = [p[0] for p in self._ring], [p[1] for p in self._ring]
        return min(xs), min(ys), max(xs), max(ys)

    def distance_m(self, lat: float, lon: float) -> float:
        """Metres to the nearest side: 0 inside, else how far outside."""
        point = self.project(lat, lon)
        if _ray_cast(point, self._ring):
            return 0.0
        ring = self._ring
        return min(_point_segment_m(point, ring[i], ring[(i + 1) % len(ring)]) for i in range(len(ring)))

    def area_m2(self) -> float:
        return abs(_shoelace(self._ring))

    @cached_property
    def _ring(self) -> list[tuple[float, float]]:
        return self.projected()

    def as_dict(self) -> dict:
        return {"polygon": [list(p) for p in self.points]}


Area = Circle | Polygon


# ---- plane geometry on projected metres ----

def _ray_cast(point, ring) -> bool:
    x, y = point
    inside = False
    j = len(ring) - 1
    for i in range(len(ring)):
        xi, yi = ring[i]
        xj, yj = ring[j]
        if (yi > y) != (yj > y) and x < (xj - xi) * (y - yi) / (yj - yi) + xi:
            inside = not inside
        j = i
    return inside


def _shoelace(ring) -> float:
    return sum(ring[i][0] * ring[(i + 1) % len(ring)][1] - ring[(i + 1) % len(ring)][0] * ring[i][1]
               for i in range(len(ring))) / 2


def _point_segment_m(p, a, b) -> float:
    (px, py), (ax, ay), (bx, by) = p, a, b
    dx, dy = bx - ax, by - ay
    length2 = dx * dx + dy * dy
    t = 0.0 if length2 == 0 else max(0.0, min(1.0, ((px - ax) * dx + (py - ay) * dy) / length2))
    return math.hypot(px - (ax + t * dx), py - (ay + t * dy))


def _orientation(a, b, c) -> int:
    value = (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])
    scale = 1e-9 * (abs(b[0] - a[0]) + abs(b[1] - a[1])) * (abs(c[0] - a[0]) + abs(c[1] - a[1]))
    return 0 if abs(value) <= scale else (1 if value > 0 else -1)


def _on_segment(a, p, b) -> bool:
    return (min(a[0], b[0]) - 1e-9 <= p[0] <= max(a[0], b[0]) + 1e-9
            and min(a[1], b[1]) - 1e-9 <= p[1] <= max(a[1], b[1]) + 1e-9)


def segments_cross(a, b, c, d) -> bool:
    """Do the closed segments ab and cd share a point?"""
    o1, o2, o3, o4 = _orientation(a, b, c), _orientation(a, b, d), _orientation(c, d, a), _orientation(c, d, b)
    if o1 != o2 and o3 != o4 and 0 not in (o1, o2, o3, o4):
        return True
    return ((o1 == 0 and _on_segment(a, c, b)) or (o2 == 0 and _on_segment(a, d, b))
            or (o3 == 0 and _on_segment(c, a, d)) or (o4 == 0 and _on_segment(c, b, d)))


def first_crossing(ring) -> tuple[int, int] | None:
    """The first pair of sides (0-based, side i runs from point i to i+1) that touch or
    cross other than where neighbours meet, or None for a simple polygon.

    Sides are swept in order of their west end, so only sides whose east-west extents
    overlap are compared: near-linear for a village's outline, quadratic only for
    outlines that zigzag across themselves."""
    n = len(ring)
    sides = [(i, ring[i], ring[(i + 1) % n]) for i in range(n)]
    sides.sort(key=lambda s: min(s[1][0], s[2][0]))
    found = None
    for k, (i, a, b) in enumerate(sides):
        east = max(a[0], b[0])
        for j, c, d in sides[k + 1:]:
            if min(c[0], d[0]) > east:
                break
            if _neighbours(i, j, n):
                continue
            if segments_cross(a, b, c, d):
                pair = (min(i, j), max(i, j))
                found = pair if found is None or pair < found else found
    return found


def _neighbours(i: int, j: int, n: int) -> bool:
    return abs(i - j) == 1 or abs(i - j) == n - 1


# ---- parsing a document's area ----

def _fail(path: str, reason: str):
    raise DocumentError(f"{path}: {reason}")


def _describe(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _coordinate(value, path: str, limit: float, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        _fail(path, f"expected a {what} in decimal degrees, got {_describe(value)}")
    if not -limit <= value <= limit:
        _fail(path, f"{what} must be between -{limit:g} and {limit:g}, got {_describe(value)}")
    return float(value)


def _position(value, path: str) -> tuple[float, float]:
    if not isinstance(value, list) or len(value) != 2:
        _fail(path, f"expected [lat, lon], got {_describe(value)}")
    return (_coordinate(value[0], f"{path}[0]", 90, "latitude"),
            _coordinate(value[1], f"{path}[1]", 180, "longitude"))


def parse_circle(value, path: str) -> Circle:
    if not isinstance(value, dict):
        _fail(path, f'expected {{"lat", "lon", "r_m"}}, got {_describe(value)}')
    for name in value:
        if name not in ("lat", "lon", "r_m"):
            _fail(f"{path}.{name}" if name.isidentifier() else path, f"unknown field {name!r}")
    for name in ("lat", "lon", "r_m"):
        if name not in value:
            _fail(f"{path}.{name}", "required")
    lat = _coordinate(value["lat"], f"{path}.lat", 90, "latitude")
    lon = _coordinate(value["lon"], f"{path}.lon", 180, "longitude")
    r_m = value["r_m"]
    if isinstance(r_m, bool) or not isinstance(r_m, (int, float)) or not math.isfinite(r_m):
        _fail(f"{path}.r_m", f"expected a radius in metres, got {_describe(r_m)}")
    if not 0 < r_m <= MAX_RADIUS_M:
        _fail(f"{path}.r_m", f"must be more than 0 and at most {MAX_RADIUS_M:g} metres, got {_describe(r_m)}")
    if abs(lat) + math.degrees(r_m / EARTH_RADIUS_M) >= 90:
        _fail(path, "reaches a pole; areas near the poles are not supported")
    return Circle(lat, lon, float(r_m))


def _distinct_ring(value, path: str) -> list[tuple[float, float]]:
    if not isinstance(value, list):
        _fail(path, f"expected a list of [lat, lon] points, got {_describe(value)}")
    if len(value) > MAX_POLYGON_POINTS + 1:
        _fail(path, f"at most {MAX_POLYGON_POINTS} points, got {len(value)}")
    points = [_position(p, f"{path}[{i}]") for i, p in enumerate(value)]
    ring = []
    for point in points:  # a point repeated at once (a double click) is one point
        if not ring or ring[-1] != point:
            ring.append(point)
    if len(ring) > 1 and ring[0] == ring[-1]:
        ring.pop()  # a closed ring, as GeoJSON writes it
    if len(set(ring)) < 3:
        _fail(path, f"needs at least 3 distinct points, got {len(set(ring))}")
    return ring


def parse_polygon(value, path: str) -> Polygon:
    polygon = Polygon(tuple(_distinct_ring(value, path)))
    lons = [p[1] for p in polygon.points]
    if max(lons) - min(lons) > 180:
        _fail(path, "crosses the antimeridian; such areas are not supported")
    ring = polygon.projected()
    xs, ys = [p[0] for p in ring], [p[1] for p in ring]
    if max(max(xs) - min(xs), max(ys) - min(ys)) > MAX_SPAN_M:
        _fail(path, f"spans more than {MAX_SPAN_M / 1000:g} km; an area is a village or a commune")
    crossing = first_crossing(ring)
    if crossing is not None:
        i, j = crossing
        _fail(path, f"sides {i + 1} and {j + 1} cross or touch (a self-intersecting polygon; "
                    "list the points in order around the edge)")
    if polygon.area_m2() < MIN_AREA_M2:
        _fail(path, "encloses no area (its points lie on one line)")
    return polygon


def parse_area(value, path: str) -> Area:
    """One entry of a document's `areas`: `{"polygon": [...]}` or `{"circle": {...}}`."""
    if not isinstance(value, dict):
        _fail(path, f'expected {{"polygon": [[lat, lon], ...]}} or {{"circle": {{"lat", "lon", "r_m"}}}}, '
                    f"got {_describe(value)}")
    shapes = [name for name in value if name in ("polygon", "circle")]
    for name in value:
        if name not in ("polygon", "circle"):
            _fail(f"{path}.{name}" if name.isidentifier() else path,
                  f'unknown field {name!r} (an area is "polygon" or "circle")')
    if len(shapes) != 1:
        _fail(path, 'needs exactly one of "polygon" or "circle"')
    if shapes[0] == "circle":
        return parse_circle(value["circle"], f"{path}.circle")
    return parse_polygon(value["polygon"], f"{path}.polygon")
