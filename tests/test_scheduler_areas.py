"""Areas: circles by haversine, polygons in a local projection; what a document may not
call an area (self-intersecting, empty, absurd) is refused in one line naming the field."""

import math

import pytest
from hypothesis import given, settings, strategies as st

from loaxa.errors import DocumentError
from scheduler.areas import Circle, Polygon, haversine_m, parse_area, segments_cross

# Bông Krang-ish: a square about 2.2 km a side around (12.70, 108.05)
SQUARE = [[12.69, 108.04], [12.69, 108.06], [12.71, 108.06], [12.71, 108.04]]


def refusal(value) -> str:
    with pytest.raises(DocumentError) as info:
        parse_area(value, "areas.bong-krang")
    message = str(info.value)
    assert "\n" not in message and message.startswith("areas.bong-krang")
    return message


def test_haversine_known_distances():
    # one degree of latitude is ~111.2 km; Hanoi to Ho Chi Minh City ~1,140 km
    assert haversine_m(12.0, 108.0, 13.0, 108.0) == pytest.approx(111_195, rel=1e-3)
    assert haversine_m(21.0278, 105.8342, 10.7769, 106.7009) == pytest.approx(1_138_000, rel=0.01)
    assert haversine_m(12.7, 108.05, 12.7, 108.05) == 0


def test_circle_contains_by_great_circle_distance():
    circle = parse_area({"circle": {"lat": 12.70, "lon": 108.05, "r_m": 500}}, "a")
    assert isinstance(circle, Circle)
    north_490 = 12.70 + 490 / 111_195
    north_510 = 12.70 + 510 / 111_195
    assert circle.contains(north_490, 108.05) and not circle.contains(north_510, 108.05)
    assert circle.distance_m(12.70, 108.05) == 0
    assert circle.distance_m(north_510, 108.05) == pytest.approx(10, abs=0.5)


def test_polygon_contains_and_distance():
    polygon = parse_area({"polygon": SQUARE}, "a")
    assert isinstance(polygon, Polygon)
    assert polygon.contains(12.70, 108.05)
    assert not polygon.contains(12.72, 108.05) and not polygon.contains(12.70, 108.07)
    # 0.001 degree of latitude north of the top side: ~111 m outside
    assert polygon.distance_m(12.711, 108.05) == pytest.approx(111.2, abs=1)
    assert polygon.area_m2() == pytest.approx(2224 * 2171, rel=0.01)


def test_a_closed_ring_and_repeated_points_are_one_polygon():
    closed = parse_area({"polygon": SQUARE + [SQUARE[0]]}, "a")
    doubled = parse_area({"polygon": [SQUARE[0], SQUARE[0], *SQUARE[1:]]}, "a")
    assert closed.points == doubled.points == tuple(tuple(p) for p in SQUARE)


def test_a_concave_polygon():
    # an L: the notch at the north-east is outside
    ell = [[12.69, 108.04], [12.69, 108.06], [12.70, 108.06], [12.70, 108.05], [12.71, 108.05], [12.71, 108.04]]
    polygon = parse_area({"polygon": ell}, "a")
    assert polygon.contains(12.695, 108.055) and polygon.contains(12.705, 108.045)
    assert not polygon.contains(12.705, 108.055)


@pytest.mark.parametrize("value, expected", [
    ({"polygon": [[12.69, 108.04], [12.71, 108.06], [12.69, 108.06], [12.71, 108.04]]},
     "polygon: sides 1 and 3 cross or touch (a self-intersecting polygon"),
    ({"polygon": [[12.69, 108.04], [12.69, 108.06], [12.69, 108.04]]}, "needs at least 3 distinct points, got 2"),
    ({"polygon": [[12.69, 108.04], [12.70, 108.05], [12.71, 108.06]]}, "encloses no area"),
    ({"polygon": []}, "needs at least 3 distinct points, got 0"),
    ({"polygon": [[91, 108.04], [12.69, 108.06], [12.71, 108.06]]}, "polygon[0][0]: latitude must be between -90"),
    ({"polygon": [[12.69, 181], [12.69, 108.06], [12.71, 108.06]]}, "polygon[0][1]: longitude must be between"),
    ({"polygon": [[12.69, "108"], [12.69, 108.06], [12.71, 108.06]]}, "polygon[0][1]: expected a longitude"),
    ({"polygon": [[12.69], [12.69, 108.06], [12.71, 108.06]]}, "polygon[0]: expected [lat, lon]"),
    ({"polygon": [[12, 108], [12, 109.5], [13, 109.5]]}, "spans more than 100 km"),
    ({"polygon": "nope"}, "expected a list of [lat, lon] points"),
    ({"circle": {"lat": 12.7, "lon": 108.05, "r_m": 0}}, "circle.r_m: must be more than 0"),
    ({"circle": {"lat": 12.7, "lon": 108.05, "r_m": -5}}, "circle.r_m: must be more than 0"),
    ({"circle": {"lat": 12.7, "lon": 108.05, "r_m": 5_000_000}}, "at most 50000 metres"),
    ({"circle": {"lat": 12.7, "lon": 108.05, "r_m": True}}, "circle.r_m: expected a radius"),
    ({"circle": {"lat": 12.7, "lon": 108.05}}, "circle.r_m: required"),
    ({"circle": {"lat": 12.7, "lon": 108.05, "r_m": 5, "name": "x"}}, "circle.name: unknown field"),
    ({"circle": {"lat": 95, "lon": 108.05, "r_m": 5}}, "circle.lat: latitude must be between -90 and 90"),
    ({"circle": {"lat": 12.7, "lon": 108.05, "r_m": 5}, "polygon": SQUARE}, 'exactly one of "polygon" or "circle"'),
    ({}, 'exactly one of "polygon" or "circle"'),
    ({"square": 1}, "areas.bong-krang.square: unknown field"),
    ([1, 2], 'expected {"polygon"'),
])
def test_refusals_name_the_field(value, expected):
    assert expected in refusal(value)


