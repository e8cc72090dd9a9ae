"""Reports of area items (SPEC "Mobile units"): per schedule, area, local day and vehicle,
the plays, the seconds of audio heard inside the area (cut by the track) and the vehicle's
time in the area. Pure: playlog dicts and track points in, rows out; `fleet report` reads
them from the database and prints them (wiring left for issue 13).

- The day is the local date, in the document's timezone, of the record's `scheduled_at`
  (the window's start).
- `plays`: records with audio (`played_s` > 0) counted once per `play_no` (a play resumed
  after an emergency is a second record of the same play); `completed` likewise for
  outcome `completed`; `missed`: records with outcome `missed`, by reason.
- `audio_inside_s`: each record's `played_s` times the share of its `started_at`..`ended_at`
  the track spends inside (so a mock speaker faster than real time still counts audio
  seconds); a record without times counts nothing inside.
- `time_inside_s`: `scheduler.track.time_inside_by_day` of the vehicle's track.
"""

from datetime import datetime

from scheduler.track import audio_inside_s, time_inside_by_day

__all__ = ["area_rows", "audio_inside_of"]


def _moment(text) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None
    return moment if moment.tzinfo is not None else None


def audio_inside_of(record: dict, points, area) -> float:
    """Seconds of one playlog's audio heard inside `area`."""
    start, end = _moment(record.get("started_at")), _moment(record.get("ended_at"))
    played = record.get("played_s") or 0.0
    if start is None or end is None or end <= start or played <= 0:
        return 0.0
    share = audio_inside_s(points, area, start, end) / (end - start).total_seconds()
    return played * min(1.0, share)


def _empty(schedule_id: str, area_id: str, day, unit: str) -> dict:
    return {"schedule": schedule_id, "area": area_id, "day": day.isoformat(), "unit": unit, "plays": 0,
            "completed": 0, "missed": {}, "played_s": 0.0, "audio_inside_s": 0.0, "time_inside_s": 0.0,
            "_plays": set(), "_completed": set()}


def area_rows(schedule, unit: str, playlogs, points) -> list[dict]:
    """Rows for one vehicle's records (`playlogs`: dicts as SPEC's playlog, with `area` and
    `play_no`) and its track (`points`: [[ts, lat, lon, speed_kmh], ...])."""
    tz, rows = schedule.timezone, {}

    def row(area_id, day):
        return rows.setdefault((area_id, day), _empty(schedule.id, area_id, day, unit))

    for record in playlogs:
        area_id, scheduled = record.get("area"), _moment(record.get("scheduled_at"))
        if record.get("schedule") != schedule.id or area_id not in schedule.areas or scheduled is None:
            continue
        r = row(area_id, scheduled.astimezone(tz).date())
        if record.get("outcome") == "missed":
            reason = record.get("reason") or "unknown"
            r["missed"][reason] = r["missed"].get(reason, 0) + 1
            continue
        played = record.get("played_s") or 0.0
        if played <= 0:
            continue
        play = (record.get("item"), record.get("scheduled_at"), record.get("play_no"))
        r["_plays"].add(play)
        if record.get("outcome") == "completed":
            r["_completed"].add(play)
        r["played_s"] += played
        r["audio_inside_s"] += audio_inside_of(record, points, schedule.areas[area_id])
    for area_id, area in schedule.areas.items():
        for day, seconds in time_inside_by_day(points, area, tz).items():
            row(area_id, day)["time_inside_s"] += seconds
    return [_finish(rows[key]) for key in sorted(rows, key=lambda k: (k[1], k[0]))]


def _finish(row: dict) -> dict:
    row["plays"], row["completed"] = len(row.pop("_plays")), len(row.pop("_completed"))
    for name in ("played_s", "audio_inside_s", "time_inside_s"):
        row[name] = round(row[name], 1)
    return row
