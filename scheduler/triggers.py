"""When items play: occurrences from a schedule, given the time window to look in.

Pure: `now` (or `start`/`end`/`after`) is always an argument, never read here.

A recurring `at` is a wall-clock time in the document's timezone on each date from
valid_from to valid_until (inclusive) whose weekday is in `days` and that is not in
`except`. Daylight-saving transitions:
- a wall time that does not exist (the spring-forward gap: 02:30 in Europe/Berlin on
  the last Sunday of March) plays as far after the gap as it was into it (03:30);
- a wall time that happens twice (the autumn fold) plays once, at its first instance.
A one-off `at` plays once, if its date in the document's timezone is within validity.
Every `Occurrence.at` is expressed in the document's timezone, so its `key` is stable.
An area item (`where`) has no clock-time plays: whether it plays depends on where the
vehicle is, so it yields nothing here; `scheduler.area_plan` gives its daily windows.
"""

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone as dt_timezone
from zoneinfo import ZoneInfo

from apscheduler.triggers.base import BaseTrigger

from loaxa.errors import ConfigError, QuietHoursError

__all__ = ["ItemTrigger", "Occurrence", "QuietHours", "check_quiet_hours", "in_quiet_hours",
           "next_of_item", "next_occurrence",
           "occurrences", "parse_quiet_hours", "quiet_hours_conflicts"]

ONE_DAY = timedelta(days=1)
QUIET_HOURS_PATTERN = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])-([01][0-9]|2[0-3]):([0-5][0-9])", re.ASCII)
# Two years of dates cover every yearly DST rule when zones differ; beyond that the
# offsets repeat, and checking every day of a document valid until 9999 would not end.
QUIET_CHECK_DAYS = 731


@dataclass(frozen=True)
class Occurrence:
    schedule_id: str
    version: int
    item: object  # scheduler.document.Item
    at: datetime  # aware, in the document's timezone

    @property
    def item_id(self) -> str:
        return self.item.id

    @property
    def key(self) -> str:
        """Stable across re-planning and across versions of the document: a new version
        that keeps an item at the same time names the same play (it must not play again)."""
        return f"{self.schedule_id}|{self.item.id}|{self.at.isoformat()}"


def _order(occurrence: Occurrence):
    return occurrence.at, occurrence.schedule_id, occurrence.item.id


def _require_aware(*moments: datetime) -> None:
    for moment in moments:
        if moment.tzinfo is None or moment.utcoffset() is None:
            raise ValueError(f"{moment!r} has no timezone; schedule maths need aware date-times")


def _local_date(moment: datetime, tz) -> date:
    try:
        return moment.astimezone(tz).date()
    except OverflowError:
        return moment.date()


def _day_before(day: date) -> date:
    return day - ONE_DAY if day > date.min else day


def _wall_instant(day: date, wall: time, tz) -> datetime | None:
    """The instant a wall time happens on a date in tz (gap: shifted forward; fold: the first)."""
    try:
        return datetime.combine(day, wall, tzinfo=tz).astimezone(dt_timezone.utc).astimezone(tz)
    except OverflowError:
        return None


def _plays_on(item, day: date) -> bool:
    return day.weekday() in item.days and day not in item.except_dates


def _play_days(schedule, item, first: date, last: date):
    """The dates from first to last (clipped to validity) on which a recurring item plays."""
    day, last = max(first, schedule.valid_from), min(last, schedule.valid_until)
    while day <= last:
        if _plays_on(item, day):
            yield day
        if day == date.max:
            return
        day += ONE_DAY


def _item_times(schedule, item, first: date, last: date):
    """Ascending play instants of one item on local dates first..last (and validity)."""
    tz = schedule.timezone
    if item.is_area:
        return  # plays by position within its window: scheduler.area_plan
    if not item.is_recurring:
        at = item.once_at.astimezone(tz)
        if first <= at.date() <= last and schedule.valid_from <= at.date() <= schedule.valid_until:
            yield at
        return
    for day in _play_days(schedule, item, first, last):
        at = _wall_instant(day, item.time_of_day, tz)
        if at is None:
            return
        yield at


def occurrences(schedule, start: datetime, end: datetime) -> list[Occurrence]:
    """Every play of `schedule` with start <= at < end, soonest first."""
    _require_aware(start, end)
    tz = schedule.timezone
    # A day of margin each side: a DST shift can move a play across local midnight.
    first, last = _day_before(_local_date(start, tz)), _local_date(end, tz)
    found = []
    for item in schedule.items:
        for at in _item_times(schedule, item, first, last):
            if at >= end:
                break
            if at >= start:
                found.append(Occurrence(schedule.id, schedule.version, item, at))
    return sorted(found, key=_order)


def _next_of_item(schedule, item, after: datetime) -> Occurrence | None:
    first = _day_before(_local_date(after, schedule.timezone))
    for at in _item_times(schedule, item, first, date.max):
        if at > after:
            return Occurrence(schedule.id, schedule.version, item, at)
    return None


def next_of_item(schedule, item, after: datetime) -> Occurrence | None:
    """The first play of one item strictly after `after`, or None."""
    _require_aware(after)
    return _next_of_item(schedule, item, after)


