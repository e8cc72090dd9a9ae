"""A full, read-only or damaged state disk never silences a unit, never plays an item
twice and never drops a record silently: the planner's ledger, the other state files,
and the storage monitor, with faults injected where the code writes."""

import errno
import json
from datetime import timedelta

import pytest

from device.journal import PlaybackJournal
from device.planner import Planner
from device.storage import StorageMonitor
from tests.support.clock import ManualClock
from tests.support.disk import FaultyDisk
from tests.test_device_planner import LEAD_S, T, Recorder, planner, schedule

TWO_ITEMS = [{"id": "sang", "play": ["chime"], "at": "06:00"},
             {"id": "trua", "play": ["chime"], "at": "06:01"}]
FAULTS = [pytest.param(errno.ENOSPC, False, id="ENOSPC"), pytest.param(errno.EROFS, False, id="EROFS"),
          pytest.param(errno.ENOSPC, True, id="short-write")]


def make_planner(tmp_path, clock, docs, rec, **hooks):
    p = Planner(clock=clock, lead_s=LEAD_S, submit=rec.submit, submit_missed=rec.submit_missed,
                schedules_in_force=lambda: docs, fired_path=tmp_path / "fired.json", lateness_s=600, **hooks)
    p.replan()
    return p


def fire_both(tmp_path, clock, docs, rec):
    p = planner(tmp_path, clock, docs, rec)
    for _ in range(90):
        clock.advance(1)
        p.tick()
    return p


@pytest.mark.parametrize("error, short", FAULTS)
def test_an_occurrence_is_handed_over_when_its_ledger_cannot_be_saved(tmp_path, error, short):
    docs = [schedule(TWO_ITEMS)]
    clock, rec, failed = ManualClock(T - timedelta(seconds=10)), Recorder(), []
    (tmp_path / "fired.json").write_text("{}")
    with FaultyDisk(tmp_path, error, short=short) as disk:
        p = make_planner(tmp_path, clock, docs, rec, on_save_failed=lambda what, exc: failed.append((what, exc.errno)))
        for _ in range(90):
            clock.advance(1)
            p.tick()
        # Both played, although no write reached the disk; the fault was reported each time.
        assert [k.split("|")[1] for k in rec.played] == ["sang", "trua"] and rec.missed == []
        assert failed and all(what == "fired.json" for what, _ in failed)
        assert json.loads((tmp_path / "fired.json").read_text()) == {}  # the old file, never half
        assert p.unsaved
        disk.heal()
        p.retry_save()  # what the storage monitor calls once the disk takes writes again
    assert not p.unsaved
    assert sorted(json.loads((tmp_path / "fired.json").read_text())) == sorted(rec.played)
    # A restart with the clock back before both plays neither again.
    clock.step(-100)
    rec2 = Recorder()
    again = make_planner(tmp_path, clock, docs, rec2)
    for _ in range(100):
        clock.advance(1)
        again.tick()
    assert rec2.played == [] and rec2.missed == []


