"""The vehicle's track: which points are kept and how they are batched, and the report
maths over a track (time inside an area, seconds of a play heard inside). Pure.

- `TrackRecorder`: a point is kept when 30 s have passed or the vehicle has moved 100 m
  since the last kept point (SPEC); kept points are sealed into batches
  `{"id": "<uuid>", "points": [[ts, lat, lon, speed_kmh], ...]}` of at most
  `batch_points` points (20: ten minutes at a standstill) or when the first point of the
  batch is `batch_age_s` old (300 s), or on `flush()` (an area event, shutdown). `ts` is
  integer epoch seconds, lat/lon are rounded to 6 decimals (11 cm), speed to 0.1 km/h.
  A batch's id is made when it is sealed: a batch retried through the outbox keeps it,
  so the collector stores it once.
- `inside_intervals(points, area)`: the spans of time the track spends inside an area.
  Between two points the position is interpolated linearly in time; crossings are found
  by bisection to ~1 m. Beyond the track's ends, and across a gap longer than `max_gap_s`
  (300 s: the receiver lost in a valley for five minutes says nothing of where the
  vehicle went), nothing is known and nothing is counted inside.
- `audio_inside_s(points, area, start, end)`: the seconds of a play [start, end) spent
  inside (the report's "minutes of audio inside, cut by the track").
- `time_inside_by_day(points, area, tz)`: seconds inside per local date.
"""

import math
import uuid
from datetime import date, datetime, timedelta, timezone

from scheduler.areas import haversine_m

__all__ = ["BATCH_AGE_S", "BATCH_POINTS", "MAX_GAP_S", "MIN_DISTANCE_M", "MIN_INTERVAL_S", "TrackRecorder",
           "audio_inside_s", "inside_intervals", "time_inside_by_day"]

MIN_INTERVAL_S = 30.0
MIN_DISTANCE_M = 100.0
BATCH_POINTS = 20
BATCH_AGE_S = 300.0
MAX_GAP_S = 300.0
CROSSING_TOLERANCE_M = 1.0
SAMPLE_STEP_M = 10.0  # a side of an area shorter than this between two points may be missed


class TrackRecorder:
    """Keeps track points and seals batches. `new_id` is injectable for tests."""

    def __init__(self, *, min_interval_s: float = MIN_INTERVAL_S, min_distance_m: float = MIN_DISTANCE_M,
                 batch_points: int = BATCH_POINTS, batch_age_s: float = BATCH_AGE_S, new_id=None):
        self.min_interval_s, self.min_distance_m = min_interval_s, min_distance_m
        self.batch_points, self.batch_age_s = batch_points, batch_age_s
        self.new_id = new_id or (lambda: str(uuid.uuid4()))
        self._last = None  # the last kept point
        self._points: list[list] = []
        self._sealed: list[dict] = []

    def observe(self, ts: float, lat: float, lon: float, speed_kmh: float | None = None) -> bool:
        """Offer a trusted fix; True when it was kept as a track point."""
        if not (math.isfinite(ts) and math.isfinite(lat) and math.isfinite(lon)):
            return False
        if self._last is not None and not self._due(ts, lat, lon):
            return False
        point = [int(ts), round(lat, 6), round(lon, 6), round(speed_kmh or 0.0, 1)]
        self._last = (ts, lat, lon)  # unrounded: distances are measured from where it was
        self._points.append(point)
        if len(self._points) >= self.batch_points:
            self._seal()
        return True

    def _due(self, ts: float, lat: float, lon: float) -> bool:
        last_ts, last_lat, last_lon = self._last
        if ts < last_ts:
            return False  # an older fix (or a clock stepped back): the track stays in order
        return (ts - last_ts >= self.min_interval_s
                or haversine_m(last_lat, last_lon, lat, lon) >= self.min_distance_m)

    def take(self, now: float) -> list[dict]:
        """The batches ready to send (the open one is sealed once its first point is old)."""
        if self._points and now - self._points[0][0] >= self.batch_age_s:
            self._seal()
        sealed, self._sealed = self._sealed, []
        return sealed

    def flush(self) -> list[dict]:
        """Seal what is open and hand over everything (an area event, shutdown)."""
        self._seal()
        sealed, self._sealed = self._sealed, []
        return sealed

    @property
    def pending_points(self) -> int:
        return len(self._points) + sum(len(b["points"]) for b in self._sealed)

    def _seal(self) -> None:
        if self._points:
            self._sealed.append({"id": self.new_id(), "points": self._points})
            self._points = []


