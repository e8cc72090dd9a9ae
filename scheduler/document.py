"""Schedule documents: the payload of a signed envelope, parsed and validated.

`parse_schedule(text)` either returns a `Schedule` or raises one `DocumentError`
whose message names the field (`items[1].volume: must be 0-100, got 140`): that
line goes straight into the unit's `schedule.rejected` event and the operator's
terminal, so it must say what is wrong and where without a traceback.

Choices beyond SPEC (see docs): `media` may be left out (no media), a duplicate
key inside one JSON object is refused, `days` must not be empty, `repeat` is for
`play` items only, and the built-in media ids cannot be redefined in `media`.

Area items (SPEC "Mobile units"): a document may define `areas` (`scheduler.areas`);
an item with `where` (a known area id) plays inside that area between `from` and
`until` (its window, `HH:MM[:SS]`, same day) instead of at an `at`; `every_s` (default
900) and `max_plays` (default 4) are for area items only.
"""

import difflib
import hashlib
import math
import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timezone as dt_timezone
from functools import cached_property
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from loaxa.errors import DocumentError
from scheduler.areas import Area, parse_area
from scheduler._json import MAX_DOCUMENT_BYTES, check_size, describe, encode_utf8, strict_loads
from scheduler.targets import parse_target

__all__ = ["BUILTIN_MEDIA", "DAY_NAMES", "ID_PATTERN", "MAX_DOCUMENT_BYTES", "PRIORITIES",
           "DEFAULT_EVERY_S", "DEFAULT_MAX_PLAYS", "Item", "Media", "Schedule", "parse_schedule",
           "parse_time_of_day"]

ID_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}", re.ASCII)
SHA256_PATTERN = re.compile(r"[0-9a-f]{64}", re.ASCII)
DATE_PATTERN = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", re.ASCII)
TIME_PATTERN = re.compile(r"(?:[01][0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9])?", re.ASCII)
_OFFSET = r"(?:Z|[+-][0-9]{2}:[0-9]{2})"
AT_DATETIME_PATTERN = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(?::[0-9]{2})?" + _OFFSET,
                                 re.ASCII)
ISSUED_AT_PATTERN = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]{1,6})?)?"
                               + _OFFSET, re.ASCII)
TIMEZONE_PATTERN = re.compile(r"[A-Za-z0-9_+-]+(?:/[A-Za-z0-9_+-]+){0,3}", re.ASCII)
PLAIN_NAME = re.compile(r"[A-Za-z0-9_-]{1,40}", re.ASCII)

BUILTIN_MEDIA = frozenset({"chime", "test-tone"})
DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
ALL_DAYS = frozenset(range(7))
PRIORITIES = ("normal", "priority", "emergency")
MAX_SCHEDULE_ID_LENGTH = 255
MAX_URL_LENGTH = 2048
MAX_VERSION = 2**63 - 1  # fits the fleet database's BIGINT
MAX_STREAM_SECONDS = 86400
# Names that ZoneInfo may resolve but that mean "whatever this machine says".
NOT_IANA_NAMES = frozenset({"localtime", "posixrules", "Factory"})

TOP_REQUIRED = ("type", "id", "version", "targets", "issued_at", "valid_from", "valid_until",
                "timezone", "items")
TOP_OPTIONAL = ("media", "areas")
MEDIA_REQUIRED = ("url", "sha256", "size")
MEDIA_OPTIONAL = ("title",)
ITEM_REQUIRED = ("id",)  # and `at`, or `where` with `from` and `until` (an area item)
ITEM_OPTIONAL = ("at", "play", "stream", "duration_s", "fallback", "days", "except", "priority",
                 "volume", "repeat", "zones", "where", "from", "until", "every_s", "max_plays")
AREA_ITEM_FIELDS = ("where", "from", "until", "every_s", "max_plays")
DEFAULT_EVERY_S = 900
DEFAULT_MAX_PLAYS = 4
MAX_EVERY_S = 86400
MAX_PLAYS_A_DAY = 1440  # one a minute all day: more is a typo


@dataclass(frozen=True)
class Media:
    id: str
    url: str
    sha256: str
    size: int
    title: str | None = None


