"""The GPS simulator drives a route (waypoints with speeds, or GPX tracks/routes/waypoints)
with faults on the way (lost fix, a jump, jitter at a boundary); the real receiver reads it
through a pty, and the 3-fix rule turns jittery fixes at a boundary into one entry."""

import time

import pytest

from hw import MockHardware
from hw.sim import GpsSimulator, Route, RouteError, load_route, parse_faults, parse_gpx
from hw.sim.route import RouteFault
from scheduler.area_plan import Membership
from scheduler.areas import Circle, haversine_m

M_PER_DEG = 111_195.0
LAT0, LON0 = 12.70, 108.05


def north(metres: float) -> float:
    return LAT0 + metres / M_PER_DEG


# ---- the route, pure ----

def test_waypoints_with_speeds_and_a_stop():
    # 1,000 m north at 36 km/h (100 s), a 60 s stop, 500 m east at 18 km/h (100 s)
    east = LON0 + 500 / (M_PER_DEG * 0.97566)
    route = Route.from_waypoints([(LAT0, LON0, 36), (north(1000), LON0, 18, 60), (north(1000), east, 0)])
    assert route.duration_s == pytest.approx(260, abs=0.5)
    half = route.at(50)
    assert haversine_m(LAT0, LON0, half.lat, half.lon) == pytest.approx(500, abs=2)
    assert half.speed_kmh == pytest.approx(36, abs=0.1) and half.course_deg == pytest.approx(0, abs=0.1)
    stopped = route.at(130)
    assert (stopped.speed_kmh, stopped.course_deg) == (0.0, None) and stopped.lat == pytest.approx(north(1000))
    going_east = route.at(200)
    assert going_east.speed_kmh == pytest.approx(18, abs=0.2) and going_east.course_deg == pytest.approx(90, abs=0.5)
    assert route.at(-5).lat == LAT0 and route.at(10_000).speed_kmh == 0 and route.at(10_000).lon == pytest.approx(east)


@pytest.mark.parametrize("waypoints, expected", [
    ([], "at least one waypoint"),
    ([(LAT0, LON0, 0), (north(100), LON0, 0)], "waypoint 1: a speed above 0"),
    ([(95, LON0, 10)], "waypoint 1: out of range"),
    ([(LAT0, LON0, -1)], "speed and dwell must be 0 or more"),
    ([("x", LON0, 10)], "waypoint 1: expected (lat, lon, speed_kmh[, dwell_s])"),
])
def test_bad_waypoints(waypoints, expected):
    with pytest.raises(RouteError, match=None) as info:
        Route.from_waypoints(waypoints)
    assert expected in str(info.value)


def test_faults_text():
    assert parse_faults("lost@120+30, jump@200+5=300,jitter@250+60=15/90") == (
        RouteFault("lost", 120, 30), RouteFault("jump", 200, 5, 300), RouteFault("jitter", 250, 60, 15, 90))
    assert parse_faults("") == ()
    with pytest.raises(RouteError, match="route fault 'fog@1\\+2'"):
        parse_faults("fog@1+2")


GPX = b"""<?xml version="1.0" encoding="UTF-8"?>
<gpx version="1.1" creator="test" xmlns="http://www.topografix.com/GPX/1/1">
  <wpt lat="12.75" lon="108.10"><name>Yang Tao</name></wpt>
  <rte><rtept lat="12.70" lon="108.05"/><rtept lat="12.71" lon="108.05"/></rte>
  <trk><trkseg>
    <trkpt lat="12.70" lon="108.05"><time>2026-11-30T01:00:00Z</time></trkpt>
    <trkpt lat="12.71" lon="108.05"><time>2026-11-30T01:02:00Z</time></trkpt>
  </trkseg></trk>
</gpx>"""


def test_gpx_track_with_times_comes_first():
    route = parse_gpx(GPX)
    assert route.duration_s == 120 and route.at(60).lat == pytest.approx(12.705)


def test_gpx_route_then_waypoints_at_a_speed():
    without_track = GPX.replace(GPX[GPX.index(b"<trk>"):GPX.index(b"</trk>") + 6], b"")
    route = parse_gpx(without_track, speed_kmh=36)
    assert route.duration_s == pytest.approx(haversine_m(12.70, 108.05, 12.71, 108.05) / 10, rel=1e-3)
    only_waypoint = without_track.replace(without_track[without_track.index(b"<rte>"):
                                                         without_track.index(b"</rte>") + 6], b"")
    assert parse_gpx(only_waypoint).at(0).lat == 12.75


@pytest.mark.parametrize("data, expected", [
    (b'<?xml version="1.0"?><!DOCTYPE gpx [<!ENTITY a "aaaa">]><gpx>&a;</gpx>', "DOCTYPE"),
    (b"<gpx><trk>", "not a GPX file"),
    (b"<gpx/>", "no track, route or waypoint"),
    (b'<gpx><wpt lat="x" lon="1"/></gpx>', "without a lat/lon"),
])
def test_bad_gpx(data, expected):
    with pytest.raises(RouteError) as info:
        parse_gpx(data)
    assert expected in str(info.value)


