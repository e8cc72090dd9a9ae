"""`loaxa provision`: set up a unit, interactively or from flags, and install its service.

    loaxa provision [--lang vi|en]                       questions for the technician
    loaxa provision --non-interactive --unit-id ID --group G [--group G2 ...] --broker URL
                    --trust-key NAME=PUB --mode mock|pi --out DIR [--password-file F]
    loaxa provision --install-service [--config PATH] [--root DIR] [--no-start]

Both forms write the same files (provisioning/writer.py), then run the self-test
(device/selftest.py, when installed) and print the next steps. Everything printed is
in the technician's language (loaxa.i18n); `--json` prints what was written as data.
"""

import json
import logging
import sys
from pathlib import Path

from loaxa.i18n import N_, _, set_language, translate_problem
from provisioning.config import SYSTEM_CONFIG, detect_hardware_mode, load_config
from provisioning.writer import UnitPlan, check_plan, default_out_dir, write_unit

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
REQUIRED_FLAGS = (("unit_id", "--unit-id"), ("groups", "--group"), ("broker", "--broker"),
                  ("trust_keys", "--trust-key"), ("mode", "--mode"), ("out", "--out"))
# Which flag gave which config key, so a bad value names the flag the technician typed.
FLAG_OF_KEY = {"unit.id": "--unit-id", "unit.groups": "--group", "broker.url": "--broker",
               "trust.keys": "--trust-key", "trust.root": "--trust-root", "trust.root_threshold": "--root-threshold",
               "hardware.mode": "--mode", "unit.timezone": "--timezone",
               "broker.topic_prefix": "--topic-prefix", "broker.username": "--username",
               "broker.ca_file": "--ca-file", "broker.password_file": "--password-file",
               "amplifier.port": "--amp-port", "gps.port": "--gps-port", "modem.port": "--modem-port"}

PROBE_TEXT = {"ok": N_("connected, login accepted"),
              "refused": N_("reachable, login refused (normal until the broker admin adds this unit)"),
              "unreachable": N_("not reachable")}
CHECK_LABELS = {"gpio": N_("GPIO relays"), "amplifier": N_("amplifier"), "audio": N_("audio output"),
                "gps": N_("GPS"), "modem": N_("modem"), "broker": N_("broker"), "clock": N_("clock"),
                "disk": N_("disk"), "selftest": N_("self-test")}


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "provision", help="set up this unit: config, broker credentials, service",
        description="Set up a loudspeaker unit. Without --non-interactive it asks the technician "
                    "(in Vietnamese, or English with --lang en) and checks each answer at once. "
                    "It writes OUT/config.toml, OUT/broker.pass (0600), and for the broker's admin "
                    "OUT/mosquitto.passwd and OUT/mosquitto.acl, then runs the self-test. "
                    "--install-service installs and enables the systemd service.")
    parser.add_argument("--lang", choices=("vi", "en"),
                        help="language of the questions and messages (default: the locale's, else vi)")
    parser.add_argument("--non-interactive", action="store_true",
                        help="take everything from the flags below; ask nothing")
    unit = parser.add_argument_group("the unit")
    unit.add_argument("--unit-id", metavar="ID", help="unit id, [a-z0-9][a-z0-9-]{2,63}")
    unit.add_argument("--group", dest="groups", action="append", metavar="PATH",
                      help="group path province/district/commune; repeat for more groups")
    unit.add_argument("--broker", metavar="URL", help="mqtt://host[:port] or mqtts://host[:port]")
    unit.add_argument("--trust-key", dest="trust_keys", action="append", metavar="NAME=PUB",
                      help="a trusted operator key: NAME=base64 public key, or the path of NAME.pub; "
                           "repeat for more")
    unit.add_argument("--trust-root", dest="trust_roots", action="append", metavar="NAME=PUB",
                      help="a root key of the province (signs trust documents only): NAME=base64 public "
                           "key, or the path of NAME.pub; repeat for each root")
    unit.add_argument("--root-threshold", type=int, default=1, metavar="K",
                      help="how many distinct root keys must sign a trust document (default 1)")
    unit.add_argument("--mode", choices=("mock", "pi"), help="hardware mode (default: pi on a Raspberry Pi)")
    unit.add_argument("--out", metavar="DIR", help="folder for the files written (interactive default: "
                                                   "/etc/loaxa in pi mode)")
    unit.add_argument("--password-file", metavar="FILE",
                      help="a file holding the broker password (default: generate one into OUT/broker.pass)")
    more = parser.add_argument_group("more settings (defaults as the config schema)")
    more.add_argument("--new-password", action="store_true",
                      help="generate a new password even if OUT/broker.pass holds one (default: keep it)")
    more.add_argument("--username", help="broker username (default: the unit id)")
    more.add_argument("--ca-file", metavar="FILE", help="CA certificate of an mqtts:// broker")
    more.add_argument("--topic-prefix", default="loaxa", help="MQTT topic prefix (default: loaxa)")
    more.add_argument("--timezone", default="Asia/Ho_Chi_Minh", help="IANA time zone")
    more.add_argument("--state-dir", metavar="DIR",
                      help="state folder (default: /var/lib/loaxa in pi mode, OUT/state in mock mode)")
    more.add_argument("--amp-port", metavar="PORT", help="amplifier serial port (default: relays only)")
    more.add_argument("--gps-port", metavar="PORT", help="GPS serial port (default: none)")
    more.add_argument("--modem-port", metavar="PORT", help="modem serial port (default: none)")
    more.add_argument("--check-broker", action="store_true",
                      help="connect to the broker once with the unit's login and report")
    more.add_argument("--no-selftest", action="store_true", help="do not run the self-test at the end")
    more.add_argument("--json", action="store_true", help="print what was written as JSON")
    service = parser.add_argument_group("the service")
    service.add_argument("--install-service", action="store_true",
                         help="install and enable the systemd service for the config given by --config")
    service.add_argument("--config", metavar="PATH", help=f"the unit's config (default: {SYSTEM_CONFIG})")
    service.add_argument("--root", metavar="DIR", default="/",
                         help="install into this folder instead of the running system (image building, tests)")
    service.add_argument("--no-start", action="store_true", help="enable the service but do not start it now")
    parser.set_defaults(func=provision)


