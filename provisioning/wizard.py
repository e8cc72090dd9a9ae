"""`loaxa provision`, interactive: the questions a commune technician answers on site.

Each answer is checked at once against the config schema (the same rules `loaxa config
check` applies, in the technician's language) and asked again until it is right; pins
must not clash with the ones already given; in pi mode a serial port must exist. A
summary comes last: write it, change it (every question again, the answers so far as
defaults), or cancel. Nothing is written before the technician confirms.

The questions go through a `Console` (`ask`, `secret`, `say`), so a test drives the
real thing through a pty.
"""

import getpass
import glob
import os
import sys
import unicodedata
from pathlib import Path

from loaxa.errors import ConfigError, LoaxaError
from loaxa.i18n import N_, _, translate_problem
from provisioning.brokercheck import OK, REFUSED, probe_broker
from provisioning.config import DEFAULT_TIMEZONE, MAX_GPIO_PIN, SCHEMA, parse_config
from provisioning.writer import PASSWORD_NAME, UnitPlan, check_plan, default_out_dir, gpio_roles
from scheduler.keys import is_valid_key_name

YES = ("c", "co", "có", "y", "yes")
NO = ("k", "khong", "không", "n", "no")
ROLE_NAMES = {"amp_power": N_("the amplifier power relay"), "mute": N_("the mute relay"),
              "zones": N_("the zone relays"), "fault": N_("the fault input"), "status_led": N_("the status LED"),
              "door": N_("the cabinet door switch"), "button_test": N_("the test button"),
              "button_stop": N_("the stop button")}
SERIAL_GLOBS = ("/dev/serial*", "/dev/ttyAMA*", "/dev/ttyS[0-9]", "/dev/ttyUSB*", "/dev/ttyACM*")


class Cancelled(LoaxaError):
    """The technician ended the questions (end of input or 'cancel' at the summary)."""


class Console:
    """Questions on stdout, answers from stdin; a secret without echo when on a terminal."""

    def __init__(self, stdin=None, stdout=None):
        self.stdin = stdin or sys.stdin
        self.stdout = stdout or sys.stdout

    def say(self, text: str = "") -> None:
        self.stdout.write(text + "\n")
        self.stdout.flush()

    def ask(self, prompt: str) -> str:
        self.stdout.write(prompt)
        self.stdout.flush()
        line = self.stdin.readline()
        if not line:
            raise Cancelled(_("no more answers: provisioning cancelled, nothing written"))
        return line.strip()

    def secret(self, prompt: str) -> str:
        if self.stdin.isatty():
            try:
                return getpass.getpass(prompt)
            except EOFError as exc:
                raise Cancelled(_("no more answers: provisioning cancelled, nothing written")) from exc
        return self.ask(prompt)


# ---------------------------------------------------------------- checking one answer

_SAMPLE = {"unit": {"id": "abc", "state_dir": "/nonexistent"}, "broker": {"url": "mqtt://localhost"},
           "hardware": {"mode": "mock"}}


def field_problem(table: str, key: str, value) -> str | None:
    """The schema's complaint about `table.key = value`, translated; None when it is fine."""
    data = {name: dict(keys) for name, keys in _SAMPLE.items()}
    data.setdefault(table, {})[key] = value
    try:
        parse_config(data, base_dir=Path("/"), source="answer", environ={})
    except ConfigError as exc:
        mine = [error for error in exc.errors if error.startswith(f"{table}.{key}")]
        if mine:
            return translate_problem(mine[0]).split(": ", 1)[-1]
    return None


def slug(text: str) -> str:
    """A place name as a group segment: "Đắk Lắk" -> "dak-lak", "Bông Krang" -> "bong-krang"."""
    text = text.replace("đ", "d").replace("Đ", "D")
    plain = "".join(c for c in unicodedata.normalize("NFD", text) if not unicodedata.combining(c))
    words = "".join(c if c.isascii() and c.isalnum() else " " for c in plain.lower()).split()
    return "-".join(words)


def serial_ports() -> list[str]:
    return sorted({path for pattern in SERIAL_GLOBS for path in glob.glob(pattern)})


