"""When an area item plays: its daily window, the vehicle's membership of an area, and
whether a play is due now. Pure: positions, fixes and `now` are always arguments.

SPEC "Mobile units", piece by piece:
- `windows(schedule, start, end)`: an area item's occurrence is the day's window;
  `Window.occurrence.at` (`scheduled_at`) is the window's start in the document's zone.
- `Membership` / `AreaWatch`: the vehicle enters an area after 3 consecutive trusted
  fixes inside it and leaves after 3 consecutive trusted fixes outside, or 10 s without a
  trusted fix (`is_trusted`: GGA quality >= 1 or RMC status A, HDOP <= 5 where given,
  arrived <= 10 s ago). An untrusted fix breaks a streak (doubt delays the decision), and
  a fix already counted (the same arrival time) is not counted again.
- `AreaPlanState.decide(...)`: a play is due inside the area within the window, at most
  `max_plays` started per local day, `every_s` start to start (a last start survives
  leaving and re-entering, and a restart: the state is JSON, `to_json`/`from_json`).
  Quiet hours hold back non-emergency plays (no record); with the ignition off a due play
  is skipped (`missed`, "ignition off") unless it is an emergency or the vehicle plays
  with the ignition off; a skipped play moves the `every_s` clock like a start (one
  record per `every_s`, not one a second) but is not a play (`max_plays` counts starts).
- `AreaPlanState.close(...)`: at the window's end, a window the unit watched without a
  single trusted fix and with no play gives the one `missed` "no GPS fix" record.
- `recheck(...)`: what is checked again just before a queued or resumed play starts.
"""

import json
import math
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta

from loaxa.errors import LoaxaError
from scheduler.triggers import Occurrence, _day_before, _local_date, _play_days, _require_aware, _wall_instant

__all__ = ["AreaPlanState", "AreaStateError", "AreaWatch", "Decision", "ENTER_FIXES", "Fix", "ItemCounter",
           "LEAVE_FIXES", "LOST_AFTER_S", "MAX_FIX_AGE_S", "MAX_HDOP", "Membership", "Window",
           "counter_key", "is_trusted", "recheck", "window_of_day", "windows"]

ENTER_FIXES = 3
LEAVE_FIXES = 3
LOST_AFTER_S = 10.0  # this long without a trusted fix: the vehicle has left every area
MAX_FIX_AGE_S = 10.0
MAX_HDOP = 5.0
NO_FIX_REASON = "no GPS fix"
IGNITION_REASON = "ignition off"


# ---- windows ----

@dataclass(frozen=True)
class Window:
    """One day's window of an area item."""

    schedule_id: str
    version: int
    item: object  # scheduler.document.Item with `where`
    start: datetime  # aware, in the document's timezone
    end: datetime

    @property
    def day(self) -> date:
        return self.start.date()

    @property
    def occurrence(self) -> Occurrence:
        """The window as an occurrence: `at` (the playlog's `scheduled_at`) is its start."""
        return Occurrence(self.schedule_id, self.version, self.item, self.start)

    @property
    def key(self) -> str:
        return self.occurrence.key

    @property
    def counter_key(self) -> str:
        return counter_key(self.schedule_id, self.item.id)

    def contains(self, moment: datetime) -> bool:
        return self.start <= moment < self.end


def counter_key(schedule_id: str, item_id: str) -> str:
    """Counters belong to a schedule's item, not to one version of it: re-signing a
    document mid-day does not grant the vehicle a fresh `max_plays`."""
    return f"{schedule_id}|{item_id}"


def _window(schedule, item, day: date) -> Window | None:
    tz = schedule.timezone
    start = _wall_instant(day, item.window_from, tz)
    end = _wall_instant(day, item.window_until, tz)
    if start is None or end is None or end <= start:
        return None  # the calendar's end, or a DST gap that swallowed the whole window
    return Window(schedule.id, schedule.version, item, start, end)


def windows(schedule, start: datetime, end: datetime) -> list[Window]:
    """Every window of the schedule's area items overlapping [start, end), soonest first."""
    _require_aware(start, end)
    tz = schedule.timezone
    first, last = _day_before(_local_date(start, tz)), _local_date(end, tz)
    found = []
    for item in schedule.items:
        if not item.is_area:
            continue
        for day in _play_days(schedule, item, first, last):
            window = _window(schedule, item, day)
            if window is not None and window.start < end and window.end > start:
                found.append(window)
    return sorted(found, key=lambda w: (w.start, w.schedule_id, w.item.id))


def window_of_day(schedule, item, moment: datetime) -> Window | None:
    """The item's window on `moment`'s local date (it may have ended or not begun), or
    None when the item does not play that day."""
    _require_aware(moment)
    day = _local_date(moment, schedule.timezone)
    if not any(True for _ in _play_days(schedule, item, day, day)):
        return None
    return _window(schedule, item, day)


# ---- fixes and membership ----

