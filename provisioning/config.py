"""The unit's configuration: SPEC's TOML, typed and checked, every problem at once.

`load_config(path)` reads a config.toml; `parse_config(data, base_dir=...)` checks a
dict already in TOML's shape. Both return a frozen `Config` (one frozen dataclass per
table, attribute names exactly SPEC's keys) or raise one `ConfigError` listing every
problem, each starting with its dotted key:

    unit.id: required
    broker.urll: unknown key (did you mean 'url'?)
    amplifier.baudrate: expected an integer, got 'fast'

From a file, `load_config` adds the line each key is on (provisioning/locate.py):
`broker.urll (line 7): unknown key (did you mean 'url'?)`.

The schema (`SCHEMA` below) is the one place that says which keys exist, their types
and their defaults; `loaxa config show` prints the effective values.

Choices where SPEC is silent (the README's config section repeats them):
- `amplifier.port`, `gps.port`, `modem.port` default to no port. SPEC's example ports
  are one site's wiring, and SPEC defines what "no port" means: in mock mode the
  simulator, in pi mode a relay-only amplifier and an absent GPS or modem. TOML has no
  null, so `port = ""` also means no port.
- `unit.groups` defaults to none; `unit.timezone` to "Asia/Ho_Chi_Minh";
  `unit.quiet_hours` to SPEC's "22:00-05:00" (residents expect a silent night; the
  demo, and any unit that wants none, says "" explicitly); `trust.keys` to none (the
  unit then refuses every schedule; `loaxa config check` warns).
- The other defaults are SPEC's example values (the standard wiring and levels).
- Paths: `~` is expanded; a relative path is relative to `unit.state_dir`, and a
  relative `state_dir` to the config file's folder. Every path in a `Config` is
  absolute. `broker.password_file` and `broker.ca_file` must exist and be readable.
- Extensions: `hardware.mock_speed` (number > 0, default 1.0: the mock speaker plays
  this many times faster than real time) and `unit.media_dir` (default "media": the
  media cache). Hardware (docs/hardware.md): `gpio.door` (16), `gpio.button_test` (26),
  `gpio.button_stop` (13), `gpio.active_low` (role names, "zones", or pins; default none:
  every line active-high), `amplifier.driver` ("auto": LXA1 over `port` or the mock's
  simulator, else relay-only; "lxa1"; "relay"), `amplifier.input` (1), `amplifier.volume`
  (0-100, default 100). Audio (docs/audio.md): `audio.cache_budget_mb` (2048, at least
  16), `audio.max_media_mb` (200), `audio.max_media_s` (10800); a download's deadline:
  `audio.download_min_rate_kbps` (64), `audio.download_min_s` (120), `audio.download_max_s`
  (3600); `audio.emergency_min_volume` (0-100, default 80, SPEC "Trust": an emergency
  never plays below it, whatever `set_volume` or the item's `volume` said). Outbox (docs/design.md, "Outbox under backlog and disk faults"): `outbox.max_mb`
  (256, at least 1): the disk budget of records not yet delivered; past it the oldest
  health samples, then events, go first, playlogs only when nothing else is left. Storage:
  `unit.storage_low_mb` (200: free space in the state folder below which the unit
  reports `storage.low`, and health sends a change report).
- Ranges: `audio.lufs` -40 to -5, `amplifier.baudrate` 50 to 4000000, `warmup_s` and
  `cooldown_s` >= 0, GPIO pins are BCM 0-27 and no pin serves two roles.
- A UTF-8 byte order mark at the start of the file is accepted (Windows editors add one).
- Where the config is found (`find_config`): see docs/design.md, "Choices beyond SPEC".
"""

from __future__ import annotations

import base64
import binascii
import copy
import datetime
import difflib
import hashlib
import json
import math
import os
import re
import tomllib
import zoneinfo
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Mapping

from loaxa.brokerurl import parse_broker_url
from loaxa.errors import ConfigError

SYSTEM_CONFIG = Path("/etc/loaxa/config.toml")
DEVICE_MODEL_PATH = Path("/proc/device-tree/model")
PI_STATE_DIR = Path("/var/lib/loaxa")
DEFAULT_TIMEZONE = "Asia/Ho_Chi_Minh"
MASK = "********"

