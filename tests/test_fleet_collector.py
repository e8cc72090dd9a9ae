"""The collector against a real mosquitto: everything units send lands in the database once,
on SQLite and on a real PostgreSQL; a collector killed mid-stream loses nothing."""

import json
import signal
import subprocess
import threading
import time
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select

from fleet.broker import BrokerOptions, publish
from fleet.db import open_database, playlogs
from fleet.store import FleetStore
from loaxa.brokerurl import parse_broker_url
from tests.support.fleet import TZ, playlog_doc, running_collector, schedule_doc, schedule_msg, state_msg
from tests.support.postgres import db_url, postgres_server  # noqa: F401 (fixtures)
from tests.support.unit import OperatorKey, loaxa_cmd
from tests.support.waiting import wait_until

# mosquitto drops QoS 1 messages for a client past max_queued_messages (default 1000):
# the collector's broker must queue without limit (docs/operator.md).
BROKER_SETTINGS = "max_queued_messages 0"


@pytest.fixture
def broker(broker_factory):
    return broker_factory(extra=BROKER_SETTINGS)


def options(broker) -> BrokerOptions:
    return BrokerOptions(parse_broker_url(broker.url))


def playlog_messages(count: int, units: int = 20, prefix: str = "loaxa") -> list[tuple[str, bytes, bool]]:
    at = datetime(2026, 12, 1, 6, 0, tzinfo=TZ)
    out = []
    for n in range(count):
        unit = f"dl-sim-{n % units:03d}"
        doc = playlog_doc(unit, "dak-lak/w48", "sang", at + timedelta(days=n // units), record_id=f"rec-{n:06d}")
        out.append((f"{prefix}/unit/{unit}/playlog", json.dumps(doc).encode(), False))
    return out


def stored_ids(db_url_) -> list[str]:
    engine = open_database(db_url_)
    with engine.connect() as conn:
        ids = list(conn.execute(select(playlogs.c.id)).scalars())
    engine.dispose()
    return ids


def test_everything_units_send_is_stored_once(broker, db_url, tmp_path):  # noqa: F811
    key = OperatorKey(tmp_path / "keys")
    state = state_msg("dl-sim-000", ["dak-lak/lak/bong-krang"])
    sched = schedule_msg(key, schedule_doc("dak-lak/w48", ["group:dak-lak/lak"],
                                           [{"id": "sang", "play": ["chime"], "at": "06:00"}],
                                           issued_at=datetime.now(TZ)))
    # Retained before the collector starts: it must still learn of them.
    publish(options(broker), [(state.topic, state.payload, True), (sched.topic, sched.payload, True)])
    with running_collector(broker.url, db_url) as collector:
        health = {"ts": "2026-12-01T06:00:00+07:00", "clock": "ntp", "queue": 0, "faults": []}
        event = {"id": "ev-1", "ts": "2026-12-01T06:00:00+07:00", "kind": "schedule.accepted", "detail": "ok"}
        reply = {"command": "c-1", "ok": True, "detail": "pong", "result": {}}
        messages = playlog_messages(200) + [
            ("loaxa/unit/dl-sim-000/health", json.dumps(health).encode(), False),
            ("loaxa/unit/dl-sim-000/event", json.dumps(event).encode(), False),
            ("loaxa/unit/dl-sim-000/reply", json.dumps(reply).encode(), False)]
        publish(options(broker), messages + playlog_messages(50))  # 50 sent twice
        store = collector.store
        wait_until(lambda: store.counts()["playlogs"] == 200 and store.counts()["replies"] == 1
                   and store.counts()["events"] == 1 and store.units()[0].health is not None
                   and store.counts()["schedule_versions"] == 1, 15, what="all stored")
    counts = store.counts()
    assert counts["bad_messages"] == 0
    assert counts["units"] == 20
    assert store.units()[0].state == "online"


def _collector_process(broker, db, log_path):
    return subprocess.Popen(loaxa_cmd("fleet", "collect", "--db", db, "--broker", broker.url,
                                      "--client-id", "kill-test", "--batch-size", "50",
                                      "--receive-maximum", "100"),
                            stdout=open(log_path, "ab"), stderr=subprocess.STDOUT)


def test_a_collector_killed_mid_stream_misses_nothing_and_stores_nothing_twice(broker, tmp_path):
    db = f"sqlite:///{tmp_path / 'fleet.db'}"
    log_path = tmp_path / "collector.log"
    first = _collector_process(broker, db, log_path)
    wait_until(lambda: b"collecting from" in log_path.read_bytes(), 15, what="collector up")
    wait_until(lambda: (tmp_path / "fleet.db").exists(), 5, what="database")
    time.sleep(0.5)  # subscribed
    total = 3000
    messages = playlog_messages(total)
    sender = threading.Thread(target=lambda: [publish(options(broker), messages[i:i + 250])
                                              for i in range(0, total, 250)])
    sender.start()
    engine = open_database(db)

    def count():
        with engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(playlogs)).scalar()
    wait_until(lambda: count() >= 300, 20, interval=0.02, what="some stored")
    first.send_signal(signal.SIGKILL)
    first.wait()
    killed_at = count()
    sender.join(30)
    second = _collector_process(broker, db, log_path)
    try:
        wait_until(lambda: count() >= total, 30, what=f"all {total} stored")
        time.sleep(0.5)  # any duplicate still in flight would land now
        ids = stored_ids(db)
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(15) == 0
        engine.dispose()
    assert killed_at < total, "the kill came after the stream ended: nothing was tested"
    assert len(ids) == total and sorted(ids) == sorted(json.loads(p)["id"] for _, p, _ in messages)
    assert b"resumed session" in log_path.read_bytes()


def test_two_collectors_share_the_stream(broker, tmp_path):
    db = f"sqlite:///{tmp_path / 'fleet.db'}"
    with running_collector(broker.url, db, "collector-a") as a, running_collector(broker.url, db, "collector-b") as b:
        publish(options(broker), playlog_messages(400))
        wait_until(lambda: FleetStore(a.store.engine).counts()["playlogs"] == 400, 15, what="all stored")
        assert a.stats.received > 0 and b.stats.received > 0  # the shared subscription split them
        assert a.stats.received + b.stats.received < 800


def test_track_batches_are_stored_once_per_batch_id(broker, tmp_path):
    """A vehicle's track (SPEC "Mobile units"): the collector subscribes to `track` and
    stores each batch once, even when the outbox sends it again after a lost PUBACK."""
    db = f"sqlite:///{tmp_path / 'fleet.db'}"
    first = {"id": "b-1", "points": [[1796518000, 12.7, 108.1, 36.0], [1796518030, 12.701, 108.1, 36.0]]}
    second = {"id": "b-2", "points": [[1796518060, 12.702, 108.1, None]]}
    bad = {"id": "b-3", "points": [[1796518090, 123.0, 108.1, 0.0]]}  # latitude out of range
    topic = "loaxa/unit/dl-sim-car/track"
    with running_collector(broker.url, db) as collector:
        publish(options(broker), [(topic, json.dumps(doc).encode(), False) for doc in (first, first, second, bad)])
        store = collector.store
        wait_until(lambda: store.counts()["tracks"] == 2 and store.counts()["bad_messages"] == 1, 15,
                   what="two batches stored, one refused")
        points = store.track_points("dl-sim-car", 1796518000, 1796518060)
    assert [p[0] for p in points] == [1796518000, 1796518030, 1796518060]
    assert points[2] == [1796518060, 12.702, 108.1, None]