def test_load_route_from_json_and_gpx(tmp_path):
    (tmp_path / "r.json").write_text('{"waypoints": [[12.7, 108.05, 30], [12.71, 108.05, 0]], "faults": "lost@5+5"}')
    route, faults = load_route(tmp_path / "r.json")
    assert route.duration_s > 0 and faults == (RouteFault("lost", 5, 5),)
    (tmp_path / "r.gpx").write_bytes(GPX)
    assert load_route(tmp_path / "r.gpx")[0].duration_s == 120
    (tmp_path / "bad.json").write_text('{"points": []}')
    with pytest.raises(RouteError, match="bad.json: expected a GPX file or JSON"):
        load_route(tmp_path / "bad.json")
    with pytest.raises(RouteError, match="missing.gpx"):
        load_route(tmp_path / "missing.gpx")


def test_the_simulator_applies_faults_to_the_route():
    route = Route.from_waypoints([(LAT0, LON0, 36), (north(1000), LON0, 0)])
    faults = parse_faults("lost@10+5,jump@20+2=300,jitter@30+4=15")
    sim = GpsSimulator(route=route, faults=faults, route_start=0.0)
    try:
        assert sim.position_at(9)[1] is False and sim.position_at(10)[1] is True and sim.position_at(15)[1] is False
        jumped, _ = sim.position_at(20)
        assert haversine_m(jumped.lat, jumped.lon, north(200), LON0) == pytest.approx(300, abs=1)
        swings = [sim.position_at(t)[0].lat - north(10 * t) for t in (30, 31, 32, 33)]
        assert [round(s * M_PER_DEG) for s in swings] == [15, -15, 15, -15]
        assert sim.position_at(34)[0].lat == pytest.approx(north(340))
    finally:
        sim.close()


def test_a_fixed_receiver_is_still_the_default():
    sim = GpsSimulator(lat=LAT0, lon=LON0)
    try:
        point, lost = sim.position_at(time.time())
        assert (point.lat, point.lon, lost) == (LAT0, LON0, False)
        assert b"RMC" in sim.epoch(1_764_460_800) and b",0.02,," in sim.epoch(1_764_460_800)
    finally:
        sim.close()


# ---- through a pty, read by the real receiver ----

def test_a_route_read_back_by_the_receiver_enters_once_despite_jitter(tmp_path):
    """A drive north through a 300 m circle, 20x faster than real time: jitter of 40 m at
    the entry flips naive membership in and out; the 3-fix rule enters once, leaves once."""
    circle = Circle(north(1000), LON0, 300)
    route = Route.from_waypoints([(LAT0, LON0, 72), (north(2000), LON0, 0)])  # 20 m/s: in at 35 s, out at 65 s
    faults = parse_faults("jitter@33+6=40,lost@50+3")
    speedup, base, m0 = 20.0, 1_764_460_800.0, time.monotonic()

    def utc():
        return base + (time.monotonic() - m0) * speedup

    with GpsSimulator(route=route, faults=faults, route_start=base, utc=utc, interval_s=1 / speedup,
                      link_path=tmp_path / "ttyGPS") as sim, MockHardware(tmp_path / "out") as hw:
        gps = hw.gps(sim.port)
        fixes, deadline = {}, time.monotonic() + 20
        while time.monotonic() < deadline and utc() - base < 90:
            fix = gps.fix
            if fix is not None:
                fixes[fix.at] = fix
            time.sleep(0.005)
    fixes = [fixes[k] for k in sorted(fixes)]
    assert len(fixes) > 40 and fixes[-1].lat > fixes[0].lat  # it moved north
    naive = [circle.contains(f.lat, f.lon) for f in fixes]
    flips = sum(1 for a, b in zip(naive, naive[1:]) if a != b)
    assert flips >= 4  # jitter at the boundary: naive membership flaps
    member, events = Membership(), []
    for fix in fixes:
        event = member.observe(fix, circle.contains(fix.lat, fix.lon), fix.at)
        if event:
            events.append(event)
    assert events == ["entered", "left"]


def test_the_mock_gps_drives_loaxa_demo_route(tmp_path, monkeypatch, caplog):
    (tmp_path / "r.json").write_text('{"waypoints": [[12.7, 108.05, 30], [12.71, 108.05, 0]], "faults": "lost@5+5"}')
    monkeypatch.setenv("LOAXA_DEMO_ROUTE", str(tmp_path / "r.json"))
    with MockHardware(tmp_path / "a", gps_interval_s=0.05) as hw:
        hw.gps(None)
        sim = hw.simulators["gps"]
        assert sim.route is not None and sim.faults == (RouteFault("lost", 5, 5),)
    monkeypatch.setenv("LOAXA_DEMO_ROUTE", str(tmp_path / "missing.json"))
    with MockHardware(tmp_path / "b", gps_interval_s=0.05) as hw:
        assert hw.gps(None).wait_for_fix(5) is not None and hw.simulators["gps"].route is None
    assert "LOAXA_DEMO_ROUTE" in caplog.text and "fixed position" in caplog.text
