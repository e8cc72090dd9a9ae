"""Nothing is lost: a broker outage during plays, and kill -9 during a playback."""

import json
import signal
import time
from datetime import datetime, timedelta

import pytest

from tests.support.media import make_tone
from tests.support.unit import (MediaServer, OperatorKey, UnitProcess, hardware_log, run_loaxa,
                                wait_until, write_unit_config)
from tests.test_e2e_unit import GROUP, TZ, UNIT, schedule_doc


@pytest.fixture
def rig(tmp_path, broker):
    media_dir = tmp_path / "www"
    media_dir.mkdir()
    make_tone(media_dir / "bulletin.mp3", 1.0, freq=523)
    make_tone(media_dir / "long.mp3", 12.0, freq=392)
    server = MediaServer(media_dir)
    key = OperatorKey(tmp_path / "keys")
    config = write_unit_config(tmp_path / "unit", unit_id=UNIT, groups=[GROUP], broker_url=broker.url,
                               trust={key.name: key.public}, warmup_s=0.5, cooldown_s=0.5,
                               reconnect_max_s=2)
    yield type("Rig", (), dict(server=server, key=key, config=config, broker=broker, tmp=tmp_path,
                               output=tmp_path / "unit" / "mock-output"))
    server.close()


def push(rig, doc):
    path = rig.tmp / f"doc-{doc['version']}.json"
    path.write_text(json.dumps(doc))
    result = run_loaxa("schedule", "push", str(path), "--key", str(rig.key.key_path), "--broker", rig.broker.url)
    assert result.returncode == 0, result.stderr


def closes(rig):
    return [e for e in hardware_log(rig.output) if e["kind"] == "speaker.close"]


def test_broker_outage_during_three_plays_loses_nothing(rig):
    watch = rig.broker.collector(f"loaxa/unit/{UNIT}/event")
    unit = UnitProcess(rig.config)
    try:
        unit.wait_console("connected to broker")
        start = datetime.now(TZ).replace(microsecond=0) + timedelta(seconds=8)
        items = [{"id": f"ban-tin-{n}", "play": ["ban-tin"], "at": (start + timedelta(seconds=5 * n)).isoformat()}
                 for n in range(3)]
        media = {"ban-tin": rig.server.media_entry("bulletin.mp3")}
        push(rig, schedule_doc(rig.server, items=items, media=media))
        watch.wait_for(lambda t, p: json.loads(p)["kind"] == "schedule.accepted", 15)
        watch.close()
        rig.broker.stop()
        wait_until(lambda: len(closes(rig)) >= 3, 40, what="three plays during the outage")
        rig.broker.start()
        seen = rig.broker.collector(f"loaxa/unit/{UNIT}/playlog")
        wait_until(lambda: len({json.loads(p)["id"] for p in seen.payloads(f"loaxa/unit/{UNIT}/playlog")}) >= 3,
                   30, what="three playlogs after the broker came back")
        time.sleep(1.0)
        records = [json.loads(p) for p in seen.payloads(f"loaxa/unit/{UNIT}/playlog")]
        unique = list({r["id"]: r for r in records}.values())
        assert [r["item"] for r in unique] == ["ban-tin-0", "ban-tin-1", "ban-tin-2"]  # in order
        assert all(r["outcome"] == "completed" for r in unique)
        seen.close()
    finally:
        unit.stop()


def test_kill_9_during_playback_reports_interrupted_with_seconds_played(rig):
    unit = UnitProcess(rig.config)
    unit.wait_console("connected to broker")
    at = datetime.now(TZ).replace(microsecond=0) + timedelta(seconds=6)
    media = {"dai": rig.server.media_entry("long.mp3")}
    push(rig, schedule_doc(rig.server, items=[{"id": "dai", "play": ["dai"], "at": at.isoformat()}],
                           media=media))
    first = wait_until(lambda: [e for e in hardware_log(rig.output) if e["kind"] == "speaker.first_sample"],
                       30, what="the playback to start")[0]
    time.sleep(max(0.0, first["t"] + 4.5 - time.time()))
    unit.stop(sig=signal.SIGKILL)
    watch = rig.broker.collector(f"loaxa/unit/{UNIT}/playlog")
    again = UnitProcess(rig.config, log_path=rig.tmp / "unit-again.log")
    try:
        _, payload = watch.wait_for(lambda t, p: json.loads(p)["item"] == "dai", 30)
        record = json.loads(payload)
        assert record["outcome"] == "interrupted"
        assert 1.5 <= record["played_s"] <= 5.0, record  # about what sounded before the kill
        assert datetime.fromisoformat(record["scheduled_at"]) == at
    finally:
        again.stop()
        watch.close()


def test_amplifier_protect_during_playback_makes_the_unit_safe(rig):
    """A fault mid-bulletin: audio stops, the amplifier goes off, an event and a `failed` playlog."""
    import os
    watch = rig.broker.collector(f"loaxa/unit/{UNIT}/#")
    env = dict(os.environ, LOAXA_MOCK_FAULTS="amplifier:protect=short@17")
    unit = UnitProcess(rig.config, env=env)
    try:
        unit.wait_console("connected to broker")
        at = datetime.now(TZ).replace(microsecond=0) + timedelta(seconds=10)
        push(rig, schedule_doc(rig.server, items=[{"id": "dai", "play": ["dai"], "at": at.isoformat()}],
                               media={"dai": rig.server.media_entry("long.mp3")}))
        _, payload = watch.wait_for(lambda t, p: t.endswith("/playlog"), 40)
        record = json.loads(payload)
        assert record["outcome"] == "failed" and "amplifier" in record["reason"], record
        assert 1.0 <= record["played_s"] < record["expected_s"]
        fault = watch.wait_for(lambda t, p: t.endswith("/event") and json.loads(p)["kind"] == "amp.fault", 10)
        assert json.loads(fault[1])["detail"]
        events = hardware_log(rig.output)
        closed = [e for e in events if e["kind"] == "speaker.close"][-1]
        power = [e for e in events if e["kind"] == "relay" and e["role"] == "amp_power"]
        assert power[-1]["on"] is False and power[-1]["t"] >= closed["t"] - 0.5  # safe state
    finally:
        unit.stop()
        watch.close()
