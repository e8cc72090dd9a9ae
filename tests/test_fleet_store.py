"""The fleet database on SQLite and on a real PostgreSQL: migrations, what the collector
writes (de-duplicated, last_seen forward only), and the coverage report's arithmetic."""

import json
from datetime import datetime, timedelta

import pytest
from sqlalchemy import inspect, insert, text

from fleet.db import FleetError, metadata, open_database, schema_migrations
from fleet.ingest import Received
from fleet.migrations import LATEST
from fleet.report import build_report, category_of
from fleet.status import fleet_status, summary
from fleet.store import FleetStore
from tests.support.fleet import TZ, playlog_msg, schedule_doc, schedule_msg, state_msg, write
from tests.support.postgres import db_url, postgres_server  # noqa: F401 (fixtures)
from tests.support.unit import OperatorKey

ISSUED = datetime(2026, 11, 30, 8, 0, tzinfo=TZ)
EVENING = datetime(2026, 12, 1, 17, 30, tzinfo=TZ)
NOW = datetime(2026, 12, 3, 0, 0, tzinfo=TZ)
LAK = "dak-lak/lak"


@pytest.fixture
def store(db_url):  # noqa: F811
    engine = open_database(db_url)
    yield FleetStore(engine)
    engine.dispose()


@pytest.fixture(scope="module")
def key(tmp_path_factory):
    return OperatorKey(tmp_path_factory.mktemp("keys"))


# ---- schema ----

def test_migrations_build_exactly_the_tables_the_code_queries(store, db_url):  # noqa: F811
    found = inspect(store.engine)
    assert set(found.get_table_names()) == set(metadata.tables)
    for table in metadata.tables.values():
        assert {c["name"] for c in found.get_columns(table.name)} == {c.name for c in table.columns}, table.name
    assert {i["name"] for i in found.get_indexes("playlogs")} >= {"playlogs_occurrence", "playlogs_unit"}
    again = open_database(db_url)  # a second start applies nothing
    with again.connect() as conn:
        assert [r.version for r in conn.execute(schema_migrations.select())] == list(range(1, LATEST + 1))
    again.dispose()


def test_a_database_from_a_newer_loaxa_is_refused(store, db_url):  # noqa: F811
    with store.engine.begin() as conn:
        conn.execute(insert(schema_migrations).values(version=LATEST + 7, name="future", applied_at=0))
    with pytest.raises(FleetError, match="newer than this loaxa"):
        open_database(db_url)


# ---- what the collector writes ----

def test_playlogs_are_stored_once_per_id(store):
    first = playlog_msg("dl-a-01", "s", "sang", EVENING, record_id="rec-1")
    write(store, first, first)   # twice in one batch
    write(store, first)          # and again after a "restart"
    write(store, playlog_msg("dl-a-01", "s", "sang", EVENING, record_id="rec-2"))
    assert store.counts()["playlogs"] == 2
    assert store.counts()["bad_messages"] == 0


def test_lost_after_online_wins_and_last_seen_only_moves_forward(store):
    online_at = datetime.now(TZ) - timedelta(minutes=5)
    write(store, state_msg("dl-a-01", [LAK], "online", online_at, retain=False))
    # The last will is built when the unit connects: its ts is older than the online state's.
    write(store, state_msg("dl-a-01", [LAK], "lost", online_at - timedelta(seconds=1), retain=False))
    (unit,) = store.units()
    assert unit.state == "lost"
    assert unit.groups == (LAK, "dak-lak")
    seen = unit.last_seen
    assert abs(seen - online_at.timestamp()) < 1  # the unit's own time, not our receiving time
    write(store, playlog_msg("dl-a-01", "s", "sang", EVENING - timedelta(days=30)))  # an old record from the outbox
    assert store.units()[0].last_seen == seen


