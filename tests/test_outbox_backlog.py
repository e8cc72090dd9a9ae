"""Records and memory under backlog (issue 11, item 7): a byte budget instead of a record
cap, drops reported, and a link that sends through a window instead of handing paho the
whole backlog (which cost +105 MB at 50,000 records and stalled past 65,535)."""

import json
import sqlite3
import threading

from device.mqtt_link import MqttLink
from device.outbox import ROW_OVERHEAD, Outbox
from tests.support.waiting import wait_until

TOPIC = "loaxa/unit/unit-test-01/playlog"


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def bulk_fill(path, count, kind="playlog", payload=None):
    """Rows written straight into the outbox's table: 70,000 fsyncs would take minutes."""
    Outbox(path).close()
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("BEGIN")
    db.executemany("INSERT INTO outbox (topic, payload, qos, kind) VALUES (?,?,?,?)",
                   ((TOPIC, payload or json.dumps({"n": n}).encode(), 1, kind) for n in range(count)))
    db.execute("COMMIT")
    db.close()


def make_link(url, box, window=None):
    extra = {} if window is None else {"window": window}
    return MqttLink(
        url=url, client_id="unit-test-01", username=None, password=None, ca_file=None,
        state_topic="loaxa/unit/unit-test-01/state", online_payload=lambda: b"{}",
        will_payload=b"{}", offline_payload=lambda: b"{}", subscriptions=[],
        on_message=lambda t, p: None, outbox=box, **extra)


def test_a_backlog_past_50000_playlogs_keeps_every_one(tmp_path):
    path = tmp_path / "o.sqlite"
    bulk_fill(path, 50_000)
    box = Outbox(path)
    for n in range(3):
        box.add(TOPIC, b'{"late": %d}' % n, kind="playlog")
    assert box.depth() == 50_003  # the old 50,000-record cap dropped the oldest playlogs here
    assert box.dropped == {}
    box.close()


def test_over_the_budget_health_then_events_go_and_playlogs_last(tmp_path):
    row = ROW_OVERHEAD + len("t/x") + 2
    clock = FakeClock()
    box = Outbox(tmp_path / "o.sqlite", max_bytes=5 * row, clock=clock)
    reports = []
    box.on_dropped = reports.append
    box.add("t/x", b"p1", kind="playlog")
    box.add("t/x", b"e1", kind="event")
    box.add("t/x", b"h1", kind="health")
    box.add("t/x", b"h2", kind="health")
    box.add("t/x", b"p2", kind="playlog")
    assert reports == [] and box.depth() == 5
    box.add("t/x", b"p3", kind="playlog")  # over: the oldest health goes
    box.add("t/x", b"e2", kind="event")    # over: the next health goes
    box.add("t/x", b"p4", kind="playlog")  # over: the oldest event goes
    assert [r.payload for r in box.pending()] == [b"p1", b"p2", b"p3", b"e2", b"p4"]
    assert box.dropped == {"health": 2, "event": 1}
    # One report at once, then at most one a minute with what went since.
    assert reports == [{"health": 1}]
    clock.now += 61
    box.add("t/x", b"p5", kind="playlog")  # the last event goes, then playlogs are all that is left
    assert reports == [{"health": 1}, {"health": 1, "event": 2}]
    box.add("t/x", b"p6", kind="playlog")  # nothing else left: the oldest playlog goes
    assert [r.payload for r in box.pending()] == [b"p2", b"p3", b"p4", b"p5", b"p6"]
    clock.now += 61
    box.maintain()  # what went since the last report is told even with no new drop
    assert reports[-1] == {"playlog": 1}
    box.close()
    again = Outbox(tmp_path / "o.sqlite", max_bytes=5 * row)
    assert again.depth() == 5 and again.size_bytes() == 5 * row  # the budget is kept across restarts
    again.close()


def test_the_budget_is_a_config_key():
    from pathlib import Path
    from provisioning.config import parse_config
    cfg = parse_config({"unit": {"id": "dl-a-01", "state_dir": "/tmp/x"}, "broker": {"url": "mqtt://h"},
                        "outbox": {"max_mb": 64}}, base_dir=Path("/tmp"))
    assert cfg.outbox.max_mb == 64
    default = parse_config({"unit": {"id": "dl-a-01", "state_dir": "/tmp/x"}, "broker": {"url": "mqtt://h"}},
                           base_dir=Path("/tmp"))
    assert default.outbox.max_mb == 256


