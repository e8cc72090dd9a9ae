"""`loaxa fleet report`: coverage of one schedule, per item occurrence, from the fleet database.

For each occurrence of each item in the window:
- targeted: the units the schedule's targets name. A `group:` target names every unit
  whose reported `groups` (ancestors included) contain it; a `unit:` target names that
  unit even if it never reported. A unit counts only once the collector has seen it
  (its `state`): units that never connected are invisible to a group target.
- each targeted unit's best outcome for that occurrence (SPEC: a playback resumed
  after an emergency is a second record with the same item and scheduled_at):
  `completed` > `partial` (interrupted or preempted with any audio) > `missed`
  (failed, missed, or interrupted/preempted before any audio) > `unknown` (no record
  has reached the collector: not played yet, still in the unit's outbox, or lost).

Which occurrences: a schedule id may have several versions; version v governs the
occurrences from its `issued_at` until the next version's `issued_at` (a unit plays
the newest version it accepted; a revocation is a version with no items). Occurrences
scheduled before a version was issued were never expected of the units. The default
window is the schedule's validity (the earliest `valid_from` to the latest
`valid_until`, in its timezone) up to now.

Areas: group paths are `province/district/commune` (SPEC: `dak-lak/lak/bong-krang`).
A unit belongs to the district and commune of its deepest group; one with no group
of that depth is counted under "(none)".
"""

import json
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone

from fleet.errors import FleetError
from loaxa.errors import Rejected
from scheduler import occurrences, parse_schedule, unit_targets

__all__ = ["CATEGORIES", "Window", "best_category", "build_report", "category_of", "parse_bound"]

CATEGORIES = ("completed", "partial", "missed", "unknown")
RANK = {"completed": 3, "partial": 2, "missed": 1, "unknown": 0}
NO_AREA = "(none)"
MAX_OCCURRENCES = 20000


def category_of(outcome, played_s) -> str:
    """SPEC's ranking of one playlog: completed, partial (any audio before a stop), missed."""
    if outcome == "completed":
        return "completed"
    if outcome in ("interrupted", "preempted") and (played_s or 0) > 0:
        return "partial"
    return "missed"


def best_category(categories) -> str:
    return max(categories, key=RANK.__getitem__, default="unknown")


# ---- the window ----

def parse_bound(text: str, tz, *, end: bool):
    """`YYYY-MM-DD` (midnight in tz; as an end, the following midnight: the day is included),
    `YYYY-MM-DDTHH:MM[:SS]` (in tz) or a date-time with offset. ValueError says why not."""
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return datetime.combine(day + timedelta(days=1) if end else day, time(), tzinfo=tz)
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"expected YYYY-MM-DD or an ISO date-time, got {text!r}") from None
    return moment if moment.utcoffset() is not None else moment.replace(tzinfo=tz)


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime


def default_window(schedules, now: datetime) -> Window:
    tz = schedules[-1].timezone
    first = min(s.valid_from for s in schedules)
    last = max(s.valid_until for s in schedules)
    start = datetime.combine(first, time(), tzinfo=tz)
    end = min(now, datetime.combine(last + timedelta(days=1), time(), tzinfo=tz))
    return Window(start, max(start, end))


# ---- units and areas ----

@dataclass(frozen=True)
class Target:
    unit: str
    district: str
    commune: str


def _areas(groups) -> tuple[str, str]:
    deepest = max(groups, key=lambda g: (g.count("/"), g), default="")
    parts = deepest.split("/") if deepest else []
    district = "/".join(parts[:2]) if len(parts) >= 2 else NO_AREA
    commune = "/".join(parts[:3]) if len(parts) >= 3 else NO_AREA
    return district, commune


def targeted_units(targets, unit_rows) -> list[Target]:
    """The units `targets` names, among those seen, plus named units never seen."""
    wanted = set(targets)
    found = {row.unit: Target(row.unit, *_areas(row.groups)) for row in unit_rows
             if unit_targets(row.unit, row.groups) & wanted}
    for target in targets:
        kind, _, name = target.partition(":")
        if kind == "unit" and name not in found:
            found[name] = Target(name, NO_AREA, NO_AREA)
    return [found[name] for name in sorted(found)]


# ---- counting ----

@dataclass
class Tally:
    targeted: int = 0
    completed: int = 0
    partial: int = 0
    missed: int = 0
    unknown: int = 0

    def add(self, category: str) -> None:
        self.targeted += 1
        setattr(self, category, getattr(self, category) + 1)

    def as_dict(self) -> dict:
        return {"targeted": self.targeted, "completed": self.completed, "partial": self.partial,
                "missed": self.missed, "unknown": self.unknown}