@pytest.mark.parametrize("damage", [
    pytest.param(lambda text: text[: len(text) // 2], id="truncated"),
    pytest.param(lambda text: "\0" * 40, id="zeroed"),
    pytest.param(lambda text: "[1, 2]", id="wrong-shape"),
    pytest.param(None, id="deleted"),
])
def test_a_damaged_or_lost_ledger_replays_nothing_due_before_the_start(tmp_path, damage):
    docs = [schedule(TWO_ITEMS)]
    clock, rec = ManualClock(T - timedelta(seconds=10)), Recorder()
    fire_both(tmp_path, clock, docs, rec)
    assert len(rec.played) == 2
    ledger = tmp_path / "fired.json"
    if damage is None:
        ledger.unlink()
    else:
        ledger.write_text(damage(ledger.read_text()))
    # The unit restarts two minutes after the second item: both are within the lateness limit.
    clock.advance(60)
    corrupt, again = [], Recorder()
    recorded = {rec.played[1]}  # the second one's playlog still waits in the outbox
    p = make_planner(tmp_path, clock, docs, again, on_corrupt=lambda path, moved_to, why: corrupt.append(moved_to),
                     already_recorded=lambda occs: {o.key for o in occs} & recorded)
    for _ in range(5):
        clock.advance(1)
        p.tick()
    assert again.played == []  # the old code played both again
    # The first has no playlog waiting: it is reported missed ("in doubt"), never dropped.
    assert [(key, "in doubt" in why) for key, why in again.missed] == [(rec.played[0], True)]
    assert sorted(json.loads(ledger.read_text())) == sorted(rec.played)  # a good ledger again
    if damage is None:
        assert corrupt == []
    else:
        assert len(corrupt) == 1 and corrupt[0].name.startswith("fired.json.corrupt-")
        assert corrupt[0].exists()  # kept for inspection


def test_a_journal_write_that_fails_never_stops_the_playback(tmp_path):
    failed = []
    journal = PlaybackJournal(tmp_path / "playback.journal",
                              on_write_failed=lambda what, exc: failed.append((what, exc.errno)))
    with FaultyDisk(tmp_path, errno.ENOSPC):
        journal.begin({"id": "r-1", "item": "sang", "outcome": "interrupted"})
        journal.progress(3.0, 100.0)
        journal.end()
    assert failed == [("playback.journal", errno.ENOSPC)] * 2


def test_a_damaged_journal_is_set_aside_and_reported(tmp_path):
    path = tmp_path / "playback.journal"
    path.write_text('{"id": "r-1", "item": "sa')
    seen = []
    journal = PlaybackJournal(path, on_corrupt=lambda p, moved_to, why: seen.append(moved_to))
    assert journal.recover() is None
    assert not path.exists() and seen[0].read_text() == '{"id": "r-1", "item": "sa'


class Events(list):
    def __call__(self, kind, detail, **extra):
        self.append((kind, detail))

    def kinds(self):
        return [kind for kind, _ in self]


def test_storage_full_is_reported_on_entering_and_every_hour_then_recovered(tmp_path):
    clock, events, retried = ManualClock(T), Events(), []
    monitor = StorageMonitor(tmp_path, clock=clock, on_event=events, low_mb=0)
    monitor.on_writable.append(lambda: retried.append(clock.time()))
    assert monitor.check() == "ok" and events == []
    with FaultyDisk(tmp_path, errno.ENOSPC) as disk:
        monitor.write_failed("fired.json", OSError(errno.ENOSPC, "No space left on device"))
        assert monitor.check() == "full"
        assert events.kinds() == ["storage.full"] and "fired.json" in events[0][1]
        assert monitor.faults() == ["storage.full: not stored: fired.json"]
        clock.advance(1800)
        monitor.check()
        assert events.kinds() == ["storage.full"]  # not more often than hourly
        for hour in range(1, 4):
            clock.advance(1800)
            monitor.check()
            clock.advance(1800)
            monitor.check()
            assert events.kinds() == ["storage.full"] * (1 + hour)
        disk.heal()
        before = len(retried)
        assert monitor.check() == "ok"
    assert events.kinds()[-1] == "storage.recovered" and monitor.faults() == []
    assert len(retried) == before + 1  # the parts write what waited


def test_a_read_only_disk_is_storage_readonly(tmp_path):
    clock, events = ManualClock(T), Events()
    monitor = StorageMonitor(tmp_path, clock=clock, on_event=events, low_mb=0)
    with FaultyDisk(tmp_path, errno.EROFS):
        monitor.write_failed("playback.journal", OSError(errno.EROFS, "Read-only file system"))
        assert monitor.check() == "readonly"
    assert events.kinds() == ["storage.readonly"]
    assert monitor.check() == "ok" and events.kinds()[-1] == "storage.recovered"


def test_low_space_is_storage_low_and_repeats_hourly(tmp_path):
    clock, events = ManualClock(T), Events()
    monitor = StorageMonitor(tmp_path, clock=clock, on_event=events, low_mb=10 ** 9)  # always "low"
    assert monitor.check() == "low"
    clock.advance(3600)
    monitor.check()
    assert events.kinds() == ["storage.low", "storage.low"]


def test_a_restart_while_the_disk_still_refuses_the_ledger_replays_nothing(tmp_path):
    docs = [schedule(TWO_ITEMS)]
    clock, rec = ManualClock(T - timedelta(seconds=10)), Recorder()
    (tmp_path / "fired.json").write_text("{}")
    with FaultyDisk(tmp_path, errno.EROFS):
        fire_both(tmp_path, clock, docs, rec)  # played, but the ledger on disk is still {}
        assert len(rec.played) == 2 and json.loads((tmp_path / "fired.json").read_text()) == {}
        clock.advance(60)
        again = Recorder()
        p = make_planner(tmp_path, clock, docs, again)  # the watchdog restarted the unit
        for _ in range(5):
            clock.advance(1)
            p.tick()
    assert again.played == []
    assert sorted(key for key, why in again.missed if "in doubt" in why) == sorted(rec.played)
