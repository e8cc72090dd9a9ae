"""Writing a provisioned unit: config.toml, broker.pass, the broker admin's lines, state folder.

`UnitPlan` holds what the technician chose (from flags or the wizard); `check_plan()`
checks it against the config schema before anything is written; `write_unit()` writes:

    OUT/broker.pass        the broker password, mode 0600 (unless a password file is given)
    OUT/mosquitto.passwd   the unit's line for mosquitto's password_file (mode 0600)
    OUT/mosquitto.acl      the unit's lines for mosquitto's acl_file
    OUT/config.toml        the config, naming the other files by absolute path; last, so a
                           config never names a file that is not there yet
    STATE_DIR/             the state folder

Every file is written atomically. Run again on the same OUT, it keeps the password in
OUT/broker.pass, so the broker's line stays valid.
"""

import datetime
from dataclasses import dataclass, field
from pathlib import Path

from loaxa.commands.config import toml_value
from loaxa.errors import ConfigError
from loaxa.fsio import atomic_write_text
from loaxa.i18n import _
from provisioning.config import DEFAULT_TIMEZONE, PI_STATE_DIR, SCHEMA, SYSTEM_CONFIG, load_config, parse_config
from provisioning.mosquitto import acl_lines, generate_password, password_line

CONFIG_NAME = "config.toml"
PASSWORD_NAME = "broker.pass"
PASSWD_NAME = "mosquitto.passwd"
ACL_NAME = "mosquitto.acl"


@dataclass
class UnitPlan:
    unit_id: str
    groups: list[str]
    broker_url: str
    mode: str                               # "pi" or "mock"
    out_dir: Path
    trust_keys: dict[str, str] = field(default_factory=dict)
    trust_roots: dict[str, str] = field(default_factory=dict)  # [trust].root: offline root keys
    root_threshold: int = 1
    username: str | None = None             # default: the unit id
    password: str | None = None             # typed by the technician: goes into OUT/broker.pass
    password_file: Path | None = None       # an existing file holding the password
    new_password: bool = False              # generate one even if OUT/broker.pass exists
    ca_file: Path | None = None
    topic_prefix: str = "loaxa"
    timezone: str = DEFAULT_TIMEZONE
    state_dir: Path | None = None           # default: /var/lib/loaxa (pi), OUT/state (mock)
    amplifier_port: str | None = None
    gps_port: str | None = None
    modem_port: str | None = None
    gpio: dict = field(default_factory=dict)   # role -> pin (zones: a list); missing: default
    extra: dict = field(default_factory=dict)  # table -> {key: value}: any other config keys

    @property
    def out(self) -> Path:
        return Path(self.out_dir).expanduser().absolute()

    @property
    def effective_state_dir(self) -> Path:
        if self.state_dir is not None:
            return Path(self.state_dir).expanduser().absolute()
        return PI_STATE_DIR if self.mode == "pi" else self.out / "state"

    @property
    def effective_username(self) -> str:
        return self.username or self.unit_id

    @property
    def password_path(self) -> Path:
        return Path(self.password_file).expanduser().absolute() if self.password_file else self.out / PASSWORD_NAME


@dataclass
class Written:
    config: Path
    password_file: Path
    passwd: Path
    acl: Path
    state_dir: Path
    password_origin: str   # "generated", "given", "file", "kept"


def _roots(plan: UnitPlan) -> dict:
    """`root` and `root_threshold` when given (a threshold without roots is left for the check)."""
    out = {"root": dict(plan.trust_roots)} if plan.trust_roots else {}
    if plan.trust_roots or plan.root_threshold != 1:
        out["root_threshold"] = plan.root_threshold
    return out


def config_tables(plan: UnitPlan) -> dict:
    """The config in TOML's shape: what the technician chose, the pin map in full."""
    broker = {"url": plan.broker_url, "username": plan.effective_username,
              "password_file": str(plan.password_path), "topic_prefix": plan.topic_prefix}
    if plan.ca_file:
        broker["ca_file"] = str(Path(plan.ca_file).expanduser().absolute())
    tables = {
        "unit": {"id": plan.unit_id, "groups": list(plan.groups), "timezone": plan.timezone,
                 "state_dir": str(plan.effective_state_dir),
                 "quiet_hours": SCHEMA["unit"]["quiet_hours"].default},
        "broker": broker,
        "trust": {"keys": dict(plan.trust_keys), **_roots(plan)},
        "hardware": {"mode": plan.mode},
        "amplifier": _without_none({"port": plan.amplifier_port}),
        "gps": _without_none({"port": plan.gps_port}),
        "modem": _without_none({"port": plan.modem_port}),
        "gpio": {role: _listed(plan.gpio.get(role, SCHEMA["gpio"][role].default)) for role in gpio_roles()},
    }
    for table, keys in plan.extra.items():
        tables.setdefault(table, {}).update(_without_none(keys))
    return {table: keys for table, keys in tables.items() if keys or table in ("unit", "broker")}


