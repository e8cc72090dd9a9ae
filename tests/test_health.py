"""Health reports: when they go out, what counts as a change, the daily data budget, the probes."""

import json
import time
from datetime import datetime, timedelta, timezone

import pytest

from device.health import (DEFAULT_BUDGET_BYTES, HEALTH_FIELDS, HealthReporter, HealthRunner, change_reasons,
                           significant_change)
from tests.support.waiting import wait_until

ICT = timezone(timedelta(hours=7))
T0 = datetime(2026, 11, 30, 5, 0, tzinfo=ICT)
DAY = 86400


class Unit:
    """What the daemon's probes would say; tests change it between samples."""

    def __init__(self):
        self.state = {"uptime_s": 1234567, "cpu_temp_c": 52.1, "mem_free_mb": 612, "disk_free_mb": 10234,
                      "clock": "ntp", "amp": {"power": True, "fault": False, "temp_c": 41.5, "volume": 80},
                      "net": {"signal_dbm": -87, "operator": "Viettel"},
                      "gps": {"lat": 12.412345, "lon": 108.034567, "fix": True}, "queue": 2,
                      "next": {"item": "bt-giam-ngheo-sang", "at": "2026-11-30T06:00:00+07:00"}, "faults": []}

    def probes(self):
        return {name: (lambda name=name: self.state[name]) for name in HEALTH_FIELDS}


def sample(reporter, t):
    report = reporter.next_report(t, T0 + timedelta(seconds=t))
    if report is not None:
        reporter.sent(t, report)
    return report


# ---- the document and the budget ----

def test_typical_document_and_the_daily_budget():
    reporter = HealthReporter(Unit().probes())
    report = reporter.next_report(0.0, T0)
    doc = json.loads(report.payload)
    assert list(doc) == ["ts"] + list(HEALTH_FIELDS)
    assert doc["ts"] == "2026-11-30T05:00:00+07:00" and doc["amp"]["volume"] == 80
    assert 340 <= report.size <= 400  # 375 bytes: the figure the module's budget is worked out from
    per_report = report.size + reporter.overhead_bytes
    heartbeats = DAY // reporter.interval_s + 1
    changes = reporter.burst + DAY // reporter.refill_s
    worst = (heartbeats + changes) * per_report
    assert (heartbeats, changes) == (289, 29)
    assert worst <= 150 * 1024, worst
    assert heartbeats * per_report < 0.85 * 150 * 1024  # the heartbeat alone leaves room for changes


