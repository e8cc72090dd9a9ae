"""Command documents: the signed, expiring orders an operator sends one unit or a group.

    {"type": "command", "id": "...", "issued_at": "...", "expires_at": "...",
     "target": "unit:ID" | "group:PATH", "action": "play", "args": {...}}

`parse_command(text, now)` returns a `Command` or raises one `Rejected` whose message
names the field (`args.volume: must be 0-100, got 140`): that line goes straight into
the unit's `reply`. `build_command(...)` writes the text an operator signs.

Pure: `now` is an argument. Whether an id was seen before (replay) and whether the
command names this unit are the unit's business (`device.commands.CommandGate`).

Choices beyond SPEC (see docs/design.md):
- Every field is required, `args` too (`{}` for stop, ping, sync, selftest); unknown
  fields are refused, in the command and in `args`.
- `id` is 1-128 characters of `[A-Za-z0-9._:-]` (a uuid fits); the unit keeps it on disk
  until the command expires, so it must be short and safe to store.
- `expires_at` is after `issued_at` and at most 24 hours after it: a command is for
  now, and the ids a unit remembers stay few.
- Clock skew: a command whose `issued_at` is more than 5 minutes ahead of the unit's
  clock is refused (its clock or the operator's is wrong); expiry is checked exactly
  (`now >= expires_at` is expired).
- `play` with `media` names media ids of the schedules in force, or `chime` /
  `test-tone`; whether they exist is checked when the command is carried out
  (`play_media`), because only the unit knows its schedules.
"""

import hashlib
import json
import math
import re
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from loaxa.errors import DocumentError, Rejected
from scheduler._json import describe
from scheduler.document import (BUILTIN_MEDIA, ID_PATTERN, ISSUED_AT_PATTERN, MAX_STREAM_SECONDS, SHA256_PATTERN,
                                Item, Media, Schedule, _aware_datetime, _check_fields, _fail, _http_url,
                                _identifier, _integer, _join, _list, _load, _number, _object, _priority, _string,
                                _zones)
from scheduler.targets import parse_target
from scheduler.triggers import Occurrence

__all__ = ["ACTIONS", "CLOCK_SKEW", "COMMAND_ID_PATTERN", "MAX_COMMAND_LIFETIME", "Command", "ExpiredError",
           "PlayArgs", "build_command", "check_time", "command_play", "parse_command", "play_media"]

ACTIONS = ("play", "stop", "set_volume", "ping", "sync", "selftest")
COMMAND_ID_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,128}", re.ASCII)
CLOCK_SKEW = timedelta(minutes=5)
MAX_COMMAND_LIFETIME = timedelta(hours=24)
DEFAULT_PLAY_PRIORITY = "priority"
MAX_PLAY_MEDIA = 32
COMMAND_SCHEDULE_ID = "command"  # the `schedule` of a commanded play's playlog

FIELDS = ("type", "id", "issued_at", "expires_at", "target", "action", "args")
PLAY_SOURCES = ("media", "url", "stream")
PLAY_OPTIONS = ("priority", "volume", "zones")
EXAMPLE_TIME = "2026-11-26T08:00:00+07:00"


class ExpiredError(Rejected):
    """The command's time is over (or, by the unit's clock, has not come yet)."""


@dataclass(frozen=True)
class PlayArgs:
    """What `play` sounds: media ids, one file by URL, or a live stream."""
    source: str  # "media" | "url" | "stream"
    media: tuple[str, ...] = ()
    url: str | None = None
    sha256: str | None = None
    stream: str | None = None
    duration_s: float | None = None
    priority: str = DEFAULT_PLAY_PRIORITY
    volume: int | None = None
    zones: tuple[int, ...] | None = None


@dataclass(frozen=True)
class Command:
    id: str
    issued_at: datetime
    expires_at: datetime
    target: str
    action: str
    args: dict = field(compare=False)  # the args as sent, defaults filled in (priority)
    play: PlayArgs | None = None  # for "play"
    volume: int | None = None  # for "set_volume"
    payload: str = field(default="", repr=False)  # the exact signed text
    signed_by: str | None = None  # the trusted key's name, set by the unit's gate

    def signed(self, key_name: str) -> "Command":
        return replace(self, signed_by=key_name)


# ---- args, one reader per action ----

def _no_args(args: dict, path: str) -> dict:
    _check_fields(args, path, (), ())
    return {}


def _set_volume_args(args: dict, path: str) -> dict:
    _check_fields(args, path, ("volume",), ())
    return {"volume": _integer(args["volume"], _join(path, "volume"), 0, 100, "must be 0-100")}


