"""Numbered schema migrations of the fleet database.

Each migration is `(version, name, apply(conn))`, applied once, in order, in its own
transaction, and recorded in `schema_migrations`. A migration describes the tables
as they were at its version (its own MetaData), never the current `fleet.db`
tables: a later column must not leak into an earlier step. To change the schema,
append a migration and update the tables in `fleet/db.py` to match; never edit one
that has shipped.
"""

import logging

from fleet.errors import FleetError
from sqlalchemy import (BigInteger, Boolean, Column, Float, Index, Integer, LargeBinary, MetaData, String,
                        Table, Text, insert)

from fleet.db import lock_for_migration, now, schema_migrations, schema_version

log = logging.getLogger("loaxa.fleet.db")


def _v1_tables(conn) -> None:
    m = MetaData()
    Table("units", m,
          Column("unit", String(64), primary_key=True), Column("state", String(16)),
          Column("state_ts", String(40)), Column("boot", String(64)), Column("version", String(32)),
          Column("groups", Text), Column("mock", Boolean), Column("health", Text),
          Column("health_ts", String(40)), Column("first_seen", Float, nullable=False),
          Column("last_seen", Float, nullable=False))
    Table("playlogs", m,
          Column("id", String(64), primary_key=True), Column("unit", String(64), nullable=False),
          Column("schedule", String(255)), Column("version", BigInteger), Column("item", String(64)),
          Column("scheduled_at", String(40)), Column("scheduled_ms", BigInteger),
          Column("outcome", String(16)), Column("reason", Text), Column("played_s", Float),
          Column("expected_s", Float), Column("started_at", String(40)), Column("ended_at", String(40)),
          Column("doc", Text, nullable=False), Column("received_at", Float, nullable=False))
    Table("events", m,
          Column("id", String(64), primary_key=True), Column("unit", String(64), nullable=False),
          Column("kind", String(64)), Column("ts", String(40)), Column("detail", Text),
          Column("doc", Text, nullable=False), Column("received_at", Float, nullable=False))
    Table("replies", m,
          Column("digest", String(64), primary_key=True), Column("unit", String(64), nullable=False),
          Column("command", String(128)), Column("ok", Boolean), Column("detail", Text),
          Column("doc", Text, nullable=False), Column("received_at", Float, nullable=False))
    Table("schedule_versions", m,
          Column("schedule", String(255), primary_key=True), Column("version", BigInteger, primary_key=True),
          Column("key", String(64)), Column("issued_at", String(40)), Column("issued_ms", BigInteger),
          Column("targets", Text, nullable=False), Column("payload", Text, nullable=False),
          Column("envelope", Text, nullable=False), Column("first_seen", Float, nullable=False))
    Table("schedule_topics", m,
          Column("topic", String(512), primary_key=True), Column("schedule", String(255), nullable=False),
          Column("version", BigInteger, nullable=False), Column("updated_at", Float, nullable=False))
    Table("bad_messages", m,
          Column("seq", Integer, primary_key=True, autoincrement=True), Column("topic", Text, nullable=False),
          Column("payload", LargeBinary, nullable=False), Column("reason", Text, nullable=False),
          Column("received_at", Float, nullable=False))
    m.create_all(conn)


def _v2_report_indexes(conn) -> None:
    """What reports and status look up: plays of one occurrence, events of one unit."""
    m = MetaData()
    playlogs = Table("playlogs", m, Column("schedule", String(255)), Column("item", String(64)),
                     Column("scheduled_ms", BigInteger), Column("unit", String(64)))
    event_rows = Table("events", m, Column("unit", String(64)), Column("kind", String(64)))
    Index("playlogs_occurrence", playlogs.c.schedule, playlogs.c.item, playlogs.c.scheduled_ms).create(conn)
    Index("playlogs_unit", playlogs.c.unit).create(conn)
    Index("events_unit_kind", event_rows.c.unit, event_rows.c.kind).create(conn)


def _v3_tracks(conn) -> None:
    """Vehicles' track batches (SPEC "Mobile units"), looked up per unit and time."""
    m = MetaData()
    table = Table("tracks", m,
                  Column("id", String(64), primary_key=True), Column("unit", String(64), nullable=False),
                  Column("first_ts", BigInteger, nullable=False), Column("last_ts", BigInteger, nullable=False),
                  Column("points", Text, nullable=False), Column("received_at", Float, nullable=False))
    m.create_all(conn)
    Index("tracks_unit_time", table.c.unit, table.c.first_ts).create(conn)


MIGRATIONS = [
    (1, "tables for units, playlogs, events, replies, schedules", _v1_tables),
    (2, "indexes for reports", _v2_report_indexes),
    (3, "tracks of vehicles", _v3_tracks),
]
LATEST = MIGRATIONS[-1][0]


def _create_migrations_table(engine) -> None:
    with engine.connect().execution_options(writer=True) as conn, conn.begin():
        lock_for_migration(conn)
        schema_migrations.create(conn, checkfirst=True)


def _apply(engine, version: int, name: str, step) -> None:
    with engine.connect().execution_options(writer=True) as conn, conn.begin():
        lock_for_migration(conn)
        if schema_version(conn) >= version:
            return  # another process got here first
        step(conn)
        conn.execute(insert(schema_migrations).values(version=version, name=name, applied_at=now()))
    log.info("database schema migrated to version %d (%s)", version, name)


def migrate(engine) -> int:
    """Apply every migration the database lacks; return the schema version."""
    with engine.connect() as conn:
        current = schema_version(conn)
    if current > LATEST:
        raise FleetError(f"the database schema is version {current}, newer than this loaxa knows "
                         f"({LATEST}): upgrade loaxa")
    if current == LATEST:
        return current
    _create_migrations_table(engine)
    for version, name, step in MIGRATIONS:
        if version > current:
            _apply(engine, version, name, step)
    return LATEST
