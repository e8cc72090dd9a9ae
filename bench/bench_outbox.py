"""Outbox replay after reconnect: 10,000 records, beside a plain paho QoS 1 publish loop.

Goal (issue 5): the outbox replays at >= 25% of the plain loop's rate, measured in
the same run against the same mosquitto. The outbox pays for what the plain loop
does not: every record read from SQLite (WAL, synchronous=FULL) and deleted only
once its PUBACK came.
"""

import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import paho.mqtt.client as mqtt  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from device.mqtt_link import MqttLink  # noqa: E402
from device.outbox import Outbox  # noqa: E402
from tests.support.broker import Broker  # noqa: E402

RECORDS = 10_000
GOAL_RATIO = 0.25
PAYLOAD = (b'{"id":"00000000-0000-0000-0000-000000000000","unit":"dl-lak-bongkrang-01",'
           b'"schedule":"dak-lak/2026-w48","version":3,"item":"sang","outcome":"completed",'
           b'"played_s":79.1,"expected_s":79.1}')


def plain_paho_rate(broker) -> float:
    done = threading.Event()
    acked = [0]

    def on_publish(client, userdata, mid, reason_code, properties):
        acked[0] += 1
        if acked[0] == RECORDS:
            done.set()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-plain", protocol=mqtt.MQTTv5)
    client.on_publish = on_publish
    client.connect(broker.host, broker.port)
    client.loop_start()
    start = time.perf_counter()
    for _ in range(RECORDS):
        client.publish("loaxa/unit/bench/playlog", PAYLOAD, qos=1)
    done.wait(120)
    elapsed = time.perf_counter() - start
    client.loop_stop()
    client.disconnect()
    return RECORDS / elapsed


def outbox_replay_rate(broker, folder: Path) -> float:
    box = Outbox(folder / "outbox.sqlite", max_records=RECORDS * 2)
    for _ in range(RECORDS):
        box.add("loaxa/unit/bench/playlog", PAYLOAD, kind="playlog")
    link = MqttLink(url=broker.url, client_id="bench-unit", username=None, password=None, ca_file=None,
                    state_topic="loaxa/unit/bench/state", online_payload=lambda: b"{}",
                    will_payload=b"{}", offline_payload=lambda: b"{}", subscriptions=[],
                    on_message=lambda t, p: None, outbox=box)
    start = time.perf_counter()
    link.start()
    while box.depth() and time.perf_counter() - start < 300:
        time.sleep(0.01)
    elapsed = time.perf_counter() - start
    left = box.depth()
    link.stop()
    box.close()
    if left:
        raise SystemExit(f"outbox did not drain: {left} records left")
    return RECORDS / elapsed


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        broker = Broker(Path(tmp) / "broker").start()
        try:
            plain = plain_paho_rate(broker)
            ours = outbox_replay_rate(broker, Path(tmp))
        finally:
            broker.stop()
    ratio = ours / plain
    print(f"plain paho QoS 1 loop:  {plain:8.0f} records/s")
    print(f"outbox replay:          {ours:8.0f} records/s")
    print(f"ratio:                  {ratio:8.1%}  (goal >= {GOAL_RATIO:.0%})")
    return 0 if ratio >= GOAL_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