@dataclass
class OccurrenceCount:
    item: str
    at: datetime
    version: int
    total: Tally = field(default_factory=Tally)
    districts: dict = field(default_factory=dict)
    communes: dict = field(default_factory=dict)

    def add(self, target: Target, category: str) -> None:
        self.total.add(category)
        self.districts.setdefault(target.district, Tally()).add(category)
        self.communes.setdefault(target.commune, Tally()).add(category)

    def as_dict(self) -> dict:
        return {"item": self.item, "scheduled_at": self.at.isoformat(), **self.total.as_dict(),
                "version": self.version,
                "districts": [{"district": name, **t.as_dict()} for name, t in sorted(self.districts.items())],
                "communes": [{"commune": name, **t.as_dict()} for name, t in sorted(self.communes.items())]}


def _ms(moment: datetime) -> int:
    return round(moment.timestamp() * 1000)


def _parsed_versions(rows) -> list:
    schedules = []
    for row in rows:
        try:
            schedules.append(parse_schedule(row["payload"]))
        except Rejected:
            continue  # kept as seen; a unit would have refused it too
    return schedules


def _planned(schedules, window: Window) -> list:
    """(occurrence, schedule) pairs: each version's plays between its issue and the next's."""
    planned = []
    for i, schedule in enumerate(schedules):
        start = max(window.start, schedule.issued_at)
        end = min(window.end, schedules[i + 1].issued_at) if i + 1 < len(schedules) else window.end
        if start < end:
            planned += [(occ, schedule) for occ in occurrences(schedule, start, end)]
        if len(planned) > MAX_OCCURRENCES:
            raise FleetError(f"more than {MAX_OCCURRENCES} occurrences in the window: give a shorter "
                             "--from/--to")
    return planned


def _best_plays(plays) -> dict:
    """(item, scheduled_ms) -> {unit: best category}."""
    best: dict = {}
    for play in plays:
        per_unit = best.setdefault((play["item"], play["scheduled_ms"]), {})
        category = category_of(play["outcome"], play["played_s"])
        if RANK[category] > RANK[per_unit.get(play["unit"], "unknown")]:
            per_unit[play["unit"]] = category
    return best


def load_schedules(store, schedule_id: str) -> list:
    rows = store.schedule_versions(schedule_id)
    if not rows:
        known = store.schedule_ids()
        hint = f"; known: {', '.join(known[:10])}" + (" ..." if len(known) > 10 else "") if known else \
            "; none yet (the collector records the retained schedules it sees)"
        raise FleetError(f"schedule {schedule_id!r} has not been seen by the collector{hint}")
    schedules = _parsed_versions(rows)
    if not schedules:
        raise FleetError(f"schedule {schedule_id!r}: no version seen is a valid document")
    return schedules


def build_report(store, schedule_id: str, *, start: str | None = None, end: str | None = None,
                 now: datetime | None = None) -> dict:
    """The report as SPEC's JSON (`{"schedule", "items": [...]}`) plus breakdowns and totals."""
    now = now or datetime.now(timezone.utc)
    schedules = load_schedules(store, schedule_id)
    tz = schedules[-1].timezone
    window = default_window(schedules, now)
    try:
        window = Window(parse_bound(start, tz, end=False) if start else window.start,
                        parse_bound(end, tz, end=True) if end else window.end)
    except ValueError as exc:
        raise FleetError(f"--from/--to: {exc}") from exc
    if window.end <= window.start and (start or end):
        raise FleetError(f"the window is empty: {window.start.isoformat()} is not before {window.end.isoformat()}")
    unit_rows = store.units()
    planned = _planned(schedules, window)
    best = _best_plays(store.plays(schedule_id, _ms(window.start), _ms(window.end)))
    targets_of = {s.version: targeted_units(s.targets, unit_rows) for s in schedules}
    counts, totals = [], Tally()
    for occ, schedule in planned:
        count = OccurrenceCount(occ.item.id, occ.at, schedule.version)
        played = best.get((occ.item.id, _ms(occ.at)), {})
        for target in targets_of[schedule.version]:
            category = played.get(target.unit, "unknown")
            count.add(target, category)
            totals.add(category)
        counts.append(count)
    latest = schedules[-1]
    return {
        "schedule": schedule_id,
        "items": [c.as_dict() for c in counts],
        "from": window.start.astimezone(tz).isoformat(timespec="seconds"),
        "to": window.end.astimezone(tz).isoformat(timespec="seconds"),
        "generated_at": now.astimezone(tz).isoformat(timespec="seconds"),
        "timezone": str(tz), "version": latest.version, "versions": [s.version for s in schedules],
        "targets": list(latest.targets), "titles": _titles(schedules),
        "totals": totals.as_dict(),
        "areas": area_report(store, latest, window) if latest.areas else [],
    }


