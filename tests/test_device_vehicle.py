"""The unit's area loop (device/vehicle.py) on a hand-moved clock: counters saved
atomically and read back (a damaged file set aside), a failed save kept and retried,
`left_area` when the vehicle drives out mid-play, the ignition re-check, a loop that
never dies."""

import errno
import json
from datetime import datetime
from zoneinfo import ZoneInfo


from device.vehicle import STATE_FILE, AreaRunner
from loaxa import fsio
from scheduler import parse_schedule
from scheduler.area_plan import Fix
from tests.support.clock import ManualClock
from tests.test_scheduler_area_items import area_doc
from tests.test_scheduler_document import dump

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
LAT, LON = 12.70, 108.10
OUTSIDE = LAT + 0.01  # ~1.1 km north


class Car:
    """The runner's surroundings: a GPS fix the test sets, and what the runner did."""

    def __init__(self, tmp_path, start=datetime(2026, 11, 30, 7, 0, 5, tzinfo=TZ), **options):
        doc = area_doc(every_s=60, max_plays=3)
        doc["areas"]["bong-krang"] = {"circle": {"lat": LAT, "lon": LON, "r_m": 300}}
        self.schedule = parse_schedule(dump(doc))
        self.clock = ManualClock(start)
        self.lat, self.ignition = LAT, True
        self.plays, self.missed, self.events, self.batches, self.corrupt, self.save_failed = [], [], [], [], [], []
        self.tmp_path = tmp_path
        self.options = options
        self.runner = self.make()

    def make(self):
        return AreaRunner(
            clock=self.clock, gps_fix=self.fix, schedules_in_force=lambda: [self.schedule],
            submit=lambda occ, schedule, play: self.plays.append(play),
            report_missed=lambda window, reason: self.missed.append(reason),
            event=lambda kind, detail, **extra: self.events.append(kind), track=self.batches.append,
            state_dir=self.tmp_path, ignition=lambda: self.ignition,
            on_corrupt=lambda path, moved, why: self.corrupt.append(moved),
            on_save_failed=lambda what, exc: self.save_failed.append(exc.errno), **self.options)

    def fix(self):
        return None if self.lat is None else Fix(self.lat, LON, self.clock.monotonic(), quality=1, hdop=1.0)

    def drive(self, seconds: int):
        for _ in range(seconds):
            self.clock.advance(1.0)
            self.runner.step()


def test_a_play_starts_counts_and_survives_a_restart(tmp_path):
    car = Car(tmp_path)
    car.drive(4)
    assert car.events == ["area.entered"] and len(car.plays) == 1
    play = car.plays[0]
    assert play.before_start(car.clock.now(), resumed=False) is None and play.play_no == 1
    saved = json.loads((tmp_path / STATE_FILE).read_text())
    assert saved["counters"]["dak-lak/2026-w48|luat-dat"]["plays"] == 1
    car.runner.finished(play)
    restarted = car.make()  # a restart inside the area: no play before every_s
    car.runner = restarted
    car.drive(30)
    assert len(car.plays) == 1
    car.drive(35)
    assert len(car.plays) == 2


def test_leaving_mid_play_marks_left_area(tmp_path):
    car = Car(tmp_path)
    car.drive(4)
    play = car.plays[0]
    play.before_start(car.clock.now(), resumed=False)
    car.lat = OUTSIDE
    car.drive(4)
    assert car.events == ["area.entered", "area.left"] and play.left_area is True
    assert car.batches  # the area event sealed the track up to it


def test_the_recheck_drops_a_play_outside_and_skips_one_with_the_ignition_off(tmp_path):
    car = Car(tmp_path)
    car.drive(4)
    car.lat = OUTSIDE
    car.drive(3)
    assert car.plays[0].before_start(car.clock.now(), resumed=False) == "outside the area"
    car.lat = LAT
    car.drive(4)
    assert len(car.plays) == 2  # asked again once inside
    car.ignition = False
    assert car.plays[1].before_start(car.clock.now(), resumed=False) == "ignition off"
    car.drive(5)
    assert len(car.plays) == 2 and car.missed == []  # every_s restarted by the skip; no second record


def test_a_damaged_state_file_is_set_aside(tmp_path):
    (tmp_path / STATE_FILE).write_text("{not json")
    car = Car(tmp_path)
    assert car.corrupt and car.corrupt[0].name.startswith(f"{STATE_FILE}.corrupt-")
    car.drive(4)
    assert len(car.plays) == 1  # fresh counters: the vehicle still plays


def test_a_full_disk_keeps_the_counters_and_saves_them_later(tmp_path):
    car = Car(tmp_path)
    full = {"on": True}

    def hook(path, data):
        if full["on"] and path.name == STATE_FILE:
            raise OSError(errno.ENOSPC, "No space left on device")
    fsio.set_fault_hook(hook)
    try:
        car.drive(4)
        car.plays[0].before_start(car.clock.now(), resumed=False)
        assert errno.ENOSPC in car.save_failed and not (tmp_path / STATE_FILE).exists()
        full["on"] = False
        car.drive(1)
        assert json.loads((tmp_path / STATE_FILE).read_text())["counters"]
    finally:
        fsio.set_fault_hook(None)


def test_the_loop_outlives_a_failing_gps(tmp_path):
    car = Car(tmp_path, step_s=0.01)
    calls = []

    def broken():
        calls.append(1)
        raise RuntimeError("receiver gone mad")
    car.runner._gps_fix = broken
    car.runner.start()
    try:
        from tests.support.waiting import wait_until
        wait_until(lambda: len(calls) >= 3, 5, what="three steps")
        assert car.runner.is_alive()
    finally:
        car.runner.stop()
        car.runner.stop()  # safe twice
