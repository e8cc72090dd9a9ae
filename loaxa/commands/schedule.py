"""`loaxa schedule check|sign|push|revoke`: the operator's schedule tools.

FILE is either an unsigned schedule document (JSON) or a signed envelope
(`{"payload", "alg", "key", "sig"}`); `-` reads standard input.

What `check` calls an overlap: two plays (of different items, or two plays of the
same item) that start less than OVERLAP_S (60 s) apart, or a play that starts while a
stream item is still relaying (inside its `duration_s`). Units play them one after
the other by priority, so an overlap is a warning, not an error.
"""

import argparse
import json
import sys
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

from fleet import add_broker_arguments, broker_options, publish, read_retained
from loaxa.commands._args import positive_int, target_arg
from loaxa.commands._signing import add_passphrase_arguments, load_signing_key
from loaxa.commands._trustcheck import add_trust_arguments, check_before_publish
from loaxa.errors import DocumentError, KeyFileError, LoaxaError, Rejected, TargetError
from loaxa.fsio import atomic_write
from provisioning.config import SCHEMA as CONFIG_SCHEMA
from scheduler import (DAY_NAMES, is_envelope, occurrences, open_envelope,
                       parse_public_key, parse_quiet_hours, parse_schedule,
                       quiet_hours_conflicts, read_envelope, sign_document, target_topic)
from scheduler._json import decode_utf8, strict_loads
from scheduler.envelope import add_signature

OVERLAP_S = 60
DEFAULT_DAYS = 7
MAX_DAYS = 366
MAX_LISTED_PER_ITEM = 20
DEFAULT_REVOKE_TIMEZONE = "Asia/Ho_Chi_Minh"


class CommandError(LoaxaError):
    """An operator command cannot go on; the message says why."""


# ---- argument types (a bad value is a usage error: exit 2) ----

UNIT_QUIET_HOURS = CONFIG_SCHEMA["unit"]["quiet_hours"].default  # what a unit without its own has


def _quiet_hours_arg(text: str):
    try:
        return parse_quiet_hours(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected HH:MM-HH:MM such as 22:00-05:00, got {text!r}") from exc


def _days_arg(text: str) -> int:
    try:
        days = int(text)
    except ValueError:
        days = 0
    if not 1 <= days <= MAX_DAYS:
        raise argparse.ArgumentTypeError(f"expected a number of days from 1 to {MAX_DAYS}, got {text!r}")
    return days


def _start_arg(text: str):
    """YYYY-MM-DD (midnight in the document's timezone) or a date-time with offset."""
    try:
        if len(text) == 10:
            return date.fromisoformat(text)
        when = datetime.fromisoformat(text)
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        raise argparse.ArgumentTypeError(f"expected YYYY-MM-DD or a date-time with offset, got {text!r}")
    return when


# ---- the parsers ----

def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "schedule", help="check, sign, push and revoke schedules",
        description="The provincial operator's schedule tools. FILE is an unsigned schedule "
                    "document or a signed envelope; '-' reads standard input.")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    _register_check(commands)
    _register_sign(commands)
    _register_push(commands)
    _register_revoke(commands)
    for signing in ("sign", "push", "revoke"):  # every command that signs unlocks a key the same way
        add_passphrase_arguments(commands.choices[signing], new_key=False)
    add_trust_arguments(commands.choices["push"])


def _register_check(commands) -> None:
    p = commands.add_parser(
        "check", help="validate a schedule and show its next plays",
        description="Validate FILE as a unit would (except the signature, unless --pub is given), "
                    "list the next plays per item in the document's timezone, and warn of overlaps "
                    f"(plays starting less than {OVERLAP_S} s apart, or inside a stream item's "
                    "duration_s) and of non-emergency items inside --quiet-hours. Exit 0 when valid "
                    "(warnings allowed), 1 when not.")
    p.add_argument("file", metavar="FILE", help="schedule document or signed envelope ('-': stdin)")
    p.add_argument("--quiet-hours", type=_quiet_hours_arg, default=UNIT_QUIET_HOURS, metavar="HH:MM-HH:MM",
                   help="warn of non-emergency items starting inside these hours (in the document's "
                        f"timezone); default {UNIT_QUIET_HOURS}, a unit's own default, since a unit "
                        "refuses such a document; '' for none")
    p.add_argument("--days", type=_days_arg, default=DEFAULT_DAYS, metavar="N",
                   help=f"how many days of plays to list (default {DEFAULT_DAYS})")
    p.add_argument("--from", dest="start", type=_start_arg, metavar="WHEN",
                   help="list plays from this date (YYYY-MM-DD) or date-time with offset instead of now")
    p.add_argument("--pub", action="append", default=[], metavar="NAME.pub",
                   help="a public key file; when given, an envelope's signature must verify with one")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=check)


