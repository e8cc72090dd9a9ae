"""`loaxa status`: what the unit is doing, from the running daemon or from its state folder.

The config is found exactly as `loaxa run` finds it; with none, the demo's state folder.
When a daemon answers on `state_dir/control.sock`, its status document is shown:

    {"unit", "version", "boot", "mock", "now", "clock", "clock_trusted",
     "current": {"item", "schedule", "priority", "started_at"} | null,
     "next": [{"item", "schedule", "at"}, ...], "queue", "outbox",
     "broker": {"url", "connected", "last_contact"},
     "schedules": [{"id", "version", "topic"}, ...],
     "media": {"ready", "total"}, "faults": [...],
     "trust": {"mode": "legacy"|"trust"|"lost", "id", "version", "expires_at"}}

(every key optional; the daemon's `status` handler builds it). Otherwise the state
folder is read directly: the outbox depth, the schedules in force and their next
plays, with `"running": false`. `--json` prints the same keys plus `running`,
`config`, `state_dir` and `demo`. Exit 0 when the status is known; 1 when a daemon is
there but does not answer properly (its state folder is shown all the same).
"""

import json
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

from loaxa.i18n import _

NEXT_PLAYS = 5
LOOKAHEAD = timedelta(hours=26)
STATUS_TIMEOUT_S = 5.0


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "status", help="what the unit is doing now (from the running daemon, else its state folder)",
        description="Show the unit's current and next items, outbox depth, broker contact, clock "
                    "trust and faults, asked of the running daemon over its control socket; with no "
                    "daemon running, what its state folder holds. The config is --config, else "
                    "$LOAXA_CONFIG, else /etc/loaxa/config.toml; with none, the built-in demo's.")
    parser.add_argument("--config", metavar="PATH", help="the unit's config.toml")
    parser.add_argument("--json", action="store_true", help="print the status as one JSON object")
    parser.set_defaults(func=show_status)


# ---- finding the unit ----

def _unit_config(explicit):
    """(config, path or None, is_demo) exactly as `loaxa run` chooses."""
    from provisioning import demo_config, find_config, load_config

    path = find_config(explicit)
    if path is not None:
        return load_config(path), path, False
    from device.demo import DEMO_KEY_NAME, demo_broker_url, demo_state_dir

    state_dir = demo_state_dir()
    pub = state_dir / "keys" / f"{DEMO_KEY_NAME}.pub"
    try:
        keys = {DEMO_KEY_NAME: pub.read_text(encoding="ascii").strip()}
    except (OSError, UnicodeDecodeError):
        keys = {}  # no demo run yet (or not ours to read): no schedule can be verified
    return demo_config(state_dir, broker_url=demo_broker_url(), trust_keys=keys), None, True


# ---- reading the state folder directly ----

def _outbox_depth(state_dir: Path) -> tuple[int | None, str | None]:
    """(records waiting, None), or (None, why it cannot be read)."""
    from device.outbox import Outbox

    path = state_dir / "outbox.sqlite"
    if not path.exists():
        return 0, None
    outbox = None
    try:
        outbox = Outbox(path, recover=False)  # only look: never set a file aside or fall back to memory
        return outbox.depth(), None
    except (sqlite3.Error, OSError) as exc:
        return None, f"{path}: {exc}"
    finally:
        if outbox is not None:
            outbox.close()


def _schedules(cfg):
    from scheduler import ScheduleStore, load_trusted_keys

    store = ScheduleStore(cfg.unit.state_dir / "schedules", trusted=load_trusted_keys(cfg.trust.keys),
                          unit_id=cfg.unit.id, groups=cfg.unit.groups, prefix=cfg.broker.topic_prefix,
                          quiet_hours=cfg.unit.quiet_hours, unit_tz=ZoneInfo(cfg.unit.timezone))
    return store.topics_in_force(), store.in_force()


def _next_plays(schedules, now: datetime) -> list[dict]:
    from scheduler import occurrences

    found = [occ for s in schedules for occ in occurrences(s, now, now + LOOKAHEAD)]
    found.sort(key=lambda occ: (occ.at, occ.schedule_id, occ.item_id))
    return [{"item": occ.item_id, "schedule": occ.schedule_id, "at": occ.at.isoformat()}
            for occ in found[:NEXT_PLAYS]]


def direct_status(cfg, now: datetime) -> dict:
    """What the state folder says, without a daemon."""
    topics, in_force = _schedules(cfg)
    playing = {(s.id, s.version) for s in in_force}
    depth, outbox_error = _outbox_depth(cfg.unit.state_dir)
    doc = {"unit": cfg.unit.id, "outbox": depth,
           "schedules": [{"id": s.id, "version": s.version, "topic": topic} for topic, s in topics.items()
                         if (s.id, s.version) in playing],
           "next": _next_plays(in_force, now)}
    if outbox_error:
        doc["outbox_error"] = outbox_error
    return doc


# ---- the command ----

