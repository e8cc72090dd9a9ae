"""`loaxa fleet collect|status|report|simulate`: the provincial operator's view of the fleet.

`collect` runs beside the broker and keeps what units report in a database;
`status` and `report` read that database; `simulate` runs many mock units for load
tests and demos. Database URLs are SQLAlchemy's: `sqlite:////abs/path.db` (default:
loaxa-fleet.db in the current folder) or `postgresql://user@host/db`.
"""

import argparse
import csv
import functools
import io
import json
import signal
import sys
import threading
import time
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fleet import add_broker_arguments, broker_options
from fleet.errors import FleetError
from loaxa.commands._args import positive_int
from loaxa.errors import ConfigError
from loaxa.fsio import atomic_write_text

# SQLAlchemy comes with the default install (psycopg, for PostgreSQL, is the `fleet`
# extra); the unit never imports either, and the CLI only when a database command runs.
# An install without them (an older one, a trimmed offline bundle) gets the exact command.
DATABASE_PACKAGES = {
    "sqlalchemy": ("the fleet database needs SQLAlchemy", "SQLAlchemy>=2.0,<2.1"),
    "greenlet": ("SQLAlchemy needs greenlet", "greenlet"),
    "psycopg": ("a PostgreSQL database needs psycopg 3", "psycopg[binary]>=3.1,<4"),
}
DB_HELP = ("database URL: sqlite:////abs/path.db or postgresql://user@host/db "
           "(default: loaxa-fleet.db in the current folder)")


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _zero_or_more(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def _timezone(text: str) -> ZoneInfo:
    try:
        return ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise argparse.ArgumentTypeError(f"unknown timezone {text!r} (e.g. Asia/Ho_Chi_Minh)") from exc


def _group(text: str) -> str:
    from scheduler.targets import is_group_path
    if not is_group_path(text):
        raise argparse.ArgumentTypeError(f"expected a group path like dak-lak/lak, got {text!r}")
    return text


def _segment(text: str) -> str:
    from scheduler.targets import is_group_path
    if "/" in text or not is_group_path(text) or len(text) > 20:
        raise argparse.ArgumentTypeError(f"expected one group segment of [a-z0-9-] (at most 20), got {text!r}")
    return text


# ---- the parsers ----

def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "fleet", help="collect unit reports; fleet status and coverage reports; simulate units",
        description="The provincial operator's view of the fleet: a collector keeps what units "
                    "report (state, health, proof of play, events, replies) in a database; status "
                    "and report read it.")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    _register_collect(commands)
    _register_status(commands)
    _register_report(commands)
    _register_simulate(commands)


def _register_collect(commands) -> None:
    p = commands.add_parser(
        "collect", help="store what units report in the fleet database (runs until stopped)",
        description="Subscribe to every unit's state, health, playlog, event and reply, and to the "
                    "retained schedules, and store them. A persistent broker session (stable "
                    "--client-id) and acknowledging each message only after its commit mean a "
                    "collector that stops or crashes loses nothing; several collectors with "
                    "different client ids share the load (MQTT 5 shared subscription). "
                    "Broker settings this needs: docs/operator.md. Stops on Ctrl-C or SIGTERM.")
    p.add_argument("--db", metavar="URL", help=DB_HELP)
    p.add_argument("--client-id", metavar="ID",
                   help="the broker session's client id; keep it the same across restarts "
                        "(default loaxa-collector-HOSTNAME)")
    p.add_argument("--share-group", metavar="NAME", default="loaxa-collectors",
                   help="the shared subscription group collectors split the load in (default %(default)s)")
    p.add_argument("--session-expiry", type=positive_int, default=7 * 86400, metavar="SECONDS",
                   help="how long the broker keeps our session and queues for us while we are "
                        "away (default %(default)s: a week)")
    p.add_argument("--receive-maximum", type=positive_int, default=2000, metavar="N",
                   help="messages the broker may have in flight to us unacknowledged (default %(default)s)")
    p.add_argument("--batch-size", type=positive_int, default=500, metavar="N",
                   help="most messages committed in one transaction (default %(default)s)")
    p.add_argument("--stats-every", type=_positive_float, default=60.0, metavar="SECONDS",
                   help="log a line of counts this often (default %(default)s)")
    add_broker_arguments(p)
    p.set_defaults(func=collect)