# ---- report maths ----

def _position_at(p0, p1, t: float) -> tuple[float, float]:
    span = p1[0] - p0[0]
    f = 0.0 if span <= 0 else (t - p0[0]) / span
    return p0[1] + f * (p1[1] - p0[1]), p0[2] + f * (p1[2] - p0[2])


def _crossing(area, p0, p1, t_in: float, t_out: float) -> float:
    """The time between t_in (inside) and t_out (outside) where the track crosses the edge."""
    lat_a, lon_a = _position_at(p0, p1, t_in)
    lat_b, lon_b = _position_at(p0, p1, t_out)
    steps = max(1, math.ceil(math.log2(max(2.0, haversine_m(lat_a, lon_a, lat_b, lon_b) / CROSSING_TOLERANCE_M))))
    for _ in range(steps):
        mid = (t_in + t_out) / 2
        if area.contains(*_position_at(p0, p1, mid)):
            t_in = mid
        else:
            t_out = mid
    return (t_in + t_out) / 2


def _segment_intervals(area, p0, p1) -> list[tuple[float, float]]:
    t0, t1 = float(p0[0]), float(p1[0])
    if t1 <= t0:
        return []
    n = max(1, math.ceil(haversine_m(p0[1], p0[2], p1[1], p1[2]) / SAMPLE_STEP_M))
    times = [t0 + (t1 - t0) * k / n for k in range(n + 1)]
    flags = [area.contains(*_position_at(p0, p1, t)) for t in times]
    out, start = [], (t0 if flags[0] else None)
    for k in range(1, n + 1):
        if flags[k] == flags[k - 1]:
            continue
        if flags[k]:  # entering between k-1 and k
            start = _crossing(area, p0, p1, times[k], times[k - 1])
        else:
            out.append((start, _crossing(area, p0, p1, times[k - 1], times[k])))
            start = None
    if start is not None:
        out.append((start, t1))
    return out


def _merge(intervals) -> list[tuple[float, float]]:
    merged = []
    for a, b in sorted(intervals):
        if merged and a <= merged[-1][1] + 1e-6:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        elif b > a:
            merged.append((a, b))
    return merged


def inside_intervals(points, area, *, max_gap_s: float = MAX_GAP_S) -> list[tuple[float, float]]:
    """Spans (epoch s) the track spends inside `area`; points are [ts, lat, lon, ...]."""
    pts = sorted((p for p in points if len(p) >= 3), key=lambda p: p[0])
    found = []
    for p0, p1 in zip(pts, pts[1:]):
        if p1[0] - p0[0] <= max_gap_s:
            found.extend(_segment_intervals(area, p0, p1))
    return _merge(found)


def _overlap(intervals, start: float, end: float) -> float:
    return sum(max(0.0, min(b, end) - max(a, start)) for a, b in intervals)


def audio_inside_s(points, area, start, end, *, max_gap_s: float = MAX_GAP_S) -> float:
    """Seconds of the play [start, end) (epoch s or aware datetimes) heard inside the area."""
    start, end = _epoch(start), _epoch(end)
    if end <= start:
        return 0.0
    return _overlap(inside_intervals(points, area, max_gap_s=max_gap_s), start, end)


def time_inside_by_day(points, area, tz, *, max_gap_s: float = MAX_GAP_S) -> dict[date, float]:
    """Seconds spent inside the area per local date in `tz` (split at local midnight)."""
    days: dict[date, float] = {}
    for a, b in inside_intervals(points, area, max_gap_s=max_gap_s):
        moment = datetime.fromtimestamp(a, timezone.utc).astimezone(tz)
        while True:
            day = moment.date()
            midnight = datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=tz).timestamp()
            upto = min(b, midnight)
            days[day] = days.get(day, 0.0) + max(0.0, upto - max(a, moment.timestamp()))
            if b <= midnight:
                break
            moment = datetime.fromtimestamp(midnight, timezone.utc).astimezone(tz)
    return days


def _epoch(value) -> float:
    return value.timestamp() if isinstance(value, datetime) else float(value)