@dataclass(frozen=True)
class Fix:
    """A position as the receiver gave it. `hw.gps.GpsFix` has the same attribute names
    (lat, lon, quality, hdop, at), so either may be passed where a fix is wanted."""

    lat: float
    lon: float
    at: float  # when it arrived, in the caller's seconds (the unit: monotonic)
    quality: int | None = None  # GGA fix quality, None when only an RMC came
    hdop: float | None = None
    rmc_valid: bool | None = None  # RMC status A


def is_trusted(fix, now: float) -> bool:
    """GGA quality >= 1 or RMC status A, HDOP <= 5 where given, arrived <= 10 s ago."""
    if fix is None:
        return False
    quality = getattr(fix, "quality", None)
    rmc_valid = getattr(fix, "rmc_valid", None)
    if not ((quality is not None and quality >= 1) or rmc_valid is True):
        return False
    hdop = getattr(fix, "hdop", None)
    if hdop is not None and not hdop <= MAX_HDOP:
        return False
    if not (math.isfinite(fix.lat) and math.isfinite(fix.lon)):
        return False
    return 0.0 <= now - fix.at <= MAX_FIX_AGE_S


@dataclass
class Membership:
    """Whether the vehicle is in one area, changing only on 3 trusted fixes in a row."""

    inside: bool = False
    streak: int = 0  # consecutive trusted fixes that contradict `inside`
    last_trusted: float | None = None
    last_counted: float | None = None  # arrival time of the last fix taken

    def observe(self, fix, contains: bool, now: float) -> str | None:
        """Take one fix (`contains`: is it inside the area?); "entered", "left" or None."""
        if self.last_counted is not None and fix is not None and fix.at <= self.last_counted:
            return self.tick(now)  # the same fix read again, or an older one
        if fix is not None:
            self.last_counted = fix.at
        if not is_trusted(fix, now):
            self.streak = 0
            return self.tick(now)
        self.last_trusted = fix.at
        if contains == self.inside:
            self.streak = 0
            return None
        self.streak += 1
        if self.streak >= (ENTER_FIXES if contains else LEAVE_FIXES):
            self.inside, self.streak = contains, 0
            return "entered" if contains else "left"
        return None

    def tick(self, now: float) -> str | None:
        """With time alone: "left" after 10 s inside without a trusted fix."""
        if self.inside and (self.last_trusted is None or now - self.last_trusted >= LOST_AFTER_S):
            self.inside, self.streak = False, 0
            return "left"
        return None


class AreaWatch:
    """Membership of many areas (keyed as the caller likes, e.g. (schedule id, area id))."""

    def __init__(self, areas: dict):
        self.areas = dict(areas)
        self.members = {key: Membership() for key in self.areas}

    def set_areas(self, areas: dict) -> list[tuple[object, str]]:
        """New areas in force; an area that went away while inside is left."""
        events = [(key, "left") for key, m in self.members.items() if key not in areas and m.inside]
        self.areas = dict(areas)
        self.members = {key: self.members.get(key) or Membership() for key in self.areas}
        return events

    def observe(self, fix, now: float) -> list[tuple[object, str]]:
        events = []
        for key, area in self.areas.items():
            contains = fix is not None and area.contains(fix.lat, fix.lon)
            event = self.members[key].observe(fix, contains, now)
            if event:
                events.append((key, event))
        return events

    def tick(self, now: float) -> list[tuple[object, str]]:
        return [(key, event) for key, m in self.members.items() if (event := m.tick(now))]

    def inside(self, key) -> bool:
        member = self.members.get(key)
        return member is not None and member.inside


# ---- counters and the decision ----

class AreaStateError(LoaxaError, ValueError):
    """The saved area counters cannot be read."""


@dataclass
class ItemCounter:
    day: date | None = None  # the local date the counts below are for
    plays: int = 0  # plays started on `day`
    last_start: float | None = None  # epoch s of the last start or skipped play: every_s runs from it
    attended: bool = False  # the unit watched `day`'s window (was running during it)
    saw_fix: bool = False  # a trusted fix came during `day`'s window
    closed: bool = False  # `day`'s window end has been dealt with

    def roll_to(self, day: date) -> None:
        if self.day != day:
            # last_start stays: every_s runs start to start across days too
            self.day, self.plays, self.attended, self.saw_fix, self.closed = day, 0, False, False, False

    def as_json(self) -> dict:
        out = asdict(self)
        out["day"] = self.day.isoformat() if self.day else None
        return out


@dataclass(frozen=True)
class Decision:
    action: str  # "play", "skip" (record `missed` with `reason`), "wait" (nothing now)
    reason: str | None = None  # why not "play"
    play_no: int | None = None  # the number the play will carry (a "play")
    retry_at: datetime | None = None  # for a wait on every_s: when it ends


