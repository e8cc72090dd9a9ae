"""The track, pure: a point every 30 s or 100 m, batches with ids; time inside an area and
the seconds of a play heard inside, cut by the track (crossings interpolated)."""

from datetime import date, datetime, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings, strategies as st

from scheduler.areas import Circle, parse_area
from scheduler.track import TrackRecorder, audio_inside_s, inside_intervals, time_inside_by_day

M_PER_DEG = 111_195.0  # metres per degree of latitude
T0 = 1_764_460_800  # 2026-11-30 00:00 UTC


def north(metres: float, lat0: float = 12.70) -> float:
    return lat0 + metres / M_PER_DEG


# ---- points and batches ----

def ids():
    n = iter(range(1000))
    return lambda: f"batch-{next(n)}"


def test_a_point_every_30_s_when_parked():
    track = TrackRecorder(new_id=ids())
    kept = [t for t in range(0, 125) if track.observe(T0 + t, 12.7, 108.05, 0.0)]
    assert kept == [0, 30, 60, 90, 120]


def test_a_point_every_100_m_when_driving():
    track = TrackRecorder(new_id=ids())
    # 20 m/s (72 km/h): one point every 5 s of driving
    kept = [t for t in range(0, 30) if track.observe(T0 + t, north(20 * t), 108.05, 72.0)]
    assert kept == [0, 5, 10, 15, 20, 25]


def test_batches_by_count_age_and_flush():
    track = TrackRecorder(batch_points=3, batch_age_s=300, new_id=ids())
    for t in range(0, 120, 30):
        track.observe(T0 + t, 12.7, 108.05, 3.04)
    first = track.take(T0 + 90)
    assert first == [{"id": "batch-0", "points": [[T0, 12.7, 108.05, 3.0], [T0 + 30, 12.7, 108.05, 3.0],
                                                  [T0 + 60, 12.7, 108.05, 3.0]]}]
    assert track.take(T0 + 100) == [] and track.pending_points == 1  # the open batch is young
    aged = track.take(T0 + 90 + 300)
    assert [b["id"] for b in aged] == ["batch-1"] and aged[0]["points"][0][0] == T0 + 90
    track.observe(T0 + 500, 12.7, 108.05)
    assert [len(b["points"]) for b in track.flush()] == [1] and track.flush() == []


def test_uuid_ids_by_default_and_points_rounded():
    track = TrackRecorder(batch_points=1)
    track.observe(T0 + 0.7, 12.123456789, 108.987654321, 41.26)
    [batch] = track.take(T0)
    assert len(batch["id"]) == 36 and batch["id"].count("-") == 4
    assert batch["points"] == [[T0, 12.123457, 108.987654, 41.3]]


def test_older_fixes_and_nonsense_are_not_kept():
    track = TrackRecorder()
    assert track.observe(T0 + 100, 12.7, 108.05)
    assert not track.observe(T0 + 50, 13.7, 108.05)  # older: the track stays in time order
    assert not track.observe(float("nan"), 12.7, 108.05)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.floats(0.1, 20), st.floats(-50, 50), st.floats(-50, 50)), min_size=1, max_size=200))
def test_kept_points_are_30_s_or_100_m_apart_and_no_point_is_lost_in_batching(moves):
    track = TrackRecorder(batch_points=7, new_id=ids())
    t, lat, lon, offered = float(T0), 12.7, 108.05, []
    for dt, dn, de in moves:
        t, lat, lon = t + dt, north(dn, lat), lon + de / M_PER_DEG
        if track.observe(t, lat, lon, 10.0):
            offered.append(int(t))
    batches = track.flush()
    points = [p for b in batches for p in b["points"]]
    assert [p[0] for p in points] == offered
    assert len({b["id"] for b in batches}) == len(batches) and all(len(b["points"]) <= 7 for b in batches)


# ---- report maths ----

CIRCLE = Circle(12.70, 108.05, 500)


