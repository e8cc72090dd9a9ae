"""End to end: a real unit process, a real mosquitto, real ffmpeg, the real CLI push.

What a provincial operator and a listener would meet: a schedule pushed with
`loaxa schedule push` plays at its time; the playlog, events and the mock
speaker's WAV and relay log say what a listener heard.
"""

import json
import wave
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from scheduler import sign_document
from tests.support.media import make_tone
from tests.support.unit import (MediaServer, OperatorKey, UnitProcess, hardware_log, run_loaxa,
                                wait_until, write_unit_config)

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
UNIT = "dl-lak-bongkrang-01"
GROUP = "dak-lak/lak/bong-krang"
WARMUP_S = 1.0
COOLDOWN_S = 1.0
BULLETIN_S = 3.0


def schedule_doc(media_server, *, doc_id="dak-lak/2026-w48", version=1, at=None, items=None,
                 targets=None, media=None):
    now = datetime.now(TZ)
    return {
        "type": "schedule", "id": doc_id, "version": version,
        "targets": targets or [f"group:{GROUP}"],
        "issued_at": now.isoformat(timespec="seconds"),
        "valid_from": (now - timedelta(days=1)).date().isoformat(),
        "valid_until": (now + timedelta(days=7)).date().isoformat(),
        "timezone": "Asia/Ho_Chi_Minh",
        "media": media if media is not None else {"ban-tin": media_server.media_entry("bulletin.mp3")},
        "items": items if items is not None else [
            {"id": "sang", "play": ["chime", "ban-tin"], "at": at.isoformat(timespec="seconds"),
             "priority": "normal", "volume": 80}],
    }


@pytest.fixture
def site(tmp_path, broker):
    """An operator key, a media server with a 3 s bulletin, and a running unit."""
    media_dir = tmp_path / "www"
    media_dir.mkdir()
    make_tone(media_dir / "bulletin.mp3", BULLETIN_S, freq=440)
    server = MediaServer(media_dir)
    key = OperatorKey(tmp_path / "keys")
    config = write_unit_config(tmp_path / "unit", unit_id=UNIT, groups=[GROUP], broker_url=broker.url,
                               trust={key.name: key.public}, warmup_s=WARMUP_S, cooldown_s=COOLDOWN_S)
    watch = broker.collector(f"loaxa/unit/{UNIT}/#")
    unit = UnitProcess(config)
    watch.wait_for(lambda t, p: t.endswith("/state") and json.loads(p)["state"] == "online", 20)
    site = type("Site", (), dict(server=server, key=key, config=config, unit=unit, watch=watch,
                                 broker=broker, tmp=tmp_path, output=tmp_path / "unit" / "mock-output"))
    yield site
    unit.stop()
    watch.close()
    server.close()


def push(site, doc, *extra) -> None:
    path = site.tmp / f"schedule-{doc['version']}.json"
    path.write_text(json.dumps(doc, ensure_ascii=False))
    result = run_loaxa("schedule", "push", str(path), "--key", str(site.key.key_path),
                       "--broker", site.broker.url, *extra)
    assert result.returncode == 0, result.stderr


def event(site, kind, contains=""):
    def match(topic, payload):
        if not topic.endswith("/event"):
            return False
        doc = json.loads(payload)
        return doc["kind"] == kind and contains.lower() in doc["detail"].lower()
    return json.loads(site.watch.wait_for(match, 20)[1])


def playlog(site, item, timeout=40):
    def match(topic, payload):
        return topic.endswith("/playlog") and json.loads(payload)["item"] == item
    return json.loads(site.watch.wait_for(match, timeout)[1])


def wav_seconds(path) -> float:
    with wave.open(str(path), "rb") as w:
        return w.getnframes() / w.getframerate()


def test_pushed_schedule_plays_with_proof_of_play(site):
    at = datetime.now(TZ).replace(microsecond=0) + timedelta(seconds=7)
    push(site, schedule_doc(site.server, at=at))
    accepted = event(site, "schedule.accepted")
    assert "dak-lak/2026-w48" in accepted["detail"]

    record = playlog(site, "sang")
    assert record["outcome"] == "completed", record
    assert record["unit"] == UNIT and record["mock"] is True
    assert record["media"] == ["chime", "ban-tin"] and record["source"] == "media"
    assert datetime.fromisoformat(record["scheduled_at"]) == at
    assert abs(record["played_s"] - record["expected_s"]) <= 0.2
    assert record["expected_s"] > BULLETIN_S + 1.0  # the chime came first

    wavs = list(site.output.glob("*_sang.wav"))
    assert len(wavs) == 1
    assert abs(wav_seconds(wavs[0]) - record["expected_s"]) <= 0.1

    # What the listener heard: relay on >= warmup before the first sample, off after cooldown.
    events = wait_until(lambda: _with_relay_off(hardware_log(site.output)), 10, what="relay off")
    on = next(e for e in events if e["kind"] == "relay" and e["role"] == "amp_power" and e["on"])
    first = next(e for e in events if e["kind"] == "speaker.first_sample")
    closed = next(e for e in events if e["kind"] == "speaker.close")
    off = [e for e in events if e["kind"] == "relay" and e["role"] == "amp_power" and not e["on"]][-1]
    assert first["t"] - on["t"] >= WARMUP_S - 0.01
    assert abs(first["t"] - at.timestamp()) < 0.5  # on time
    assert off["t"] - closed["t"] >= COOLDOWN_S - 0.05


def _with_relay_off(events):
    offs = [e for e in events if e["kind"] == "relay" and e["role"] == "amp_power" and not e["on"]]
    return events if offs else None


def bad_documents(site, good):
    """(reason fragment, raw payload) for each refusal SPEC lists."""
    text = json.dumps(good)
    key, name = site.key.key, site.key.name
    forged = json.loads(sign_document(text, key, name))
    forged["sig"] = json.loads(sign_document(text.replace("sang", "sanh"), key, name))["sig"]
    stranger = OperatorKey(site.tmp / "stranger", name="stranger")
    other_unit = dict(good, version=good["version"] + 1, targets=["unit:someone-else"])
    replay = dict(good, items=[dict(good["items"][0], volume=10)])
    unknown_media = dict(good, version=good["version"] + 2,
                         items=[dict(good["items"][0], play=["chime", "khong-co"])])
    return [
        ("signature", json.dumps(forged).encode()),
        ("stranger", sign_document(text, stranger.key, "stranger")),
        ("target", sign_document(json.dumps(other_unit), key, name)),
        ("version", sign_document(json.dumps(replay), key, name)),
        ("json", b'{"payload": "{\\"type\\": \\"sched'),
        ("khong-co", sign_document(json.dumps(unknown_media), key, name)),
    ]


def test_refusals_keep_the_schedule_in_force(site):
    at = datetime.now(TZ).replace(microsecond=0) + timedelta(seconds=14)
    good = schedule_doc(site.server, at=at)
    push(site, good)
    event(site, "schedule.accepted")
    topic = f"loaxa/group/{GROUP}/schedule"
    import paho.mqtt.publish as publish
    for reason, raw in bad_documents(site, good):
        publish.single(topic, raw, qos=1, hostname=site.broker.host, port=site.broker.port)
        rejected = event(site, "schedule.rejected", reason)
        assert rejected["detail"], rejected
    record = playlog(site, "sang")
    assert record["outcome"] == "completed"
    assert record["volume"] == 80  # the replayed copy (volume 10) never replaced it
