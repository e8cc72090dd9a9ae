"""The JSON documents a unit publishes: state, events, playlogs, health (SPEC "MQTT")."""

import json
import uuid
from datetime import datetime, tzinfo

import loaxa


def iso(dt: datetime) -> str:
    return dt.isoformat(timespec="milliseconds")


def to_json(doc: dict) -> bytes:
    text = json.dumps(doc, ensure_ascii=False, separators=(",", ":"))
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate (quoted from hostile input into a reason) has no UTF-8 form;
        # JSON's \u escapes carry it, so the event is still published.
        return json.dumps(doc, ensure_ascii=True, separators=(",", ":")).encode("ascii")


class Topics:
    """Topic names of one unit."""

    def __init__(self, prefix: str, unit_id: str):
        self.prefix = prefix
        self.unit_id = unit_id
        base = f"{prefix}/unit/{unit_id}"
        self.state = f"{base}/state"
        self.health = f"{base}/health"
        self.playlog = f"{base}/playlog"
        self.event = f"{base}/event"
        self.reply = f"{base}/reply"
        self.track = f"{base}/track"  # a vehicle's track batches (SPEC "Mobile units")


def state_doc(state: str, now: datetime, boot: str, groups, mock: bool) -> dict:
    return {"state": state, "ts": iso(now), "version": loaxa.__version__, "boot": boot,
            "groups": list(groups), "mock": mock}


def event_doc(kind: str, detail: str, now: datetime, **extra) -> dict:
    return {"id": str(uuid.uuid4()), "ts": iso(now), "kind": kind, "detail": detail, **extra}


def local(dt: datetime, tz: tzinfo) -> datetime:
    return dt.astimezone(tz)