def _register_sign(commands) -> None:
    p = commands.add_parser(
        "sign", help="sign a schedule document, or add a signature to its envelope",
        description="Validate FILE, then sign its text exactly as it is with KEY; FILE already "
                    "signed (an envelope) gets KEY's signature beside the others (an approver "
                    "signing an editor's envelope). The signed envelope goes to --out (written "
                    "atomically) or to standard output.")
    p.add_argument("file", metavar="FILE", help="the schedule document or its envelope ('-': stdin)")
    p.add_argument("--key", required=True, metavar="KEY.key", help="the operator's private key")
    p.add_argument("--out", metavar="SIGNED", help="write the envelope here instead of standard output")
    p.set_defaults(func=sign)


def _register_push(commands) -> None:
    p = commands.add_parser(
        "push", help="publish a schedule to units and groups",
        description="Publish FILE retained (QoS 1) to the schedule topic of each --to, by default "
                    "each of the document's targets, and wait for the broker to acknowledge each. "
                    "An unsigned FILE is signed with --key first; a signed envelope is sent as is. "
                    "Refused (unless --force) where a topic already retains this schedule under the "
                    "same version with other content, or under a higher version: units holding that "
                    "one would refuse this.")
    p.add_argument("file", metavar="FILE", help="schedule document or signed envelope ('-': stdin)")
    p.add_argument("--key", metavar="KEY.key", help="the operator's private key (for an unsigned FILE)")
    p.add_argument("--to", action="append", type=target_arg, metavar="unit:ID|group:PATH",
                   help="publish to this target's topic (repeatable; must be one of the document's targets)")
    p.add_argument("--force", action="store_true",
                   help="publish even over a retained copy of this schedule that units would keep instead")
    add_broker_arguments(p)
    p.set_defaults(func=push)


def _register_revoke(commands) -> None:
    p = commands.add_parser(
        "revoke", help="withdraw a schedule (a newer signed version with no items)",
        description="Publish a signed newer version of schedule ID with no items to each --to. "
                    "Without --version, the version is one more than the highest found retained on "
                    "the target topics.")
    p.add_argument("id", metavar="ID", help="the schedule id, e.g. dak-lak/2026-w48")
    p.add_argument("--key", required=True, metavar="KEY.key", help="the operator's private key")
    p.add_argument("--to", action="append", required=True, type=target_arg, metavar="unit:ID|group:PATH",
                   help="a target to revoke it on (repeatable)")
    p.add_argument("--version", type=positive_int, metavar="N",
                   help="the version to publish (default: the retained version + 1)")
    add_broker_arguments(p)
    p.set_defaults(func=revoke)


# ---- reading FILE ----

@dataclass(frozen=True)
class Input:
    name: str
    text: str  # the document's text (an envelope's payload)
    envelope: bytes | None  # the raw envelope, when FILE was one
    key_name: str | None