@dataclass(frozen=True)
class Item:
    id: str
    play: tuple[str, ...]
    # as written: "HH:MM[:SS]" (recurring) or a date-time with offset (once); None for an
    # area item, which has a window (`window_from`..`window_until`) instead
    at: str | None
    days: frozenset[int] = ALL_DAYS  # 0 = Monday
    except_dates: frozenset[date] = frozenset()
    priority: str = "normal"
    volume: int | None = None
    repeat: int = 1
    zones: tuple[int, ...] | None = None
    stream: str | None = None
    duration_s: float | None = None
    fallback: str | None = None
    where: str | None = None  # an area item: the area id it plays in
    window_from: time | None = None  # its window, local time in the document's timezone
    window_until: time | None = None
    every_s: int = DEFAULT_EVERY_S  # start to start
    max_plays: int = DEFAULT_MAX_PLAYS  # plays started per local day

    @property
    def is_area(self) -> bool:
        """Plays where (an area, within a daily window), not at a clock time."""
        return self.where is not None

    @property
    def is_recurring(self) -> bool:
        return self.at is not None and TIME_PATTERN.fullmatch(self.at) is not None

    @cached_property
    def time_of_day(self) -> time | None:
        """The wall-clock time of a recurring item (None for a one-off)."""
        return parse_time_of_day(self.at) if self.is_recurring else None

    @cached_property
    def once_at(self) -> datetime | None:
        """The aware date-time of a one-off item (None for a recurring one)."""
        return None if self.is_recurring or self.at is None else datetime.fromisoformat(self.at)

    @property
    def media_ids(self) -> tuple[str, ...]:
        """Every media id the item may sound: its play list, or its stream's fallback."""
        return self.play + ((self.fallback,) if self.fallback else ())


@dataclass(frozen=True)
class Schedule:
    id: str
    version: int
    targets: tuple[str, ...]
    issued_at: datetime
    valid_from: date
    valid_until: date
    timezone: ZoneInfo
    media: dict[str, Media]
    items: tuple[Item, ...]
    payload: str = field(repr=False)  # the exact signed text
    digest: str = ""  # sha256 hex of payload's UTF-8 bytes
    areas: dict[str, Area] = field(default_factory=dict)  # area id -> Circle | Polygon

    def item(self, item_id: str) -> Item | None:
        return next((item for item in self.items if item.id == item_id), None)


def parse_time_of_day(text: str) -> time:
    parts = [int(p) for p in text.split(":")]
    return time(*parts)


# ---- error helpers ----

def _fail(path: str, reason: str):
    raise DocumentError(f"{path or 'document'}: {reason}")


def _join(path: str, name) -> str:
    """`items[0].volume`, or `media["../x"]` for a name that is not plain."""
    if isinstance(name, int):
        return f"{path}[{name}]"
    if PLAIN_NAME.fullmatch(name):
        return f"{path}.{name}" if path else name
    return f"{path}[{describe(name)}]"


def _suggestion(name: str, allowed) -> str:
    close = difflib.get_close_matches(name[:64], list(allowed), n=1, cutoff=0.75)
    return f" (did you mean {close[0]!r}?)" if close else ""


# ---- typed readers: each returns the value or raises naming `path` ----

def _object(value, path: str) -> dict:
    if not isinstance(value, dict):
        _fail(path, f"expected an object, got {describe(value)}")
    return value


def _check_fields(obj: dict, path: str, required, optional) -> None:
    allowed = set(required) | set(optional)
    for name in obj:
        if name not in allowed:
            _fail(_join(path, name), "unknown field" + _suggestion(name, allowed))
    for name in required:
        if name not in obj:
            _fail(_join(path, name), "required")


def _string(value, path: str) -> str:
    if not isinstance(value, str):
        _fail(path, f"expected a string, got {describe(value)}")
    return value


def _list(value, path: str, *, non_empty: bool = False) -> list:
    if not isinstance(value, list):
        _fail(path, f"expected a list, got {describe(value)}")
    if non_empty and not value:
        _fail(path, "must not be empty")
    return value


def _integer(value, path: str, low: int, high: int, rule: str) -> int:
    # bool is an int in Python but never in a document: `"volume": true` is a mistake.
    if isinstance(value, bool) or not isinstance(value, int):
        _fail(path, f"expected an integer, got {describe(value)}")
    if not low <= value <= high:
        _fail(path, f"{rule}, got {describe(value)}")
    return value