def provision(args) -> int:
    set_language(args.lang)
    if not getattr(args, "verbose", False):
        # The self-test's hardware logs every step; the technician reads the summary.
        logging.getLogger().setLevel(logging.WARNING)
    if args.install_service:
        return install(args)
    plan = plan_from_flags(args) if args.non_interactive else ask(args)
    if isinstance(plan, int):  # a usage error, already reported
        return plan
    return write_and_report(plan, args)


# ---------------------------------------------------------------- from flags

def plan_from_flags(args) -> UnitPlan | int:
    missing = [flag for name, flag in REQUIRED_FLAGS if not getattr(args, name)]
    if missing:
        return usage(_("--non-interactive needs {flags}").format(flags=", ".join(missing)))
    keys, problems = trust_keys(args.trust_keys)
    roots, root_problems = trust_keys(args.trust_roots, "--trust-root")
    problems += root_problems
    plan = base_plan(args, args.mode)
    plan.trust_keys, plan.trust_roots, plan.root_threshold = keys, roots, args.root_threshold
    problems += [_flagged(problem) for problem in check_plan(plan)]
    problems += port_problems(plan)
    if problems:
        return usage(*problems)
    return plan


def base_plan(args, mode: str) -> UnitPlan:
    return UnitPlan(
        unit_id=args.unit_id or "", groups=list(args.groups or []), broker_url=args.broker or "",
        mode=mode, out_dir=Path(args.out or default_out_dir(mode)).expanduser().absolute(),
        username=args.username, new_password=args.new_password, password_file=_absolute(args.password_file),
        ca_file=_absolute(args.ca_file), topic_prefix=args.topic_prefix, timezone=args.timezone,
        state_dir=_absolute(args.state_dir), amplifier_port=args.amp_port, gps_port=args.gps_port,
        modem_port=args.modem_port)


def _absolute(path: str | None) -> Path | None:
    return Path(path).expanduser().absolute() if path else None


def trust_keys(texts, flag: str = "--trust-key") -> tuple[dict[str, str], list[str]]:
    """The --trust-key (or --trust-root) values as {name: key}, and a problem line for each bad one."""
    from provisioning.wizard import parse_trust_key

    keys, problems = {}, []
    for text in texts or ():
        try:
            name, key = parse_trust_key(text)
            keys[name] = key
        except ValueError as exc:
            problems.append(f"{flag}: {exc}")
    return keys, problems


def _flagged(problem: str) -> str:
    """`unit.id: ...` -> `--unit-id (unit.id): ...`, in the technician's language."""
    key, sep, message = translate_problem(problem).partition(": ")
    flag = FLAG_OF_KEY.get(".".join(key.split("[", 1)[0].split(".")[:2]))
    return f"{flag} ({key}): {message}" if flag and sep else f"{key}{sep}{message}"


def port_problems(plan: UnitPlan) -> list[str]:
    from provisioning.wizard import port_problem
    ports = (("--amp-port", plan.amplifier_port), ("--gps-port", plan.gps_port), ("--modem-port", plan.modem_port))
    return [f"{flag}: {problem}" for flag, port in ports
            if (problem := port_problem(port or "", plan.mode))]


def usage(*problems: str) -> int:
    for problem in problems:
        print(f"loaxa: error: {problem}", file=sys.stderr)
    return EXIT_USAGE


# ---------------------------------------------------------------- interactive

def ask(args) -> UnitPlan | int:
    """The questions, with any flags given as the first answers."""
    from provisioning.wizard import Console, Wizard

    keys, problems = trust_keys(args.trust_keys)
    roots, root_problems = trust_keys(args.trust_roots, "--trust-root")
    if problems or root_problems:
        return usage(*problems, *root_problems)
    plan = base_plan(args, args.mode or detect_hardware_mode())
    plan.trust_keys, plan.trust_roots, plan.root_threshold = keys, roots, args.root_threshold
    return Wizard(Console(), plan, out_given=bool(args.out)).run()


