"""What the collector makes of each MQTT message: rows for the fleet database.

Pure: no network, no database. `Batch.add(message)` sorts one message into the rows
it becomes; `fleet.store.FleetStore.write(batch)` commits a whole batch in one
transaction. A message that cannot be understood becomes a `bad_messages` row with
the reason (and is acknowledged: sending it again would not make it better).

Topics (prefix `loaxa`): `loaxa/unit/{id}/state|health|playlog|event|reply` from
units; `loaxa/unit/{id}/schedule` and `loaxa/group/{path}/schedule` (retained signed
schedules) from operators, recorded so reports know what was targeted.

When a unit was last seen: the moment of the newest message from it, taken as the
earlier of its own timestamp and our receiving time. A message that waited in the
broker (collector down) or in the unit's outbox (broker down) carries its own older
time; a unit whose clock runs ahead cannot claim to be seen in the future.
"""

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime

from loaxa.errors import LoaxaError
from scheduler import parse_schedule, read_envelope
from scheduler.targets import UNIT_ID_PATTERN, is_group_path

__all__ = ["Batch", "Received", "UNIT_KINDS", "epoch_ms", "parse_time"]

UNIT_KINDS = ("state", "health", "playlog", "event", "reply", "track")
STATES = ("online", "offline", "lost")


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    retain: bool = False
    received_at: float = 0.0


def parse_time(value) -> datetime | None:
    """An aware datetime from ISO 8601 text with offset, else None."""
    if not isinstance(value, str) or len(value) > 40:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.utcoffset() is not None else None


def epoch_ms(value) -> int | None:
    moment = parse_time(value)
    return None if moment is None else round(moment.timestamp() * 1000)


def _text(value, limit: int) -> str | None:
    return value[:limit] if isinstance(value, str) else None


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if value == value and abs(value) != float("inf") else None


def _integer(value) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or not -2**63 <= value < 2**63:
        return None
    return value


class BadMessage(ValueError):
    """The message cannot become a row; the text says why."""


MAX_TRACK_POINTS = 1000


def _track_point(value) -> list:
    """[ts, lat, lon, speed_kmh or None], checked: a bad point refuses the batch."""
    if not isinstance(value, list) or len(value) != 4:
        raise BadMessage("track point is not [ts, lat, lon, speed_kmh]")
    ts, lat, lon, speed = (_number(v) for v in value)
    if ts is None or lat is None or lon is None or not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise BadMessage(f"track point out of range: {value!r}"[:200])
    return [int(ts), lat, lon, speed]


