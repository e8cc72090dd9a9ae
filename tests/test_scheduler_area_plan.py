"""Area-play maths, pure: the day's window, the 3-fix membership rule, every_s start to start,
max_plays per local day, numbered plays, counters that survive a restart, quiet hours,
the ignition rule, and the one `missed` "no GPS fix" record of a window without a fix."""

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings, strategies as st

from scheduler import parse_schedule
from scheduler.area_plan import (AreaPlanState, AreaStateError, AreaWatch, Fix, Membership, is_trusted, recheck,
                                 window_of_day, windows)
from scheduler.areas import Circle
from tests.test_scheduler_area_items import area_doc
from tests.test_scheduler_document import dump

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
MON = date(2026, 11, 30)  # validity is 2026-11-30 to 2026-12-06


def at(day: date, hh: int, mm: int = 0, ss: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hh, mm, ss, tzinfo=TZ)


@pytest.fixture
def schedule():
    return parse_schedule(dump(area_doc(days=["mon", "tue", "wed", "thu", "fri"], **{"except": ["2026-12-02"]})))


@pytest.fixture
def window(schedule):
    return window_of_day(schedule, schedule.item("luat-dat"), at(MON, 8))


# ---- windows ----

def test_the_occurrence_of_an_area_item_is_the_days_window(schedule, window):
    assert (window.start, window.end) == (at(MON, 7), at(MON, 11))
    assert window.occurrence.at == at(MON, 7) and window.occurrence.at.tzinfo == TZ
    assert window.key == f"{schedule.id}|luat-dat|2026-11-30T07:00:00+07:00"  # keys span versions (triggers.py)
    assert window.contains(at(MON, 7)) and window.contains(at(MON, 10, 59, 59)) and not window.contains(at(MON, 11))


def test_windows_follow_days_except_and_validity(schedule):
    found = windows(schedule, at(MON, 0) - timedelta(days=3), at(MON, 0) + timedelta(days=14))
    assert [w.day for w in found] == [date(2026, 11, 30), date(2026, 12, 1), date(2026, 12, 3), date(2026, 12, 4)]
    assert all(w.item.id == "luat-dat" for w in found)
    # a window overlapping the start of the range counts; one ended before it does not
    assert [w.day for w in windows(schedule, at(MON, 10), at(MON, 12))] == [MON]
    assert windows(schedule, at(MON, 11), at(MON, 12)) == []
    assert window_of_day(schedule, schedule.item("luat-dat"), at(date(2026, 12, 2), 8)) is None  # except


# ---- fixes and membership ----

NOW = 1000.0


@pytest.mark.parametrize("fix, trusted", [
    (Fix(12.7, 108.05, NOW, quality=1, hdop=0.9), True),
    (Fix(12.7, 108.05, NOW, quality=0, rmc_valid=True), True),
    (Fix(12.7, 108.05, NOW, rmc_valid=True), True),
    (Fix(12.7, 108.05, NOW, quality=0), False),
    (Fix(12.7, 108.05, NOW, quality=0, rmc_valid=False), False),
    (Fix(12.7, 108.05, NOW, quality=2, hdop=5.0), True),
    (Fix(12.7, 108.05, NOW, quality=2, hdop=5.1), False),
    (Fix(12.7, 108.05, NOW - 10, quality=1), True),
    (Fix(12.7, 108.05, NOW - 10.5, quality=1), False),
    (Fix(12.7, 108.05, NOW + 1, quality=1), False),  # from the future: the clocks disagree
    (None, False),
])
def test_trusted_fixes(fix, trusted):
    assert is_trusted(fix, NOW) is trusted


def good(t: float, inside: bool = True) -> Fix:
    return Fix(12.70 if inside else 12.80, 108.05, t, quality=1, hdop=1.0)


AREA = Circle(12.70, 108.05, 500)


def test_entering_takes_three_trusted_fixes_and_leaving_three_outside():
    m = Membership()
    assert [m.observe(good(t), True, t) for t in (1, 2, 3)] == [None, None, "entered"]
    assert [m.observe(good(t, False), False, t) for t in (4, 5)] == [None, None]
    assert m.observe(good(6), True, 6) is None and m.inside  # back inside: the streak starts again
    assert [m.observe(good(t, False), False, t) for t in (7, 8, 9)] == [None, None, "left"]