def _register_status(commands) -> None:
    p = commands.add_parser(
        "status", help="every unit: online/offline/lost, last seen, faults, clock, queue, next item",
        description="Every unit the collector has seen, from the fleet database. --json prints a "
                    'list of {"unit", "state", "last_seen", "silent_s", "faults", "clock", "queue", '
                    '"next", "amp", "groups", "version", "boot", "mock", ...}; state is online, '
                    "offline (clean stop), lost (its last will) or unknown (no state seen yet). "
                    "Exit 0.")
    p.add_argument("--db", metavar="URL", help=DB_HELP)
    p.add_argument("--group", type=_group, metavar="PATH", help="only the units in this group (e.g. dak-lak/lak)")
    p.add_argument("--timezone", type=_timezone, default=ZoneInfo("Asia/Ho_Chi_Minh"), metavar="TZ",
                   help="show times in this zone (default Asia/Ho_Chi_Minh)")
    p.add_argument("--json", action="store_true", help="print the list as JSON")
    p.set_defaults(func=status)


def _register_report(commands) -> None:
    p = commands.add_parser(
        "report", help="coverage of one schedule: who played each item occurrence",
        description="For each occurrence of each item of schedule ID in the window, how many "
                    "targeted units played it completely, partly (interrupted with audio), missed "
                    "it (failed, missed) or have not reported, in all and by district and commune. "
                    "Each unit counts once per occurrence, with its best outcome. The default window "
                    "is the schedule's validity up to now. Without --json/--csv/--html a summary is "
                    "printed. Exit 0.")
    p.add_argument("--db", metavar="URL", help=DB_HELP)
    p.add_argument("--schedule", required=True, metavar="ID", help="the schedule id, e.g. dak-lak/2026-w48")
    p.add_argument("--from", dest="start", metavar="WHEN",
                   help="from this date (YYYY-MM-DD, in the schedule's timezone) or date-time")
    p.add_argument("--to", dest="end", metavar="WHEN",
                   help="up to this date (included) or date-time (excluded)")
    p.add_argument("--json", action="store_true",
                   help='print JSON: {"schedule", "items": [{"item", "scheduled_at", "targeted", '
                        '"completed", "partial", "missed", "unknown", "districts", "communes"}], ...}')
    p.add_argument("--csv", metavar="FILE", help="write one row per occurrence and area to FILE ('-': stdout)")
    p.add_argument("--html", metavar="FILE",
                   help="write a self-contained HTML report (with a chart) to FILE, fit to attach or print")
    p.set_defaults(func=report)


def _devices(text: str) -> tuple:
    from hw.mock import SIMULATED as known
    names = tuple(dict.fromkeys(name.strip() for name in text.split(",") if name.strip()))
    unknown = [name for name in names if name not in known]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown device {unknown[0]!r} (known: {', '.join(known)})")
    return names