UNIT_ID_RE = re.compile(r"[a-z0-9][a-z0-9-]{2,63}")
GROUP_SEGMENT_RE = re.compile(r"[a-z0-9-]+")
QUIET_HOURS_RE = re.compile(r"([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)")
SECRET_NAME_RE = re.compile(r"password|secret|token", re.IGNORECASE)
MAX_GPIO_PIN = 27


# ---------------------------------------------------------------- the typed config

@dataclass(frozen=True)
class UnitConfig:
    id: str
    groups: tuple[str, ...]
    timezone: str
    state_dir: Path
    quiet_hours: str
    media_dir: Path
    lateness_s: float
    health_interval_s: float
    storage_low_mb: float


@dataclass(frozen=True)
class ClockConfig:
    trust: str


@dataclass(frozen=True)
class BrokerConfig:
    url: str
    username: str
    password_file: Path | None
    ca_file: Path | None
    topic_prefix: str
    reconnect_max_s: float


@dataclass(frozen=True)
class TrustConfig:
    keys: dict[str, str]
    # Roots (SPEC "Trust"): offline keys that sign trust documents, at root_threshold;
    # trust documents below min_version are refused. scheduler.trust.roots_from_config.
    root: dict[str, str] = field(default_factory=dict)
    root_threshold: int = 1
    min_version: int = 0


@dataclass(frozen=True)
class HardwareConfig:
    mode: str
    mock_output_dir: Path
    mock_speed: float


@dataclass(frozen=True)
class AudioConfig:
    device: str
    lufs: float
    cache_budget_mb: int = 2048
    max_media_mb: int = 200
    max_media_s: float = 10800.0
    download_min_rate_kbps: float = 64.0
    download_min_s: float = 120.0
    download_max_s: float = 3600.0
    emergency_min_volume: int = 80


@dataclass(frozen=True)
class OutboxConfig:
    max_mb: int = 256


@dataclass(frozen=True)
class UpdateConfig:
    # Software updates (issue 15): versions live in <prefix>/versions/<version>, the one
    # in use is <prefix>/current; inside state_dir by default, which the service may write.
    prefix: Path = Path("software")


@dataclass(frozen=True)
class AmplifierConfig:
    port: str | None
    baudrate: int
    warmup_s: float
    cooldown_s: float
    driver: str = "auto"
    input: int = 1
    volume: int = 100


@dataclass(frozen=True)
class GpsConfig:
    port: str | None


@dataclass(frozen=True)
class ModemConfig:
    port: str | None


@dataclass(frozen=True)
class GpioConfig:
    amp_power: int
    mute: int
    zones: tuple[int, ...]
    fault: int
    status_led: int
    door: int = 16
    button_test: int = 26
    button_stop: int = 13
    active_low: tuple = ()


@dataclass(frozen=True)
class VehicleConfig:
    """A loudspeaker vehicle (SPEC "Mobile units"): its ignition input and battery ADC."""
    ignition: int | None = None  # BCM pin of the ignition input; None: not wired
    ignition_active_high: bool = True
    play_with_ignition_off: bool = False
    battery_adc: str = "none"  # "mcp3008" (SPI) or "none"
    battery_channel: int = 0
    battery_divider: float = 6.0  # (R1 + R2) / R2 of the divider in front of the ADC
    battery_vref: float = 3.3


@dataclass(frozen=True)
class Config:
    unit: UnitConfig
    clock: ClockConfig
    broker: BrokerConfig
    trust: TrustConfig
    hardware: HardwareConfig
    audio: AudioConfig
    amplifier: AmplifierConfig
    gps: GpsConfig
    modem: ModemConfig
    gpio: GpioConfig
    outbox: OutboxConfig = OutboxConfig()
    vehicle: VehicleConfig = VehicleConfig()
    update: UpdateConfig = UpdateConfig()
    source: Path | None = None

    def masked(self) -> dict:
        """The whole config as a TOML-shaped dict fit for display, secrets masked.

        Paths are strings and keys without a value (no port, no password file) are
        left out, as TOML has no null; so the result parses back to the same Config.
        """
        return mask_secrets({table: _table_as_dict(getattr(self, table)) for table in SCHEMA})