def test_an_untrusted_fix_breaks_a_streak_and_the_same_fix_counts_once():
    m = Membership()
    m.observe(good(1), True, 1)
    m.observe(good(2), True, 2)
    m.observe(Fix(12.70, 108.05, 3, quality=1, hdop=9.0), True, 3)  # HDOP 9: not trusted
    assert m.observe(good(4), True, 4) is None and not m.inside
    repeated = good(5)
    assert [m.observe(repeated, True, t) for t in (5, 5.5, 6)] == [None, None, None]  # one fix read 3 times
    assert m.observe(good(7), True, 7) == "entered"


def test_ten_seconds_without_a_trusted_fix_is_leaving():
    m = Membership()
    for t in (1, 2, 3):
        m.observe(good(t), True, t)
    assert m.inside
    assert m.tick(12.9) is None
    assert m.observe(Fix(0, 0, 13, quality=0), False, 13) == "left"  # untrusted fixes do not keep it inside


@settings(max_examples=200, deadline=None)
@given(st.lists(st.booleans(), min_size=1, max_size=200))
def test_jitter_never_flaps(sides):
    """However the fixes fall, every change of state has 3 agreeing trusted fixes before it."""
    m, run, last = Membership(), [], None
    for t, inside in enumerate(sides):
        event = m.observe(good(t, inside), inside, t)
        run = run + [inside] if run and run[-1] == inside else [inside]
        if event:
            assert len(run) >= 3 and run[-1] == (event == "entered")
            assert event != last
            last = event


def test_alternating_fixes_at_a_boundary_never_enter():
    m = Membership()
    assert all(m.observe(good(t, t % 2 == 0), t % 2 == 0, t) is None for t in range(100))


def test_area_watch_many_areas():
    watch = AreaWatch({("s", "near"): AREA, ("s", "far"): Circle(13.5, 108.05, 500)})
    events = [e for t in (1, 2, 3) for e in watch.observe(good(t), t)]
    assert events == [(("s", "near"), "entered")] and watch.inside(("s", "near")) and not watch.inside(("s", "far"))
    assert watch.tick(14) == [(("s", "near"), "left")]
    for t in (20, 21, 22):
        watch.observe(good(t), t)
    assert watch.set_areas({("s", "far"): Circle(13.5, 108.05, 500)}) == [(("s", "near"), "left")]


# ---- the decision ----

def test_the_first_play_inside_the_window(window):
    state = AreaPlanState()
    assert state.decide(window, at(MON, 6, 59), inside=True).reason == "outside the window"
    assert state.decide(window, at(MON, 8), inside=False).reason == "outside the area"
    decision = state.decide(window, at(MON, 8), inside=True)
    assert (decision.action, decision.play_no) == ("play", 1)
    assert state.started(window, at(MON, 8)) == 1


def test_every_s_start_to_start_not_reset_by_leaving(window):
    state = AreaPlanState()
    state.started(window, at(MON, 8))
    state.decide(window, at(MON, 8, 5), inside=False)  # drove out
    wait = state.decide(window, at(MON, 8, 10), inside=True)  # and back in, 10 min after the start
    assert (wait.action, wait.reason, wait.retry_at) == ("wait", "every_s since the last play", at(MON, 8, 15))
    assert state.decide(window, at(MON, 8, 14, 59), inside=True).action == "wait"
    assert state.decide(window, at(MON, 8, 15), inside=True).play_no == 2


def test_max_plays_per_local_day_then_a_new_day(schedule, window):
    state = AreaPlanState()
    for n, minute in enumerate((0, 15, 30, 45), start=1):
        assert state.decide(window, at(MON, 8, minute), inside=True).play_no == n
        state.started(window, at(MON, 8, minute))
    assert state.decide(window, at(MON, 10), inside=True).reason == "max_plays reached"
    tuesday = window_of_day(schedule, window.item, at(MON + timedelta(days=1), 8))
    assert state.decide(tuesday, at(MON + timedelta(days=1), 7), inside=True).play_no == 1


def test_counters_survive_a_restart_inside_the_area(window):
    state = AreaPlanState()
    state.started(window, at(MON, 8))
    state.attend(window, at(MON, 8), trusted_fix=True)
    text = state.to_json()
    restarted = AreaPlanState.from_json(text)
    assert restarted == state and restarted.to_json() == text
    assert restarted.decide(window, at(MON, 8, 1), inside=True).action == "wait"  # not again early
    assert restarted.decide(window, at(MON, 8, 15), inside=True).play_no == 2


