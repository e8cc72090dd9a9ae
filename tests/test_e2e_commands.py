"""Signed commands and Circular 39 priorities on a running unit, over a real broker."""

import json
import time
from datetime import datetime, timedelta

import paho.mqtt.publish as publish
import pytest

from scheduler import build_command, sign_document
from tests.support.media import make_tone
from tests.support.unit import MediaServer, OperatorKey, UnitProcess, hardware_log, run_loaxa, write_unit_config
from tests.test_e2e_unit import GROUP, TZ, UNIT, schedule_doc

CMD_TOPIC = f"loaxa/unit/{UNIT}/cmd"


@pytest.fixture
def unit(tmp_path, broker):
    (tmp_path / "www").mkdir()
    make_tone(tmp_path / "www" / "long.mp3", 8.0, freq=330)
    make_tone(tmp_path / "www" / "alarm.mp3", 2.0, freq=880)
    server = MediaServer(tmp_path / "www")
    key = OperatorKey(tmp_path / "keys")
    config = write_unit_config(tmp_path / "unit", unit_id=UNIT, groups=[GROUP], broker_url=broker.url,
                               trust={key.name: key.public}, warmup_s=0.3, cooldown_s=0.5)
    watch = broker.collector(f"loaxa/unit/{UNIT}/#")
    proc = UnitProcess(config)
    proc.wait_console("connected to broker")
    rig = type("Rig", (), dict(server=server, key=key, broker=broker, watch=watch, proc=proc, tmp=tmp_path,
                               output=tmp_path / "unit" / "mock-output"))
    yield rig
    proc.stop()
    watch.close()
    server.close()


def send(rig, action, args, command_id=None, ttl_s=60, now=None, raw=None):
    text = build_command(action, args, f"unit:{UNIT}", now=now or datetime.now(TZ), ttl_s=ttl_s,
                         command_id=command_id)
    payload = raw if raw is not None else sign_document(text, rig.key.key, rig.key.name)
    publish.single(CMD_TOPIC, payload, qos=1, hostname=rig.broker.host, port=rig.broker.port)
    return json.loads(text)["id"]


def reply(rig, command_id, timeout=20):
    _, payload = rig.watch.wait_for(
        lambda t, p: t.endswith("/reply") and json.loads(p)["command"] == command_id, timeout)
    return json.loads(payload)


def playlogs(rig, item=None):
    docs = [json.loads(p) for p in rig.watch.payloads(f"loaxa/unit/{UNIT}/playlog")]
    return [d for d in docs if item is None or d["item"] == item]


def push(rig, doc):
    path = rig.tmp / f"doc-{doc['version']}.json"
    path.write_text(json.dumps(doc))
    done = run_loaxa("schedule", "push", str(path), "--key", str(rig.key.key_path), "--broker", rig.broker.url)
    assert done.returncode == 0, done.stderr


def test_ping_volume_and_refusals(unit):
    pong = reply(unit, send(unit, "ping", {}))
    assert pong["ok"] and pong["result"]["boot"] and pong["detail"] == "pong"

    vol = reply(unit, send(unit, "set_volume", {"volume": 35}))
    assert vol["ok"] and vol["result"] == {"volume": 35}

    again = send(unit, "ping", {}, command_id="ping-twice")
    assert reply(unit, again)["ok"]
    replayed = send(unit, "ping", {}, command_id="ping-twice")
    _, refused = unit.watch.wait_for(lambda t, p: t.endswith("/reply") and json.loads(p)["command"] == replayed
                                     and not json.loads(p)["ok"], 10)
    detail = json.loads(refused)["detail"].lower()
    assert "already" in detail or "replay" in detail

    old = datetime.now(TZ) - timedelta(minutes=30)
    expired = reply(unit, send(unit, "ping", {}, now=old, ttl_s=60))
    assert not expired["ok"] and "expire" in expired["detail"].lower()

    stranger = OperatorKey(unit.tmp / "stranger", name="stranger")
    text = build_command("ping", {}, f"unit:{UNIT}", now=datetime.now(TZ))
    forged = send(unit, "ping", {}, raw=sign_document(text, stranger.key, "stranger"))
    assert forged is not None
    _, p = unit.watch.wait_for(lambda t, p: t.endswith("/reply") and not json.loads(p)["ok"]
                               and "stranger" in json.loads(p)["detail"], 10)
    assert json.loads(p)["command"] == json.loads(text)["id"]
    unit.watch.wait_for(lambda t, p: t.endswith("/event") and json.loads(p)["kind"] == "command.rejected", 10)

    publish.single(CMD_TOPIC, b"\xff not json", qos=1, hostname=unit.broker.host, port=unit.broker.port)
    unit.watch.wait_for(lambda t, p: t.endswith("/reply") and json.loads(p)["command"] is None, 10)
    assert unit.proc.process.poll() is None


