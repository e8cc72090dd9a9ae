"""The vehicle's area step, pure, driven second by second along a simulated route: entry
after 3 fixes, jitter at the boundary without a double play, a repeat no sooner than
every_s, a dead zone (left after 10 s, every_s not reset on re-entry), a restart inside the
area that does not play early, max_plays, exit; the ignition rule and the no-fix record."""

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from hw.sim.route import Route, offset, parse_faults
from scheduler import parse_schedule
from scheduler.area_plan import AreaPlanState, Fix
from scheduler.area_unit import AreaController
from scheduler.track import TrackRecorder
from tests.test_scheduler_area_items import area_doc
from tests.test_scheduler_document import dump

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
T0 = datetime(2026, 11, 30, 7, 0, tzinfo=TZ)  # a Monday, the window's start
M_PER_DEG = 111_195.0
LAT0, LON0 = 12.60, 108.05
CENTRE = LAT0 + 1000 / M_PER_DEG


def schedule_with(**changes):
    doc = area_doc(every_s=300, max_plays=3, **changes)
    doc["areas"]["bong-krang"] = {"circle": {"lat": CENTRE, "lon": LON0, "r_m": 300}}
    return parse_schedule(dump(doc))


def fix_at(route, faults, t: float) -> Fix | None:
    point = route.at(t)
    lat, lon = point.lat, point.lon
    for fault in faults:
        if fault.active(t):
            if fault.kind == "lost":
                return Fix(0.0, 0.0, t, quality=0)  # sentences go on, with no fix
            lat, lon = offset(lat, lon, fault.shift(t), fault.bearing_deg)
    return Fix(lat, lon, t, quality=1, hdop=0.9)


class Drive:
    """Steps a controller once a second; the 'player' starts each requested play at once."""

    def __init__(self, schedule, **options):
        self.schedule, self.options = schedule, options
        self.controller = self._controller(AreaPlanState())
        self.plays, self.events, self.missed, self.points = [], [], [], []

    def _controller(self, state):
        controller = AreaController(state, TrackRecorder(new_id=lambda: "b"), **self.options)
        controller.set_schedules([self.schedule])
        return controller

    def restart(self):
        self.points += [p for b in self.controller.track.flush() for p in b["points"]]
        self.controller = self._controller(AreaPlanState.from_json(self.controller.state.to_json()))

    def run(self, route, faults, start: int, end: int, **step):
        for t in range(start, end):
            fix = fix_at(route, faults, t)
            now = T0 + timedelta(seconds=t)
            actions = self.controller.step(fix, now=now, mono=t, speed_kmh=36.0, **step)
            self.events += [(t, e.kind) for e in actions.events]
            self.missed += [(t, m.reason) for m in actions.missed]
            self.points += [p for b in actions.batches for p in b["points"]]
            for play in actions.plays:
                if self.controller.recheck(play.window, fix, t, step.get("ignition")) is None:
                    self.plays.append((t, self.controller.play_started(play.window, now)))
                else:
                    self.controller.play_dropped(play.window)


def test_a_drive_through_the_area():
    # 10 m/s north: 700 m (the edge) at t=70; parked at the centre 100..1600; out at ~1630
    route = Route.from_waypoints([(LAT0, LON0, 36), (CENTRE, LON0, 36, 1500), (CENTRE + 1000 / M_PER_DEG, LON0, 0)])
    faults = parse_faults("jitter@64+8=40,lost@400+60")
    drive = Drive(schedule_with())
    drive.run(route, faults, -10, 500)
    drive.restart()  # kill -9 at t=500, inside the area
    drive.run(route, faults, 500, 2000)
    assert [t for t, _ in drive.plays] == [74, 374, 674]  # 3 fixes inside once the jitter ends; every_s; max_plays
    assert [n for _, n in drive.plays] == [1, 2, 3]
    assert drive.events == [(74, "area.entered"), (409, "area.left"), (462, "area.entered"),
                            (502, "area.entered"), (1633, "area.left")]
    # re-entering at 462 and the restart's re-entry at 502 do not play early: play 3 waits for 674
    assert drive.missed == []
    kept = [p[0] - int(T0.timestamp()) for p in drive.points]
    assert kept == sorted(kept) and not [t for t in kept if 400 <= t < 460]  # no point without a fix