@pytest.mark.parametrize("text", ["", "[]", '{"version": 2, "counters": {}}',
                                  '{"version": 1, "counters": {"a|b": {"day": "x", "plays": 0}}}',
                                  '{"version": 1, "counters": {"a|b": {"day": null, "plays": -1, "last_start": null,'
                                  ' "attended": false, "saw_fix": false, "closed": false}}}'])
def test_unreadable_counters_are_one_error(text):
    with pytest.raises(AreaStateError, match="^area counters: "):
        AreaPlanState.from_json(text)


def test_quiet_hours_hold_back_all_but_emergencies(schedule, window):
    state = AreaPlanState()
    assert state.decide(window, at(MON, 8), inside=True, quiet=True).reason == "quiet hours"
    emergency = parse_schedule(dump(area_doc(priority="emergency")))
    w = window_of_day(emergency, emergency.item("luat-dat"), at(MON, 8))
    assert state.decide(w, at(MON, 8), inside=True, quiet=True).action == "play"


def test_the_ignition_rule(window):
    state = AreaPlanState()
    skip = state.decide(window, at(MON, 8), inside=True, ignition=False)
    assert (skip.action, skip.reason) == ("skip", "ignition off")
    state.skipped(window, at(MON, 8))
    # one skipped record per every_s, and the skip is no play: max_plays still counts from 0
    assert state.decide(window, at(MON, 8, 5), inside=True, ignition=False).action == "wait"
    assert state.decide(window, at(MON, 8, 15), inside=True, ignition=True).play_no == 1
    assert state.decide(window, at(MON, 8, 15), inside=True, ignition=False,
                        play_with_ignition_off=True).action == "play"
    assert state.decide(window, at(MON, 8, 15), inside=True, ignition=None).action == "play"  # not fitted


def test_a_clock_stepped_back_far_does_not_block_plays(window):
    state = AreaPlanState()
    state.started(window, at(MON, 10))
    assert state.decide(window, at(MON, 8), inside=True).action == "play"  # 2 h back: not "every_s"


def test_no_fix_through_a_whole_window_is_one_missed_record(schedule, window):
    state = AreaPlanState()
    for minute in range(0, 240, 10):
        state.attend(window, at(MON, 7) + timedelta(minutes=minute), trusted_fix=False)
    assert state.close(window, at(MON, 10, 59)) is None  # not over yet
    assert state.close(window, at(MON, 11)) == "no GPS fix"
    assert state.close(window, at(MON, 11, 5)) is None  # once
    # a fix at some point, or a play, or a unit that was off: no record
    for setup in ("fix", "play", "off"):
        s = AreaPlanState()
        if setup != "off":
            s.attend(window, at(MON, 8), trusted_fix=setup == "fix")
        if setup == "play":
            s.started(window, at(MON, 8))
        assert s.close(window, at(MON, 11)) is None, setup


def test_recheck_before_a_queued_or_resumed_play(window):
    item = window.item
    assert recheck(item, inside=True, trusted_fix=True) is None
    assert recheck(item, inside=False, trusted_fix=True) == "outside the area"
    assert recheck(item, inside=True, trusted_fix=False) == "no GPS fix"
    assert recheck(item, inside=True, trusted_fix=True, ignition=False) == "ignition off"
    assert recheck(item, inside=True, trusted_fix=True, ignition=False, play_with_ignition_off=True) is None


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 900), st.booleans()), min_size=1, max_size=120),
       st.integers(1, 1800), st.integers(1, 6))
def test_plays_are_every_s_apart_and_at_most_max_plays_a_day(steps, every_s, max_plays):
    schedule = parse_schedule(dump(area_doc(every_s=every_s, max_plays=max_plays, **{"from": "00:00",
                                                                                     "until": "23:59"})))
    item = schedule.item("luat-dat")
    state, now, starts = AreaPlanState(), at(MON, 0), []
    for gap, inside in steps:
        now += timedelta(seconds=gap)
        window = window_of_day(schedule, item, now)
        if window is None:
            continue
        decision = state.decide(window, now, inside=inside)
        if decision.action == "play":
            assert decision.play_no == state.started(window, now)
            starts.append(now)
            state = AreaPlanState.from_json(state.to_json())  # a restart after every play
    for a, b in zip(starts, starts[1:]):
        assert (b - a).total_seconds() >= every_s
    per_day = {}
    for s in starts:
        per_day[s.date()] = per_day.get(s.date(), 0) + 1
    assert all(n <= max_plays for n in per_day.values())