def _play_source(args: dict, path: str) -> dict:
    given = [name for name in PLAY_SOURCES if name in args]
    if len(given) != 1:
        _fail(path, 'needs exactly one of "media" (a list of media ids), "url" (with "sha256") '
                    'or "stream" (with "duration_s")')
    source = given[0]
    if source == "media":
        _check_fields(args, path, ("media",), PLAY_OPTIONS)
        ids = _list(args["media"], _join(path, "media"), non_empty=True)
        if len(ids) > MAX_PLAY_MEDIA:
            _fail(_join(path, "media"), f"at most {MAX_PLAY_MEDIA} media ids, got {len(ids)}")
        return {"source": source, "media": tuple(_identifier(m, _join(_join(path, "media"), i), "media id")
                                                  for i, m in enumerate(ids))}
    if source == "url":
        _check_fields(args, path, ("url", "sha256"), PLAY_OPTIONS)
        sha256 = _string(args["sha256"], _join(path, "sha256"))
        if not SHA256_PATTERN.fullmatch(sha256):
            _fail(_join(path, "sha256"), f"must be 64 lowercase hex digits (a SHA-256), got {describe(sha256)}")
        return {"source": source, "url": _http_url(args["url"], _join(path, "url")), "sha256": sha256}
    _check_fields(args, path, ("stream", "duration_s"), PLAY_OPTIONS)
    return {"source": source, "stream": _http_url(args["stream"], _join(path, "stream")),
            "duration_s": _number(args["duration_s"], _join(path, "duration_s"), MAX_STREAM_SECONDS,
                                  f"must be more than 0 and at most {MAX_STREAM_SECONDS} seconds")}


def _play_args(args: dict, path: str) -> PlayArgs:
    fields = _play_source(args, path)
    if "priority" in args:
        fields["priority"] = _priority(args["priority"], _join(path, "priority"))
    if "volume" in args:
        fields["volume"] = _integer(args["volume"], _join(path, "volume"), 0, 100, "must be 0-100")
    if "zones" in args:
        fields["zones"] = _zones(args["zones"], _join(path, "zones"))
    return PlayArgs(**fields)


def _action(value) -> str:
    if value not in ACTIONS:
        _fail("action", f"must be one of {', '.join(ACTIONS)}, got {describe(value)}")
    return value


def _command_id(value) -> str:
    _string(value, "id")
    if not COMMAND_ID_PATTERN.fullmatch(value):
        _fail("id", f"must be 1-128 characters of A-Z a-z 0-9 . _ : -, got {describe(value)}")
    return value


def _target(value) -> str:
    _string(value, "target")
    try:
        parse_target(value)
    except ValueError as exc:
        _fail("target", str(exc))
    return value


def _lifetime(issued_at: datetime, expires_at: datetime) -> None:
    if expires_at <= issued_at:
        _fail("expires_at", f"{expires_at.isoformat()} is not after issued_at {issued_at.isoformat()}")
    if expires_at - issued_at > MAX_COMMAND_LIFETIME:
        _fail("expires_at", f"at most {MAX_COMMAND_LIFETIME.total_seconds() / 3600:g} hours after issued_at, "
                            f"got {_hours(expires_at - issued_at)}")


def _hours(delta: timedelta) -> str:
    return f"{delta.total_seconds() / 3600:.1f} hours"