def _number(value, path: str, high: float, rule: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        _fail(path, f"expected a number, got {describe(value)}")
    if not math.isfinite(value) or not 0 < value <= high:
        _fail(path, f"{rule}, got {describe(value)}")
    return value


def _identifier(value, path: str, what: str = "id") -> str:
    _string(value, path)
    if not ID_PATTERN.fullmatch(value):
        _fail(path, f"{what} must match [a-z0-9][a-z0-9_-]{{0,63}}, got {describe(value)}")
    return value


def _schedule_id(value, path: str) -> str:
    _string(value, path)
    segments = value.split("/")
    if len(value) > MAX_SCHEDULE_ID_LENGTH or not all(ID_PATTERN.fullmatch(s) for s in segments):
        _fail(path, "must be one or more segments of [a-z0-9][a-z0-9_-]{0,63} joined by '/' "
                    f"(no empty or '..' segments), got {describe(value)}")
    return value


def _http_url(value, path: str) -> str:
    _string(value, path)
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError:
        parts = None
    bad_chars = any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in value)
    if (parts is None or bad_chars or len(value) > MAX_URL_LENGTH
            or parts.scheme.lower() not in ("http", "https") or not parts.hostname):
        _fail(path, f"must be an http:// or https:// URL, got {describe(value)}")
    return value


def _date(value, path: str) -> date:
    _string(value, path)
    try:
        if not DATE_PATTERN.fullmatch(value):
            raise ValueError
        return date.fromisoformat(value)
    except ValueError:
        _fail(path, f"expected a date YYYY-MM-DD, got {describe(value)}")


def _aware_datetime(value, path: str, pattern, example: str) -> datetime:
    _string(value, path)
    try:
        if not pattern.fullmatch(value):
            raise ValueError
        when = datetime.fromisoformat(value)
        when.astimezone(dt_timezone.utc)  # OverflowError at the ends of the calendar
    except (ValueError, OverflowError):
        _fail(path, f"expected a date-time with offset like {example}, got {describe(value)}")
    return when


def _timezone(value, path: str) -> ZoneInfo:
    _string(value, path)
    try:
        if not TIMEZONE_PATTERN.fullmatch(value) or value in NOT_IANA_NAMES:
            raise ValueError
        return ZoneInfo(value)
    except (KeyError, ValueError, OSError):
        _fail(path, f"unknown time zone {describe(value)} (expected an IANA name like Asia/Ho_Chi_Minh)")


def _targets(value, path: str) -> tuple[str, ...]:
    targets = []
    for i, entry in enumerate(_list(value, path, non_empty=True)):
        _string(entry, _join(path, i))
        try:
            parse_target(entry)
        except ValueError as exc:
            _fail(_join(path, i), str(exc))
        if entry not in targets:  # a repeated target is harmless: keep one
            targets.append(entry)
    return tuple(targets)


# ---- media ----

def _media_entry(media_id: str, value, path: str) -> Media:
    entry = _object(value, path)
    _check_fields(entry, path, MEDIA_REQUIRED, MEDIA_OPTIONAL)
    url = _http_url(entry["url"], _join(path, "url"))
    sha256 = _string(entry["sha256"], _join(path, "sha256"))
    if not SHA256_PATTERN.fullmatch(sha256):
        _fail(_join(path, "sha256"), f"must be 64 lowercase hex digits (a SHA-256), got {describe(sha256)}")
    size = _integer(entry["size"], _join(path, "size"), 1, MAX_VERSION, "must be a positive number of bytes")
    title = _string(entry["title"], _join(path, "title")) if "title" in entry else None
    return Media(media_id, url, sha256, size, title)


def _media_table(value, path: str) -> dict[str, Media]:
    table = {}
    for media_id, entry in _object(value, path).items():
        entry_path = _join(path, media_id)
        _identifier(media_id, entry_path, "media id")
        if media_id in BUILTIN_MEDIA:
            _fail(entry_path, f"{media_id!r} is built in and cannot be redefined")
        table[media_id] = _media_entry(media_id, entry, entry_path)
    return table


def _media_reference(value, path: str, media: dict) -> str:
    _identifier(value, path, "media id")
    if value not in media and value not in BUILTIN_MEDIA:
        _fail(path, f"unknown media id {value!r} (not in media, and not chime or test-tone)")
    return value


# ---- items ----

def _at(value, path: str, tz: ZoneInfo) -> str:
    """Check `at`; a recurring time passes as is, a one-off must be a real instant."""
    _string(value, path)
    if TIME_PATTERN.fullmatch(value):
        return value
    if not AT_DATETIME_PATTERN.fullmatch(value):
        _fail(path, f"expected HH:MM[:SS] or a date-time with offset like 2026-12-01T17:30:00+07:00, "
                    f"got {describe(value)}")
    when = _aware_datetime(value, path, AT_DATETIME_PATTERN, "2026-12-01T17:30:00+07:00")
    try:
        when.astimezone(tz)
    except OverflowError:
        _fail(path, f"out of range in {tz.key}, got {describe(value)}")
    return value


