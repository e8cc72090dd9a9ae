"""The information team's vehicle, end to end: a real unit process whose pty GPS simulator
drives a route (LOAXA_DEMO_ROUTE), a real mosquitto, the real CLI push.

One drive in two runs of the unit (SPEC "Mobile units"):
1. waiting outside, then into the area: `area.entered`, play 1; parked at the boundary
   with 1 Hz jitter in and out: no `area.left`, no second entry, and play 2 no sooner
   than `every_s` after play 1;
2. the unit restarts inside the area (counters on disk): play 3 no sooner than `every_s`
   after play 2, not at once; the broker is down for the whole second run (a dead zone
   in the hills) while the vehicle plays and drives out: once the broker is back every
   playlog, both area events and every track batch arrive.
"""

import json
import time
from datetime import datetime, timedelta

import pytest

from tests.support.media import make_tone
from tests.support.unit import (MediaServer, OperatorKey, UnitProcess, hardware_log, run_loaxa,
                                wait_until, write_unit_config)
from tests.test_e2e_unit import GROUP, TZ, UNIT, schedule_doc

M_PER_DEG = 111_195.0
CLAT, CLON = 12.70, 108.10
R_M = 100
EVERY_S = 20


def north(metres: float) -> float:
    return round(CLAT + metres / M_PER_DEG, 7)


def route_file(path, waypoints, faults=""):
    path.write_text(json.dumps({"waypoints": waypoints, "faults": faults}))
    return path


@pytest.fixture
def rig(tmp_path, broker):
    media_dir = tmp_path / "www"
    media_dir.mkdir()
    make_tone(media_dir / "bulletin.mp3", 1.0, freq=523)
    server = MediaServer(media_dir)
    key = OperatorKey(tmp_path / "keys")
    config = write_unit_config(tmp_path / "unit", unit_id=UNIT, groups=[GROUP], broker_url=broker.url,
                               trust={key.name: key.public}, warmup_s=0.3, cooldown_s=0.5,
                               reconnect_max_s=1)
    yield type("Rig", (), dict(server=server, key=key, config=config, broker=broker, tmp=tmp_path,
                               output=tmp_path / "unit" / "mock-output"))
    server.close()


def area_schedule(rig) -> dict:
    doc = schedule_doc(rig.server, media={"ban-tin": rig.server.media_entry("bulletin.mp3")}, items=[
        {"id": "luat-dat", "play": ["ban-tin"], "where": "bong-krang", "from": "00:00", "until": "23:59",
         "every_s": EVERY_S, "max_plays": 20}])
    doc["areas"] = {"bong-krang": {"circle": {"lat": CLAT, "lon": CLON, "r_m": R_M}}}
    return doc


def push(rig, doc):
    path = rig.tmp / "area-schedule.json"
    path.write_text(json.dumps(doc))
    result = run_loaxa("schedule", "push", str(path), "--key", str(rig.key.key_path), "--broker", rig.broker.url)
    assert result.returncode == 0, result.stderr


def starts(rig) -> list[float]:
    return [e["t"] for e in hardware_log(rig.output) if e["kind"] == "speaker.first_sample"]


def records(watch, kind):
    found = {}
    for topic, payload, _ in list(watch.messages):
        if topic.endswith(f"/{kind}"):
            doc = json.loads(payload)
            found.setdefault(doc["id"], doc)
    return list(found.values())


def _away_from_local_midnight():
    """The window is 00:00-23:59 local: do not start within its last three minutes."""
    now = datetime.now(TZ)
    if now.hour == 23 and now.minute >= 56:
        time.sleep((now.replace(hour=0, minute=0, second=5) + timedelta(days=1) - now).total_seconds())