def _table_as_dict(section) -> dict:
    shown = {}
    for f in fields(section):
        value = getattr(section, f.name)
        if value is not None:
            shown[f.name] = _plain(value)
    return shown


def _plain(value):
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, dict):
        return dict(value)
    return value


def mask_secrets(tables: Mapping[str, Mapping[str, Any]]) -> dict:
    """Replace the value of every key named like a password, secret or token.

    A `*_file` key holds the path to a secret, not the secret, so its path is shown.
    Only the tables' own keys are looked at: `trust.keys` holds public keys.
    """
    return {table: {name: MASK if _is_secret_name(name) else value for name, value in keys.items()}
            for table, keys in tables.items()}


def _is_secret_name(name: str) -> bool:
    return bool(SECRET_NAME_RE.search(name)) and not name.endswith("_file")


# ---------------------------------------------------------------- value converters
# A converter takes the TOML value and returns the typed one, or raises _Invalid with
# (suffix, message) problems: the suffix ("[2]", ".name") extends the dotted key, so a
# list or a table can report every bad element at once.

class _Invalid(Exception):
    def __init__(self, problems: list[tuple[str, str]]):
        super().__init__(problems)
        self.problems = problems


def _fail(message: str):
    raise _Invalid([("", message)])


def _describe(value) -> str:
    """A value as a technician would recognise it from their TOML file."""
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, (datetime.date, datetime.time)):
        return f"{value.isoformat()} (a date/time)"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _did_you_mean(word: str, choices) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _string(value) -> str:
    if not isinstance(value, str):
        _fail(f"expected a string, got {_describe(value)}")
    return value


def _nonempty_string(value) -> str:
    if not _string(value):
        _fail("must not be empty")
    return value


def _integer_value(value) -> int:
    # bool is an int in Python, but `baudrate = true` is a mistake, not 1.
    if isinstance(value, bool) or not isinstance(value, int):
        _fail(f"expected an integer, got {_describe(value)}")
    return value