def _days(value, path: str) -> frozenset[int]:
    days = set()
    for i, name in enumerate(_list(value, path, non_empty=True)):
        if name not in DAY_NAMES:
            _fail(_join(path, i), f"expected one of {', '.join(DAY_NAMES)}, got {describe(name)}")
        if DAY_NAMES.index(name) in days:
            _fail(_join(path, i), f"{name!r} given twice")
        days.add(DAY_NAMES.index(name))
    return frozenset(days)


def _except_dates(value, path: str) -> frozenset[date]:
    return frozenset(_date(v, _join(path, i)) for i, v in enumerate(_list(value, path)))


def _zones(value, path: str) -> tuple[int, ...]:
    zones = []
    for i, zone in enumerate(_list(value, path, non_empty=True)):
        _integer(zone, _join(path, i), 1, MAX_VERSION, "must be a zone number 1 or more")
        if zone in zones:
            _fail(_join(path, i), f"zone {zone} given twice")
        zones.append(zone)
    return tuple(zones)


def _priority(value, path: str) -> str:
    if value not in PRIORITIES:
        _fail(path, f"must be one of {', '.join(PRIORITIES)}, got {describe(value)}")
    return value


def _recurrence(obj: dict, path: str, recurring: bool) -> dict:
    if not recurring:
        for name in ("days", "except"):
            if name in obj:
                _fail(_join(path, name), "only for a recurring at (HH:MM[:SS]); this item plays once")
        return {}
    out = {}
    if "days" in obj:
        out["days"] = _days(obj["days"], _join(path, "days"))
    if "except" in obj:
        out["except_dates"] = _except_dates(obj["except"], _join(path, "except"))
    return out


def _source(obj: dict, path: str, media: dict) -> dict:
    """The sound of an item: exactly one of `play` (media ids) or `stream` (+ duration_s)."""
    if ("play" in obj) == ("stream" in obj):
        _fail(path, 'needs exactly one of "play" (a list of media ids) or "stream" (a URL)')
    if "play" in obj:
        for name in ("duration_s", "fallback"):
            if name in obj:
                _fail(_join(path, name), "only for a stream item")
        plays = _list(obj["play"], _join(path, "play"), non_empty=True)
        return {"play": tuple(_media_reference(m, _join(_join(path, "play"), i), media)
                              for i, m in enumerate(plays))}
    if "repeat" in obj:
        _fail(_join(path, "repeat"), "only for a play item (a stream plays for duration_s)")
    if "duration_s" not in obj:
        _fail(_join(path, "duration_s"), "required with stream")
    out = {"play": (), "stream": _http_url(obj["stream"], _join(path, "stream")),
           "duration_s": _number(obj["duration_s"], _join(path, "duration_s"), MAX_STREAM_SECONDS,
                                 f"must be more than 0 and at most {MAX_STREAM_SECONDS} seconds")}
    if "fallback" in obj:
        out["fallback"] = _media_reference(obj["fallback"], _join(path, "fallback"), media)
    return out


def _options(obj: dict, path: str) -> dict:
    out = {}
    if "priority" in obj:
        out["priority"] = _priority(obj["priority"], _join(path, "priority"))
    if "volume" in obj:
        out["volume"] = _integer(obj["volume"], _join(path, "volume"), 0, 100, "must be 0-100")
    if "repeat" in obj:
        out["repeat"] = _integer(obj["repeat"], _join(path, "repeat"), 1, 10, "must be 1-10")
    if "zones" in obj:
        out["zones"] = _zones(obj["zones"], _join(path, "zones"))
    return out


def _window_time(value, path: str) -> time:
    _string(value, path)
    if not TIME_PATTERN.fullmatch(value):
        _fail(path, f"expected a time of day HH:MM, got {describe(value)}")
    return parse_time_of_day(value)


def _area_item(obj: dict, path: str, areas: dict) -> dict:
    """`where`, `from`, `until`, `every_s`, `max_plays` of an area item (no `at`)."""
    if "at" in obj:
        _fail(_join(path, "at"), "an area item (with where) plays in its from-until window, not at a time")
    for name in ("from", "until"):
        if name not in obj:
            _fail(_join(path, name), "required with where")
    where = _identifier(obj["where"], _join(path, "where"), "area id")
    if where not in areas:
        known = f" (areas: {', '.join(sorted(areas))})" if areas else " (the document has no areas)"
        _fail(_join(path, "where"), f"unknown area id {where!r}{known}")
    start = _window_time(obj["from"], _join(path, "from"))
    end = _window_time(obj["until"], _join(path, "until"))
    if end <= start:
        _fail(_join(path, "until"), f"{obj['until']} must be after from {obj['from']} "
                                    "(a window cannot cross midnight; split it in two items)")
    out = {"where": where, "window_from": start, "window_until": end}
    if "every_s" in obj:
        out["every_s"] = _integer(obj["every_s"], _join(path, "every_s"), 1, MAX_EVERY_S,
                                  f"must be 1-{MAX_EVERY_S} seconds")
    if "max_plays" in obj:
        out["max_plays"] = _integer(obj["max_plays"], _join(path, "max_plays"), 1, MAX_PLAYS_A_DAY,
                                    f"must be 1-{MAX_PLAYS_A_DAY}")
    return out