# ---------------------------------------------------------------- writing and after

def write_and_report(plan: UnitPlan, args) -> int:
    written = write_unit(plan)
    probe = _probe(plan, written) if args.check_broker else None
    result = None if args.no_selftest else run_selftest(written.config)
    if args.json:
        print(json.dumps(_as_data(written, probe, result), indent=2, ensure_ascii=False))
    else:
        report(plan, written, probe, result)
    return EXIT_OK


def _probe(plan: UnitPlan, written):
    from provisioning.brokercheck import probe_broker

    password = written.password_file.read_text(encoding="utf-8").rstrip("\r\n")
    return probe_broker(plan.broker_url, plan.effective_username, password, plan.ca_file)


def run_selftest(config_path: Path):
    """The self-test's result dict, or None when device/selftest.py is not installed."""
    try:
        from device.selftest import run_selftest as selftest
    except ModuleNotFoundError as exc:
        if exc.name not in ("device", "device.selftest"):
            raise  # the self-test is there but broken: that must show
        return None
    cfg = load_config(config_path)
    try:
        return selftest(cfg, None, broker_check=True)
    except Exception as exc:  # noqa: BLE001 - provisioning is done; a broken self-test is reported
        return {"ok": False, "checks": [{"name": "selftest", "ok": False, "required": True,
                                         "detail": f"{type(exc).__name__}: {exc}"}]}


def _as_data(written, probe, result) -> dict:
    return {"config": str(written.config), "password_file": str(written.password_file),
            "password": written.password_origin, "mosquitto_passwd": str(written.passwd),
            "mosquitto_acl": str(written.acl), "state_dir": str(written.state_dir),
            "broker": None if probe is None else {"status": probe.status, "detail": probe.detail},
            "selftest": result}


def report(plan: UnitPlan, written, probe, result) -> None:
    say = print
    say()
    say(_("Unit {unit} is provisioned. Files written:").format(unit=plan.unit_id))
    origin = {"generated": _("a new generated password"), "given": _("the password typed"),
              "file": _("the password file given"), "kept": _("the password kept from before")}
    for path, what in ((written.config, _("the unit's config")),
                       (written.password_file, origin[written.password_origin]),
                       (written.passwd, _("for the broker admin: the line for mosquitto's password_file")),
                       (written.acl, _("for the broker admin: the lines for mosquitto's acl_file")),
                       (written.state_dir, _("the state folder"))):
        say(f"  {path}  ({what})")
    if probe is not None:
        say(_("Broker check: {status} ({detail})").format(status=_(PROBE_TEXT[probe.status]),
                                                          detail=probe.detail))
    report_selftest(result)
    say()
    say(_("Next steps:"))
    for number, step in enumerate(next_steps(plan, written), 1):
        say(f"  {number}. {step}")


def report_selftest(result) -> None:
    print()
    if result is None:
        print(_("Self-test unavailable in this installation; run 'loaxa selftest' once it is."))
        return
    print(_("Self-test: all required checks passed.") if result.get("ok")
          else _("Self-test: some required checks FAILED (see below)."))
    for check in result.get("checks", []):
        mark = _("OK") if check.get("ok") else (_("FAILED") if check.get("required") else _("warning"))
        name = check.get("name", "?")
        print(f"  [{mark}] {_(CHECK_LABELS[name]) if name in CHECK_LABELS else name}: {check.get('detail', '')}")


def next_steps(plan: UnitPlan, written) -> list[str]:
    config = written.config
    steps = [_("Send {passwd} and {acl} to the broker admin: they append them to mosquitto's "
               "password_file and acl_file and reload mosquitto.").format(passwd=written.passwd, acl=written.acl)]
    if plan.mode == "pi":
        steps.append(_("Install the service so the unit starts at boot: sudo loaxa provision "
                       "--install-service --config {config}").format(config=config))
    else:
        steps.append(_("Start the unit: loaxa run --config {config}").format(config=config))
    steps.append(_("Check every part: loaxa selftest --config {config}").format(config=config))
    steps.append(_("See what the unit is doing: loaxa status --config {config}").format(config=config))
    return steps


# ---------------------------------------------------------------- the service

def install(args) -> int:
    from provisioning.service import install_service

    config = Path(args.config) if args.config else SYSTEM_CONFIG
    steps = install_service(config, args.root, start=not args.no_start)
    for step in steps:
        print(("  " if step.done else "  ! ") + step.text)
    root = Path(args.root).absolute()
    if root == Path("/"):
        print(_("The loaxa service is installed and enabled. Its log: journalctl -u loaxa -f"))
    else:
        print(_("The loaxa service is installed and enabled under {root}.").format(root=root))
    return EXIT_OK