def test_a_drive_in_two_runs_with_jitter_a_restart_and_a_dead_zone(rig, monkeypatch):
    _away_from_local_midnight()
    watch = rig.broker.collector(f"loaxa/unit/{UNIT}/#")
    # Run 1: 15 s waiting 250 m south (the schedule arrives), in at 54 km/h to 80 m south
    # of the centre, parked there with ±30 m north-south jitter (50 m in / 110 m out).
    first = route_file(rig.tmp / "route-1.json", [[north(-250), CLON, 54, 15], [north(-80), CLON, 54, 60]],
                       faults="jitter@32+24=30/0")
    monkeypatch.setenv("LOAXA_DEMO_ROUTE", str(first))
    unit = UnitProcess(rig.config)
    try:
        unit.wait_console("connected to broker")
        push(rig, area_schedule(rig))
        watch.wait_for(lambda t, p: t.endswith("/event") and json.loads(p)["kind"] == "schedule.accepted", 15)
        wait_until(lambda: len(starts(rig)) >= 2, 75, what="two plays in the area")
        time.sleep(2.0)
    finally:
        unit.stop()
    play1, play2 = starts(rig)[:2]
    assert play2 - play1 >= EVERY_S - 0.5, (play1, play2)
    wait_until(lambda: len(records(watch, "playlog")) >= 2, 10, what="the first two playlogs")
    events = [e for e in records(watch, "event") if e["kind"].startswith("area.")]
    assert [e["kind"] for e in events] == ["area.entered"], events  # the jitter flapped nothing

    # Run 2: restarted inside the area, with the broker down throughout (a dead zone);
    # parked at the centre, then out 300 m north at 54 km/h.
    watch.close()
    rig.broker.stop()
    second = route_file(rig.tmp / "route-2.json", [[CLAT, CLON, 54, 20], [north(300), CLON, 0]])
    monkeypatch.setenv("LOAXA_DEMO_ROUTE", str(second))
    restarted = time.time()
    unit = UnitProcess(rig.config, log_path=rig.tmp / "unit-2.log")
    try:
        wait_until(lambda: len(starts(rig)) >= 3, 40, what="the third play, after the restart")
        unit.wait_console("area.left", 45)  # the event is logged as it goes into the outbox
        rig.broker.start()
        watch = rig.broker.collector(f"loaxa/unit/{UNIT}/#")
        wait_until(lambda: len(records(watch, "playlog")) >= 1
                   and any(e["kind"] == "area.left" for e in records(watch, "event")), 30,
                   what="the dead zone's records after the broker came back")
        time.sleep(1.5)
    finally:
        unit.stop()
        watch.close()
    later = starts(rig)[2:]
    assert later[0] - play2 >= EVERY_S - 0.5, "a restart inside the area played again early"
    assert later[0] > restarted
    assert all(b - a >= EVERY_S - 0.5 for a, b in zip(later, later[1:])), later
    playlog = sorted((r for r in records(watch, "playlog") if r["outcome"] == "completed"),
                     key=lambda r: r["play_no"])
    assert [r["play_no"] for r in playlog] == list(range(3, 3 + len(later))), playlog  # none lost
    record = playlog[0]
    assert (record["area"], record["left_area"]) == ("bong-krang", False)
    assert record["position"] and record["position_end"]
    assert record["scheduled_at"].startswith(datetime.now(TZ).date().isoformat() + "T00:00")
    area_events = [e for e in records(watch, "event") if e["kind"].startswith("area.")]
    assert [e["kind"] for e in area_events] == ["area.entered", "area.left"], area_events
    left_at = datetime.fromisoformat(area_events[1]["ts"]).timestamp()
    points = [p for batch in records(watch, "track") for p in batch["points"]]
    ts = sorted(p[0] for p in points)
    # the whole second run: from its first fixes to the way out (a point each 100 m at 15 m/s)
    assert ts and ts[0] <= restarted + 8 and ts[-1] >= left_at - 8, (ts, restarted, left_at)
    assert all(b - a <= 31 for a, b in zip(ts, ts[1:])), ts  # one point every 30 s or 100 m
    assert max(p[1] for p in points) >= north(R_M)  # the points out of the area came too


def test_with_the_ignition_off_only_an_emergency_sounds(rig, monkeypatch):
    """SPEC: with the ignition off the amplifier stays off unless an emergency plays; the
    skipped play is `missed` ("ignition off"); health `power` says so."""
    config = write_unit_config(rig.tmp / "car", unit_id=UNIT, groups=[GROUP], broker_url=rig.broker.url,
                               trust={rig.key.name: rig.key.public}, warmup_s=0.3, cooldown_s=0.3,
                               extra="[vehicle]\nignition = 5\nbattery_adc = \"mcp3008\"\n")
    output = rig.tmp / "car" / "mock-output"
    monkeypatch.setenv("LOAXA_MOCK_FAULTS", "ignition:off@0.5")
    watch = rig.broker.collector(f"loaxa/unit/{UNIT}/#")
    unit = UnitProcess(config)
    try:
        unit.wait_console("connected to broker")
        at = datetime.now(TZ).replace(microsecond=0) + timedelta(seconds=6)
        media = {"ban-tin": rig.server.media_entry("bulletin.mp3")}
        push(rig, schedule_doc(rig.server, media=media, items=[
            {"id": "sang", "play": ["ban-tin"], "at": at.isoformat()},
            {"id": "khan", "play": ["ban-tin"], "at": (at + timedelta(seconds=3)).isoformat(),
             "priority": "emergency"}]))
        _, missed = watch.wait_for(lambda t, p: t.endswith("/playlog") and json.loads(p)["item"] == "sang", 20)
        _, played = watch.wait_for(lambda t, p: t.endswith("/playlog") and json.loads(p)["item"] == "khan", 20)
        _, health = watch.wait_for(lambda t, p: t.endswith("/health")
                                   and (json.loads(p).get("power") or {}).get("ignition") is False, 20)
    finally:
        unit.stop()
        watch.close()
    assert (json.loads(missed)["outcome"], json.loads(missed)["reason"]) == ("missed", "ignition off")
    assert json.loads(played)["outcome"] == "completed"
    mains_on = [e["t"] for e in hardware_log(output) if e["kind"] == "relay" and e.get("role") == "amp_power"
                and e.get("on")]
    assert mains_on and min(mains_on) >= at.timestamp() + 1, "the amplifier went on for a normal item"
    assert json.loads(health)["power"] == {"mains": None, "ignition": False, "battery_v": 12.6}