def test_emergency_preempts_and_the_normal_item_resumes(unit):
    at = datetime.now(TZ).replace(microsecond=0) + timedelta(seconds=5)
    media = {"dai": unit.server.media_entry("long.mp3"), "bao": unit.server.media_entry("alarm.mp3")}
    push(unit, schedule_doc(unit.server, media=media, items=[
        {"id": "thoi-su", "play": ["dai"], "at": at.isoformat(), "priority": "normal"}]))
    unit.watch.wait_for(lambda t, p: t.endswith("/event") and json.loads(p)["kind"] == "schedule.accepted", 15)
    first = [e for e in _wait_events(unit, "speaker.first_sample", 1, 20)][0]
    time.sleep(max(0.0, first["t"] + 3.0 - time.time()))

    played = reply(unit, send(unit, "play", {"media": ["bao"], "priority": "emergency"}))
    assert played["ok"], played
    unit.watch.wait_for(lambda t, p: t.endswith("/playlog") and json.loads(p)["outcome"] == "completed"
                        and json.loads(p)["item"] == "thoi-su", 40)

    normal = playlogs(unit, "thoi-su")
    emergency = [d for d in playlogs(unit) if d["priority"] == "emergency"]
    assert [d["outcome"] for d in normal] == ["preempted", "completed"]
    assert normal[0]["scheduled_at"] == normal[1]["scheduled_at"]
    assert 2.0 <= normal[0]["played_s"] <= 4.5
    assert abs(normal[1]["resumed_from_s"] - normal[0]["played_s"]) < 0.05
    assert abs(normal[0]["played_s"] + normal[1]["played_s"] - normal[0]["expected_s"]) < 0.2
    assert len(emergency) == 1 and emergency[0]["outcome"] == "completed"
    # The emergency sounded between the two halves, within a second of the command.
    closes = [e for e in hardware_log(unit.output) if e["kind"] == "speaker.close"]
    assert [c["file"].rsplit("_", 1)[1] for c in closes][:1] == ["thoi-su.wav"]
    assert emergency[0]["started_at"] < normal[1]["started_at"]


def test_stop_command_fades_out_and_reports_interrupted(unit):
    played = reply(unit, send(unit, "play", {"media": ["chime", "test-tone", "chime", "test-tone"]}))
    assert played["ok"], played
    _wait_events(unit, "speaker.first_sample", 1, 20)
    time.sleep(1.5)
    stopped = reply(unit, send(unit, "stop", {}))
    assert stopped["ok"] and stopped["result"]["stopped"]
    _, payload = unit.watch.wait_for(lambda t, p: t.endswith("/playlog"), 20)
    record = json.loads(payload)
    assert record["outcome"] == "interrupted" and record["reason"] == "stopped by command"
    assert 1.0 <= record["played_s"] <= record["expected_s"] - 2.0
    nothing = reply(unit, send(unit, "stop", {}))
    assert nothing["ok"] and nothing["result"]["stopped"] is None


def _wait_events(rig, kind, count, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [e for e in hardware_log(rig.output) if e["kind"] == kind]
        if len(found) >= count:
            return found
        time.sleep(0.05)
    raise AssertionError(f"no {kind} in the hardware log within {timeout}s")