def _when(obj: dict, path: str, tz: ZoneInfo, areas: dict) -> dict:
    """An `at` (clock time), or the area fields of an item with `where`."""
    if "where" in obj:
        fields = _area_item(obj, path, areas)
        fields.update(_recurrence(obj, path, True))
        return {"at": None, **fields}
    for name in AREA_ITEM_FIELDS:
        if name in obj:
            _fail(_join(path, name), 'only for an area item (one with "where")')
    if "at" not in obj:
        _fail(_join(path, "at"), "required")
    at = _at(obj["at"], _join(path, "at"), tz)
    return {"at": at, **_recurrence(obj, path, TIME_PATTERN.fullmatch(at) is not None)}


def _item(value, path: str, media: dict, tz: ZoneInfo, areas: dict | None = None) -> Item:
    obj = _object(value, path)
    _check_fields(obj, path, ITEM_REQUIRED, ITEM_OPTIONAL)
    item_id = _identifier(obj["id"], _join(path, "id"), "item id")
    when = _when(obj, path, tz, areas or {})
    fields = _source(obj, path, media)
    fields.update(when)
    fields.update(_options(obj, path))
    return Item(id=item_id, **fields)


def _items(value, path: str, media: dict, tz: ZoneInfo, areas: dict | None = None) -> tuple[Item, ...]:
    items, first_index = [], {}
    for i, entry in enumerate(_list(value, path)):
        item = _item(entry, _join(path, i), media, tz, areas)
        if item.id in first_index:
            _fail(_join(_join(path, i), "id"),
                  f"duplicate item id {item.id!r} (also {path}[{first_index[item.id]}])")
        first_index[item.id] = i
        items.append(item)
    return tuple(items)


# ---- areas ----

def _areas_table(value, path: str) -> dict[str, Area]:
    """Area id -> area. Ids are unique: a JSON object cannot name one twice here (the
    strict reader refuses duplicate keys)."""
    table = {}
    for area_id, entry in _object(value, path).items():
        entry_path = _join(path, area_id)
        _identifier(area_id, entry_path, "area id")
        table[area_id] = parse_area(entry, entry_path)
    return table


# ---- the document ----

def _load(payload_text) -> tuple[dict, bytes]:
    if not isinstance(payload_text, str):
        raise DocumentError("document: expected JSON text")
    raw = encode_utf8(payload_text, "document")
    check_size(len(raw), "document")
    return _object(strict_loads(payload_text, "document"), "document"), raw


def parse_schedule(payload_text: str) -> Schedule:
    """Validate a schedule document (the exact signed text) and return it parsed."""
    doc, raw = _load(payload_text)
    _check_fields(doc, "", TOP_REQUIRED, TOP_OPTIONAL)
    if doc["type"] != "schedule":
        _fail("type", f'expected "schedule", got {describe(doc["type"])}')
    schedule_id = _schedule_id(doc["id"], "id")
    version = _integer(doc["version"], "version", 1, MAX_VERSION, "must be a positive integer")
    targets = _targets(doc["targets"], "targets")
    issued_at = _aware_datetime(doc["issued_at"], "issued_at", ISSUED_AT_PATTERN, "2026-11-26T08:00:00+07:00")
    valid_from = _date(doc["valid_from"], "valid_from")
    valid_until = _date(doc["valid_until"], "valid_until")
    if valid_until < valid_from:
        _fail("valid_until", f"{valid_until} is before valid_from {valid_from}")
    tz = _timezone(doc["timezone"], "timezone")
    media = _media_table(doc.get("media", {}), "media")
    areas = _areas_table(doc.get("areas", {}), "areas")
    items = _items(doc["items"], "items", media, tz, areas)
    return Schedule(id=schedule_id, version=version, targets=targets, issued_at=issued_at,
                    valid_from=valid_from, valid_until=valid_until, timezone=tz, media=media,
                    items=items, payload=payload_text, digest=hashlib.sha256(raw).hexdigest(),
                    areas=areas)
