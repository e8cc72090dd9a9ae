"""Area reports, pure: per schedule, area, local day and vehicle, the plays (a resumed play
counted once), the audio heard inside the area cut by the track, and the time spent in it."""

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from fleet.area_report import area_rows, audio_inside_of
from scheduler import parse_schedule
from tests.test_scheduler_area_items import area_doc
from tests.test_scheduler_document import dump

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
T0 = datetime(2026, 11, 30, 7, 0, tzinfo=TZ)  # the window's start
M_PER_DEG = 111_195.0


def track():
    """North along lon 108.05 from 12.68 at 10 m/s: into bong-krang (12.69-12.71) at
    t=111.2 s, out at t=333.6 s."""
    return [[T0.timestamp() + t, 12.68 + 10 * t / M_PER_DEG, 108.05, 36.0] for t in range(0, 601, 30)]


def record(play_no, start_s, end_s, played_s, outcome="completed", **extra):
    return {"schedule": "dak-lak/2026-w48", "item": "luat-dat", "area": "bong-krang", "play_no": play_no,
            "scheduled_at": T0.isoformat(), "started_at": (T0 + timedelta(seconds=start_s)).isoformat(),
            "ended_at": (T0 + timedelta(seconds=end_s)).isoformat(), "played_s": played_s, "outcome": outcome,
            **extra}


def test_rows_per_area_and_day():
    schedule = parse_schedule(dump(area_doc()))
    logs = [record(1, 150, 250, 100),
            record(2, 300, 320, 20, "preempted"), record(2, 330, 410, 80, left_area=True),
            {**record(None, 420, 420, 0, "missed"), "reason": "ignition off"},
            {**record(None, 0, 0, 0, "missed"), "reason": "no GPS fix", "area": "yang-tao",
             "scheduled_at": (T0 + timedelta(days=1)).isoformat()},
            {**record(3, 0, 10, 10), "schedule": "another"}]
    rows = area_rows(schedule, "xe-mdrak-01", logs, track())
    assert [(r["area"], r["day"]) for r in rows] == [("bong-krang", "2026-11-30"), ("yang-tao", "2026-12-01")]
    day = rows[0]
    assert (day["unit"], day["plays"], day["completed"], day["missed"]) == ("xe-mdrak-01", 2, 2, {"ignition off": 1})
    assert day["played_s"] == 200
    assert day["audio_inside_s"] == pytest.approx(100 + 20 + 3.6, abs=0.3)
    assert day["time_inside_s"] == pytest.approx(333.6 - 111.2, abs=0.3)
    assert rows[1]["missed"] == {"no GPS fix": 1} and rows[1]["plays"] == 0 and rows[1]["time_inside_s"] == 0


def test_audio_inside_scales_a_fast_mock_speaker_to_audio_seconds():
    schedule = parse_schedule(dump(area_doc()))
    area = schedule.areas["bong-krang"]
    # 100 s of audio played in 10 s of wall time (mock speed 10), all inside
    assert audio_inside_of(record(1, 150, 160, 100), track(), area) == pytest.approx(100)
    assert audio_inside_of({"played_s": 5}, track(), area) == 0  # no times: nothing known