def test_what_cannot_be_understood_is_kept_aside(store):
    write(store, Received("loaxa/unit/dl-a-01/playlog", b"not json", False, 1.0),
          Received("loaxa/unit/dl-a-01/playlog", json.dumps({"outcome": "completed"}).encode(), False, 1.0),
          Received("loaxa/unit/NOT_AN_ID/event", b"{}", False, 1.0),
          Received("loaxa/unit/dl-a-01/schedule", b'{"payload": "x"}', True, 1.0),
          Received("loaxa/unit/dl-a-01/cmd", b"anything", False, 1.0),  # commands are not ours to keep
          playlog_msg("dl-a-01", "s", "sang", EVENING))
    counts = store.counts()
    assert counts["bad_messages"] == 4 and counts["playlogs"] == 1


def test_schedules_seen_per_topic_and_version(store, key):
    doc = schedule_doc("dak-lak/w48", [f"group:{LAK}"], [{"id": "sang", "play": ["chime"], "at": "06:00"}],
                       issued_at=ISSUED)
    write(store, schedule_msg(key, doc), schedule_msg(key, doc))
    write(store, schedule_msg(key, dict(doc, version=2)))
    assert [v["version"] for v in store.schedule_versions("dak-lak/w48")] == [1, 2]
    write(store, Received(f"loaxa/group/{LAK}/schedule", b"", True, 2.0))  # retained copy cleared
    assert store.counts()["schedule_topics"] == 0
    assert store.schedule_ids() == ["dak-lak/w48"]


# ---- the report ----

def test_best_outcome_per_unit_and_occurrence_by_district_and_commune(store, key):
    items = [{"id": "bao", "play": ["chime"], "at": EVENING.isoformat()}]
    write(store, schedule_msg(key, schedule_doc("dak-lak/w48", [f"group:{LAK}"], items, issued_at=ISSUED)))
    write(store, *(state_msg(u, [g]) for u, g in [
        ("dl-a-01", f"{LAK}/bong-krang"), ("dl-a-02", f"{LAK}/bong-krang"), ("dl-a-03", f"{LAK}/buon-tria"),
        ("dl-a-04", f"{LAK}/buon-tria"), ("dl-b-01", "dak-lak/krong-ana/dray-sap")]))
    write(store,
          playlog_msg("dl-a-01", "dak-lak/w48", "bao", EVENING, "preempted", 4.0),   # resumed after an emergency
          playlog_msg("dl-a-01", "dak-lak/w48", "bao", EVENING, "completed", 6.0),
          playlog_msg("dl-a-02", "dak-lak/w48", "bao", EVENING, "preempted", 0.0),   # no audio: not partial
          playlog_msg("dl-a-02", "dak-lak/w48", "bao", EVENING, "failed", 0.0),
          playlog_msg("dl-a-03", "dak-lak/w48", "bao", EVENING, "interrupted", 5.0),
          playlog_msg("dl-b-01", "dak-lak/w48", "bao", EVENING, "completed", 10.0))  # not targeted
    report = build_report(store, "dak-lak/w48", now=NOW)
    (item,) = report["items"]
    assert report["schedule"] == "dak-lak/w48"
    assert {k: item[k] for k in ("item", "targeted", "completed", "partial", "missed", "unknown")} == \
        {"item": "bao", "targeted": 4, "completed": 1, "partial": 1, "missed": 1, "unknown": 1}
    assert datetime.fromisoformat(item["scheduled_at"]) == EVENING
    assert item["communes"] == [
        {"commune": f"{LAK}/bong-krang", "targeted": 2, "completed": 1, "partial": 0, "missed": 1, "unknown": 0},
        {"commune": f"{LAK}/buon-tria", "targeted": 2, "completed": 0, "partial": 1, "missed": 0, "unknown": 1}]
    assert item["districts"] == [{"district": LAK, "targeted": 4, "completed": 1, "partial": 1, "missed": 1,
                                  "unknown": 1}]