def _number_value(value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        _fail(f"expected a number, got {_describe(value)}")
    if not math.isfinite(value):
        _fail(f"expected a finite number, got {value}")
    return float(value)


def _check_range(number, low, high):
    if low is not None and high is not None:
        if not low <= number <= high:
            _fail(f"must be between {low:g} and {high:g}, got {number:g}")
    elif low is not None and number < low:
        _fail(f"must be at least {low:g}, got {number:g}")
    elif high is not None and number > high:
        _fail(f"must be at most {high:g}, got {number:g}")
    return number


def _integer(low=None, high=None) -> Callable:
    return lambda value: _check_range(_integer_value(value), low, high)


def _number(low=None, high=None) -> Callable:
    return lambda value: _check_range(_number_value(value), low, high)


def _positive_number(value) -> float:
    number = _number_value(value)
    if number <= 0:
        _fail(f"must be greater than 0, got {number:g}")
    return number


def _boolean(value) -> bool:
    if not isinstance(value, bool):
        # worded as _choice's message, which is already translated (provisioning/messages.py)
        _fail(f"must be one of true, false, got {_describe(value)}")
    return value


def _choice(*options: str) -> Callable:
    def convert(value):
        if _string(value) not in options:
            listed = ", ".join(repr(option) for option in options)
            _fail(f"must be one of {listed}, got {value!r}{_did_you_mean(value, options)}")
        return value
    return convert


def _list_of(convert_item: Callable, what: str) -> Callable:
    def convert(value):
        if not isinstance(value, (list, tuple)):
            _fail(f"expected a list of {what}, got {_describe(value)}")
        items, problems = [], []
        for index, item in enumerate(value):
            try:
                items.append(convert_item(item))
            except _Invalid as bad:
                problems += [(f"[{index}]{suffix}", message) for suffix, message in bad.problems]
        if problems:
            raise _Invalid(problems)
        return tuple(items)
    return convert


def _path(value) -> Path:
    return Path(_nonempty_string(value)).expanduser()


def _port(value) -> str | None:
    return _string(value) or None


def _unit_id(value) -> str:
    if not UNIT_ID_RE.fullmatch(_string(value)):
        _fail("must be 3-64 characters of a-z, 0-9 and '-', not starting with '-' "
              f"([a-z0-9][a-z0-9-]{{2,63}}), got {value!r}")
    return value


def _group(value) -> str:
    segments = _string(value).split("/")
    if not all(GROUP_SEGMENT_RE.fullmatch(segment) for segment in segments):
        _fail(f"must be segments of a-z, 0-9 and '-' separated by '/' "
              f"(like 'dak-lak/lak/bong-krang'), got {value!r}")
    return value


def _timezone(value) -> str:
    try:
        zoneinfo.ZoneInfo(_string(value))
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        hint = _did_you_mean(value, zoneinfo.available_timezones()) or f" (like {DEFAULT_TIMEZONE!r})"
        _fail(f"unknown IANA time zone {value!r}{hint}")
    return value


def _quiet_hours(value) -> str:
    if _string(value) == "":
        return value
    match = QUIET_HOURS_RE.fullmatch(value)
    if not match:
        _fail(f"must be \"HH:MM-HH:MM\" (like \"22:00-05:00\") or \"\" for none, got {value!r}")
    if value[:5] == value[6:]:
        _fail(f"start and end are the same time, got {value!r}; use \"\" for no quiet hours")
    return value


def _broker_url(value) -> str:
    try:
        parse_broker_url(_string(value))
    except ConfigError as exc:
        _fail(exc.errors[0].removeprefix("broker url "))
    return value


def _topic_prefix(value) -> str:
    prefix = _nonempty_string(value)
    if "+" in prefix or "#" in prefix:
        _fail(f"must not contain the MQTT wildcards '+' or '#', got {value!r}")
    if prefix.startswith("/") or prefix.endswith("/"):
        _fail(f"must not start or end with '/', got {value!r}")
    return prefix


def _public_keys(value) -> dict[str, str]:
    if not isinstance(value, dict):
        _fail(f"expected a table of key name = base64 public key, got {_describe(value)}")
    keys, problems = {}, []
    for name, encoded in value.items():
        try:
            keys[name] = _public_key(name, encoded)
        except _Invalid as bad:
            problems += [(f".{_key_label(name)}", message) for _, message in bad.problems]
    if problems:
        raise _Invalid(problems)
    return keys


def _public_key(name: str, encoded) -> str:
    if not name:
        _fail("a key name must not be empty")
    # A pasted .pub line may keep its newline; the key itself is what matters.
    encoded = _string(encoded).strip()
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        _fail("not base64 (the one line of the key's .pub file)")
    if len(raw) != 32:
        _fail(f"decodes to {len(raw)} bytes; an Ed25519 public key is 32")
    return encoded


def _key_label(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else json.dumps(name, ensure_ascii=False)


_pin = _integer(0, MAX_GPIO_PIN)


def _pin_or_role(value):
    """An entry of gpio.active_low: a BCM pin number or a role name (checked against the roles later)."""
    if isinstance(value, str):
        if not re.fullmatch(r"[a-z][a-z0-9_]*", value):
            _fail(f"expected a role name like 'mute' or 'zone2', got {value!r}")
        return value
    return _pin(value)


# ---------------------------------------------------------------- the schema

REQUIRED = object()     # the key has no default
DERIVED = object()      # the default depends on other keys (hardware.mode, unit.id)


@dataclass(frozen=True)
class Key:
    convert: Callable[[Any], Any]
    default: Any
    path: bool = False  # resolved against state_dir once that is known


SCHEMA: dict[str, dict[str, Key]] = {
    "unit": {
        "id": Key(_unit_id, REQUIRED),
        "groups": Key(_list_of(_group, "group paths"), ()),
        "timezone": Key(_timezone, DEFAULT_TIMEZONE),
        "state_dir": Key(_path, DERIVED),
        "quiet_hours": Key(_quiet_hours, "22:00-05:00"),
        "media_dir": Key(_path, Path("media"), path=True),
        # Circular 39: colliding items wait at most this long, then are `missed`.
        "lateness_s": Key(_number(0, 86400), 600.0),
        "health_interval_s": Key(_number(10, 86400), 300.0),
        # Free space in the state folder below which the unit reports `storage.low`
        # (the same line health uses for its change report).
        "storage_low_mb": Key(_number(0, 1_000_000), 200.0),
    },
    "clock": {
        "trust": Key(_choice("auto", "always"), DERIVED),
    },
    "broker": {
        "url": Key(_broker_url, REQUIRED),
        "username": Key(_nonempty_string, DERIVED),
        "password_file": Key(_path, None, path=True),
        "ca_file": Key(_path, None, path=True),
        "topic_prefix": Key(_topic_prefix, "loaxa"),
        # The longest wait between reconnect attempts (jittered exponential backoff).
        "reconnect_max_s": Key(_number(1, 3600), 120.0),
    },
    "trust": {
        "keys": Key(_public_keys, {}),
        "root": Key(_public_keys, {}),
        "root_threshold": Key(_integer(1, 8), 1),
        "min_version": Key(_integer(0, 2**63 - 1), 0),
    },
    "hardware": {
        "mode": Key(_choice("pi", "mock"), DERIVED),
        "mock_output_dir": Key(_path, Path("mock-output"), path=True),
        "mock_speed": Key(_positive_number, 1.0),
    },
    "audio": {
        "device": Key(_nonempty_string, "default"),
        "lufs": Key(_number(-40, -5), -16.0),
        # The media cache (docs/audio.md): disk budget, and limits on one file.
        "cache_budget_mb": Key(_integer(16), 2048),
        "max_media_mb": Key(_integer(1), 200),
        "max_media_s": Key(_number(1), 10800.0),
        # A download's overall deadline: the bytes to come at this floor rate, within bounds.
        "download_min_rate_kbps": Key(_number(1), 64.0),
        "download_min_s": Key(_number(0.5), 120.0),
        "download_max_s": Key(_number(0.5), 3600.0),
        # SPEC "Trust": emergencies never play below this, whatever set_volume or the item said.
        "emergency_min_volume": Key(_integer(0, 100), 80),
    },
    "amplifier": {
        "port": Key(_port, None),
        "baudrate": Key(_integer(50, 4_000_000), 9600),
        "warmup_s": Key(_number(0), 3.0),
        "cooldown_s": Key(_number(0), 30.0),
        # hw (issue 4): "auto" = LXA1 over `port` (or the mock's simulator), else relay-only.
        "driver": Key(_choice("auto", "lxa1", "relay"), "auto"),
        "input": Key(_integer(1, 16), 1),
        "volume": Key(_integer(0, 100), 100),
    },
    "gps": {
        "port": Key(_port, None),
    },
    "modem": {
        "port": Key(_port, None),
    },
    "gpio": {
        "amp_power": Key(_pin, 17),
        "mute": Key(_pin, 27),
        "zones": Key(_list_of(_pin, "BCM pin numbers"), (22, 23)),
        "fault": Key(_pin, 24),
        "status_led": Key(_pin, 25),
        "door": Key(_pin, 16),
        "button_test": Key(_pin, 26),
        "button_stop": Key(_pin, 13),
        "active_low": Key(_list_of(_pin_or_role, "role names or BCM pin numbers"), ()),
    },
    "outbox": {
        # Records not yet delivered (issue 11): a disk budget, never a count of records.
        "max_mb": Key(_integer(1), 256),
    },
    "vehicle": {
        # Issue 13: a loudspeaker vehicle's ignition input and battery (docs/hardware.md).
        "ignition": Key(_pin, None),
        "ignition_active_high": Key(_boolean, True),
        "play_with_ignition_off": Key(_boolean, False),
        "battery_adc": Key(_choice("none", "mcp3008"), "none"),
        "battery_channel": Key(_integer(0, 7), 0),
        "battery_divider": Key(_number(1, 100), 6.0),
        "battery_vref": Key(_number(1, 5.5), 3.3),
    },
    "update": {
        # Software updates (issue 15; docs/design.md "Software updates").
        "prefix": Key(_path, Path("software"), path=True),
    },
}

TABLE_TYPES = {
    "unit": UnitConfig, "clock": ClockConfig, "broker": BrokerConfig, "trust": TrustConfig,
    "hardware": HardwareConfig, "audio": AudioConfig, "amplifier": AmplifierConfig,
    "gps": GpsConfig, "modem": ModemConfig, "gpio": GpioConfig, "outbox": OutboxConfig,
    "vehicle": VehicleConfig,
    "update": UpdateConfig,
}


# ---------------------------------------------------------------- defaults from the machine

def detect_hardware_mode(model_path: Path = DEVICE_MODEL_PATH) -> str:
    """"pi" on a Raspberry Pi (its device tree says so), else "mock"."""
    try:
        return "pi" if b"Raspberry Pi" in Path(model_path).read_bytes() else "mock"
    except OSError:
        return "mock"


def state_home(environ: Mapping[str, str] = os.environ) -> Path:
    """$XDG_STATE_HOME, or ~/.local/state (XDG: a relative value is ignored)."""
    configured = environ.get("XDG_STATE_HOME", "")
    if configured and Path(configured).is_absolute():
        return Path(configured)
    home = environ.get("HOME")
    return (Path(home) if home else Path.home()) / ".local" / "state"


# ---------------------------------------------------------------- reading a config

class _Reading:
    """One pass over a config dict: the typed values found and every problem met."""

    def __init__(self):
        self.values: dict[str, dict[str, Any]] = {table: {} for table in SCHEMA}
        self.errors: list[str] = []
        self.invalid: set[str] = set()   # dotted keys given with a bad value

    def error(self, key: str, message: str) -> None:
        self.errors.append(f"{key}: {message}")


def parse_config(data: Mapping, *, base_dir: Path, source: str = "config",
                 environ: Mapping[str, str] | None = None) -> Config:
    """Check a TOML-shaped dict; relative paths resolve against `base_dir` (see module doc).

    Raises ConfigError(errors, source) listing every problem.
    """
    return _build(data, Path(base_dir).absolute(), source, None,
                  os.environ if environ is None else environ)


def load_config(path, *, environ: Mapping[str, str] | None = None) -> Config:
    """Read and check a config.toml; raises ConfigError naming the file."""
    path = Path(path)
    data = _read_toml(path)
    try:
        return _build(data, path.absolute().parent, str(path), path.absolute(),
                      os.environ if environ is None else environ)
    except ConfigError as exc:  # each problem with its line in the file (provisioning/locate.py)
        from provisioning.locate import errors_with_lines
        raise ConfigError(errors_with_lines(exc.errors, path), exc.source) from None


def _read_toml(path: Path) -> dict:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError([f"cannot read: {exc.strerror or exc}"], str(path)) from exc
    try:
        # utf-8-sig: a byte order mark from a Windows editor is not a syntax error.
        return tomllib.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise ConfigError([f"not UTF-8 text (bad byte at offset {exc.start})"], str(path)) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"TOML syntax error: {exc}"], str(path)) from exc