def default_out_dir(mode: str) -> Path:
    """Where the files go without --out: /etc/loaxa on a unit, ~/.config/loaxa for a mock one."""
    return SYSTEM_CONFIG.parent if mode == "pi" else Path.home() / ".config" / "loaxa"


def gpio_roles() -> list[str]:
    """The [gpio] keys that take pins, in the schema's order (the hardware side adds more)."""
    return [name for name, key in SCHEMA["gpio"].items() if _pin_default(key.default)]


def _pin_default(value) -> bool:
    if isinstance(value, tuple):
        return bool(value) and all(_pin_default(pin) for pin in value)
    return isinstance(value, int) and not isinstance(value, bool)


def _listed(value):
    return list(value) if isinstance(value, tuple) else value


def _without_none(keys: dict) -> dict:
    return {name: value for name, value in keys.items() if value is not None and value != ""}


def config_text(tables: dict, config_path: Path, now: datetime.datetime | None = None) -> str:
    now = now or datetime.datetime.now().astimezone()
    lines = [
        "# " + _("loaxa unit config, written by 'loaxa provision' on {date}.").format(
            date=now.strftime("%Y-%m-%d %H:%M")),
        "# " + _("Check it after any change: loaxa config check --config {path}").format(path=config_path),
    ]
    for table, keys in tables.items():
        lines += ["", f"[{table}]"]
        lines += [f"{name} = {_plain_value(value)}" for name, value in keys.items()]
    return "\n".join(lines) + "\n"


def _plain_value(value) -> str:
    return toml_value(_listed(value))


def check_plan(plan: UnitPlan) -> list[str]:
    """Every problem with the plan, as config errors (`unit.id: ...`); [] when it is fine.

    The password file is left out: it may be written only later.
    """
    tables = config_tables(plan)
    if plan.password_file is None:
        tables["broker"].pop("password_file")
    try:
        parse_config(tables, base_dir=plan.out, source="provision", environ={})
    except ConfigError as exc:
        return list(exc.errors)
    return []


def resolve_password(plan: UnitPlan) -> tuple[str, str]:
    """(password, origin): from the given file, as typed, kept from OUT/broker.pass, or new.

    Origins: "file", "given", "kept", "generated".
    """
    if plan.password_file is not None:
        return _read_password(plan.password_path, "--password-file"), "file"
    if plan.password:
        return plan.password, "given"
    existing = plan.out / PASSWORD_NAME
    if existing.exists() and not plan.new_password:
        return _read_password(existing, str(existing)), "kept"
    return generate_password(), "generated"


def _read_password(path: Path, label: str) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ConfigError([_("cannot read {path} ({reason})").format(path=path, reason=reason)], label) from exc
    password = text.rstrip("\r\n")
    if not password:
        raise ConfigError([_("{path} is empty").format(path=path)], label)
    return password


def write_unit(plan: UnitPlan) -> Written:
    """Write every file of the plan (see the module doc); returns where they went."""
    out = plan.out
    _make_folder(out, 0o755)
    password, origin = resolve_password(plan)
    if plan.password_file is None:
        atomic_write_text(out / PASSWORD_NAME, password + "\n", mode=0o600)
    atomic_write_text(out / PASSWD_NAME, password_line(plan.effective_username, password) + "\n", mode=0o600)
    acl = acl_lines(plan.unit_id, plan.groups, plan.topic_prefix, plan.effective_username)
    atomic_write_text(out / ACL_NAME, "\n".join(acl) + "\n", mode=0o644)
    state_dir = plan.effective_state_dir
    _make_folder(state_dir, 0o750)
    config = out / CONFIG_NAME
    atomic_write_text(config, config_text(config_tables(plan), config), mode=0o644)
    load_config(config)  # the promise: what provision writes, the unit accepts
    return Written(config, plan.password_path, out / PASSWD_NAME, out / ACL_NAME, state_dir, origin)


def _make_folder(path: Path, mode: int) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True, mode=mode)
    except OSError as exc:
        raise ConfigError([_("cannot make the folder {path}: {reason}").format(
            path=path, reason=exc.strerror or exc)], "provision") from exc