def port_problem(port: str, mode: str) -> str | None:
    """In pi mode a device path must exist; a pyserial URL (socket://...) is taken as given."""
    if not port or mode != "pi" or "://" in port:
        return None
    if not os.path.exists(port):
        found = ", ".join(serial_ports()) or _("none")
        return _("{port} does not exist on this unit (serial ports found: {found})").format(port=port, found=found)
    return None


# ---------------------------------------------------------------- the questions

class Wizard:
    def __init__(self, console: Console, plan: UnitPlan, *, out_given: bool):
        self.console = console
        self.plan = plan
        self.out_given = out_given
        self.password_note = None  # how the summary describes the password
        self.password_choice = None
        self.out_answer = None

    def run(self) -> UnitPlan:
        self.console.say(_("loaxa: setting up this loudspeaker unit. Press Enter to accept the "
                           "value in [brackets]; Ctrl-C cancels."))
        while True:
            self.ask_everything()
            choice = self.summary()
            if choice == "write":
                return self.plan

    def ask_everything(self) -> None:
        for step in (self.ask_mode, self.ask_unit_id, self.ask_groups, self.ask_timezone,
                     self.ask_broker, self.ask_trust_keys, self.ask_gpio, self.ask_ports,
                     self.ask_out_dir):
            step()

    # -- helpers

    def ask(self, prompt: str, default=None, check=lambda value: None) -> str:
        """Ask until `check(answer)` finds nothing wrong; Enter takes the default."""
        shown = f" [{default}]" if default not in (None, "") else ""
        while True:
            answer = self.console.ask(f"{prompt}{shown}: ")
            if not answer and default is not None:
                answer = str(default)
            problem = check(answer)
            if not problem:
                return answer
            self.console.say("  " + _("Not accepted: {problem}").format(problem=problem))

    def yes(self, prompt: str, default: bool) -> bool:
        """A yes/no question; c/k (có/không) and y/n are both understood."""
        def check(answer):
            return None if answer.lower() in YES + NO else _("answer y (yes) or n (no)")
        answer = self.ask(f"{prompt} ({_('y/n')})", _("y") if default else _("n"), check)
        return answer.lower() in YES

    def field(self, prompt: str, table: str, key: str, default=None) -> str:
        return self.ask(prompt, default, lambda answer: field_problem(table, key, answer))

    # -- unit

    def ask_mode(self) -> None:
        self.console.say()
        self.console.say(_("pi: a real Raspberry Pi unit; mock: simulated hardware on a PC."))
        self.plan.mode = self.field(_("Hardware mode (pi or mock)"), "hardware", "mode", self.plan.mode)

    def ask_unit_id(self) -> None:
        self.plan.unit_id = self.field(
            _("Unit id: lowercase letters, digits and '-', e.g. dl-lak-bongkrang-01"),
            "unit", "id", self.plan.unit_id or None)

    def ask_groups(self) -> None:
        self.console.say()
        self.console.say(_("Groups: the unit receives schedules sent to its commune, district "
                           "and province. Place names may be typed with diacritics."))
        first = self.plan.groups[0].split("/") if self.plan.groups else []
        path = [self.ask_segment(_("Province, e.g. Đắk Lắk"), _at(first, 0), required=True)]
        district = self.ask_segment(_("District (empty or '-' where there is none)"),
                                    _at(first, 1) if len(first) > 2 else "", required=False)
        path += [district] if district else []
        path.append(self.ask_segment(_("Commune or ward"), _at(first, -1) if len(first) > 1 else None,
                                     required=True))
        groups = ["/".join(path)]
        self.console.say("  " + _("Group: {group}").format(group=groups[0]))
        others = self.plan.groups[1:]
        if others:
            self.console.say("  " + _("Other groups so far: {groups}").format(groups=", ".join(others)))
            if self.yes(_("Keep them?"), True):
                groups += [group for group in others if group not in groups]
        while True:
            more = self.ask(_("Another group path, e.g. dak-lak/lak/doi-tin-1 (empty: no more)"), "",
                            lambda answer: answer and field_problem("unit", "groups", [answer]))
            if not more:
                break
            groups.append(more)
        self.plan.groups = groups

    def ask_segment(self, prompt: str, default, required: bool) -> str:
        def check(answer):
            if not answer or (answer == "-" and not required):
                return _("required") if required and not answer else None
            return None if slug(answer) else _("no letters or digits in {answer!r}").format(answer=answer)
        return slug(self.ask(prompt, default if default else ("" if not required else None), check))

    def ask_timezone(self) -> None:
        self.plan.timezone = self.field(_("Time zone"), "unit", "timezone", self.plan.timezone or DEFAULT_TIMEZONE)

    # -- broker

    def ask_broker(self) -> None:
        self.console.say()
        while True:
            self.plan.broker_url = self.field(
                _("Province MQTT broker, e.g. mqtts://mqtt.daklak.gov.vn:8883"), "broker", "url",
                self.plan.broker_url or None)
            username = self.field(_("Broker username"), "broker", "username", self.plan.effective_username)
            self.plan.username = None if username == self.plan.unit_id else username  # follows the id
            self.ask_password()
            if self.plan.broker_url.startswith("mqtts://"):
                self.ask_ca_file()
            if self.check_broker():
                return

    def ask_password(self) -> None:
        existing = self.plan.out / PASSWORD_NAME
        self.console.say(_("Broker password: 1 = make a new strong password (recommended), "
                           "2 = type the password the broker admin gave, 3 = read it from a file"))
        choices = ("1", "2", "3")
        if existing.exists():
            self.console.say(_("   4 = keep the password already in {path}").format(path=existing))
            choices += ("4",)
        default = self.password_choice or ("3" if self.plan.password_file else "4" if "4" in choices else "1")
        choice = self.ask(_("Choice"), default, lambda answer: None if answer in choices else
                          _("answer {choices}").format(choices=", ".join(choices)))
        again = choice == self.password_choice  # asked again after "change": keep what was given
        self.password_choice = choice
        if choice == "2":
            self.plan.password_file = None
            if not (again and self.plan.password):
                self.plan.password = self.typed_password()
            self.password_note = _("typed")
        elif choice == "3":
            self.plan.password = None
            default_file = str(self.plan.password_file) if self.plan.password_file else None
            self.plan.password_file = Path(self.ask(_("Password file"), default_file, _file_problem)).absolute()
            self.password_note = str(self.plan.password_file)
        elif choice == "4":
            self.plan.password, self.plan.password_file = None, None
            self.password_note = _("kept from {path}").format(path=existing)
        else:
            self.plan.password, self.plan.password_file = None, None
            self.plan.new_password = True
            self.password_note = _("new, generated")
        if choice != "1":
            self.plan.new_password = False

    def typed_password(self) -> str:
        while True:
            first = self.console.secret(_("Password (not shown): "))
            if not first:
                self.console.say("  " + _("Not accepted: {problem}").format(problem=_("must not be empty")))
                continue
            if self.console.secret(_("Password again: ")) == first:
                return first
            self.console.say("  " + _("Not accepted: {problem}").format(problem=_("the two passwords differ")))

    def ask_ca_file(self) -> None:
        answer = self.ask(_("CA certificate file of the broker (empty: the system's CAs)"),
                          str(self.plan.ca_file or ""), lambda a: a and _file_problem(a))
        self.plan.ca_file = Path(answer) if answer else None

    def check_broker(self) -> bool:
        """True to go on; False to ask the broker questions again."""
        if not self.yes(_("Check the connection to the broker now?"), True):
            return True
        self.console.say("  " + _("Connecting to {url} ...").format(url=self.plan.broker_url))
        probe = probe_broker(self.plan.broker_url, self.plan.effective_username, self._known_password(),
                             self.plan.ca_file)
        if probe.status == OK:
            self.console.say("  " + _("OK: the broker accepted the unit's login."))
            return True
        if probe.status == REFUSED:
            self.console.say("  " + _("The broker answers but refuses the login ({detail}). That is "
                                      "normal until its admin adds this unit's mosquitto.passwd line.")
                             .format(detail=probe.detail))
            return True
        self.console.say("  " + _("Cannot reach the broker: {detail}").format(detail=probe.detail))
        return not self.yes(_("Type the broker details again?"), True)

    def _known_password(self) -> str | None:
        if self.plan.password:
            return self.plan.password
        path = self.plan.password_file or (self.plan.out / PASSWORD_NAME)
        try:
            return Path(path).read_text(encoding="utf-8").rstrip("\r\n") or None
        except (OSError, UnicodeDecodeError):
            return None

    # -- trust

    def ask_trust_keys(self) -> None:
        self.console.say()
        self.console.say(_("Trusted keys: the unit plays only schedules signed by these keys. Type "
                           "NAME=KEY (the line of the province's .pub file) or the path of a .pub file."))
        keys = dict(self.plan.trust_keys)
        if keys:
            self.console.say("  " + _("Keys so far: {names}").format(names=", ".join(keys)))
            if not self.yes(_("Keep them?"), True):
                keys = {}
        while True:
            answer = self.ask(_("Trusted key (empty: no more)"), "", lambda a: a and trust_key_problem(a))
            if answer:
                name, key = parse_trust_key(answer)
                keys[name] = key
                self.console.say("  " + _("Key {name} added.").format(name=name))
            elif keys or not self.yes(_("No key: the unit will refuse every schedule. Add one?"), True):
                break
        self.plan.trust_keys = keys

    # -- hardware

    def ask_gpio(self) -> None:
        self.console.say()
        self.console.say(_("GPIO pins, BCM numbers (0-27); each pin serves one role."))
        labels = {"amp_power": _("Pin of the amplifier power relay"), "mute": _("Pin of the mute relay"),
                  "zones": _("Pins of the loudspeaker zone relays, separated by commas"),
                  "fault": _("Pin of the amplifier fault input"), "status_led": _("Pin of the status LED"),
                  "door": _("Pin of the cabinet door switch"), "button_test": _("Pin of the test button"),
                  "button_stop": _("Pin of the stop button")}
        taken: dict[int, str] = {}
        for role in gpio_roles():
            default = self.plan.gpio.get(role, SCHEMA["gpio"][role].default)
            label = labels.get(role) or _("Pin of {role}").format(role=role)
            value = self.ask(label, _pins_text(default), lambda a, r=role: pin_problem(r, a, taken))
            pins = _pins(value)
            for pin in pins:
                taken[pin] = _role_name(role)
            self.plan.gpio[role] = pins if role == "zones" else pins[0]

    def ask_ports(self) -> None:
        self.console.say()
        found = serial_ports()
        self.console.say(_("Serial ports on this machine: {ports}").format(ports=", ".join(found) or _("none")))
        if self.plan.mode == "pi":
            prompts = (_("Amplifier serial port (empty: relays only, no serial control)"),
                       _("GPS serial port (empty: no GPS)"), _("Modem serial port (empty: no modem)"))
        else:
            prompts = (_("Amplifier serial port (empty: the simulator)"),
                       _("GPS serial port (empty: the simulator)"), _("Modem serial port (empty: the simulator)"))
        self.plan.amplifier_port = self.ask_port(prompts[0], self.plan.amplifier_port)
        if self.plan.amplifier_port:
            self.ask_amplifier_details()
        self.plan.gps_port = self.ask_port(prompts[1], self.plan.gps_port)
        self.plan.modem_port = self.ask_port(prompts[2], self.plan.modem_port)

    def ask_port(self, prompt: str, default) -> str | None:
        return self.ask(prompt, default or "", lambda a: port_problem(a, self.plan.mode)) or None

    def ask_amplifier_details(self) -> None:
        amplifier = self.plan.extra.setdefault("amplifier", {})
        for key, prompt in (("driver", _("Amplifier driver")), ("baudrate", _("Amplifier baud rate"))):
            if key in SCHEMA["amplifier"]:  # "driver" exists once the hardware side adds it
                default = amplifier.get(key, SCHEMA["amplifier"][key].default)
                answer = self.ask(prompt, default, lambda a, k=key: field_problem("amplifier", k, _typed(a)))
                amplifier[key] = _typed(answer)

    def ask_out_dir(self) -> None:
        if self.out_given:
            return
        default = self.out_answer or default_out_dir(self.plan.mode)   # follows the mode until answered
        self.out_answer = self.ask(_("Folder for the config files"), str(default))
        self.plan.out_dir = Path(self.out_answer).expanduser().absolute()

    # -- summary

    def summary(self) -> str:
        problems = check_plan(self.plan)
        self.console.say()
        self.console.say(_("Summary:"))
        for label, value in summary_rows(self.plan, self.password_note):
            self.console.say(f"  {label:<24} {value}")
        if problems:
            for problem in problems:
                self.console.say("  " + _("Not accepted: {problem}").format(problem=translate_problem(problem)))
            self.console.say(_("Some answers need changing; the questions start again."))
            return "change"
        choices = {"1": "write", "2": "change", "3": "cancel"}
        answer = self.ask(_("1 = write these files, 2 = change answers, 3 = cancel"), "1",
                          lambda a: None if a in choices else _("answer {choices}").format(choices="1, 2, 3"))
        if choices[answer] == "cancel":
            raise Cancelled(_("provisioning cancelled, nothing written"))
        return choices[answer]