def _build(data, base_dir: Path, label: str, source: Path | None, environ) -> Config:
    reading = _Reading()
    if not isinstance(data, Mapping):
        raise ConfigError([f"expected a table of tables, got {_describe(data)}"], label)
    _read_tables(data, reading)
    _fill_defaults(reading, environ)
    _resolve_paths(reading.values, base_dir)
    _check_files(reading)
    _check_pin_roles(reading)
    _check_active_low(reading)
    _check_roots(reading)
    if reading.errors:
        raise ConfigError(reading.errors, label)
    return _make_config(reading.values, source)


def _read_tables(data: Mapping, reading: _Reading) -> None:
    _report_unknown(data, SCHEMA, "", "table", reading)
    for table, keys in SCHEMA.items():
        given = data.get(table, {})
        if not isinstance(given, Mapping):
            reading.error(table, f"expected a table, got {_describe(given)}")
            given = {}
        _report_unknown(given, keys, f"{table}.", "key", reading)
        _read_table(table, keys, given, reading)


def _report_unknown(given: Mapping, known, prefix: str, what: str, reading: _Reading) -> None:
    for name in given:
        if name not in known:
            hint = _did_you_mean(name, known) or f" (known: {', '.join(known)})"
            reading.error(f"{prefix}{name}", f"unknown {what}{hint}")