def _json_object(payload: bytes) -> tuple[dict, str]:
    """The object and its text exactly as sent (what the database keeps)."""
    try:
        text = payload.decode("utf-8")
        doc = json.loads(text)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise BadMessage(f"not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise BadMessage("not a JSON object")
    return doc, text


@dataclass
class Batch:
    """Rows from a run of messages, de-duplicated within the batch (the database does the rest)."""
    prefix: str = "loaxa"
    seen: dict = field(default_factory=dict)       # unit -> last_seen (epoch s)
    states: dict = field(default_factory=dict)     # unit -> state columns (last message wins)
    health: dict = field(default_factory=dict)     # unit -> health columns (last wins)
    playlogs: dict = field(default_factory=dict)   # id -> row
    events: dict = field(default_factory=dict)     # id -> row
    replies: dict = field(default_factory=dict)    # digest -> row
    tracks: dict = field(default_factory=dict)     # batch id -> row (a vehicle's track)
    schedule_versions: dict = field(default_factory=dict)  # (id, version) -> row
    schedule_topics: dict = field(default_factory=dict)    # topic -> row, or None: cleared
    bad: list = field(default_factory=list)
    messages: int = 0

    def __len__(self) -> int:
        return self.messages

    # ---- sorting a message ----
    def add(self, msg: Received) -> None:
        self.messages += 1
        try:
            self._add(msg)
        except BadMessage as exc:
            self.bad.append({"topic": msg.topic[:2000], "payload": bytes(msg.payload[:65536]),
                             "reason": str(exc)[:500], "received_at": msg.received_at})

    def _add(self, msg: Received) -> None:
        head = f"{self.prefix}/"
        if not msg.topic.startswith(head):
            raise BadMessage(f"topic outside {head}")
        rest = msg.topic[len(head):]
        which, _, rest = rest.partition("/")
        name, _, kind = rest.rpartition("/")
        if kind in ("cmd", "trust", "release"):
            return  # commands, trust documents and releases for units: not ours to keep
        if kind == "schedule" and which in ("unit", "group"):
            return self._schedule(msg)
        if which != "unit" or kind not in UNIT_KINDS:
            raise BadMessage(f"not a unit report topic: {msg.topic}")
        if not UNIT_ID_PATTERN.fullmatch(name):
            raise BadMessage(f"not a unit id: {name!r}")
        getattr(self, f"_{kind}")(name, msg, *_json_object(msg.payload))

    def _saw(self, unit: str, msg: Received, own_time=None) -> None:
        moment = parse_time(own_time)
        when = msg.received_at if moment is None else min(moment.timestamp(), msg.received_at)
        self.seen[unit] = max(when, self.seen.get(unit, when))

    def _state(self, unit: str, msg: Received, doc: dict, text: str) -> None:
        groups = doc.get("groups")
        if not isinstance(groups, list) or not all(is_group_path(g) for g in groups):
            groups = None
        state = doc.get("state")
        self.states[unit] = {
            "state": state if state in STATES else _text(state, 16), "state_ts": _text(doc.get("ts"), 40),
            "boot": _text(doc.get("boot"), 64), "version": _text(doc.get("version"), 32),
            "groups": None if groups is None else json.dumps(groups),
            "mock": doc.get("mock") if isinstance(doc.get("mock"), bool) else None}
        self._saw(unit, msg, doc.get("ts"))

    def _health(self, unit: str, msg: Received, doc: dict, text: str) -> None:
        self.health[unit] = {"health": text, "health_ts": _text(doc.get("ts"), 40)}
        self._saw(unit, msg, doc.get("ts"))

    def _playlog(self, unit: str, msg: Received, doc: dict, text: str) -> None:
        record_id = doc.get("id")
        if not isinstance(record_id, str) or not 0 < len(record_id) <= 64:
            raise BadMessage("playlog without a string id")
        self.playlogs[record_id] = {
            "id": record_id, "unit": unit, "schedule": _text(doc.get("schedule"), 255),
            "version": _integer(doc.get("version")), "item": _text(doc.get("item"), 64),
            "scheduled_at": _text(doc.get("scheduled_at"), 40), "scheduled_ms": epoch_ms(doc.get("scheduled_at")),
            "outcome": _text(doc.get("outcome"), 16), "reason": _text(doc.get("reason"), 2000),
            "played_s": _number(doc.get("played_s")), "expected_s": _number(doc.get("expected_s")),
            "started_at": _text(doc.get("started_at"), 40), "ended_at": _text(doc.get("ended_at"), 40),
            "doc": text, "received_at": msg.received_at}
        self._saw(unit, msg, doc.get("ended_at"))

    def _event(self, unit: str, msg: Received, doc: dict, text: str) -> None:
        event_id = doc.get("id")
        if not isinstance(event_id, str) or not 0 < len(event_id) <= 64:
            raise BadMessage("event without a string id")
        self.events[event_id] = {
            "id": event_id, "unit": unit, "kind": _text(doc.get("kind"), 64), "ts": _text(doc.get("ts"), 40),
            "detail": _text(doc.get("detail"), 2000), "doc": text, "received_at": msg.received_at}
        self._saw(unit, msg, doc.get("ts"))

    def _track(self, unit: str, msg: Received, doc: dict, text: str) -> None:
        """A vehicle's track batch `{"id", "points": [[ts, lat, lon, speed_kmh], ...]}`,
        stored once per batch id (an outbox retry sends the same id again)."""
        batch_id = doc.get("id")
        if not isinstance(batch_id, str) or not 0 < len(batch_id) <= 64:
            raise BadMessage("track batch without a string id")
        points = doc.get("points")
        if not isinstance(points, list) or not points or len(points) > MAX_TRACK_POINTS:
            raise BadMessage(f"track batch without 1 to {MAX_TRACK_POINTS} points")
        clean = [_track_point(p) for p in points]
        self.tracks[batch_id] = {
            "id": batch_id, "unit": unit, "first_ts": min(p[0] for p in clean), "last_ts": max(p[0] for p in clean),
            "points": json.dumps(clean, separators=(",", ":")), "received_at": msg.received_at}
        self._saw(unit, msg, None)

    def _reply(self, unit: str, msg: Received, doc: dict, text: str) -> None:
        digest = hashlib.sha256(msg.topic.encode() + b"\0" + bytes(msg.payload)).hexdigest()
        self.replies[digest] = {
            "digest": digest, "unit": unit, "command": _text(doc.get("command"), 128),
            "ok": doc.get("ok") if isinstance(doc.get("ok"), bool) else None,
            "detail": _text(doc.get("detail"), 2000), "doc": text, "received_at": msg.received_at}
        self._saw(unit, msg)

    def _schedule(self, msg: Received) -> None:
        if not msg.payload:
            self.schedule_topics[msg.topic] = None  # the retained copy was cleared
            return
        try:
            envelope = read_envelope(bytes(msg.payload))
            schedule = parse_schedule(envelope.payload)
        except LoaxaError as exc:
            raise BadMessage(f"schedule: {exc}") from exc
        key = (schedule.id, schedule.version)
        self.schedule_versions.setdefault(key, {
            "schedule": schedule.id, "version": schedule.version, "key": envelope.key[:64],
            "issued_at": schedule.issued_at.isoformat(), "issued_ms": round(schedule.issued_at.timestamp() * 1000),
            "targets": json.dumps(list(schedule.targets)), "payload": schedule.payload,
            "envelope": bytes(msg.payload).decode("utf-8"), "first_seen": msg.received_at})
        self.schedule_topics[msg.topic] = {"topic": msg.topic, "schedule": schedule.id,
                                           "version": schedule.version, "updated_at": msg.received_at}
