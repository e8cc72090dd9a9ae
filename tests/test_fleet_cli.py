"""`loaxa fleet ...` as an operator types it: help, output forms, and one clear line on bad input."""

import json
from datetime import datetime

import pytest

from fleet.db import open_database
from fleet.store import FleetStore
from loaxa.cli import main
from tests.support.fleet import TZ, playlog_msg, schedule_doc, schedule_msg, state_msg, write
from tests.support.unit import OperatorKey

AT = datetime(2026, 12, 1, 6, 0, tzinfo=TZ)


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def db(tmp_path):
    """A database with one schedule played by one of two units."""
    url = f"sqlite:///{tmp_path / 'fleet.db'}"
    key = OperatorKey(tmp_path / "keys")
    engine = open_database(url)
    store = FleetStore(engine)
    doc = schedule_doc("dak-lak/w48", ["group:dak-lak"], [{"id": "sang", "play": ["chime"], "at": AT.isoformat()}],
                       issued_at=datetime(2026, 11, 30, 8, 0, tzinfo=TZ), valid_days=2)
    write(store, schedule_msg(key, doc), state_msg("dl-a-01", ["dak-lak/lak/bong-krang"]),
          state_msg("dl-a-02", ["dak-lak/krong-ana/dray-sap"], "lost"),
          playlog_msg("dl-a-01", "dak-lak/w48", "sang", AT))
    engine.dispose()
    return url


def test_help_names_every_fleet_command(capsys):
    code, out, _ = run(capsys, "fleet", "--help")
    assert code == 0
    for name in ("collect", "status", "report", "simulate"):
        assert name in out
    code, out, _ = run(capsys, "fleet", "report", "--help")
    assert code == 0 and '"completed", "partial", "missed", "unknown"' in out


WINDOW = ("--from", "2026-11-30", "--to", "2026-12-01")


def test_report_forms(capsys, db, tmp_path):
    code, out, err = run(capsys, "fleet", "report", "--db", db, "--schedule", "dak-lak/w48", *WINDOW)
    assert code == 0, err
    assert "completed     1 (50.0%)" in out and "unknown 1" in out
    code, out, _ = run(capsys, "fleet", "report", "--db", db, "--schedule", "dak-lak/w48", *WINDOW, "--csv", "-")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("schedule,item,scheduled_at,level,area,targeted,completed")
    assert lines[1].startswith("dak-lak/w48,sang,2026-12-01T06:00:00+07:00,all,,2,1,0,0,1,50.0")
    html = tmp_path / "out" / "report.html"
    html.parent.mkdir()
    code, out, _ = run(capsys, "fleet", "report", "--db", db, "--schedule", "dak-lak/w48", *WINDOW, "--html", str(html))
    assert code == 0 and f"HTML report written to {html}" in out


def test_the_html_report_stands_alone(capsys, db, tmp_path):
    html = tmp_path / "report.html"
    assert run(capsys, "fleet", "report", "--db", db, "--schedule", "dak-lak/w48", *WINDOW, "--html", str(html))[0] == 0
    page = html.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "<svg" in page and "<style>" in page
    for outside in ("<script", "<link", "src=", "@import", "url("):
        assert outside not in page
    assert page.count("http") == page.count('xmlns="http://www.w3.org/2000/svg"')
    assert "dak-lak/krong-ana" in page and "dak-lak/lak/bong-krang" in page  # districts and communes


def test_status_forms(capsys, db):
    code, out, _ = run(capsys, "fleet", "status", "--db", db)
    assert code == 0
    assert out.splitlines()[0] == "2 units: 1 online, 0 offline, 1 lost, 0 unknown; 0 with faults"
    code, out, _ = run(capsys, "fleet", "status", "--db", db, "--json", "--group", "dak-lak/krong-ana")
    units = json.loads(out)
    assert [(u["unit"], u["state"]) for u in units] == [("dl-a-02", "lost")]
    assert set(units[0]) >= {"unit", "state", "last_seen", "faults", "clock", "queue", "next"}