def _read_table(table: str, keys: dict[str, Key], given: Mapping, reading: _Reading) -> None:
    for name, key in keys.items():
        dotted = f"{table}.{name}"
        if name not in given:
            if key.default is REQUIRED:
                reading.error(dotted, "required")
            continue
        try:
            reading.values[table][name] = key.convert(given[name])
        except _Invalid as bad:
            reading.invalid.add(dotted)
            for suffix, message in bad.problems:
                reading.error(dotted + suffix, message)


def _fill_defaults(reading: _Reading, environ) -> None:
    values = reading.values
    for table, keys in SCHEMA.items():
        for name, key in keys.items():
            if name not in values[table] and key.default not in (REQUIRED, DERIVED):
                values[table][name] = copy.copy(key.default)
    on_pi = values["hardware"].setdefault("mode", detect_hardware_mode()) == "pi"
    values["unit"].setdefault("state_dir", PI_STATE_DIR if on_pi else state_home(environ) / "loaxa")
    values["clock"].setdefault("trust", "auto" if on_pi else "always")
    values["broker"].setdefault("username", values["unit"].get("id", ""))


def _absolute(path: Path, base: Path) -> Path:
    # normpath, not resolve(): a symlinked /var/lib/loaxa stays as the technician wrote it.
    return Path(os.path.normpath(base / path))