def area_report(store, schedule, window: Window) -> list[dict]:
    """SPEC "Mobile units": per area, local day and vehicle, the plays, the seconds of audio
    heard inside the area (cut by the stored track) and the time spent in it
    (fleet/area_report.py), for the vehicles with area playlogs or a track in the window."""
    from fleet.area_report import area_rows

    records = [doc for doc in store.playlog_docs(schedule.id, _ms(window.start), _ms(window.end))
               if doc.get("area")]
    start, end = window.start.timestamp(), window.end.timestamp()
    units = sorted({doc.get("unit") for doc in records if isinstance(doc.get("unit"), str)}
                   | set(store.track_units(start, end)))
    rows = []
    for unit in units:
        points = store.track_points(unit, start, end)
        mine = [doc for doc in records if doc.get("unit") == unit]
        rows += [row for row in area_rows(schedule, unit, mine, points)
                 if row["plays"] or row["missed"] or row["time_inside_s"]]
    return sorted(rows, key=lambda r: (r["day"], r["area"], r["unit"]))


def _titles(schedules) -> dict:
    """Item id -> what it plays, in words, for the readers of a report."""
    titles = {}
    for schedule in schedules:
        for item in schedule.items:
            names = [schedule.media[m].title or m if m in schedule.media else m for m in item.play]
            titles[item.id] = ", ".join(names) if names else (item.stream or "")
    return titles


# ---- plain renderings ----

def percent(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:.1f}%" if whole else "-"


CSV_COLUMNS = ("schedule", "item", "scheduled_at", "level", "area", "targeted", "completed", "partial",
               "missed", "unknown", "completed_pct")


def csv_rows(report: dict):
    """One row per occurrence for the whole target, then one per district and per commune."""
    for item in report["items"]:
        areas = [("all", "", item)] + [("district", d["district"], d) for d in item["districts"]] + \
                [("commune", c["commune"], c) for c in item["communes"]]
        for level, area, t in areas:
            yield [report["schedule"], item["item"], item["scheduled_at"], level, area, t["targeted"],
                   t["completed"], t["partial"], t["missed"], t["unknown"],
                   f"{100.0 * t['completed'] / t['targeted']:.1f}" if t["targeted"] else ""]


def render_text(report: dict) -> str:
    lines = [f"schedule {report['schedule']} (version {report['version']}), "
             f"{report['from']} to {report['to']}", f"targets: {', '.join(report['targets'])}"]
    if not report["items"]:
        lines.append("no occurrences in this window")
    for item in report["items"]:
        at = datetime.fromisoformat(item["scheduled_at"])
        lines.append(f"{item['item']:<20} {at:%Y-%m-%d %H:%M:%S %z}  targeted {item['targeted']:>5}  "
                     f"completed {item['completed']:>5} ({percent(item['completed'], item['targeted'])})  "
                     f"partial {item['partial']}  missed {item['missed']}  unknown {item['unknown']}")
        for d in item["districts"]:
            if len(item["districts"]) > 1:
                lines.append(f"    {d['district']:<30} {d['completed']}/{d['targeted']} completed "
                             f"({percent(d['completed'], d['targeted'])}), partial {d['partial']}, "
                             f"missed {d['missed']}, unknown {d['unknown']}")
    for row in report.get("areas", []):
        missed = ", ".join(f"{n} {reason}" for reason, n in sorted(row["missed"].items()))
        lines.append(f"area {row['area']:<16} {row['day']}  {row['unit']:<24} plays {row['plays']} "
                     f"(completed {row['completed']}), audio inside {row['audio_inside_s'] / 60:.1f} min "
                     f"of {row['played_s'] / 60:.1f}, time inside {row['time_inside_s'] / 60:.1f} min"
                     + (f", missed: {missed}" if missed else ""))
    t = report["totals"]
    lines.append(f"all occurrences: {t['completed']} of {t['targeted']} plays completed "
                 f"({percent(t['completed'], t['targeted'])}), partial {t['partial']}, missed {t['missed']}, "
                 f"unknown {t['unknown']}")
    return "\n".join(lines)


def to_json(report: dict) -> str:
    return json.dumps(report, ensure_ascii=False, indent=2)