def test_the_link_never_has_more_than_its_window_in_flight(tmp_path, broker):
    path = tmp_path / "o.sqlite"
    bulk_fill(path, 3_000)
    box = Outbox(path)
    link = make_link(broker.url, box, window=20)
    watch = broker.collector(TOPIC)
    most = [0]
    done = threading.Event()

    def sample():
        # paho's own queue is where the whole backlog used to sit at connect.
        while not done.is_set():
            client = link._client
            if client is not None:
                most[0] = max(most[0], len(client._out_messages))
            done.wait(0.001)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    link.start()
    try:
        wait_until(lambda: box.depth() == 0, 60, what="the backlog drained")
    finally:
        done.set()
        sampler.join()
        link.stop()
        box.close()
    assert most[0] <= 20 + 1  # the window, and the retained `state`
    wait_until(lambda: len(watch.payloads(TOPIC)) >= 3_000, 10)
    assert sorted({json.loads(p)["n"] for p in watch.payloads(TOPIC)}) == list(range(3_000))
    watch.close()


def test_70000_records_drain_completely(tmp_path, broker):
    """Past 65,535 the old link stalled: paho's message ids were all taken by the backlog."""
    path = tmp_path / "o.sqlite"
    bulk_fill(path, 70_000, payload=b'{"id": "x"}')
    box = Outbox(path)
    link = make_link(broker.url, box)
    link.start()
    try:
        wait_until(lambda: box.depth() == 0, 90, what="70,000 records delivered")
    finally:
        link.stop()
        box.close()
    db = sqlite3.connect(path)
    assert db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 0
    db.close()


def test_records_added_during_a_drain_follow_in_order(tmp_path, broker):
    path = tmp_path / "o.sqlite"
    bulk_fill(path, 500)
    box = Outbox(path)
    link = make_link(broker.url, box, window=10)
    watch = broker.collector(TOPIC)
    link.start()
    try:
        for n in range(500, 600):
            payload = json.dumps({"n": n}).encode()
            link.send_record(box.add(TOPIC, payload, kind="playlog"), TOPIC, payload)
        wait_until(lambda: box.depth() == 0, 30, what="drained")
        wait_until(lambda: len(watch.payloads(TOPIC)) >= 600, 10)
    finally:
        link.stop()
        box.close()
    got = [json.loads(p)["n"] for p in watch.payloads(TOPIC)]
    first_seen = [n for i, n in enumerate(got) if n not in set(got[:i])]
    assert first_seen == list(range(600))
    watch.close()


def test_a_broker_lost_in_the_middle_of_a_drain_loses_nothing(tmp_path):
    """In-flight records outlive a disconnect: paho sends them again after reconnecting,
    and the window carries on from there."""
    from tests.support.broker import Broker
    path = tmp_path / "o.sqlite"
    bulk_fill(path, 20_000)
    box = Outbox(path)
    broker = Broker(tmp_path / "b1").start()
    link = MqttLink(
        url=broker.url, client_id="unit-test-01", username=None, password=None, ca_file=None,
        state_topic="loaxa/unit/unit-test-01/state", online_payload=lambda: b"{}",
        will_payload=b"{}", offline_payload=lambda: b"{}", subscriptions=[],
        on_message=lambda t, p: None, outbox=box, window=50, min_delay_s=0.2, max_delay_s=0.5)
    link.start()
    try:
        wait_until(lambda: box.depth() < 15_000, 30, what="the drain under way")
        broker.stop()
        wait_until(lambda: not link.connected, 10, what="the link noticing")
        left = box.depth()
        assert 0 < left < 20_000
        broker = Broker(tmp_path / "b2", port=broker.port).start()
        # A row leaves only on a success PUBACK: an empty outbox is every record delivered.
        wait_until(lambda: box.depth() == 0, 60, what="the rest delivered after the outage")
        wait_until(lambda: link.in_flight() == 0, 5, what="nothing left in flight")
    finally:
        link.stop()
        box.close()
        broker.stop()