def drive_north(t0: float, speed_ms: float, seconds: int, step: int = 30):
    """Points from 1,000 m south of the circle's centre, driving north."""
    return [[t0 + s, north(-1000 + speed_ms * s), 108.05, speed_ms * 3.6] for s in range(0, seconds + 1, step)]


def test_crossings_are_interpolated_between_points():
    track = drive_north(T0, 10.0, 300)  # enters at 500 m (t=50 s), leaves at 1500 m (t=150 s)
    [(a, b)] = inside_intervals(track, CIRCLE)
    assert a == pytest.approx(T0 + 50, abs=0.2) and b == pytest.approx(T0 + 150, abs=0.2)


def test_audio_inside_is_cut_by_the_track():
    track = drive_north(T0, 10.0, 300)
    # a 120 s play from t=100: 50 s of it inside (until the exit at t=150)
    assert audio_inside_s(track, CIRCLE, T0 + 100, T0 + 220) == pytest.approx(50, abs=0.3)
    start = datetime.fromtimestamp(T0 + 60, timezone.utc)
    end = datetime.fromtimestamp(T0 + 90, timezone.utc)
    assert audio_inside_s(track, CIRCLE, start, end) == pytest.approx(30)
    assert audio_inside_s(track, CIRCLE, T0 + 200, T0 + 260) == 0
    assert audio_inside_s(track, CIRCLE, T0 + 90, T0 + 60) == 0


def test_a_polygon_corner_between_two_points_is_seen():
    square = parse_area({"polygon": [[12.69, 108.04], [12.69, 108.06], [12.71, 108.06], [12.71, 108.04]]}, "a")
    # a straight line clipping the south-west corner, with only its two ends as points
    track = [[T0, 12.689, 108.0415, 0], [T0 + 100, 12.6915, 108.039, 0]]
    assert not square.contains(12.689, 108.0415) and not square.contains(12.6915, 108.039)
    [(a, b)] = inside_intervals(track, square)  # inside from f=0.4 to f=0.6 of the way
    assert (a - T0, b - T0) == (pytest.approx(40, abs=0.5), pytest.approx(60, abs=0.5))


def test_nothing_is_known_across_a_long_gap_or_beyond_the_ends():
    track = [[T0, 12.70, 108.05, 0], [T0 + 200, 12.70, 108.05, 0], [T0 + 800, 12.70, 108.05, 0]]
    assert inside_intervals(track, CIRCLE) == [(T0, T0 + 200)]  # 600 s without a point: not counted
    assert audio_inside_s(track, CIRCLE, T0 - 100, T0 + 50) == pytest.approx(50)
    assert inside_intervals([[T0, 12.7, 108.05, 0]], CIRCLE) == []


def test_time_inside_per_local_day_splits_at_midnight():
    tz = ZoneInfo("Asia/Ho_Chi_Minh")
    midnight = datetime(2026, 12, 1, tzinfo=tz).timestamp()
    track = [[midnight - 120 + 30 * k, 12.70, 108.05, 0] for k in range(9)]  # parked 23:58 to 00:02
    days = time_inside_by_day(track, CIRCLE, tz)
    assert days == {date(2026, 11, 30): pytest.approx(120), date(2026, 12, 1): pytest.approx(120)}


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 120), st.floats(-1500, 1500), st.floats(-1500, 1500)), min_size=2,
                max_size=40), st.floats(0, 3000), st.floats(0, 3000))
def test_audio_inside_is_within_the_play_and_additive(moves, a, b):
    t, track = T0, []
    for dt, dn, de in moves:
        t += dt
        track.append([t, north(dn), 108.05 + de / M_PER_DEG, 0])
    start, end = T0 + min(a, b), T0 + max(a, b)
    mid = (start + end) / 2
    whole = audio_inside_s(track, CIRCLE, start, end)
    assert 0 <= whole <= end - start + 1e-6
    parts = audio_inside_s(track, CIRCLE, start, mid) + audio_inside_s(track, CIRCLE, mid, end)
    assert whole == pytest.approx(parts, abs=1e-6)