def _resolve_paths(values: dict, base_dir: Path) -> None:
    state_dir = values["unit"]["state_dir"] = _absolute(values["unit"]["state_dir"], base_dir)
    for table, keys in SCHEMA.items():
        for name, key in keys.items():
            if key.path and values[table].get(name) is not None:
                values[table][name] = _absolute(values[table][name], state_dir)


def _check_files(reading: _Reading) -> None:
    """Files the unit reads at start must be there now, not fail at 3 a.m."""
    for name in ("password_file", "ca_file"):
        path = reading.values["broker"].get(name)
        if path is not None:
            problem = _unreadable(path)
            if problem:
                reading.error(f"broker.{name}", f"{path}: {problem}")


def _unreadable(path: Path) -> str | None:
    try:
        if not path.exists():
            return "no such file"
        if not path.is_file():
            return "not a regular file"
        with open(path, "rb"):
            return None
    except OSError as exc:
        return f"cannot read ({exc.strerror or exc})"


def _check_pin_roles(reading: _Reading) -> None:
    """One pin, one role: a mute relay on the amplifier's power pin would cut the power."""
    first_role: dict[int, str] = {}
    for role, pin in _pin_roles(reading):
        if pin in first_role:
            reading.error(f"gpio.{role}", f"pin {pin} is already used by gpio.{first_role[pin]}")
        else:
            first_role[pin] = role
    ignition = reading.values["vehicle"].get("ignition")
    if ignition is not None and ignition in first_role:
        reading.error("vehicle.ignition", f"pin {ignition} is already used by gpio.{first_role[ignition]}")


def _pin_roles(reading: _Reading) -> list[tuple[str, int]]:
    gpio = reading.values["gpio"]
    roles = []
    for name in SCHEMA["gpio"]:
        if f"gpio.{name}" in reading.invalid:
            continue  # already reported; its default would only add a false clash
        if name == "zones":
            roles += [(f"zones[{index}]", pin) for index, pin in enumerate(gpio["zones"])]
        elif name == "active_low":
            continue  # not a pin: which pins are active-low (_check_active_low)
        else:
            roles.append((name, gpio[name]))
    return roles


def _check_active_low(reading: _Reading) -> None:
    """Each gpio.active_low entry must name a role (or `zones`, `zone1`...) or a pin in use."""
    gpio = reading.values["gpio"]
    zones = gpio.get("zones", ())
    names = [name for name in SCHEMA["gpio"] if name != "active_low"]
    names += [f"zone{n}" for n in range(1, len(zones) + 1)]
    pins = {pin for name, pin in gpio.items() if isinstance(pin, int)} | set(zones)
    for index, entry in enumerate(gpio.get("active_low", ())):
        key = f"gpio.active_low[{index}]"
        if isinstance(entry, str) and entry not in names:
            hint = _did_you_mean(entry, names) or f" (roles: {', '.join(names)})"
            reading.error(key, f"no role {entry!r}{hint}")
        elif isinstance(entry, int) and entry not in pins:
            reading.error(key, f"pin {entry} has no role in [gpio]")