def _register_simulate(commands) -> None:
    p = commands.add_parser(
        "simulate", help="run N units on mock hardware against a broker (load tests, demos)",
        description="Run N units with the real unit code on mock hardware (each its own state folder "
                    "and broker connection, the mock speaker faster than real time), in processes of "
                    "--per-process units. Units are PROVINCE-dNN-cNN-uNN in group PROVINCE/dNN/cNN. "
                    "Runs until Ctrl-C, SIGTERM or --duration.")
    p.add_argument("--units", type=positive_int, required=True, metavar="N", help="how many units")
    p.add_argument("--trust-key", action="append", default=[], metavar="NAME=PUB|FILE.pub",
                   help="an operator public key the units trust (repeatable); without one they refuse "
                        "every schedule")
    p.add_argument("--province", type=_segment, default="sim", help="first group segment and unit id prefix "
                   "(default %(default)s)")
    p.add_argument("--per-commune", type=positive_int, default=5, metavar="N", help="units a commune (default 5)")
    p.add_argument("--per-district", type=positive_int, default=10, metavar="N",
                   help="communes a district (default 10)")
    p.add_argument("--per-process", type=positive_int, default=10, metavar="N",
                   help="units a process (default 10: units in one process share its GIL, and a "
                        "province-wide push stalls when too many do); a worker refuses more than fit "
                        "below paho's limit of 1024 file descriptors")
    p.add_argument("--speed", type=_positive_float, default=20.0, metavar="X",
                   help="the mock speaker plays X times faster than real time (default 20)")
    p.add_argument("--warmup", type=_zero_or_more, default=0.2, metavar="SECONDS",
                   help="amplifier warm-up (default 0.2)")
    p.add_argument("--cooldown", type=_zero_or_more, default=1.0, metavar="SECONDS",
                   help="amplifier cool-down (default 1)")
    p.add_argument("--devices", type=_devices, metavar="LIST",
                   help="the serial devices each unit has, comma-separated from amplifier, gps, modem "
                        "(default amplifier,modem: a fixed commune cluster; add gps for vehicles; "
                        "a unit without amplifier drives a relay-only one)")
    p.add_argument("--route", type=Path, metavar="FILE",
                   help="vehicles drive this route from their start: a GPX file, or JSON "
                        "{\"waypoints\": [[lat, lon, speed_kmh, dwell_s], ...], \"faults\": \"lost@120+30\"}")
    p.add_argument("--vehicles", type=positive_int, metavar="N",
                   help="how many of the units are vehicles with a GPS on --route (default: all)")
    p.add_argument("--state-dir", type=Path, metavar="DIR",
                   help="keep the units' state folders here (default: a temporary folder, removed at the end)")
    p.add_argument("--duration", type=_positive_float, metavar="SECONDS", help="stop after this long")
    add_broker_arguments(p)
    p.set_defaults(func=simulate)


def _db():
    from fleet import db
    return db


def missing_package_error(exc: ModuleNotFoundError) -> FleetError | None:
    """One line naming the exact install command for a database package that is missing."""
    known = DATABASE_PACKAGES.get((exc.name or "").split(".")[0])
    if known is None:
        return None
    what, requirement = known
    return FleetError(f"{what}, which is not installed here: run "
                      f"{sys.executable} -m pip install '{requirement}'")


def needs_database(handler):
    """A command that uses the fleet database: a missing driver is one clear line, wherever
    in the command (or the fleet modules it imports) the import fails."""
    @functools.wraps(handler)
    def run(args) -> int:
        try:
            return handler(args)
        except ModuleNotFoundError as exc:
            error = missing_package_error(exc)
            if error is None:
                raise
            raise error from exc
    return run


# ---- collect ----

def _install_stop_handlers(stop: threading.Event) -> None:
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())