def show_status(args) -> int:
    from device.control import ControlError, control_request

    cfg, path, demo = _unit_config(args.config)
    doc = {"running": False, "config": str(path) if path else None, "state_dir": str(cfg.unit.state_dir),
           "demo": demo}
    problem = None
    try:
        answer = control_request(cfg.unit.state_dir, "status", timeout=STATUS_TIMEOUT_S)
    except ControlError as exc:
        answer, problem = None, str(exc)
    if answer is not None and "error" in answer:
        problem = _("the daemon answered with an error: {error}").format(error=answer["error"])
        answer = None
    if answer is not None:
        doc["running"] = True
        doc.update({key: value for key, value in answer.items() if key not in doc})
    else:
        doc.update(direct_status(cfg, datetime.now(timezone.utc)))
        if problem:
            doc["running"] = None  # something is there, but it does not answer
            doc["problem"] = problem
    if args.json:
        print(json.dumps(doc, ensure_ascii=False, indent=1))
    else:
        print("\n".join(render(doc, ZoneInfo(cfg.unit.timezone))))
    return 1 if problem else 0


# ---- human output ----

def _when(value, tz) -> str:
    try:
        return datetime.fromisoformat(value).astimezone(tz).strftime("%Y-%m-%d %H:%M:%S")
    except (TypeError, ValueError, OverflowError):
        return str(value)


def _play(entry, tz) -> str:
    if not isinstance(entry, dict):
        return str(entry)
    at = entry.get("at") or entry.get("started_at")
    where = f" ({entry['schedule']})" if entry.get("schedule") else ""
    return f"{_when(at, tz) + '  ' if at else ''}{entry.get('item', '?')}{where}"


def _daemon_lines(doc) -> list[str]:
    if doc["running"]:
        lines = [_("Daemon: running")]
        if doc.get("version"):
            lines[0] += f" (loaxa {doc['version']})"
    elif doc["running"] is None:
        lines = [_("Daemon: not answering ({problem}); showing the state folder instead").format(
            problem=doc["problem"])]
    else:
        lines = [_("Daemon: not running; showing the state folder {state_dir}").format(state_dir=doc["state_dir"])]
    if doc.get("demo"):
        lines.append(_("Config: none (the built-in demo)"))
    elif doc.get("config"):
        lines.append(_("Config: {path}").format(path=doc["config"]))
    return lines


def _unit_line(doc) -> str:
    line = _("Unit: {unit}").format(unit=doc.get("unit", "?"))
    return line + (" " + _("(mock hardware)") if doc.get("mock") else "")


def _clock_lines(doc) -> list[str]:
    if "clock" not in doc:
        return []
    trusted = doc.get("clock_trusted")
    word = "" if trusted is None else " " + (_("(trusted)") if trusted else _("(NOT trusted: timed items are missed)"))
    return [_("Clock: {source}").format(source=doc["clock"]) + word]


def _broker_lines(doc, tz) -> list[str]:
    broker = doc.get("broker")
    if not isinstance(broker, dict):
        return []
    state = _("connected") if broker.get("connected") else _("not connected")
    line = _("Broker: {state}").format(state=state) + (f" ({broker['url']})" if broker.get("url") else "")
    contact = broker.get("last_contact")
    return [line, "  " + _("last contact: {when}").format(when=_when(contact, tz) if contact else _("never"))]


def _play_lines(doc, tz) -> list[str]:
    lines = []
    if doc["running"]:
        current = doc.get("current")
        lines.append(_("Playing: {what}").format(what=_play(current, tz) if current else _("nothing")))
    upcoming = doc.get("next") or []
    upcoming = upcoming if isinstance(upcoming, list) else [upcoming]
    lines.append(_("Next: {what}").format(what=_play(upcoming[0], tz) if upcoming else _("nothing planned")))
    lines.extend("      " + _play(entry, tz) for entry in upcoming[1:])
    if "queue" in doc:
        lines.append(_("Waiting to play: {count}").format(count=doc["queue"]))
    return lines


def _store_lines(doc) -> list[str]:
    lines = []
    if doc.get("outbox_error"):
        lines.append(_("Outbox: cannot be read ({error})").format(error=doc["outbox_error"]))
    elif "outbox" in doc:
        lines.append(_("Outbox: {count} record(s) not yet delivered").format(count=doc["outbox"]))
    schedules = doc.get("schedules")
    if isinstance(schedules, list):
        names = [f"{s.get('id')} v{s.get('version')}" if isinstance(s, dict) else str(s) for s in schedules]
        lines.append(_("Schedules in force: {names}").format(names=", ".join(names) if names else _("none")))
    media = doc.get("media")
    if isinstance(media, dict) and "total" in media:
        lines.append(_("Media: {ready} of {total} ready").format(ready=media.get("ready", "?"), total=media["total"]))
    return lines


def _fault_lines(doc) -> list[str]:
    if "faults" not in doc:
        return []
    faults = doc["faults"] or []
    if not faults:
        return [_("Faults: none")]
    return [_("Faults:")] + [f"  - {fault}" for fault in faults]


def render(doc: dict, tz) -> list[str]:
    """The status as lines for a technician."""
    return (_daemon_lines(doc) + [_unit_line(doc)] + _clock_lines(doc) + _broker_lines(doc, tz)
            + _play_lines(doc, tz) + _store_lines(doc) + _fault_lines(doc))