def check_time(command: Command, now: datetime) -> None:
    """Refuse a command that has expired, or that was issued too far in the unit's future."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be an aware datetime")
    unit_time = now.astimezone(command.issued_at.tzinfo).isoformat(timespec="seconds")
    if now >= command.expires_at:
        raise ExpiredError(f"expired at {command.expires_at.isoformat()} (unit time {unit_time})")
    ahead = command.issued_at - now
    if ahead > CLOCK_SKEW:
        raise ExpiredError(f"issued_at {command.issued_at.isoformat()} is {ahead.total_seconds():.0f} s ahead "
                           f"of this unit's clock ({unit_time}); one of the clocks is wrong")


# ---- the document ----

def _check_unicode(doc) -> None:
    """Refuse lone surrogates (`"\\ud800"` escapes): no reply or log could carry them as UTF-8."""
    stack = [doc]
    while stack:  # iterative: the document may nest as deep as the JSON reader allowed
        value = stack.pop()
        if isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
        elif isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                _fail("", "holds a string that is not valid Unicode (a lone surrogate escape such as \\ud800)")


def _parse(payload_text: str) -> Command:
    doc, _ = _load(payload_text)
    _check_unicode(doc)
    _check_fields(doc, "", FIELDS, ())
    if doc["type"] != "command":
        _fail("type", f'expected "command", got {describe(doc["type"])}')
    command_id = _command_id(doc["id"])
    issued_at = _aware_datetime(doc["issued_at"], "issued_at", ISSUED_AT_PATTERN, EXAMPLE_TIME)
    expires_at = _aware_datetime(doc["expires_at"], "expires_at", ISSUED_AT_PATTERN, EXAMPLE_TIME)
    _lifetime(issued_at, expires_at)
    target = _target(doc["target"])
    action = _action(doc["action"])
    args = _object(doc["args"], "args")
    play, volume = None, None
    if action == "play":
        play = _play_args(args, "args")
        args = {**args, "priority": play.priority}
    elif action == "set_volume":
        volume = _set_volume_args(args, "args")["volume"]
    else:
        _no_args(args, "args")
    return Command(id=command_id, issued_at=issued_at, expires_at=expires_at, target=target, action=action,
                   args=args, play=play, volume=volume, payload=payload_text)


def parse_command(payload_text: str, now: datetime) -> Command:
    """Validate a command document (the exact signed text) at unit time `now`.

    Raises DocumentError (malformed, unknown field, wrong type, bad args) or
    ExpiredError (expired, or issued more than CLOCK_SKEW ahead of `now`)."""
    command = _parse(payload_text)
    check_time(command, now)
    return command


def play_media(play: PlayArgs, schedules) -> dict:
    """The Media of each id a `play` names, from the schedules in force (None for built-ins).

    Raises DocumentError naming the first id no schedule in force holds."""
    found = {}
    for i, media_id in enumerate(play.media):
        if media_id in BUILTIN_MEDIA:
            found[media_id] = None
            continue
        media = next((s.media[media_id] for s in schedules if media_id in s.media), None)
        if media is None:
            _fail(f"args.media[{i}]", f"unknown media id {media_id!r} (in no schedule in force on this unit, "
                                      "and not chime or test-tone)")
        found[media_id] = media
    return found


def _play_item_id(command: Command) -> str:
    """The item id a commanded play is logged under: the command id when it fits (a uuid does)."""
    if ID_PATTERN.fullmatch(command.id):
        return command.id
    return "cmd-" + hashlib.sha256(command.id.encode("utf-8")).hexdigest()[:16]


def _play_media_table(command: Command, item_id: str, schedules) -> tuple[tuple[str, ...], dict]:
    play = command.play
    if play.source == "media":
        found = play_media(play, schedules)
        return play.media, {media_id: m for media_id, m in found.items() if m is not None}
    if play.source == "url":  # the size is unknown: the media cache's own limit applies
        return (item_id,), {item_id: Media(item_id, play.url, play.sha256, 0)}
    return (), {}


def command_play(command: Command, now: datetime, schedules, tz) -> tuple[Schedule, Occurrence]:
    """A `play` command as a one-item schedule and its occurrence at `now`, for the player.

    The schedule's id is "command" and the item's id the command's (or a digest of
    it), so the playlog names the command. Raises DocumentError for media ids that no
    schedule in force holds (`play_media`)."""
    if command.play is None:
        raise ValueError(f"command {command.id} is {command.action!r}, not play")
    play, at = command.play, now.astimezone(tz)
    item_id = _play_item_id(command)
    ids, media = _play_media_table(command, item_id, schedules)
    item = Item(id=item_id, play=ids, at=at.isoformat(), priority=play.priority, volume=play.volume,
                zones=play.zones, stream=play.stream, duration_s=play.duration_s)
    schedule = Schedule(id=COMMAND_SCHEDULE_ID, version=1, targets=(command.target,), issued_at=command.issued_at,
                        valid_from=at.date(), valid_until=at.date(), timezone=tz, media=media, items=(item,),
                        payload=command.payload,
                        digest=hashlib.sha256(command.payload.encode("utf-8")).hexdigest())
    return schedule, Occurrence(COMMAND_SCHEDULE_ID, 1, item, at)


def build_command(action: str, args: dict, target: str, *, now: datetime, ttl_s: float = 300,
                  command_id: str | None = None) -> str:
    """The JSON text of a command issued at `now`, expiring `ttl_s` seconds later.

    Raises DocumentError for anything a unit would refuse (bad action, args, target,
    ttl), so an operator finds out before signing."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be an aware datetime")
    if isinstance(ttl_s, bool) or not isinstance(ttl_s, (int, float)) or not math.isfinite(ttl_s) or ttl_s <= 0:
        raise DocumentError(f"ttl: must be a positive number of seconds, got {describe(ttl_s)}")
    issued_at = now.replace(microsecond=0)
    expires_at = issued_at + timedelta(seconds=math.ceil(ttl_s))
    doc = {"type": "command", "id": command_id if command_id is not None else str(uuid.uuid4()),
           "issued_at": issued_at.isoformat(), "expires_at": expires_at.isoformat(),
           "target": target, "action": action, "args": args}
    text = json.dumps(doc, ensure_ascii=False)
    _parse(text)
    return text