def test_a_polygon_touching_itself_at_a_vertex_is_refused():
    # a bow tie through a shared point: points 0 and 3 are the same place
    bow = [[12.70, 108.05], [12.69, 108.04], [12.69, 108.06], [12.70, 108.05], [12.71, 108.06], [12.71, 108.04]]
    assert "self-intersecting" in refusal({"polygon": bow})


def test_many_points_check_quickly():
    # a 1,000-point circle outline: the sweep compares neighbours, not every pair
    ring = [[12.70 + 0.01 * math.sin(2 * math.pi * k / 1000), 108.05 + 0.01 * math.cos(2 * math.pi * k / 1000)]
            for k in range(1000)]
    polygon = parse_area({"polygon": ring}, "a")
    assert polygon.contains(12.70, 108.05) and not polygon.contains(12.72, 108.05)


# ---- properties ----

lats = st.floats(min_value=-60, max_value=60)
lons = st.floats(min_value=-170, max_value=170)
offsets = st.floats(min_value=-0.02, max_value=0.02)


@settings(max_examples=200, deadline=None)
@given(lat=lats, lon=lons, r=st.floats(min_value=1, max_value=50_000), dlat=offsets, dlon=offsets)
def test_circle_contains_exactly_what_is_within_its_radius(lat, lon, r, dlat, dlon):
    circle = Circle(lat, lon, r)
    p = (lat + dlat, lon + dlon)
    assert circle.contains(*p) == (haversine_m(lat, lon, *p) <= r)
    assert (circle.distance_m(*p) == 0) == circle.contains(*p)


@settings(max_examples=200, deadline=None)
@given(lat=lats, lon=lons, w=st.floats(min_value=1e-4, max_value=0.2), h=st.floats(min_value=1e-4, max_value=0.2),
       fx=st.floats(min_value=-0.5, max_value=1.5), fy=st.floats(min_value=-0.5, max_value=1.5))
def test_a_rectangle_contains_what_lies_between_its_sides(lat, lon, w, h, fx, fy):
    rect = parse_area({"polygon": [[lat, lon], [lat, lon + w], [lat + h, lon + w], [lat + h, lon]]}, "a")
    p = (lat + fy * h, lon + fx * w)
    margin = 1e-6
    if margin < fx < 1 - margin and margin < fy < 1 - margin:
        assert rect.contains(*p)
    if fx < -margin or fx > 1 + margin or fy < -margin or fy > 1 + margin:
        assert not rect.contains(*p) and rect.distance_m(*p) > 0


@settings(max_examples=100, deadline=None)
@given(n=st.integers(min_value=3, max_value=40), lat=lats, lon=lons, seed=st.randoms(use_true_random=False))
def test_a_star_shaped_outline_is_simple_and_contains_its_centre(n, lat, lon, seed):
    # points at increasing angles around a centre with random radii: never self-intersecting
    angles = sorted(seed.uniform(0, 2 * math.pi) for _ in range(n))
    if len({round(a, 6) for a in angles}) < n or max(b - a for a, b in zip(angles, angles[1:] + [angles[0] + 2 * math.pi])) >= math.pi:
        return  # coincident angles, or a gap wider than a half turn (the centre may fall outside)
    radii = [seed.uniform(0.002, 0.01) for _ in angles]
    ring = [[lat + r * math.sin(a), lon + r * math.cos(a) / math.cos(math.radians(lat))]
            for r, a in zip(radii, angles)]
    polygon = parse_area({"polygon": ring}, "a")
    assert polygon.contains(lat, lon)


@given(st.lists(st.tuples(st.integers(-5, 5), st.integers(-5, 5)), min_size=4, max_size=4))
def test_segments_cross_is_symmetric(points):
    a, b, c, d = points
    assert segments_cross(a, b, c, d) == segments_cross(c, d, a, b) == segments_cross(b, a, d, c)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 8), st.integers(0, 8)), min_size=3, max_size=9, unique=True))
def test_the_sweep_finds_a_crossing_exactly_when_brute_force_does(points):
    from scheduler.areas import first_crossing

    n = len(points)
    brute = any(segments_cross(points[i], points[(i + 1) % n], points[j], points[(j + 1) % n])
                for i in range(n) for j in range(i + 1, n) if not (j - i == 1 or j - i == n - 1))
    assert (first_crossing(points) is not None) == brute