def _check_roots(reading: _Reading) -> None:
    """A root threshold the roots can meet, and each root key once (distinct by public key)."""
    trust = reading.values["trust"]
    root, threshold = trust.get("root", {}), trust.get("root_threshold", 1)
    if "trust.root" in reading.invalid or "trust.root_threshold" in reading.invalid:
        return
    if root and threshold > len(root):
        reading.error("trust.root_threshold", f"{threshold} is more than the {len(root)} root keys in trust.root")
    elif not root and threshold != 1:
        reading.error("trust.root_threshold", "given without trust.root")
    if len(set(root.values())) < len(root):
        reading.error("trust.root", "two names hold the same public key; give each root key once")


def _make_config(values: dict, source: Path | None) -> Config:
    tables = {table: TABLE_TYPES[table](**values[table]) for table in SCHEMA}
    return Config(**tables, source=source)


# ---------------------------------------------------------------- finding and using it

def find_config(explicit: str | None, environ: Mapping[str, str] = os.environ,
                system_path: Path = SYSTEM_CONFIG) -> Path | None:
    """The config file to use: --config, else $LOAXA_CONFIG, else `system_path`.

    None means none exists and the caller runs the built-in demo. A file named by
    --config or $LOAXA_CONFIG that does not exist is an error: whoever named it meant it.
    """
    if explicit is not None:
        return _named_file(explicit, "given with --config")
    if environ.get("LOAXA_CONFIG"):
        return _named_file(environ["LOAXA_CONFIG"], "named by $LOAXA_CONFIG")
    # lexists: a dangling link or a folder there is a broken install, so load_config
    # reports it rather than the demo starting in its place.
    if os.path.lexists(system_path):
        return Path(system_path)
    return None


def _named_file(name: str, how: str) -> Path:
    if not name:
        raise ConfigError([f"empty path {how}"], "config")
    path = Path(name).expanduser()
    if not path.exists():
        raise ConfigError([f"no such file ({how})"], name)
    if path.is_dir():
        raise ConfigError([f"is a folder, not a config file ({how})"], name)
    return path


def read_password(cfg: Config) -> str | None:
    """The broker password from `broker.password_file`, or None (anonymous)."""
    path = cfg.broker.password_file
    if path is None:
        return None
    label = str(cfg.source) if cfg.source else "config"
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ConfigError([f"broker.password_file: cannot read {path} ({reason})"], label) from exc
    # Editors end the one line with a newline; it is not part of the password.
    password = text.rstrip("\r\n")
    if not password:
        raise ConfigError([f"broker.password_file: {path} is empty"], label)
    return password


def config_warnings(cfg: Config) -> list[str]:
    """Things that are valid but probably not what the technician wants."""
    warnings = []
    if not cfg.trust.keys and not cfg.trust.root:
        warnings.append("trust.keys: none; the unit will refuse every schedule and command")
    if not parse_broker_url(cfg.broker.url).tls:
        if cfg.broker.password_file is not None:
            warnings.append("broker.url: mqtt:// sends the password unencrypted; use mqtts://")
        if cfg.broker.ca_file is not None:
            warnings.append("broker.ca_file: not used with mqtt:// (no TLS)")
    return warnings


def demo_unit_id(state_dir: Path) -> str:
    """The demo's unit id (and so its MQTT client id): one per state folder.

    Two demos on one machine (two users, or a test beside a user's demo) reporting to
    one broker under one client id would knock each other off it in turn, and write
    into each other's records; a fixed id did."""
    digest = hashlib.sha256(str(Path(state_dir).absolute()).encode("utf-8")).hexdigest()
    return f"demo-{digest[:8]}"


def demo_config(state_dir: Path, broker_url: str = "mqtt://127.0.0.1:1883",
                trust_keys: Mapping[str, str] | None = None) -> Config:
    """The built-in demo's config: mock hardware, no quiet hours, state in `state_dir`.

    Built through parse_config, so the demo obeys the same rules as a real unit.
    """
    data = {
        "unit": {"id": demo_unit_id(state_dir), "groups": ["demo/demo-district/demo-commune"],
                 "state_dir": str(state_dir), "quiet_hours": ""},
        "clock": {"trust": "always"},
        "broker": {"url": broker_url},
        "trust": {"keys": dict(trust_keys or {})},
        "hardware": {"mode": "mock"},
        # A short cooldown so the demo's amplifier visibly switches off between plays.
        "amplifier": {"warmup_s": 3.0, "cooldown_s": 10.0},
    }
    return parse_config(data, base_dir=Path(state_dir), source="demo config")