@dataclass
class AreaPlanState:
    """Per area item: plays today, the last start, what the window saw. Serialisable, so
    the unit can write it atomically after every change and read it back at start."""

    counters: dict[str, ItemCounter] = field(default_factory=dict)

    def counter(self, window: Window) -> ItemCounter:
        counter = self.counters.setdefault(window.counter_key, ItemCounter())
        if counter.day is None or window.day > counter.day:
            counter.roll_to(window.day)
        return counter

    def attend(self, window: Window, now: datetime, trusted_fix: bool) -> None:
        """The unit is running during the window, with or without a trusted fix."""
        if window.contains(now):
            counter = self.counter(window)
            if counter.day == window.day:
                counter.attended = True
                counter.saw_fix = counter.saw_fix or trusted_fix

    def decide(self, window: Window, now: datetime, *, inside: bool, quiet: bool = False,
               ignition: bool | None = None, play_with_ignition_off: bool = False) -> Decision:
        """Is a play of the window's item due now? `inside`: the membership (3-fix rule);
        `quiet`: now is in the unit's quiet hours; `ignition`: None when not fitted."""
        item = window.item
        if not window.contains(now):
            return Decision("wait", "outside the window")
        if not inside:
            return Decision("wait", "outside the area")
        emergency = item.priority == "emergency"
        if quiet and not emergency:
            return Decision("wait", "quiet hours")
        counter = self.counter(window)
        if counter.day != window.day:
            return Decision("wait", "counters are for a later day (clock stepped back)")
        if counter.plays >= item.max_plays:
            return Decision("wait", "max_plays reached")
        retry_at = self._every_s_ends(counter, item, now)
        if retry_at is not None:
            return Decision("wait", "every_s since the last play", retry_at=retry_at)
        if ignition is False and not (emergency or play_with_ignition_off):
            return Decision("skip", IGNITION_REASON)
        return Decision("play", play_no=counter.plays + 1)

    @staticmethod
    def _every_s_ends(counter: ItemCounter, item, now: datetime) -> datetime | None:
        if counter.last_start is None:
            return None
        elapsed = now.timestamp() - counter.last_start
        if elapsed >= item.every_s or elapsed < -item.every_s:
            return None  # due; a last start far in the future is a clock stepped back
        return now + timedelta(seconds=item.every_s - elapsed)

    def started(self, window: Window, now: datetime) -> int:
        """A play of the window began (not a resumed one): its play number."""
        counter = self.counter(window)
        counter.plays += 1
        counter.last_start = now.timestamp()
        return counter.plays

    def skipped(self, window: Window, now: datetime) -> None:
        """A due play was skipped (ignition off): the next is due every_s from now."""
        self.counter(window).last_start = now.timestamp()

    def close(self, window: Window, now: datetime) -> str | None:
        """At or after the window's end, once: the reason of the one `missed` record it
        calls for ("no GPS fix"), or None."""
        if now < window.end:
            return None
        counter = self.counters.get(window.counter_key)
        if counter is None or counter.day != window.day or counter.closed:
            return None  # the unit never watched this window (off), or it is done
        counter.closed = True
        if counter.attended and not counter.saw_fix and counter.plays == 0:
            return NO_FIX_REASON
        return None

    def forget_except(self, keys) -> None:
        """Drop the counters of items no longer in force."""
        keep = set(keys)
        self.counters = {k: c for k, c in self.counters.items() if k in keep}

    # ---- persistence ----
    def to_json(self) -> str:
        return json.dumps({"version": 1, "counters": {k: c.as_json() for k, c in sorted(self.counters.items())}},
                          separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> "AreaPlanState":
        try:
            doc = json.loads(text)
            if not isinstance(doc, dict) or doc.get("version") != 1 or not isinstance(doc.get("counters"), dict):
                raise ValueError("not an area counters document (version 1)")
            return cls({str(k): _counter(v) for k, v in doc["counters"].items()})
        except (ValueError, TypeError, KeyError) as exc:
            raise AreaStateError(f"area counters: {exc}") from exc


def _counter(value: dict) -> ItemCounter:
    if not isinstance(value, dict):
        raise ValueError("a counter must be an object")
    plays, last = value["plays"], value["last_start"]
    if isinstance(plays, bool) or not isinstance(plays, int) or plays < 0:
        raise ValueError(f"plays: {plays!r}")
    if last is not None and (isinstance(last, bool) or not isinstance(last, (int, float)) or not math.isfinite(last)):
        raise ValueError(f"last_start: {last!r}")
    flags = [value[name] for name in ("attended", "saw_fix", "closed")]
    if not all(isinstance(f, bool) for f in flags):
        raise ValueError("attended, saw_fix and closed must be true or false")
    day = None if value["day"] is None else date.fromisoformat(value["day"])
    return ItemCounter(day, plays, None if last is None else float(last), *flags)


# ---- just before a play starts ----

def recheck(item, *, inside: bool, trusted_fix: bool, ignition: bool | None = None,
            play_with_ignition_off: bool = False) -> str | None:
    """Checked again when a queued play is about to start and when a play resumes:
    None to go ahead, else why it is dropped. Outside the area (or with no trusted fix to
    say where) a play is dropped without a record; the ignition gives "ignition off"."""
    if not inside or not trusted_fix:
        return "outside the area" if trusted_fix else NO_FIX_REASON
    if ignition is False and not (item.priority == "emergency" or play_with_ignition_off):
        return IGNITION_REASON
    return None