@pytest.mark.parametrize("argv, code, message", [
    (["fleet", "status", "--db", "mysql://u@h/db"], 1, "only sqlite and postgresql"),
    (["fleet", "status", "--db", "sqlite:////nonexistent-folder/fleet.db"], 1, "no fleet database"),
    (["fleet", "collect", "--db", "sqlite:////nonexistent-folder/fleet.db", "--broker", "mqtt://127.0.0.1:1"], 1,
     "does not exist"),
    (["fleet", "status", "--db", "postgresql://nobody@127.0.0.1:1/none"], 1, "database postgresql+psycopg://"),
    (["fleet", "status", "--group", "Not A Group"], 2, "group path"),
    (["fleet", "simulate", "--units", "0", "--broker", "mqtt://127.0.0.1:1"], 2, "positive whole number"),
    (["fleet", "simulate", "--units", "5", "--per-process", "500", "--broker", "mqtt://127.0.0.1:1"], 1,
     "1024 file descriptors"),
    (["fleet", "simulate", "--units", "5", "--trust-key", "k=bad", "--broker", "mqtt://127.0.0.1:1"], 1,
     "--trust-key k"),
    (["fleet", "simulate", "--units", "5"], 1, "give --broker URL"),
    (["fleet", "simulate", "--units", "5", "--devices", "gps,radio", "--broker", "mqtt://127.0.0.1:1"], 2,
     "unknown device 'radio'"),
    (["fleet", "simulate", "--units", "5", "--route", "/nonexistent/route.gpx", "--broker", "mqtt://127.0.0.1:1"],
     1, "--route: /nonexistent/route.gpx"),
    (["fleet", "simulate", "--units", "5", "--vehicles", "2", "--broker", "mqtt://127.0.0.1:1"], 1,
     "--vehicles needs --route"),
    (["fleet", "report"], 2, "--schedule"),
])
def test_bad_input_is_one_clear_line(capsys, argv, code, message):
    got, out, err = run(capsys, *argv)
    assert got == code, err
    assert message in err and "Traceback" not in err
    if code == 1:
        assert len(err.strip().splitlines()) == 1, err


def test_report_of_an_unknown_schedule_or_window(capsys, db):
    code, _, err = run(capsys, "fleet", "report", "--db", db, "--schedule", "dak-lak/w49")
    assert code == 1 and "not been seen by the collector; known: dak-lak/w48" in err
    code, _, err = run(capsys, "fleet", "report", "--db", db, "--schedule", "dak-lak/w48", "--from", "yesterday")
    assert code == 1 and "--from/--to" in err
    code, _, err = run(capsys, "fleet", "report", "--db", db, "--schedule", "dak-lak/w48",
                       "--from", "2026-12-02", "--to", "2026-12-01")
    assert code == 1 and "window is empty" in err


# ---- an install without the database packages (issue 11, item 10) ----

WITHOUT = """
import importlib.abc, sys
MISSING = set(sys.argv.pop(1).split(","))
class Missing(importlib.abc.MetaPathFinder):
    # Stands in for an install that lacks these packages: importing them fails as it would.
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in MISSING:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Missing())
from loaxa.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("missing, argv, wanted", [
    ("sqlalchemy", ["fleet", "status"], "the fleet database needs SQLAlchemy"),
    ("sqlalchemy", ["fleet", "report", "--schedule", "x/y"], "the fleet database needs SQLAlchemy"),
    ("sqlalchemy", ["fleet", "collect", "--broker", "mqtt://127.0.0.1:9"], "the fleet database needs SQLAlchemy"),
    ("psycopg", ["fleet", "status", "--db", "postgresql://nobody@127.0.0.1:9/fleet"],
     "database URL postgresql+psycopg://nobody@127.0.0.1:9/fleet: a PostgreSQL database needs psycopg 3"),
])
def test_a_missing_database_package_is_one_line_with_the_install_command(tmp_path, missing, argv, wanted):
    """After `make run`, `loaxa fleet status` died with "internal error: ModuleNotFoundError"."""
    import sys
    from tests.test_cli import ROOT, python
    result = python(WITHOUT, missing, *argv, cwd=tmp_path, env={"PYTHONPATH": str(ROOT)})
    assert result.returncode == 1, result
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"loaxa: error: {wanted}, which is not installed here: "
                                                   f"run {sys.executable} -m pip install '"), lines
    install = lines[0].split("pip install ")[1].strip("'")
    assert install.split(">=")[0].split("[")[0].lower() == missing


def test_the_default_install_carries_the_fleet_database():
    """What the README's fleet commands need comes with `pip install -e .` (the unit never imports it)."""
    import tomllib
    from tests.test_cli import ROOT
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert any(dep.startswith("SQLAlchemy") for dep in project["dependencies"])
    from fleet.db import PSYCOPG_REQUIREMENT
    from loaxa.commands.fleet import DATABASE_PACKAGES
    assert DATABASE_PACKAGES["sqlalchemy"][1] in project["dependencies"]
    assert DATABASE_PACKAGES["psycopg"][1] == PSYCOPG_REQUIREMENT
    assert PSYCOPG_REQUIREMENT in project["optional-dependencies"]["fleet"]


# ---- the headline coverage is coloured by its value (issue 11, item 14) ----

@pytest.mark.parametrize("completed, targeted, band", [
    (0, 10, "poor"), (7, 10, "poor"), (8, 10, "fair"), (94, 100, "fair"), (95, 100, "good"), (3, 3, "good"),
    (0, 0, "none")])
def test_coverage_bands(completed, targeted, band):
    from fleet.report_html import coverage_class
    assert coverage_class(completed, targeted) == band


