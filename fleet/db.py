"""The fleet database: where the collector keeps what units report, for status and reports.

SQLAlchemy Core, so one code path serves SQLite (the default: a file in the current
folder) and PostgreSQL (a province's shared server). URLs are SQLAlchemy's:
`sqlite:////abs/path.db`, `sqlite:///relative.db`, `postgresql://user@host/db`
(mapped to the psycopg 3 driver, `postgresql+psycopg://`). A bare path is taken as
an SQLite file.

The schema is built by numbered migrations (`fleet/migrations.py`), recorded in
`schema_migrations`; `open_database` applies the missing ones, under a lock, so two
collectors starting at once against one PostgreSQL do not race. The tables below are
the shape the migrations leave, for queries; `tests/test_fleet_db.py` checks they agree.

SQLite is opened in WAL mode with `synchronous=FULL`: the collector acknowledges a
message to the broker only after its commit, so a committed row must survive a power
cut, not only a crash.
"""

import logging
import sys
import time
from pathlib import Path

from sqlalchemy import (BigInteger, Boolean, Column, Float, Integer, LargeBinary, MetaData, String, Table,
                        Text, create_engine, event, inspect, select, text)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, SQLAlchemyError

from fleet.errors import FleetError

__all__ = ["DEFAULT_DB_FILE", "FleetError", "default_url", "describe_url", "metadata", "normalise_url",
           "open_database", "schema_version"]

log = logging.getLogger("loaxa.fleet.db")

DEFAULT_DB_FILE = "loaxa-fleet.db"
SQLITE_BUSY_TIMEOUT_S = 30
PG_MIGRATION_LOCK = 0x6C6F617861  # "loaxa": one advisory lock id for schema changes


# ---- the tables, as the migrations leave them ----

metadata = MetaData()

schema_migrations = Table(
    "schema_migrations", metadata,
    Column("version", Integer, primary_key=True),
    Column("name", String(200), nullable=False),
    Column("applied_at", Float, nullable=False))

units = Table(
    "units", metadata,
    Column("unit", String(64), primary_key=True),
    Column("state", String(16)),          # online | offline | lost (SPEC), as last reported
    Column("state_ts", String(40)),       # the state document's ts
    Column("boot", String(64)),
    Column("version", String(32)),        # loaxa version on the unit
    Column("groups", Text),               # JSON list, with ancestors, from `state`
    Column("mock", Boolean),
    Column("health", Text),               # the last health document (JSON)
    Column("health_ts", String(40)),
    Column("first_seen", Float, nullable=False),
    Column("last_seen", Float, nullable=False))  # epoch s: when we last heard from the unit

playlogs = Table(
    "playlogs", metadata,
    Column("id", String(64), primary_key=True),
    Column("unit", String(64), nullable=False),
    Column("schedule", String(255)),
    Column("version", BigInteger),
    Column("item", String(64)),
    Column("scheduled_at", String(40)),
    Column("scheduled_ms", BigInteger),   # scheduled_at as epoch milliseconds: what reports match on
    Column("outcome", String(16)),
    Column("reason", Text),
    Column("played_s", Float),
    Column("expected_s", Float),
    Column("started_at", String(40)),
    Column("ended_at", String(40)),
    Column("doc", Text, nullable=False),  # the record exactly as received
    Column("received_at", Float, nullable=False))

events = Table(
    "events", metadata,
    Column("id", String(64), primary_key=True),
    Column("unit", String(64), nullable=False),
    Column("kind", String(64)),
    Column("ts", String(40)),
    Column("detail", Text),
    Column("doc", Text, nullable=False),
    Column("received_at", Float, nullable=False))

replies = Table(
    "replies", metadata,
    Column("digest", String(64), primary_key=True),  # sha256 of topic and payload: replies carry no id
    Column("unit", String(64), nullable=False),
    Column("command", String(128)),
    Column("ok", Boolean),
    Column("detail", Text),
    Column("doc", Text, nullable=False),
    Column("received_at", Float, nullable=False))

schedule_versions = Table(
    "schedule_versions", metadata,
    Column("schedule", String(255), primary_key=True),
    Column("version", BigInteger, primary_key=True),
    Column("key", String(64)),
    Column("issued_at", String(40)),
    Column("issued_ms", BigInteger),
    Column("targets", Text, nullable=False),   # JSON list
    Column("payload", Text, nullable=False),   # the signed document text
    Column("envelope", Text, nullable=False),  # the envelope exactly as retained
    Column("first_seen", Float, nullable=False))