def test_jitter_alone_at_the_boundary_never_plays():
    edge = CENTRE - 300 / M_PER_DEG
    route = Route.from_waypoints([(edge, LON0, 0)])
    drive = Drive(schedule_with())
    drive.run(route, parse_faults("jitter@0+600=20"), 0, 600)
    assert drive.plays == [] and drive.events == []


def test_ignition_off_skips_plays_once_per_every_s_and_emergencies_still_play():
    route = Route.from_waypoints([(CENTRE, LON0, 0)])
    drive = Drive(schedule_with())
    drive.run(route, (), 0, 700, ignition=False)
    assert drive.plays == [] and drive.missed == [(2, "ignition off"), (302, "ignition off"), (602, "ignition off")]
    drive.run(route, (), 700, 1000, ignition=True)
    assert drive.plays == [(902, 1)]  # every_s from the last skipped slot
    urgent = Drive(schedule_with(priority="emergency"))
    urgent.run(route, (), 0, 10, ignition=False)
    assert urgent.plays == [(2, 1)]
    allowed = Drive(schedule_with(), play_with_ignition_off=True)
    allowed.run(route, (), 0, 10, ignition=False)
    assert allowed.plays == [(2, 1)]


def test_quiet_hours_hold_plays_back_without_a_record():
    route = Route.from_waypoints([(CENTRE, LON0, 0)])
    drive = Drive(schedule_with())
    drive.run(route, (), 0, 100, quiet=True)
    drive.run(route, (), 100, 110, quiet=False)
    assert drive.plays == [(100, 1)] and drive.missed == []


def test_no_fix_through_the_whole_window_is_one_missed_record_at_its_end():
    drive = Drive(schedule_with(**{"from": "07:00", "until": "07:10"}))
    route = Route.from_waypoints([(CENTRE, LON0, 0)])
    drive.run(route, parse_faults("lost@0+700"), 0, 700)
    assert drive.missed == [(600, "no GPS fix")] and drive.plays == []
    with_fix = Drive(schedule_with(**{"from": "07:00", "until": "07:10"}))
    with_fix.run(Route.from_waypoints([(LAT0, LON0, 0)]), (), 0, 700)  # outside the area all along
    assert with_fix.missed == [] and with_fix.plays == []


def test_a_queued_play_is_asked_for_once_and_dropped_when_outside_at_the_recheck():
    schedule = schedule_with()
    controller = AreaController()
    controller.set_schedules([schedule])
    requests = []
    for t in range(0, 6):
        fix = Fix(CENTRE, LON0, t, quality=1)
        requests += controller.step(fix, now=T0 + timedelta(seconds=t), mono=t).plays
    assert len(requests) == 1  # still queued: not asked again
    window = requests[0].window
    assert controller.recheck(window, None, 6) == "no GPS fix"
    controller.play_dropped(window)
    again = controller.step(Fix(CENTRE, LON0, 6, quality=1), now=T0 + timedelta(seconds=6), mono=6)
    assert [p.play_no for p in again.plays] == [1]


def test_an_area_withdrawn_while_inside_is_left():
    controller = AreaController()
    controller.set_schedules([schedule_with()])
    for t in range(3):
        controller.step(Fix(CENTRE, LON0, t, quality=1), now=T0 + timedelta(seconds=t), mono=t)
    assert controller.inside("dak-lak/2026-w48", "bong-krang")
    [event] = controller.set_schedules([])
    assert (event.kind, event.area_id) == ("area.left", "bong-krang") and controller.state.counters == {}


@pytest.mark.parametrize("step_s", [1, 2])
def test_the_counters_are_saved_when_they_change(step_s):
    controller = AreaController()
    controller.set_schedules([schedule_with()])
    changed = []
    for t in range(0, 20, step_s):
        actions = controller.step(Fix(CENTRE, LON0, t, quality=1), now=T0 + timedelta(seconds=t), mono=t)
        for play in actions.plays:
            controller.play_started(play.window, T0 + timedelta(seconds=t))
        changed.append(actions.changed)
    assert changed[0] is True and not any(changed[-3:])