def test_the_html_coverage_figure_is_not_green_at_a_poor_value(capsys, db, tmp_path):
    """0% (here 50%) was shown in the same green as 100%."""
    import re

    from fleet.report_html import COVERAGE_BANDS
    html = tmp_path / "report.html"
    assert run(capsys, "fleet", "report", "--db", db, "--schedule", "dak-lak/w48", *WINDOW, "--html", str(html))[0] == 0
    page = html.read_text(encoding="utf-8")
    figure = re.search(r'<span class="big (\w+)">([^<]+)</span>', page)
    assert figure and figure.groups() == ("poor", "50.0%")
    colours = {name: colour for _, name, colour in COVERAGE_BANDS}
    assert f".poor{{color:{colours['poor']}}}" in page and colours["poor"] != colours["good"]
    assert "<td class=poor>50.0%</td>" in page


def test_report_of_an_area_schedule_has_rows_per_area_and_day(capsys, tmp_path):
    """SPEC "Mobile units": per area and local day, the plays, the audio heard inside the
    area (cut by the stored track) and the time spent there, from the database."""
    from datetime import timedelta

    from fleet.ingest import Received
    url = f"sqlite:///{tmp_path / 'fleet.db'}"
    key = OperatorKey(tmp_path / "keys")
    store = FleetStore(open_database(url))
    lat0, lon0, m_per_deg = 12.70, 108.10, 111_195.0
    doc = schedule_doc("dak-lak/xe", ["unit:dl-car-01"], [
        {"id": "luat-dat", "play": ["chime"], "where": "bong-krang", "from": "07:00", "until": "11:00"}],
        issued_at=datetime(2026, 11, 30, 8, 0, tzinfo=TZ), valid_days=3)
    doc["areas"] = {"bong-krang": {"circle": {"lat": lat0, "lon": lon0, "r_m": 100}}}
    start = datetime(2026, 12, 1, 7, 30, tzinfo=TZ)
    # 10 m/s north through the circle: inside from -100 m to +100 m, 20 s
    points = [[int(start.timestamp()) + t, round(lat0 + (t - 30) * 10 / m_per_deg, 6), lon0, 36.0]
              for t in range(0, 61, 5)]
    play = playlog_msg("dl-car-01", "dak-lak/xe", "luat-dat", datetime(2026, 12, 1, 7, 0, tzinfo=TZ),
                       played_s=20.0)
    record = json.loads(play.payload)  # the play starts 10 s before the vehicle enters: half is heard inside
    record.update(area="bong-krang", play_no=1, started_at=(start + timedelta(seconds=10)).isoformat(),
                  ended_at=(start + timedelta(seconds=30)).isoformat())
    missed = json.loads(playlog_msg("dl-car-01", "dak-lak/xe", "luat-dat", datetime(2026, 12, 2, 7, 0, tzinfo=TZ),
                                    outcome="missed", played_s=0.0).payload)
    missed.update(area="bong-krang", play_no=None, reason="no GPS fix", started_at=None)
    track = {"id": "batch-1", "points": points}
    write(store, schedule_msg(key, doc), state_msg("dl-car-01", ["dak-lak/lak/doi-tin"]),
          Received("loaxa/unit/dl-car-01/playlog", json.dumps(record).encode(), False, 0.0),
          Received("loaxa/unit/dl-car-01/playlog", json.dumps(missed).encode(), False, 0.0),
          Received("loaxa/unit/dl-car-01/track", json.dumps(track).encode(), False, 0.0))
    store.engine.dispose()
    code, out, err = run(capsys, "fleet", "report", "--db", url, "--schedule", "dak-lak/xe",
                         "--from", "2026-12-01", "--to", "2026-12-02", "--json")
    assert code == 0, err
    rows = json.loads(out)["areas"]
    assert [(r["area"], r["day"], r["unit"], r["plays"], r["completed"]) for r in rows] == [
        ("bong-krang", "2026-12-01", "dl-car-01", 1, 1, ), ("bong-krang", "2026-12-02", "dl-car-01", 0, 0)]
    assert rows[0]["played_s"] == 20.0 and abs(rows[0]["audio_inside_s"] - 10.0) <= 0.5
    assert abs(rows[0]["time_inside_s"] - 20.0) <= 0.5 and rows[1]["missed"] == {"no GPS fix": 1}
    code, out, _ = run(capsys, "fleet", "report", "--db", url, "--schedule", "dak-lak/xe",
                       "--from", "2026-12-01", "--to", "2026-12-02")
    assert code == 0 and "area bong-krang" in out and "audio inside 0.2 min of 0.3" in out
    html = tmp_path / "areas.html"
    code, _, err = run(capsys, "fleet", "report", "--db", url, "--schedule", "dak-lak/xe",
                       "--from", "2026-12-01", "--to", "2026-12-02", "--html", str(html))
    assert code == 0, err
    page = html.read_text(encoding="utf-8")
    assert "vehicles by area" in page and "1 no GPS fix" in page
    assert "<td class=l>bong-krang</td><td class=l>2026-12-01</td><td class=l>dl-car-01</td><td>1</td>" in page