schedule_topics = Table(
    "schedule_topics", metadata,
    Column("topic", String(512), primary_key=True),
    Column("schedule", String(255), nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("updated_at", Float, nullable=False))

tracks = Table(
    "tracks", metadata,
    Column("id", String(64), primary_key=True),  # the batch id: a batch sent twice is stored once
    Column("unit", String(64), nullable=False),
    Column("first_ts", BigInteger, nullable=False),  # epoch s of its first and last point
    Column("last_ts", BigInteger, nullable=False),
    Column("points", Text, nullable=False),  # JSON [[ts, lat, lon, speed_kmh], ...]
    Column("received_at", Float, nullable=False))

bad_messages = Table(
    "bad_messages", metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("topic", Text, nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("reason", Text, nullable=False),
    Column("received_at", Float, nullable=False))


# ---- URLs ----

def default_url(folder: Path | None = None) -> str:
    """`sqlite:////<current folder>/loaxa-fleet.db`."""
    return f"sqlite:///{(Path(folder or Path.cwd()) / DEFAULT_DB_FILE).resolve()}"


def normalise_url(url: str) -> str:
    """An SQLAlchemy URL with the psycopg 3 driver for PostgreSQL; a bare path means SQLite."""
    if "://" not in url:
        return f"sqlite:///{Path(url).expanduser().resolve()}"
    for plain in ("postgresql://", "postgres://"):
        if url.startswith(plain):
            return "postgresql+psycopg://" + url[len(plain):]
    return url


def describe_url(url: str) -> str:
    """The URL fit for a message: the password masked."""
    try:
        return make_url(normalise_url(url)).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def _parsed(url: str):
    try:
        parsed = make_url(normalise_url(url))
    except ArgumentError as exc:
        raise FleetError(f"database URL {url!r}: not an SQLAlchemy URL (sqlite:////abs/path.db or "
                         "postgresql://user@host/db)") from exc
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise FleetError(f"database URL {describe_url(url)}: only sqlite and postgresql are supported")
    if backend == "postgresql" and parsed.get_driver_name() != "psycopg":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


# ---- engines ----

def _sqlite_file(parsed) -> Path | None:
    database = parsed.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def _sqlite_engine(parsed, create: bool) -> Engine:
    path = _sqlite_file(parsed)
    if path is not None:
        if not create and not path.exists():
            raise FleetError(f"no fleet database at {path}: start `loaxa fleet collect --db "
                             f"{parsed}` first, or give --db")
        if not path.parent.is_dir():
            raise FleetError(f"database {path}: folder {path.parent} does not exist")
    engine = create_engine(parsed, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, record):
        # Let SQLAlchemy, not pysqlite, say when transactions begin (SQLAlchemy's recipe);
        # WAL lets readers work beside the collector; FULL: a commit survives power loss.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        # A writer takes the lock at BEGIN: two writers never both read, then both fail to write.
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("writer") else "BEGIN")

    return engine


PSYCOPG_REQUIREMENT = "psycopg[binary]>=3.1,<4"  # as the `fleet` extra in pyproject.toml


def _engine(url: str, create: bool) -> Engine:
    parsed = _parsed(url)
    try:
        if parsed.get_backend_name() == "sqlite":
            return _sqlite_engine(parsed, create)
        return create_engine(parsed, pool_pre_ping=True)
    except (NoSuchModuleError, ImportError) as exc:
        # The exact command: loaxa itself is installed from its source, not from PyPI.
        raise FleetError(f"database URL {describe_url(url)}: a PostgreSQL database needs psycopg 3, which is "
                         f"not installed here: run {sys.executable} -m pip install '{PSYCOPG_REQUIREMENT}'") from exc


def db_error_text(exc: BaseException) -> str:
    """One plain line from a database error."""
    orig = getattr(exc, "orig", None) or exc
    return " ".join(str(orig).split())[:300] or type(orig).__name__


def open_database(url: str | None = None, *, create: bool = True) -> Engine:
    """An engine for `url` (default: the file in the current folder), schema up to date.

    `create=False` (status, report): a missing SQLite file is an error, not a new database."""
    url = url or default_url()
    engine = _engine(url, create)
    try:
        from fleet.migrations import migrate
        migrate(engine)
    except SQLAlchemyError as exc:
        engine.dispose()
        raise FleetError(f"database {describe_url(url)}: {db_error_text(exc)}") from exc
    except BaseException:
        engine.dispose()
        raise
    return engine


def schema_version(conn) -> int:
    """The highest migration applied (0 for an empty database)."""
    if not inspect(conn).has_table("schema_migrations"):
        return 0
    return conn.execute(select(schema_migrations.c.version).order_by(
        schema_migrations.c.version.desc()).limit(1)).scalar() or 0


def lock_for_migration(conn) -> None:
    """Serialise schema changes between processes (SQLite: BEGIN IMMEDIATE already did)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": PG_MIGRATION_LOCK})


def now() -> float:
    return time.time()


def is_disconnect(exc: BaseException) -> bool:
    """A database that went away (retry later) rather than a row it refused."""
    return isinstance(exc, DBAPIError) and (exc.connection_invalidated or
                                            type(exc.orig).__name__ in ("OperationalError", "InterfaceError"))
