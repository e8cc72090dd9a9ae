"""What units and operators put on the broker, as bytes, for the fleet tests; a collector to run."""

import contextlib
import json
import time
import uuid
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from fleet.ingest import Received
from scheduler import sign_document

TZ = ZoneInfo("Asia/Ho_Chi_Minh")


def iso(moment: datetime) -> str:
    return moment.astimezone(TZ).isoformat(timespec="milliseconds")


def state_msg(unit: str, groups, state: str = "online", ts: datetime | None = None, *, retain=True,
              received_at: float | None = None) -> Received:
    from scheduler import expand_groups
    doc = {"state": state, "ts": iso(ts or datetime.now(TZ)), "version": "0.1.0", "boot": str(uuid.uuid4()),
           "groups": expand_groups(groups), "mock": True}
    return Received(f"loaxa/unit/{unit}/state", json.dumps(doc).encode(), retain,
                    received_at if received_at is not None else time.time())


def playlog_doc(unit: str, schedule: str, item: str, at: datetime, outcome: str = "completed",
                played_s: float = 10.0, version: int = 1, record_id: str | None = None) -> dict:
    return {"id": record_id or str(uuid.uuid4()), "unit": unit, "schedule": schedule, "version": version,
            "item": item, "media": ["chime"], "priority": "normal", "source": "media",
            "scheduled_at": iso(at), "started_at": iso(at), "ended_at": iso(at + timedelta(seconds=played_s)),
            "expected_s": 10.0, "played_s": played_s, "outcome": outcome,
            "reason": None if outcome == "completed" else "test", "volume": 80, "zones": [1, 2],
            "position": None, "clock": "system", "mock": True}


def playlog_msg(unit: str, *args, received_at: float | None = None, **kwargs) -> Received:
    doc = playlog_doc(unit, *args, **kwargs)
    return Received(f"loaxa/unit/{unit}/playlog", json.dumps(doc).encode(), False,
                    received_at if received_at is not None else time.time())


def schedule_doc(schedule_id: str, targets, items, *, version: int = 1, issued_at: datetime,
                 valid_days: int = 7) -> dict:
    return {"type": "schedule", "id": schedule_id, "version": version, "targets": list(targets),
            "issued_at": issued_at.astimezone(TZ).isoformat(timespec="seconds"),
            "valid_from": (issued_at.astimezone(TZ) - timedelta(days=1)).date().isoformat(),
            "valid_until": (issued_at.astimezone(TZ) + timedelta(days=valid_days)).date().isoformat(),
            "timezone": "Asia/Ho_Chi_Minh", "media": {}, "items": list(items)}


def schedule_msg(key, doc: dict, topic: str | None = None) -> Received:
    envelope = sign_document(json.dumps(doc), key.key, key.name)
    topic = topic or f"loaxa/{doc['targets'][0].replace(':', '/', 1)}/schedule"
    return Received(topic, envelope, True, time.time())


def write(store, *messages, prefix: str = "loaxa") -> None:
    from fleet.ingest import Batch
    batch = Batch(prefix=prefix)
    for message in messages:
        batch.add(message)
    store.write(batch)


@contextlib.contextmanager
def running_collector(broker_url: str, db_url: str, client_id: str = "test-collector", **settings):
    """A collector in this process; yields it once it has subscribed."""
    from fleet.broker import BrokerOptions
    from fleet.collector import Collector, CollectorSettings
    from fleet.db import open_database
    from fleet.store import FleetStore
    from loaxa.brokerurl import parse_broker_url
    engine = open_database(db_url)
    collector = Collector(BrokerOptions(parse_broker_url(broker_url)), FleetStore(engine),
                          CollectorSettings(client_id=client_id, **settings))
    collector.start()
    try:
        if not collector.wait_subscribed(10):
            raise AssertionError("collector did not subscribe within 10 s")
        yield collector
    finally:
        collector.stop()
        engine.dispose()
