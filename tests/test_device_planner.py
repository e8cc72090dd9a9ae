"""The planner on a hand-driven clock: steps forward and back, restarts, coalescing."""

import json
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from device.clockwatch import ClockWatch
from device.planner import Planner
from scheduler import parse_schedule
from tests.support.clock import ManualClock

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
T = datetime(2026, 11, 30, 6, 0, tzinfo=TZ)
LEAD_S = 4.0


def schedule(items, version=1):
    return parse_schedule(json.dumps({
        "type": "schedule", "id": "dak-lak/2026-w48", "version": version, "targets": ["unit:u-01"],
        "issued_at": "2026-11-26T08:00:00+07:00", "valid_from": "2026-11-29", "valid_until": "2026-12-06",
        "timezone": "Asia/Ho_Chi_Minh", "media": {}, "items": items}))


class Recorder:
    def __init__(self):
        self.played, self.missed = [], []

    def submit(self, occ):
        self.played.append(occ.key)

    def submit_missed(self, occ, reason):
        self.missed.append((occ.key, reason))


def planner(tmp_path, clock, docs, rec):
    p = Planner(clock=clock, lead_s=LEAD_S, submit=rec.submit, submit_missed=rec.submit_missed,
                schedules_in_force=lambda: docs, fired_path=tmp_path / "fired.json", lateness_s=600)
    p.replan()
    return p


def test_fires_lead_seconds_before_the_item_once(tmp_path):
    clock, rec = ManualClock(T - timedelta(seconds=30)), Recorder()
    p = planner(tmp_path, clock, [schedule([{"id": "sang", "play": ["chime"], "at": "06:00"}])], rec)
    assert p.tick() == 26.0  # seconds until 06:00 minus the lead
    clock.advance(25.9)
    p.tick()
    assert rec.played == []
    clock.advance(0.1)
    p.tick()
    p.tick()
    assert rec.played == ["dak-lak/2026-w48|sang|2026-11-30T06:00:00+07:00"]


def test_clock_stepped_forward_and_back_around_an_item_plays_it_once(tmp_path):
    clock, rec = ManualClock(T - timedelta(seconds=20)), Recorder()
    docs = [schedule([{"id": "sang", "play": ["chime"], "at": "06:00"}])]
    p = planner(tmp_path, clock, docs, rec)
    p.tick()
    clock.step(+90)           # NTP corrects forward past the item: it is due (late, not lost)
    p.clock_stepped()
    p.tick()
    assert len(rec.played) == 1
    clock.step(-120)          # and back again before 06:00: the item's time comes round again
    p.replan()                # as after a trust change or a new document
    for _ in range(60):
        clock.advance(1)
        p.tick()
    assert len(rec.played) == 1 and rec.missed == []
    # a restart with the clock before the item still does not play it again
    again = planner(tmp_path, clock, docs, rec)
    clock.step(-50)
    again.replan()
    for _ in range(60):
        clock.advance(1)
        again.tick()
    assert len(rec.played) == 1


def test_a_big_forward_step_coalesces_instead_of_a_burst(tmp_path):
    items = [{"id": f"tin-{m:02d}", "play": ["chime"], "at": f"06:{m:02d}"} for m in (0,)]
    items += [{"id": "gio", "play": ["chime"], "at": "06:00", "days": ["mon"]}]
    clock, rec = ManualClock(T - timedelta(days=1, seconds=10)), Recorder()
    p = planner(tmp_path, clock, [schedule(items)], rec)
    clock.step(timedelta(days=1, minutes=3).total_seconds())  # a day and 3 minutes forward
    p.tick()
    # `tin-00` fell due twice (29 Nov and 30 Nov): the older is reported, only the latest plays.
    assert [k.split("|")[1:] for k in rec.played] == [["tin-00", "2026-11-30T06:00:00+07:00"],
                                                     ["gio", "2026-11-30T06:00:00+07:00"]]
    assert [(k.split("|")[2], "coalesced" in why) for k, why in rec.missed] == \
        [("2026-11-29T06:00:00+07:00", True)]


def test_a_unit_started_late_still_hands_over_within_the_lateness_limit(tmp_path):
    (tmp_path / "fired.json").write_text("{}")  # the run that stored the document wrote its ledger
    clock, rec = ManualClock(T + timedelta(minutes=3)), Recorder()
    p = planner(tmp_path, clock, [schedule([{"id": "sang", "play": ["chime"], "at": "06:00"}])], rec)
    p.tick()
    assert len(rec.played) == 1  # the player decides: 3 minutes late is within 10


def test_a_new_version_that_keeps_a_played_item_does_not_play_it_again(tmp_path):
    """v1's 06:00 `sang` played; v2 (another item added, `sang` still at 06:00) is accepted
    at 06:02:50, within the lateness limit: the same play, not handed over twice."""
    clock, rec = ManualClock(T - timedelta(seconds=10)), Recorder()
    docs = [schedule([{"id": "sang", "play": ["chime"], "at": "06:00"}])]
    p = planner(tmp_path, clock, docs, rec)
    clock.advance(10)
    p.tick()
    assert len(rec.played) == 1
    clock.advance(170)
    docs[:] = [schedule([{"id": "sang", "play": ["chime"], "at": "06:00"},
                         {"id": "chieu", "play": ["chime"], "at": "17:00"}], version=2)]
    p.replan()
    p.tick()
    assert len(rec.played) == 1 and rec.missed == []


def test_a_ledger_from_an_earlier_release_still_stops_a_replay(tmp_path):
    """Earlier releases keyed the ledger with the version too: read after an update, it
    still says the 06:00 play happened."""
    (tmp_path / "fired.json").write_text(json.dumps(
        {"dak-lak/2026-w48|1|sang|2026-11-30T06:00:00+07:00": "2026-11-30T06:00:00+07:00"}))
    clock, rec = ManualClock(T + timedelta(minutes=3)), Recorder()
    p = planner(tmp_path, clock, [schedule([{"id": "sang", "play": ["chime"], "at": "06:00"}])], rec)
    p.tick()
    assert rec.played == [] and rec.missed == []


def test_clock_watch_sees_steps_and_trust_changes():
    clock = ManualClock(T, source="system")
    steps, changes = [], []
    watch = ClockWatch(clock, "auto", on_step=steps.append, on_change=lambda o, n: changes.append((o, n)))
    assert watch.source() == "untrusted" and not watch.trusted
    clock.advance(1.0)
    watch.check()
    assert steps == []
    clock.step(-3600)
    clock.set_source("ntp")
    watch.check()
    assert steps == [-3600] and changes == [("untrusted", "ntp")] and watch.trusted
    always = ClockWatch(ManualClock(T, source="system"), "always")
    assert always.source() == "system" and always.trusted


class StallingClock(ManualClock):
    """The thread loses the CPU for `stall_s` right after each wall clock read."""

    def __init__(self, start):
        super().__init__(start)
        self.stall_s = 0.0

    def time(self) -> float:
        wall = super().time()
        self.advance(self.stall_s)
        return wall


def test_clock_watch_takes_a_late_read_for_no_step():
    clock = StallingClock(T)
    steps = []
    watch = ClockWatch(clock, "auto", on_step=steps.append)
    clock.stall_s = 5.0  # every try stalls: wall minus monotonic read naively would look 5 s back
    clock.advance(1.0)
    watch.check()
    clock.stall_s = 0.0
    clock.advance(1.0)
    watch.check()
    assert steps == []
    clock.step(30)
    watch.check()
    assert steps == [30]
