"""End to end on the operator side: simulated units running the real unit code, a real
mosquitto, the collector, `loaxa schedule push` to a commune, then `loaxa fleet report`
and `loaxa fleet status` as an operator would run them."""

import csv
import json
from datetime import datetime, timedelta

import pytest

from fleet.simulate import Simulation, SimulationPlan, layout
from tests.support.fleet import TZ, running_collector
from tests.support.unit import OperatorKey, run_loaxa
from tests.support.waiting import wait_until

SCHEDULE = "sim/2026-w48"
COMMUNE = "sim/d01/c01"  # units u01 and u02; u03 lives in sim/d01/c02


@pytest.fixture
def fleet(tmp_path, broker_factory):
    broker = broker_factory(extra="max_queued_messages 0")
    key = OperatorKey(tmp_path / "keys")
    db = f"sqlite:///{tmp_path / 'fleet.db'}"
    plan = SimulationPlan(units=layout(3, per_commune=2), broker_url=broker.url,
                          trust_keys={key.name: key.public}, state_root=str(tmp_path / "units"),
                          speed=20.0, warmup_s=0.2, cooldown_s=0.5)
    with running_collector(broker.url, db) as collector, Simulation(plan) as simulation:
        site = type("Fleet", (), dict(broker=broker, key=key, db=db, collector=collector, simulation=simulation,
                                      tmp=tmp_path))
        yield site


def accepted_by(collector) -> set[str]:
    from sqlalchemy import select

    from fleet.db import events
    with collector.store.engine.connect() as conn:
        return set(conn.execute(select(events.c.unit).where(events.c.kind == "schedule.accepted")).scalars())


def test_push_to_a_commune_plays_on_exactly_its_units_and_the_report_proves_it(fleet):
    assert [u.id for u in fleet.simulation.units] == ["sim-d01-c01-u01", "sim-d01-c01-u02", "sim-d01-c02-u01"]
    wait_until(lambda: len(fleet.collector.store.units()) == 3, 20, what="three units online")

    now = datetime.now(TZ)
    at = now.replace(microsecond=0) + timedelta(seconds=4)
    doc = {"type": "schedule", "id": SCHEDULE, "version": 1, "targets": [f"group:{COMMUNE}"],
           "issued_at": now.isoformat(timespec="seconds"), "valid_from": now.date().isoformat(),
           "valid_until": (now + timedelta(days=1)).date().isoformat(), "timezone": "Asia/Ho_Chi_Minh",
           "media": {}, "items": [{"id": "chuong", "play": ["chime"], "at": at.isoformat()}]}
    path = fleet.tmp / "schedule.json"
    path.write_text(json.dumps(doc))
    pushed = run_loaxa("schedule", "push", str(path), "--key", str(fleet.key.key_path), "--broker", fleet.broker.url)
    assert pushed.returncode == 0, pushed.stderr

    store = fleet.collector.store
    wait_until(lambda: store.counts()["playlogs"] >= 2, 25, what="two playlogs")
    assert accepted_by(fleet.collector) == {"sim-d01-c01-u01", "sim-d01-c01-u02"}

    html, table = fleet.tmp / "report.html", fleet.tmp / "report.csv"
    result = run_loaxa("fleet", "report", "--db", fleet.db, "--schedule", SCHEDULE, "--json",
                       "--html", str(html), "--csv", str(table))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    (item,) = report["items"]
    assert report["schedule"] == SCHEDULE
    assert {k: item[k] for k in ("item", "targeted", "completed", "partial", "missed", "unknown")} == \
        {"item": "chuong", "targeted": 2, "completed": 2, "partial": 0, "missed": 0, "unknown": 0}
    assert datetime.fromisoformat(item["scheduled_at"]) == at
    assert item["communes"] == [{"commune": COMMUNE, "targeted": 2, "completed": 2, "partial": 0, "missed": 0,
                                 "unknown": 0}]
    page = html.read_text()
    assert "<svg" in page and "100.0%" in page
    rows = list(csv.DictReader(table.open()))
    assert [(r["level"], r["area"], r["completed"], r["targeted"]) for r in rows] == \
        [("all", "", "2", "2"), ("district", "sim/d01", "2", "2"), ("commune", COMMUNE, "2", "2")]

    status = run_loaxa("fleet", "status", "--db", fleet.db, "--json")
    assert status.returncode == 0, status.stderr
    assert [(u["unit"], u["state"]) for u in json.loads(status.stdout)] == \
        [(u.id, "online") for u in fleet.simulation.units]


def test_simulated_vehicles_drive_the_route(broker, tmp_path):
    """`fleet simulate --route FILE --vehicles N`: those units get a GPS driving the route
    (and the area loop); the others stay fixed clusters without one."""
    import json

    from fleet.simulate import _start_unit
    from scheduler.areas import haversine_m
    from tests.support.waiting import wait_until
    route = tmp_path / "route.json"
    route.write_text(json.dumps({"waypoints": [[12.70, 108.10, 72], [12.71, 108.10, 0]]}))
    units = layout(2)
    plan = SimulationPlan(units=units, broker_url=broker.url, trust_keys={}, state_root=str(tmp_path / "units"),
                          route=str(route), vehicles=(units[0].id,))
    car, cluster = _start_unit(plan, units[0]), _start_unit(plan, units[1])
    try:
        assert cluster.unit_hw.gps is None and cluster.areas is None
        first = car.unit_hw.gps.wait_for_fix(10)
        assert first is not None and haversine_m(first.lat, first.lon, 12.70, 108.10) < 50
        moved = wait_until(lambda: (f := car.unit_hw.gps.fix) and haversine_m(f.lat, f.lon, 12.70, 108.10) > 30
                           and f, 10, what="the vehicle moving north")
        assert moved.lat > 12.70 and car.areas.is_alive()
    finally:
        car.stop()
        cluster.stop()