def _read_bytes(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise CommandError(f"{path}: cannot read: {exc.strerror or exc}") from exc


def _with_name(name: str, exc: Rejected) -> Rejected:
    return type(exc)(f"{name}: {exc}")


def read_input(path: str) -> Input:
    """FILE as a document text, unwrapping a signed envelope (signature not checked here)."""
    raw = _read_bytes(path)
    name = "stdin" if path == "-" else path
    try:
        text = decode_utf8(raw, "the file")
        if not is_envelope(strict_loads(text, "the file")):
            return Input(name, text, None, None)
        envelope = read_envelope(raw)
    except Rejected as exc:
        raise _with_name(name, exc) from exc
    return Input(name, envelope.payload, raw, envelope.key)


def _parse(source: Input):
    try:
        return parse_schedule(source.text)
    except Rejected as exc:
        raise _with_name(source.name, exc) from exc


# ---- check ----

def _trusted_from_files(paths) -> dict:
    trusted = {}
    for path in paths:
        try:
            trusted[Path(path).stem] = parse_public_key(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise KeyFileError(f"{path}: not a public key file: {getattr(exc, 'strerror', None) or exc}") from exc
    return trusted


def _signature_status(source: Input, pub_files) -> str:
    """One of "unsigned", "not checked" (no --pub given), "checked"; a bad signature raises."""
    if source.envelope is None:
        return "unsigned"
    if not pub_files:
        return "not checked"
    try:
        open_envelope(source.envelope, _trusted_from_files(pub_files))
    except Rejected as exc:
        raise _with_name(source.name, exc) from exc
    return "checked"


def _signature_text(report: dict) -> str:
    if report["signature"] == "unsigned":
        return "unsigned document"
    hint = "; give --pub KEY.pub to check it" if report["signature"] == "not checked" else ""
    return f'signed with key "{report["key"]}" (signature {report["signature"]}{hint})'


def _window_start(start, tz) -> datetime:
    if start is None:
        return datetime.now(timezone.utc).replace(microsecond=0).astimezone(tz)
    if isinstance(start, datetime):
        return start.astimezone(tz)
    return datetime.combine(start, time(0), tzinfo=tz)


def _overlap_end(occurrence) -> datetime:
    item = occurrence.item
    span = max(OVERLAP_S, item.duration_s or 0) if item.stream else OVERLAP_S
    return occurrence.at + timedelta(seconds=span)


def find_overlaps(plays) -> list[str]:
    """One warning per pair of items whose plays overlap (see the module doc).

    Linear in the plays (sorted by time): each play is compared with the play just before
    it and with the earlier play whose window reaches furthest (a long stream), not with
    every earlier play, so a crowded document costs no more than its length. A run of plays
    a, b, c inside one window thus warns of (a, b) and (b, c), enough to show the crowd.
    """
    pairs: dict[tuple[str, str], list] = {}
    previous = widest = None
    for play in plays:
        for earlier in (previous,) if widest is previous else (previous, widest):
            if earlier is not None and play.at < _overlap_end(earlier):
                pairs.setdefault((earlier.item.id, play.item.id), []).append(play.at)
        if widest is None or _overlap_end(play) >= _overlap_end(widest):
            widest = play
        previous = play
    return [_overlap_warning(a, b, times) for (a, b), times in pairs.items()]


def _overlap_warning(a: str, b: str, times: list) -> str:
    who = f"item {a} overlaps itself" if a == b else f"items {a} and {b} overlap"
    count = f", {len(times)} times in the window" if len(times) > 1 else ""
    return f"{who} (first at {times[0].isoformat()}{count}); units play them one after the other"


def _validity_warnings(schedule, window_start: datetime) -> list[str]:
    warnings, tz = [], schedule.timezone
    if not schedule.items:
        warnings.append("no items: this document withdraws whatever it replaces")
    if schedule.valid_until < window_start.date():
        warnings.append(f"validity ended on {schedule.valid_until}: nothing will play")
    for index, item in enumerate(schedule.items):
        if item.once_at is not None:
            day = item.once_at.astimezone(tz).date()
            if not schedule.valid_from <= day <= schedule.valid_until:
                warnings.append(f"items[{index}] ({item.id}) at {item.at} is outside the validity "
                                f"{schedule.valid_from} to {schedule.valid_until}: it will never play")
    return warnings


def _check_report(schedule, source: Input, signature: str, args) -> dict:
    start = _window_start(args.start, schedule.timezone)
    plays = occurrences(schedule, start, start + timedelta(days=args.days))
    warnings = _validity_warnings(schedule, start) + find_overlaps(plays)
    warnings += [f"{line}; a unit with these quiet hours refuses the document"
                 for line in quiet_hours_conflicts(schedule, args.quiet_hours)]
    warnings += _area_warnings(schedule)
    return {
        "valid": True, "file": source.name, "id": schedule.id, "version": schedule.version,
        "signed": source.envelope is not None, "key": source.key_name, "signature": signature,
        "targets": list(schedule.targets), "timezone": str(schedule.timezone),
        "valid_from": schedule.valid_from.isoformat(), "valid_until": schedule.valid_until.isoformat(),
        "from": start.isoformat(), "days": args.days,
        "plays": [{"item": o.item.id, "at": o.at.isoformat(), "priority": o.item.priority} for o in plays],
        "areas": {area_id: area.as_dict() for area_id, area in schedule.areas.items()},
        "windows": _area_windows(schedule, start, start + timedelta(days=args.days)),
        "warnings": warnings,
    }


# ---- area items (SPEC "Mobile units") ----

def _area_windows(schedule, start, end) -> list[dict]:
    from scheduler.area_plan import windows

    return [{"item": w.item.id, "area": w.item.where, "from": w.start.isoformat(), "until": w.end.isoformat(),
             "priority": w.item.priority, "every_s": w.item.every_s, "max_plays": w.item.max_plays}
            for w in windows(schedule, start, end)]


def _area_warnings(schedule) -> list[str]:
    used = {item.where for item in schedule.items if item.is_area}
    return [f"area {area_id} is not used by any item" for area_id in schedule.areas if area_id not in used]


def _hhmm(moment) -> str:
    return moment.strftime("%H:%M:%S" if moment.second else "%H:%M")


def _seconds_text(seconds: int) -> str:
    return f"{seconds // 60} min" if seconds % 60 == 0 else f"{seconds} s"


def _describe_area(area_id: str, area) -> str:
    from scheduler.areas import Circle

    if isinstance(area, Circle):
        return f"{area_id}: circle of {area.r_m:g} m around {area.lat:.5f}, {area.lon:.5f}"
    return f"{area_id}: polygon of {len(area.points)} points, {area.area_m2() / 1e6:.2f} km2"


def _print_areas(report: dict, schedule) -> None:
    if not schedule.areas:
        return
    print("areas (an area item plays while the vehicle is inside, within its window):")
    for area_id, area in schedule.areas.items():
        print(f"  {_describe_area(area_id, area)}")
    if not any(item.is_area for item in schedule.items):
        return
    print(f"area windows for {report['days']} day(s) from {report['from']}:")
    for w in report["windows"][:MAX_LISTED_PER_ITEM * 5]:
        start, end = datetime.fromisoformat(w["from"]), datetime.fromisoformat(w["until"])
        print(f"  {w['item']} in {w['area']}: {start:%a %Y-%m-%d} {_hhmm(start)}-{_hhmm(end)} {start:%z}")
    if len(report["windows"]) > MAX_LISTED_PER_ITEM * 5:
        print(f"  ... and {len(report['windows']) - MAX_LISTED_PER_ITEM * 5} more")
    if not report["windows"]:
        print("  (no windows in this period)")


def _describe_item(item) -> str:
    if item.stream:
        sound = f"stream {item.stream} for {item.duration_s:g} s"
        sound += f", fallback {item.fallback}" if item.fallback else ""
    else:
        sound = ", ".join(item.play) + (f" x{item.repeat}" if item.repeat > 1 else "")
    if item.is_area:
        when = (f"in area {item.where} {_hhmm(item.window_from)}-{_hhmm(item.window_until)} on "
                f"{_days_text(item.days)}, every {_seconds_text(item.every_s)}, at most {item.max_plays} a day")
    else:
        when = f"at {item.at}" if item.once_at else f"{item.at} on {_days_text(item.days)}"
    return f"{item.id} ({item.priority}; {when}; {sound})"


def _days_text(days) -> str:
    return "every day" if len(days) == 7 else ", ".join(DAY_NAMES[d] for d in sorted(days))


def _print_check(report: dict, schedule) -> None:
    print(f"{report['file']}: schedule {schedule.id} version {schedule.version} is valid")
    print(f"  {_signature_text(report)}")
    print(f"  targets: {', '.join(schedule.targets)}")
    print(f"  valid {schedule.valid_from} to {schedule.valid_until}, times in {schedule.timezone}; "
          f"{len(schedule.items)} item(s), {len(schedule.media)} media")
    print(f"next plays for {report['days']} day(s) from {report['from']}:")
    times_of = {}
    for play in report["plays"]:  # grouped once: a scan per item is quadratic in items
        times_of.setdefault(play["item"], []).append(play["at"])
    for item in schedule.items:
        times = times_of.get(item.id, [])
        print(f"  {_describe_item(item)}")
        for at in times[:MAX_LISTED_PER_ITEM]:
            print(f"    {datetime.fromisoformat(at):%a %Y-%m-%d %H:%M:%S %z}")
        if len(times) > MAX_LISTED_PER_ITEM:
            print(f"    ... and {len(times) - MAX_LISTED_PER_ITEM} more")
        if not times and not item.is_area:
            print("    (no plays in this window)")
    _print_areas(report, schedule)
    for warning in report["warnings"]:
        print(f"warning: {warning}")


def check(args) -> int:
    try:
        source = read_input(args.file)
        schedule = _parse(source)
        signature = _signature_status(source, args.pub)
    except Rejected as exc:
        if not args.json:
            raise
        print(json.dumps({"valid": False, "file": args.file, "error": str(exc)}, ensure_ascii=False))
        return 1
    report = _check_report(schedule, source, signature, args)
    if args.json:
        print(json.dumps(report, ensure_ascii=False, indent=2))
    else:
        _print_check(report, schedule)
    return 0


# ---- sign ----

def _signed_envelope(source: Input, key, name: str) -> bytes:
    """A new envelope around an unsigned document, or one more signature on an envelope."""
    if source.envelope is None:
        return sign_document(source.text, key, name)
    if any(s.key == name for s in read_envelope(source.envelope).signatures):
        raise DocumentError(f"{source.name}: already signed by key {name!r}; nothing to add")
    return add_signature(source.envelope, key, name)


def sign(args) -> int:
    source = read_input(args.file)
    schedule = _parse(source)
    name, key = load_signing_key(args.key, args)
    envelope = _signed_envelope(source, key, name) + b"\n"
    if args.out is None:
        sys.stdout.buffer.write(envelope)
        sys.stdout.buffer.flush()
        return 0
    try:
        atomic_write(args.out, envelope)
    except OSError as exc:
        raise CommandError(f"{args.out}: cannot write: {exc.strerror or exc}") from exc
    print(f"signed schedule {schedule.id} version {schedule.version} with key {name}: {args.out}")
    return 0


# ---- push ----

def _envelope_for_push(source: Input, key_path, args=None) -> bytes:
    if source.envelope is not None:
        return source.envelope  # sent byte for byte as it was signed
    if not key_path:
        raise KeyFileError(f"{source.name} is not signed: give --key KEY.key to sign it")
    name, key = load_signing_key(key_path, args)
    return sign_document(source.text, key, name)


def _push_targets(schedule, wanted) -> list[str]:
    """--to, each of which must be among the document's targets (units would refuse it otherwise)."""
    if not wanted:
        return list(schedule.targets)
    strangers = [t for t in wanted if t not in schedule.targets]
    if strangers:
        raise TargetError(f"{', '.join(strangers)} not among the document's targets "
                          f"({', '.join(schedule.targets)}): units there would refuse it")
    return list(dict.fromkeys(wanted))


def replacement_problem(held, schedule) -> str | None:
    """Why units holding `held` (what a topic retains) would refuse `schedule`, or None."""
    if held is None or held.id != schedule.id:
        return None  # another schedule on this topic: replacing it is what a new one does
    if held.version > schedule.version:
        return (f"retains schedule {held.id} version {held.version}, newer than this version "
                f"{schedule.version}: units that have it refuse this one")
    if held.version == schedule.version and held.digest != schedule.digest:
        return (f"retains schedule {held.id} version {held.version} with other content: units that "
                f"have it refuse an edited document under the same version; give it version "
                f"{held.version + 1}")
    return None


def _retained_document(options, topic: str):
    raw = read_retained(options, topic)
    try:
        return None if raw is None else parse_schedule(read_envelope(raw).payload)
    except Rejected:
        return None  # units refuse it too: nothing of value is replaced


def _check_retained(options, topics, schedule, force: bool) -> None:
    for topic in topics:
        problem = replacement_problem(_retained_document(options, topic), schedule)
        if problem is None:
            continue
        if not force:
            raise CommandError(f"{topic} {problem} (or give --force to publish anyway)")
        print(f"warning: {topic} {problem}; publishing anyway (--force)", file=sys.stderr)


def push(args) -> int:
    options = broker_options(args)
    source = read_input(args.file)
    schedule = _parse(source)
    envelope = _envelope_for_push(source, args.key, args)
    topics = [target_topic(options.topic_prefix, t) for t in _push_targets(schedule, args.to)]
    check_before_publish(args, envelope, topics, options.topic_prefix)
    _check_retained(options, topics, schedule, args.force)
    publish(options, [(topic, envelope, True) for topic in topics])
    for topic in topics:
        print(f"published schedule {schedule.id} version {schedule.version} (retained) to {topic}")
    return 0


# ---- revoke ----

@dataclass(frozen=True)
class Retained:
    version: int
    timezone: str


def _retained_schedule(options, topic: str, schedule_id: str) -> Retained | None:
    raw = read_retained(options, topic)
    if raw is None:
        return None
    try:
        held = parse_schedule(read_envelope(raw).payload)
    except Rejected:
        return None  # units refuse it too: replacing it loses nothing
    if held.id != schedule_id:
        raise CommandError(f"{topic} holds schedule {held.id}, not {schedule_id}; revoking there would "
                           "replace it (give --version N to do so anyway)")
    return Retained(held.version, str(held.timezone))


def _current(options, schedule_id: str, topics) -> Retained:
    found = [r for topic in topics if (r := _retained_schedule(options, topic, schedule_id))]
    if not found:
        raise CommandError(f"no target topic retains schedule {schedule_id}; give --version N "
                           "(higher than any version the units accepted)")
    return max(found, key=lambda r: r.version)


def revocation_text(schedule_id: str, version: int, targets, tz_name: str, now: datetime) -> str:
    """A valid schedule with no items: it replaces what is in force and plays nothing."""
    today = now.astimezone(ZoneInfo(tz_name)).date().isoformat()
    doc = {"type": "schedule", "id": schedule_id, "version": version, "targets": list(targets),
           "issued_at": now.isoformat(timespec="seconds"), "valid_from": today, "valid_until": today,
           "timezone": tz_name, "media": {}, "items": []}
    return json.dumps(doc, ensure_ascii=False, indent=2)


def _revocation(schedule_id: str, version: int, targets, tz_name: str):
    text = revocation_text(schedule_id, version, targets, tz_name, datetime.now(timezone.utc).astimezone())
    try:
        return parse_schedule(text)
    except DocumentError as exc:  # only the operator's ID or --version can be wrong here
        raise DocumentError(f"cannot revoke {schedule_id!r}: {exc}") from exc


def revoke(args) -> int:
    options = broker_options(args)
    targets = list(dict.fromkeys(args.to))
    _revocation(args.id, args.version or 1, targets, DEFAULT_REVOKE_TIMEZONE)  # a bad ID fails before the network
    name, key = load_signing_key(args.key, args)
    topics = [target_topic(options.topic_prefix, t) for t in targets]
    if args.version:
        version, tz_name = args.version, DEFAULT_REVOKE_TIMEZONE
    else:
        current = _current(options, args.id, topics)
        version, tz_name = current.version + 1, current.timezone
    schedule = _revocation(args.id, version, targets, tz_name)
    publish(options, [(topic, sign_document(schedule.payload, key, name), True) for topic in topics])
    for topic in topics:
        print(f"revoked schedule {schedule.id}: version {schedule.version} with no items published "
              f"(retained) to {topic}")
    return 0
