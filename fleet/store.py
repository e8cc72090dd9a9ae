"""Writing batches into the fleet database and reading them back for status and reports.

`FleetStore.write(batch)` commits one `fleet.ingest.Batch` in one transaction:
playlogs, events, replies and schedule versions are inserted unless their key is
already there (a message the broker sent again after a collector restart is a
no-op); units are upserted, `last_seen` only ever moving forward. Rows are written
in key order so that two collectors writing to one PostgreSQL never deadlock.
"""

import json
from dataclasses import dataclass

from sqlalchemy import bindparam, case, delete, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from fleet.db import (bad_messages, events, playlogs, replies, schedule_topics, schedule_versions, tracks,
                      units)

__all__ = ["FleetStore", "UnitRow"]


@dataclass(frozen=True)
class UnitRow:
    unit: str
    state: str | None
    state_ts: str | None
    boot: str | None
    version: str | None
    groups: tuple
    mock: bool | None
    health: dict | None
    health_ts: str | None
    first_seen: float
    last_seen: float


def _sorted(rows: dict) -> list:
    return [rows[key] for key in sorted(rows)]


# `last_seen` is kept to this resolution: in a burst (a backlog after an outage) a
# unit's row is rewritten once, not once per message.
SEEN_RESOLUTION_S = 30.0