def test_a_day_of_flapping_faults_stays_within_budget():
    unit = Unit()
    reporter = HealthReporter(unit.probes())
    sent, t = [], 0
    while t < 2 * DAY:
        unit.state["amp"] = dict(unit.state["amp"], fault=(t // 15) % 2 == 1)  # flips every sample
        unit.state["faults"] = [f"fault-{t // 600}"]  # a new fault every 10 minutes
        report = sample(reporter, t)
        if report:
            sent.append((t, report.kind, report.size + reporter.overhead_bytes))
        t += 15
    for start in range(0, DAY + 1, 3600):
        window = [s for s in sent if start <= s[0] < start + DAY]
        assert sum(size for _, _, size in window) <= DEFAULT_BUDGET_BYTES
        assert sum(1 for _, kind, _ in window if kind == "change") <= 29
    gaps = [b[0] - a[0] for a, b in zip(sent, sent[1:])]
    assert max(gaps) <= 300 and min(gaps) >= 60  # heartbeats never starve; changes are spaced


def test_the_ledger_holds_the_budget_even_for_large_documents():
    unit = Unit()
    unit.state["faults"] = [f"{i}: " + "x" * 200 for i in range(20)]  # capped at 10 faults of 80 characters
    reporter = HealthReporter(unit.probes())
    total, t, first = 0, 0, sample(reporter, 0)
    assert len(json.loads(first.payload)["faults"]) == 10
    assert all(len(f) == 80 for f in json.loads(first.payload)["faults"])
    total = first.size + reporter.overhead_bytes
    for t in range(15, DAY, 15):
        report = sample(reporter, t)
        total += report.size + reporter.overhead_bytes if report else 0
    assert total <= DEFAULT_BUDGET_BYTES
    assert total > DEFAULT_BUDGET_BYTES - 2 * (first.size + reporter.overhead_bytes)  # it used what it had
    assert reporter.sent_last_day(DAY + 300) < total  # the oldest reports leave the window


# ---- when reports go out ----

def test_heartbeat_first_at_once_then_every_interval():
    reporter = HealthReporter(Unit().probes())
    assert reporter.due(0.0)
    assert sample(reporter, 0).kind == "heartbeat"
    assert [sample(reporter, t) for t in (15, 150, 299)] == [None, None, None]
    assert sample(reporter, 300).kind == "heartbeat"
    assert not reporter.due(599) and reporter.due(600)


def test_change_goes_at_once_after_the_gap_and_restarts_the_heartbeat():
    unit = Unit()
    reporter = HealthReporter(unit.probes())
    sample(reporter, 0)
    unit.state["amp"]["fault"] = True
    assert sample(reporter, 30) is None  # within min_gap_s of the last report
    report = sample(reporter, 60)
    assert (report.kind, report.reasons) == ("change", ("amp.fault",))
    assert json.loads(report.payload)["amp"]["fault"] is True
    assert sample(reporter, 300) is None and sample(reporter, 360).kind == "heartbeat"


def test_a_change_that_reverts_before_it_may_go_is_not_sent():
    unit = Unit()
    reporter = HealthReporter(unit.probes())
    sample(reporter, 0)
    unit.state["gps"] = dict(unit.state["gps"], fix=False)
    assert sample(reporter, 15) is None
    unit.state["gps"] = dict(unit.state["gps"], fix=True)
    assert sample(reporter, 60) is None


def test_tokens_run_out_and_refill():
    unit = Unit()
    reporter = HealthReporter(unit.probes())
    sample(reporter, 0)
    kinds = []
    for i in range(1, 8):
        unit.state["faults"] = [f"f{i}"]
        report = sample(reporter, 60 * i)
        kinds.append(report.kind if report else None)
    assert kinds == ["change"] * 5 + [None, None]  # burst of 5, then wait
    assert sample(reporter, 60 * 8 + 3600).kind == "heartbeat"
    unit.state["faults"] = ["after the refill"]
    assert sample(reporter, 60 * 9 + 3600).kind == "change"


def test_a_broken_probe_gives_null_and_the_rest_still_report():
    unit = Unit()
    probes = unit.probes()
    probes["cpu_temp_c"] = lambda: 1 / 0
    probes["faults"] = lambda: None
    doc = json.loads(sample(HealthReporter(probes), 0).payload)
    assert doc["cpu_temp_c"] is None and doc["faults"] == [] and doc["mem_free_mb"] == 612


def test_unknown_probe_names_are_refused():
    with pytest.raises(ValueError, match="cpu_temp"):
        HealthReporter({"cpu_temp": lambda: 1})


# ---- what counts as a change ----

def doc(**changes):
    base = Unit().state
    base.update(changes)
    return base


@pytest.mark.parametrize("cur,reasons", [
    (doc(), []),
    (doc(uptime_s=5, cpu_temp_c=80.0, mem_free_mb=10, queue=9, net={"signal_dbm": -110, "operator": "Mobi"}), []),
    (doc(amp={"power": True, "fault": True, "temp_c": 41.5, "volume": 80}), ["amp.fault"]),
    (doc(amp=None), []),
    (doc(clock="untrusted"), ["clock.untrusted"]),
    (doc(clock="gps"), []),
    (doc(disk_free_mb=199), ["storage.low"]),
    (doc(disk_free_mb=None), []),
    (doc(gps={"lat": None, "lon": None, "fix": False}), ["gps.lost"]),
    (doc(gps=None), []),
    (doc(faults=["amplifier: no answer"]), ["fault: amplifier: no answer"]),
    (doc(clock="untrusted", disk_free_mb=5), ["clock.untrusted", "storage.low"]),
])
def test_change_reasons(cur, reasons):
    assert change_reasons(Unit().state, cur) == reasons
    assert significant_change(Unit().state, cur) == bool(reasons)


def test_recoveries_are_changes_too():
    bad = doc(amp={"power": True, "fault": True}, clock="untrusted", disk_free_mb=5,
              gps={"fix": False}, faults=["x"])
    assert change_reasons(bad, Unit().state) == ["amp.recovered", "clock.trusted", "storage.ok", "gps.fix"]
    assert change_reasons(None, Unit().state) == []


# ---- the runner thread ----

class SteppedClock:
    def __init__(self):
        self.mono = 1000.0

    def monotonic(self):
        return self.mono

    def now(self):
        return T0.astimezone(timezone.utc) + timedelta(seconds=self.mono)


def test_runner_publishes_pokes_and_survives_failures():
    unit, clock, published, mode = Unit(), SteppedClock(), [], {"fail": None}

    def publish(payload):
        if mode["fail"] == "raise":
            raise OSError("link down")
        if mode["fail"] == "offline":
            return False
        published.append(json.loads(payload))

    runner = HealthRunner(HealthReporter(unit.probes()), publish, clock, tz=ICT, sample_s=30).start()
    try:
        wait_until(lambda: len(published) == 1, 5.0, 0.01, "one health report")
        assert published[0]["ts"].endswith("+07:00")
        clock.mono += 120
        unit.state["clock"] = "untrusted"
        mode["fail"] = "raise"
        runner.poke()
        time.sleep(0.1)
        mode["fail"] = "offline"
        runner.poke()
        time.sleep(0.1)
        assert len(published) == 1 and runner.reporter.last_sent["clock"] == "ntp"  # nothing counted as sent
        mode["fail"] = None
        runner.poke()
        wait_until(lambda: len(published) == 2, 5.0, 0.01, "two health reports")
        assert published[1]["clock"] == "untrusted"
    finally:
        runner.stop()
        runner.stop()
    assert not runner._thread.is_alive()
