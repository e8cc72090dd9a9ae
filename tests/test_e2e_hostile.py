"""Hostile input on the schedule topics of a running unit: it never crashes, refuses each
with a reason, and the schedule in force still plays."""

import base64
import copy
import json
import random
from datetime import datetime, timedelta

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from scheduler import sign_document
from tests.support.media import make_tone
from tests.support.unit import MediaServer, OperatorKey, UnitProcess, run_loaxa, write_unit_config
from tests.test_e2e_unit import GROUP, TZ, UNIT, schedule_doc

SEED = 20261126


def unchecked_envelope(payload_text: str, key, name: str) -> bytes:
    """Signed like an operator would, without the size check `sign_document` makes."""
    sig = base64.b64encode(key.sign(payload_text.encode("utf-8"))).decode()
    return json.dumps({"payload": payload_text, "alg": "ed25519", "key": name, "sig": sig}).encode()


def hand_written(good: dict, key, name: str) -> list[bytes]:
    """The cases issue 5 names, one payload each."""
    text = json.dumps(good)
    signed = lambda doc: sign_document(json.dumps(doc) if not isinstance(doc, str) else doc, key, name)  # noqa: E731
    item = good["items"][0]
    other_payload = json.loads(sign_document(text, key, name))
    other_payload["payload"] = text.replace('"sang"', '"chieu"')  # signature over another payload
    return [
        unchecked_envelope(json.dumps({**good, "version": 9, "padding": "x" * 300_000}), key, name),  # huge
        b'{"payload": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",                      # deep (envelope)
        signed("[" * 50_000 + "]" * 50_000),                                           # deep (document)
        signed({**good, "version": "10"}),                                             # wrong type
        signed({**good, "version": True}),                                             # bool for int
        signed({**good, "version": 11, "items": [{**item, "volume": 140}]}),            # out of range
        signed({**good, "version": 12, "media": {"../../etc/passwd": good["media"]["ban-tin"]},
                "items": [{**item, "play": ["../../etc/passwd"]}]}),                    # path-like id
        signed({**good, "version": 13, "media": {"ban-tin": {**good["media"]["ban-tin"],
                                                             "url": "file:///etc/shadow"}}}),  # file://
        b"\xff\xfe\x00garbage \x80\x81",                                               # not UTF-8
        json.dumps(other_payload).encode(),                                            # sig mismatch
        signed({**good, "version": 14, "items": [{**item, "at": "25:61"}]}),            # bad time
        signed({**good, "version": 15, "unknown_field": 1}),                           # unknown field
        signed({**good, "version": 16, "items": [{**item, "id": "\ud800"}]}),          # lone surrogate
        b"null", b"[]", b"42", b'"text"', b"{}",
    ]


def mutations(good: dict, key, name: str, count: int) -> list[bytes]:
    """Seeded random damage to a valid document, signed so it reaches the validator."""
    rng = random.Random(SEED)
    junk = [None, True, -1, 2**70, 1.5e308, "", "x" * 70, [], {}, [1, [2, [3]]], "\u0000", "../x"]
    out = []
    for n in range(count):
        doc = copy.deepcopy(good)
        doc["version"] = 100 + n
        target = rng.choice([doc, doc["items"][0], doc["media"]["ban-tin"]])
        field = rng.choice(sorted(target))
        if rng.random() < 0.3:
            del target[field]
        else:
            target[field] = rng.choice(junk)
        raw = sign_document(json.dumps(doc), key, name)
        if rng.random() < 0.2:  # and some damage to the bytes themselves
            i = rng.randrange(len(raw))
            raw = raw[:i] + bytes([rng.randrange(256)]) + raw[i + 1:]
        out.append(raw)
    return out


def publish_all(broker, topic_payloads) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.connect(broker.host, broker.port)
    client.loop_start()
    infos = [client.publish(topic, payload, qos=1) for topic, payload in topic_payloads]
    for info in infos:
        info.wait_for_publish(10)
    client.loop_stop()
    client.disconnect()


def test_hostile_schedules_are_refused_and_the_good_one_still_plays(tmp_path, broker):
    (tmp_path / "www").mkdir()
    make_tone(tmp_path / "www" / "bulletin.mp3", 1.0)
    server = MediaServer(tmp_path / "www")
    key = OperatorKey(tmp_path / "keys")
    config = write_unit_config(tmp_path / "unit", unit_id=UNIT, groups=[GROUP], broker_url=broker.url,
                               trust={key.name: key.public}, warmup_s=0.5, cooldown_s=0.5)
    watch = broker.collector(f"loaxa/unit/{UNIT}/#")
    unit = UnitProcess(config)
    try:
        unit.wait_console("connected to broker")
        at = datetime.now(TZ).replace(microsecond=0) + timedelta(seconds=25)
        good = schedule_doc(server, at=at)
        (tmp_path / "good.json").write_text(json.dumps(good))
        pushed = run_loaxa("schedule", "push", str(tmp_path / "good.json"), "--key", str(key.key_path),
                           "--broker", broker.url)
        assert pushed.returncode == 0, pushed.stderr
        watch.wait_for(lambda t, p: t.endswith("/event") and json.loads(p)["kind"] == "schedule.accepted", 15)

        corpus = hand_written(good, key.key, key.name) + mutations(good, key.key, key.name, 120)
        topics = [f"loaxa/group/{GROUP}/schedule", f"loaxa/unit/{UNIT}/schedule", "loaxa/group/dak-lak/schedule"]
        publish_all(broker, [(topics[i % len(topics)], raw) for i, raw in enumerate(corpus)])

        def answers(kind):
            return [json.loads(p) for p in watch.payloads(f"loaxa/unit/{UNIT}/event")
                    if json.loads(p)["kind"] == kind]
        # Every payload gets exactly one answer. A few random mutations are valid documents
        # (an optional field deleted): those are accepted, the rest refused with a reason.
        watch.wait_for(lambda t, p: len(answers("schedule.rejected")) + len(answers("schedule.accepted")) - 1
                       >= len(corpus), 120)
        rejected, accepted = answers("schedule.rejected"), answers("schedule.accepted")[1:]
        assert len(rejected) + len(accepted) == len(corpus)
        assert len(rejected) >= len(corpus) - 20
        assert all(r["detail"].strip() for r in rejected)
        reasons = " | ".join(r["detail"] for r in rejected)
        for expected in ("256 KiB", "nested too deeply", "not UTF-8", "bad signature",
                         "http:// or https://", "media id must match", "expected an integer, got true",
                         "must be 0-100"):
            assert expected in reasons, expected

        _, payload = watch.wait_for(lambda t, p: t.endswith("/playlog"), 60)
        record = json.loads(payload)
        assert record["item"] == "sang" and record["outcome"] == "completed"
        assert unit.process.poll() is None
        assert "Traceback" not in unit.console()
    finally:
        unit.stop()
        watch.close()
        server.close()