@needs_database
def collect(args) -> int:
    from fleet.collector import Collector, CollectorSettings, default_client_id
    from fleet.store import FleetStore
    db = _db()
    options = broker_options(args)
    url = args.db or db.default_url()
    engine = db.open_database(url, create=True)
    settings = CollectorSettings(client_id=args.client_id or default_client_id(), share_group=args.share_group,
                                 session_expiry_s=args.session_expiry, receive_maximum=args.receive_maximum,
                                 batch_size=args.batch_size, stats_every_s=args.stats_every)
    collector = Collector(options, FleetStore(engine), settings)
    stop = threading.Event()
    _install_stop_handlers(stop)
    collector.start()
    print(f"collecting from {options.url} into {db.describe_url(url)} as {settings.client_id}; "
          "Ctrl-C stops", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        collector.stop()
        engine.dispose()
    return 0


# ---- status ----

def _reading(func):
    """Run a database read; a database that fails says so in one line."""
    from sqlalchemy.exc import SQLAlchemyError
    try:
        return func()
    except SQLAlchemyError as exc:
        raise FleetError(f"database: {_db().db_error_text(exc)}") from exc


@needs_database
def status(args) -> int:
    from fleet.status import fleet_status, render_text
    from fleet.store import FleetStore
    db = _db()
    engine = db.open_database(args.db or db.default_url(), create=False)
    try:
        units = _reading(lambda: fleet_status(FleetStore(engine), group=args.group, tz=args.timezone))
    finally:
        engine.dispose()
    print(json.dumps(units, ensure_ascii=False, indent=2) if args.json else render_text(units))
    return 0


# ---- report ----

def _write_file(path: str, text: str, what: str) -> None:
    if path == "-":
        sys.stdout.write(text)
        return
    try:
        atomic_write_text(Path(path), text)
    except OSError as exc:
        raise FleetError(f"{path}: cannot write the {what}: {exc.strerror or exc}") from exc


def _csv_text(report_doc: dict) -> str:
    from fleet.report import CSV_COLUMNS, csv_rows
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    writer.writerows(csv_rows(report_doc))
    return out.getvalue()


@needs_database
def report(args) -> int:
    from fleet.report import build_report, render_text, to_json
    from fleet.report_html import render_html
    from fleet.store import FleetStore
    db = _db()
    engine = db.open_database(args.db or db.default_url(), create=False)
    try:
        doc = _reading(lambda: build_report(FleetStore(engine), args.schedule, start=args.start, end=args.end))
    finally:
        engine.dispose()
    if args.csv:
        _write_file(args.csv, _csv_text(doc), "CSV")
    if args.html:
        _write_file(args.html, render_html(doc), "HTML report")
    if args.json:
        print(to_json(doc))
    elif args.csv != "-":
        print(render_text(doc))
        for what, path in (("CSV", args.csv), ("HTML report", args.html)):
            if path and path != "-":
                print(f"{what} written to {path}")
    return 0


# ---- simulate ----

def _trust_keys(values) -> dict:
    from scheduler import parse_public_key
    keys = {}
    for value in values:
        if "=" in value:
            name, _, public = value.partition("=")
        else:
            path = Path(value)
            try:
                name, public = path.stem, path.read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError([f"--trust-key {value}: cannot read: {getattr(exc, 'strerror', None) or exc}"],
                                  "simulate") from exc
        try:
            parse_public_key(public)
        except ValueError as exc:
            raise ConfigError([f"--trust-key {name}: {exc}"], "simulate") from exc
        keys[name] = public.strip()
    return keys


def _password_file(args) -> str | None:
    """The path (not the password): each simulated unit's config names the file."""
    from fleet.broker import _config_table
    path = args.password_file or (_config_table(Path(args.config)).get("password_file") if args.config else None)
    return str(Path(path).resolve()) if path else None


def _route_file(args) -> str | None:
    """--route, read once here so a bad file is one line before any unit starts."""
    if args.route is None:
        if args.vehicles:
            raise FleetError("--vehicles needs --route FILE")
        return None
    from hw.sim.route import RouteError, load_route
    try:
        load_route(args.route)
    except RouteError as exc:
        raise FleetError(f"--route: {exc}") from exc
    return str(args.route.resolve())


def simulate(args) -> int:
    from fleet.simulate import (DEFAULT_DEVICES, Simulation, SimulationPlan, layout, remove_state_root,
                                temporary_state_root)
    options = broker_options(args)
    trust = _trust_keys(args.trust_key)
    state_root = str(args.state_dir.resolve()) if args.state_dir else temporary_state_root()
    units = layout(args.units, args.province, args.per_commune, args.per_district)
    plan = SimulationPlan(
        units=units, broker_url=options.url, trust_keys=trust, state_root=state_root,
        topic_prefix=options.topic_prefix, username=options.username,
        password_file=_password_file(args),
        ca_file=str(options.ca_file) if options.ca_file else None,
        speed=args.speed, warmup_s=args.warmup, cooldown_s=args.cooldown,
        devices=DEFAULT_DEVICES if args.devices is None else args.devices,
        route=_route_file(args), vehicles=tuple(u.id for u in units[:args.vehicles or len(units)]))
    simulation = Simulation(plan, per_process=args.per_process)
    if not trust:
        print("warning: no --trust-key: the units will refuse every schedule", file=sys.stderr)
    stop = threading.Event()
    _install_stop_handlers(stop)
    started = time.monotonic()
    print(f"starting {len(units)} units in {len(simulation.chunks())} processes against {options.url}; "
          f"groups {units[0].group} to {units[-1].group}; state in {state_root}", flush=True)
    try:
        simulation.start()
        print(f"{simulation.started} units running ({time.monotonic() - started:.1f} s to start); "
              "Ctrl-C stops", flush=True)
        deadline = time.monotonic() + args.duration if args.duration else None
        while not stop.wait(0.5):
            if deadline and time.monotonic() >= deadline:
                break
            if not simulation.alive():
                raise FleetError("a simulator process died; see the messages above")
    finally:
        simulation.stop()
        if not args.state_dir:
            remove_state_root(state_root)
    print("stopped", flush=True)
    return 0