def summary_rows(plan: UnitPlan, password_note: str | None) -> list[tuple[str, str]]:
    none = _("none")
    password = password_note or str(plan.password_file or _("new, generated"))
    return [
        (_("Hardware mode"), plan.mode), (_("Unit id"), plan.unit_id),
        (_("Groups"), ", ".join(plan.groups)), (_("Time zone"), plan.timezone),
        (_("Broker"), plan.broker_url), (_("Username"), plan.effective_username),
        (_("Password"), password), (_("CA file"), str(plan.ca_file or _("system CAs"))),
        (_("Trusted keys"), ", ".join(plan.trust_keys) or none),
        (_("GPIO pins"), " ".join(f"{role}={_pins_text(plan.gpio.get(role, SCHEMA['gpio'][role].default), '+')}"
                                  for role in gpio_roles())),
        (_("Amplifier port"), plan.amplifier_port or none), (_("GPS port"), plan.gps_port or none),
        (_("Modem port"), plan.modem_port or none), (_("Config folder"), str(plan.out)),
        (_("State folder"), str(plan.effective_state_dir)),
    ]


# ---------------------------------------------------------------- small parsers

def parse_trust_key(text: str) -> tuple[str, str]:
    """`NAME=KEY` or the path of a NAME.pub file -> (name, key); ValueError says why not."""
    if "=" in text and not os.path.exists(text):
        name, _sep, key = text.partition("=")
        name, key = name.strip(), key.strip()
    else:
        path = Path(text).expanduser()
        try:
            key = path.read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(_("{path}: cannot read ({reason})").format(
                path=path, reason=getattr(exc, "strerror", None) or exc)) from exc
        name = path.stem
    if not is_valid_key_name(name):
        raise ValueError(_("key name {name!r}: use letters, digits, '.', '_' or '-' (at most 64)").format(name=name))
    return name, key