def test_each_version_governs_from_its_issue_to_the_next(store, key):
    v1 = schedule_doc("dak-lak/w48", [f"group:{LAK}", "unit:dl-never-seen"],
                      [{"id": "sang", "play": ["chime"], "at": "06:00"}], issued_at=ISSUED)
    v2 = schedule_doc("dak-lak/w48", [f"group:{LAK}"], [{"id": "chieu", "play": ["chime"], "at": "17:00"}],
                      issued_at=datetime(2026, 12, 1, 12, 0, tzinfo=TZ), version=2)
    revoked = schedule_doc("dak-lak/w48", [f"group:{LAK}"], [], version=3,
                           issued_at=datetime(2026, 12, 2, 12, 0, tzinfo=TZ))
    write(store, *(schedule_msg(key, d) for d in (v1, v2, revoked)), state_msg("dl-a-01", [f"{LAK}/bong-krang"]))
    report = build_report(store, "dak-lak/w48", now=NOW)
    plays = [(i["item"], i["scheduled_at"][:16], i["targeted"]) for i in report["items"]]
    # v1 from 30/11 08:00: 06:00 on 1/12 only; v2 from 1/12 12:00: 17:00 on 1/12; revoked 2/12 12:00.
    assert plays == [("sang", "2026-12-01T06:00", 2), ("chieu", "2026-12-01T17:00", 1)]
    assert report["versions"] == [1, 2, 3]
    windowed = build_report(store, "dak-lak/w48", start="2026-12-01", end="2026-12-01T12:00:00+07:00", now=NOW)
    assert [i["item"] for i in windowed["items"]] == ["sang"]
    assert windowed["items"][0]["unknown"] == 2  # the never-seen unit counts, as not reported


def test_unknown_schedule_says_which_are_known(store, key):
    write(store, schedule_msg(key, schedule_doc("dak-lak/w48", [f"group:{LAK}"], [], issued_at=ISSUED)))
    with pytest.raises(FleetError, match="known: dak-lak/w48"):
        build_report(store, "dak-lak/w49", now=NOW)


def test_category_of_follows_spec():
    assert [category_of(o, s) for o, s in [("completed", 1), ("interrupted", 0.1), ("preempted", 3),
                                          ("interrupted", 0), ("failed", 9), ("missed", 0), ("weird", 5)]] == \
        ["completed", "partial", "partial", "missed", "missed", "missed", "missed"]


# ---- status ----

def test_status_reads_state_and_health(store):
    write(store, state_msg("dl-a-01", [f"{LAK}/bong-krang"]), state_msg("dl-a-02", [f"{LAK}/buon-tria"], "lost"),
          state_msg("dl-b-01", ["dak-lak/krong-ana/dray-sap"], "offline"))
    health = {"ts": datetime.now(TZ).isoformat(), "uptime_s": 5, "clock": "ntp", "queue": 2,
              "next": {"item": "sang", "at": "2026-12-01T06:00:00+07:00"}, "faults": ["amp.fault"]}
    write(store, Received("loaxa/unit/dl-a-01/health", json.dumps(health).encode(), False, health_time()))
    units = fleet_status(store, tz=TZ)
    first = units[0]
    assert (first["unit"], first["state"], first["clock"], first["queue"], first["faults"]) == \
        ("dl-a-01", "online", "ntp", 2, ["amp.fault"])
    assert first["next"]["item"] == "sang" and first["last_seen"].endswith("+07:00")
    assert units[1]["faults"] is None  # no health yet
    assert summary(units) == {"units": 3, "online": 1, "offline": 1, "lost": 1, "unknown": 0, "faulty": 1}
    assert [u["unit"] for u in fleet_status(store, group=LAK)] == ["dl-a-01", "dl-a-02"]


def health_time() -> float:
    return datetime.now(TZ).timestamp()


def test_postgres_urls_use_psycopg_3(postgres_server):  # noqa: F811
    url = postgres_server.create_database()
    assert url.startswith("postgresql://")
    engine = open_database(url)
    assert engine.dialect.driver == "psycopg"
    with engine.connect() as conn:
        assert conn.execute(text("select 1")).scalar() == 1
    engine.dispose()