class ItemTrigger(BaseTrigger):
    """APScheduler's trigger API over one item of one schedule: fires `lead` before each play.

    Pure like every APScheduler trigger: `now` comes in as an argument, so the unit's
    planner runs it on its own injectable clock and tests never sleep.
    """

    def __init__(self, schedule, item, lead: timedelta = timedelta(0)):
        self.schedule = schedule
        self.item = item
        self.lead = lead

    def occurrence_for(self, fire_time: datetime) -> Occurrence:
        return Occurrence(self.schedule.id, self.schedule.version, self.item, fire_time + self.lead)

    def get_next_fire_time(self, previous_fire_time, now):
        if previous_fire_time is not None:
            after = previous_fire_time + self.lead
        else:
            after = now + self.lead - timedelta(microseconds=1)
        occ = _next_of_item(self.schedule, self.item, after)
        return None if occ is None else occ.at - self.lead

    def __str__(self) -> str:
        return f"item {self.item.id} of {self.schedule.id} v{self.schedule.version}"


def next_occurrence(schedules, after: datetime) -> Occurrence | None:
    """The first play strictly after `after` among all schedules, or None."""
    _require_aware(after)
    candidates = [occ for schedule in schedules for item in schedule.items
                  if (occ := _next_of_item(schedule, item, after)) is not None]
    return min(candidates, key=_order, default=None)


# ---- quiet hours ----

@dataclass(frozen=True)
class QuietHours:
    start: time
    end: time  # may be earlier than start: the quiet hours cross midnight

    def __contains__(self, moment) -> bool:
        t = moment.time() if isinstance(moment, datetime) else moment
        t = t.replace(tzinfo=None)
        if self.start < self.end:
            return self.start <= t < self.end
        return t >= self.start or t < self.end

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"


def parse_quiet_hours(spec) -> QuietHours | None:
    """`"22:00-05:00"` -> QuietHours (may cross midnight); `""` or None -> None (no quiet hours)."""
    if spec is None or isinstance(spec, QuietHours):
        return spec
    if not isinstance(spec, str):
        raise ConfigError([f"expected a string like \"22:00-05:00\", got {spec!r}"], "unit.quiet_hours")
    if not spec.strip():
        return None
    match = QUIET_HOURS_PATTERN.fullmatch(spec.strip())
    if not match:
        raise ConfigError([f"expected HH:MM-HH:MM such as 22:00-05:00, or \"\" for none, got {spec!r}"],
                          "unit.quiet_hours")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    if (h1, m1) == (h2, m2):
        raise ConfigError([f"{spec!r} starts and ends at the same time; use \"\" for no quiet hours"],
                          "unit.quiet_hours")
    return QuietHours(time(h1, m1), time(h2, m2))


def in_quiet_hours(local_time, quiet) -> bool:
    """Is a wall-clock time (a `time`, or a `datetime` already in the unit's timezone) quiet?"""
    quiet = parse_quiet_hours(quiet)
    return quiet is not None and local_time in quiet


def _zone(tz, default) -> ZoneInfo:
    if tz is None:
        return default
    return ZoneInfo(tz) if isinstance(tz, str) else tz


def _same_zone(a, b) -> bool:
    return a is b or getattr(a, "key", a) == getattr(b, "key", b)


def _recurring_conflict(schedule, item, quiet: QuietHours, unit_tz, path: str) -> str | None:
    doc_tz = schedule.timezone
    if _same_zone(doc_tz, unit_tz):
        if item.time_of_day in quiet:
            return f"{path}.at: {item.at} ({item.id}) is inside the quiet hours {quiet}"
        return None
    last = min(schedule.valid_until, schedule.valid_from + timedelta(days=QUIET_CHECK_DAYS))
    for day in _play_days(schedule, item, schedule.valid_from, last):
        at = _wall_instant(day, item.time_of_day, doc_tz)
        if at is not None and at.astimezone(unit_tz) in quiet:
            return (f"{path}.at: {item.at} in {doc_tz} on {day} is "
                    f"{at.astimezone(unit_tz):%H:%M} in {unit_tz}, inside the quiet hours {quiet}")
    return None


def _one_off_conflict(item, quiet: QuietHours, unit_tz, path: str) -> str | None:
    local = item.once_at.astimezone(unit_tz)
    if local in quiet:
        return f"{path}.at: {item.at} is {local:%H:%M} in {unit_tz}, inside the quiet hours {quiet}"
    return None


def quiet_hours_conflicts(schedule, spec, unit_tz=None) -> list[str]:
    """One line per non-emergency item that would start inside the quiet hours."""
    quiet = parse_quiet_hours(spec)
    if quiet is None:
        return []
    unit_tz = _zone(unit_tz, schedule.timezone)
    found = []
    for index, item in enumerate(schedule.items):
        if item.priority == "emergency" or item.is_area:
            continue  # quiet hours suppress an area item's plays; its window is not refused
        path = f"items[{index}]"
        if item.is_recurring:
            conflict = _recurring_conflict(schedule, item, quiet, unit_tz, path)
        else:
            conflict = _one_off_conflict(item, quiet, unit_tz, path)
        if conflict:
            found.append(conflict)
    return found


def check_quiet_hours(schedule, spec, unit_tz=None) -> None:
    """Refuse a schedule with a non-emergency item starting inside the unit's quiet hours."""
    conflicts = quiet_hours_conflicts(schedule, spec, unit_tz)
    if conflicts:
        raise QuietHoursError(f"{conflicts[0]}; only emergency items may sound then")
