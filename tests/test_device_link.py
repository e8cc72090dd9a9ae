"""The outbox and the MQTT link against a real mosquitto."""

import json
import time

from device.mqtt_link import MqttLink
from device.outbox import Outbox
from tests.support.broker import Broker, free_port
from tests.support.waiting import wait_until


def make_link(broker_url, outbox, received=None, subscriptions=()):
    return MqttLink(
        url=broker_url, client_id="unit-test-01", username=None, password=None, ca_file=None,
        state_topic="loaxa/unit/unit-test-01/state",
        online_payload=lambda: b'{"state":"online"}', will_payload=b'{"state":"lost"}',
        offline_payload=lambda: b'{"state":"offline"}', subscriptions=list(subscriptions),
        on_message=(lambda t, p: received.append((t, p))) if received is not None else (lambda t, p: None),
        outbox=outbox)


def test_outbox_survives_reopen(tmp_path):
    box = Outbox(tmp_path / "o.sqlite")
    first = box.add("a/b", b"one")
    box.add("a/b", b"two")
    box.remove(first)
    box.close()
    box.close()  # safe twice
    again = Outbox(tmp_path / "o.sqlite")
    assert [r.payload for r in again.pending()] == [b"two"]
    assert again.depth() == 1


def test_records_wait_for_the_broker_then_arrive_in_order(tmp_path):
    port = free_port()
    box = Outbox(tmp_path / "o.sqlite")
    link = make_link(f"mqtt://127.0.0.1:{port}", box)
    link.start()
    try:
        for n in range(5):
            seq = box.add("loaxa/unit/unit-test-01/playlog", json.dumps({"n": n}).encode())
            link.send_record(seq, "loaxa/unit/unit-test-01/playlog", b"ignored while down")
        time.sleep(0.5)
        assert box.depth() == 5  # nothing is lost while the broker is away
        broker = Broker(tmp_path / "late", port=port).start()
        try:
            watch = broker.collector("loaxa/unit/unit-test-01/#")
            wait_until(lambda: box.depth() == 0, 20, what="outbox drained")
            wait_until(lambda: len(watch.payloads("loaxa/unit/unit-test-01/playlog")) >= 5, 5)
            got = [json.loads(p)["n"] for p in watch.payloads("loaxa/unit/unit-test-01/playlog")]
            assert sorted(set(got)) == [0, 1, 2, 3, 4]
            assert [n for i, n in enumerate(got) if n not in got[:i]] == [0, 1, 2, 3, 4]
            watch.close()
        finally:
            broker.stop()
    finally:
        link.stop()
        link.stop()
        box.close()


def test_state_online_retained_and_offline_on_clean_stop(tmp_path, broker):
    box = Outbox(tmp_path / "o.sqlite")
    link = make_link(broker.url, box)
    link.start()
    wait_until(lambda: link.connected, 10, what="connected")
    link.stop()
    box.close()
    late = broker.collector("loaxa/unit/unit-test-01/state")  # sees only the retained one
    topic, payload = late.wait_for(lambda t, p: True, 5)
    assert json.loads(payload)["state"] == "offline"
    late.close()


def test_a_raising_handler_does_not_kill_the_link(tmp_path, broker):
    import paho.mqtt.publish as publish
    box = Outbox(tmp_path / "o.sqlite")
    received = []

    def handler(topic, payload):
        received.append(payload)
        if payload == b"boom":
            raise ValueError("handler bug")

    link = make_link(broker.url, box, subscriptions=["loaxa/unit/unit-test-01/schedule"])
    link._on_message = handler
    link.start()
    wait_until(lambda: link.connected, 10, what="connected")
    time.sleep(0.3)
    for payload in (b"boom", b"after"):
        publish.single("loaxa/unit/unit-test-01/schedule", payload, qos=1,
                       hostname=broker.host, port=broker.port)
    wait_until(lambda: b"after" in received, 10, what="message after the exception")
    link.stop()
    box.close()