def trust_key_problem(text: str) -> str | None:
    try:
        name, key = parse_trust_key(text)
    except ValueError as exc:
        return str(exc)
    return field_problem("trust", "keys", {name: key})


def _pins(text) -> list[int]:
    return [int(part) for part in str(text).replace(",", " ").split()]


def _pins_text(value, separator: str = ", ") -> str:
    return separator.join(str(pin) for pin in value) if isinstance(value, (list, tuple)) else str(value)


def pin_problem(role: str, answer: str, taken: dict[int, str]) -> str | None:
    try:
        pins = _pins(answer)
    except ValueError:
        return _("expected BCM pin numbers (0-27), got {answer!r}").format(answer=answer)
    if not pins or (role != "zones" and len(pins) != 1):
        return _("expected one BCM pin number (0-27), got {answer!r}").format(answer=answer)
    for index, pin in enumerate(pins):
        if not 0 <= pin <= MAX_GPIO_PIN:
            return _("must be between {low} and {high}, got {value}").format(low=0, high=MAX_GPIO_PIN, value=pin)
        if pin in taken or pin in pins[:index]:
            return _("pin {pin} is already used by {role}").format(pin=pin, role=taken.get(pin, _role_name(role)))
    return None


def _role_name(role: str) -> str:
    return _(ROLE_NAMES[role]) if role in ROLE_NAMES else f"gpio.{role}"


def _typed(answer: str):
    """An answer as TOML would type it: digits make an integer."""
    try:
        return int(answer)
    except ValueError:
        return answer


def _file_problem(answer: str) -> str | None:
    path = Path(answer).expanduser()
    if not path.is_file():
        return _("{path}: no such file").format(path=path)
    return None


def _at(items: list, index: int):
    try:
        return items[index]
    except IndexError:
        return None