class FleetStore:
    def __init__(self, engine):
        self.engine = engine
        self._dialect = sqlite if engine.dialect.name == "sqlite" else postgresql
        self._seen_written: dict[str, float] = {}  # unit -> last_seen this store last wrote

    def _insert(self, table):
        return self._dialect.insert(table)

    # ---- writing ----
    def write(self, batch) -> None:
        """Commit everything in `batch` at once; raises SQLAlchemyError (nothing written then)."""
        seen = self._seen_to_write(batch)
        with self.engine.connect().execution_options(writer=True) as conn, conn.begin():
            self._write_units(conn, batch, seen)
            for table, rows in ((playlogs, batch.playlogs), (events, batch.events), (replies, batch.replies),
                                (tracks, batch.tracks),
                                (schedule_versions, batch.schedule_versions)):
                if rows:
                    conn.execute(self._insert(table).on_conflict_do_nothing(), _sorted(rows))
            self._write_schedule_topics(conn, batch.schedule_topics)
            if batch.bad:
                conn.execute(insert(bad_messages), batch.bad)
        for unit, when in seen.items():
            self._seen_written[unit] = max(when, self._seen_written.get(unit, when))

    def _seen_to_write(self, batch) -> dict:
        """The units whose row is new to this store, or whose last_seen moved on enough."""
        return {unit: seen for unit, seen in batch.seen.items()
                if unit in batch.states or unit in batch.health or unit not in self._seen_written
                or seen - self._seen_written[unit] >= SEEN_RESOLUTION_S}

    def _write_units(self, conn, batch, seen: dict) -> None:
        if seen:
            stmt = self._insert(units)
            newer = stmt.excluded.last_seen > units.c.last_seen
            conn.execute(stmt.on_conflict_do_update(
                index_elements=[units.c.unit],
                set_={"last_seen": case((newer, stmt.excluded.last_seen), else_=units.c.last_seen)}),
                [{"unit": unit, "first_seen": when, "last_seen": when} for unit, when in sorted(seen.items())])
        for rows, columns in ((batch.states, ("state", "state_ts", "boot", "version", "groups", "mock")),
                              (batch.health, ("health", "health_ts"))):
            if rows:
                stmt = update(units).where(units.c.unit == bindparam("u_unit")).values(
                    {c: bindparam(f"u_{c}") for c in columns})
                conn.execute(stmt, [{"u_unit": unit, **{f"u_{c}": row[c] for c in columns}}
                                    for unit, row in sorted(rows.items())])

    def _write_schedule_topics(self, conn, topics: dict) -> None:
        cleared = sorted(topic for topic, row in topics.items() if row is None)
        held = [row for topic, row in sorted(topics.items()) if row is not None]
        if cleared:
            conn.execute(delete(schedule_topics).where(schedule_topics.c.topic.in_(cleared)))
        if held:
            stmt = self._insert(schedule_topics)
            conn.execute(stmt.on_conflict_do_update(
                index_elements=[schedule_topics.c.topic],
                set_={c: stmt.excluded[c] for c in ("schedule", "version", "updated_at")}), held)

    # ---- reading ----
    def units(self) -> list[UnitRow]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(units).order_by(units.c.unit)).mappings().all()
        return [_unit_row(row) for row in rows]

    def schedule_versions(self, schedule_id: str) -> list[dict]:
        """Every version of one schedule seen, oldest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(schedule_versions).where(schedule_versions.c.schedule == schedule_id)
                                .order_by(schedule_versions.c.version)).mappings().all()
        return [dict(row) for row in rows]

    def schedule_ids(self) -> list[str]:
        with self.engine.connect() as conn:
            return list(conn.execute(select(schedule_versions.c.schedule).distinct()
                                     .order_by(schedule_versions.c.schedule)).scalars())

    def plays(self, schedule_id: str, start_ms: int, end_ms: int) -> list[dict]:
        """Playlogs of one schedule for occurrences scheduled in [start_ms, end_ms)."""
        columns = [playlogs.c[c] for c in ("id", "unit", "item", "scheduled_ms", "outcome", "played_s")]
        with self.engine.connect() as conn:
            rows = conn.execute(select(*columns).where(
                playlogs.c.schedule == schedule_id, playlogs.c.scheduled_ms >= start_ms,
                playlogs.c.scheduled_ms < end_ms)).mappings().all()
        return [dict(row) for row in rows]

    def playlog_docs(self, schedule_id: str, start_ms: int, end_ms: int) -> list[dict]:
        """Whole playlogs (as received) of one schedule scheduled in [start_ms, end_ms):
        what the area report reads (`area`, `play_no`, positions)."""
        with self.engine.connect() as conn:
            texts = conn.execute(select(playlogs.c.doc).where(
                playlogs.c.schedule == schedule_id, playlogs.c.scheduled_ms >= start_ms,
                playlogs.c.scheduled_ms < end_ms)).scalars().all()
        return [json.loads(text) for text in texts]

    def track_points(self, unit: str, start_ts: float, end_ts: float) -> list[list]:
        """A vehicle's track points [ts, lat, lon, speed_kmh] in [start_ts, end_ts], by time;
        the batches overlapping the range are read whole."""
        with self.engine.connect() as conn:
            texts = conn.execute(select(tracks.c.points).where(
                tracks.c.unit == unit, tracks.c.last_ts >= start_ts, tracks.c.first_ts <= end_ts)).scalars().all()
        points = {(p[0], p[1], p[2]): p for text in texts for p in json.loads(text)}
        return sorted((p for p in points.values() if start_ts <= p[0] <= end_ts), key=lambda p: p[0])

    def track_units(self, start_ts: float, end_ts: float) -> list[str]:
        """The units with track points in [start_ts, end_ts]."""
        with self.engine.connect() as conn:
            return list(conn.execute(select(tracks.c.unit).distinct().where(
                tracks.c.last_ts >= start_ts, tracks.c.first_ts <= end_ts).order_by(tracks.c.unit)).scalars())

    def counts(self) -> dict:
        """Rows per table (for logs and tests)."""
        from sqlalchemy import func
        with self.engine.connect() as conn:
            return {t.name: conn.execute(select(func.count()).select_from(t)).scalar()
                    for t in (units, playlogs, events, replies, schedule_versions, schedule_topics, tracks,
                                  bad_messages)}


def _unit_row(row) -> UnitRow:
    groups = json.loads(row["groups"]) if row["groups"] else []
    health = json.loads(row["health"]) if row["health"] else None
    return UnitRow(unit=row["unit"], state=row["state"], state_ts=row["state_ts"], boot=row["boot"],
                   version=row["version"], groups=tuple(groups), mock=row["mock"], health=health,
                   health_ts=row["health_ts"], first_seen=row["first_seen"], last_seen=row["last_seen"])
