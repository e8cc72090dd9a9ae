"""`loaxa selftest`: check every part of the unit, as a table for the technician or as JSON.

The config is found as `loaxa run` finds it (with none, the built-in demo's). When the
daemon runs, it owns the GPIO lines and serial ports, so it is asked over its control
socket (`{"op": "selftest"}`); otherwise the parts are opened here (device/selftest.py).
Exit 0 only when every required check passed.
"""

import json
import logging
import os
import sys
import unicodedata

from loaxa.errors import LoaxaError
from loaxa.i18n import N_, _

DAEMON_TIMEOUT_S = 120.0  # warm-up, a 3 s tone, a GPS fix and a broker timeout, with room
LABELS = {"gpio": N_("GPIO relays"), "amplifier": N_("Amplifier"), "audio": N_("Audio output"),
          "gps": N_("GPS"), "modem": N_("Modem"), "broker": N_("Broker"), "clock": N_("Clock"),
          "disk": N_("Disk")}


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "selftest", help="check every part of the unit (relays, amplifier, audio, GPS, modem, "
                         "broker, clock, disk)",
        description="Check every part of the unit: relay click, amplifier handshake, a test tone "
                    "through the audio output (it sounds on the loudspeakers), GPS fix, modem "
                    "signal, broker, clock, disk. Asks the running daemon when there is one. "
                    "Exit 0 only when every required check passed.")
    parser.add_argument("--config", metavar="PATH", help="the unit's config.toml")
    parser.add_argument("--json", action="store_true",
                        help='print {"ok": bool, "checks": [{"name", "ok", "required", "detail"}]}')
    parser.set_defaults(func=selftest)


def selftest(args) -> int:
    cfg, _demo = _unit_config(args.config)
    if not args.json:
        mock = (os.environ.get("LOAXA_HARDWARE") or cfg.hardware.mode) == "mock"
        print(_("Self-test of unit {unit} ({hardware}); the test tone sounds on the loudspeakers...")
              .format(unit=cfg.unit.id, hardware=_("mock hardware") if mock else _("Raspberry Pi")),
              flush=True)
    root = logging.getLogger()
    level = root.level
    if not getattr(args, "verbose", False):
        root.setLevel(logging.WARNING)  # the table says it all; warnings still show
    try:
        result = _from_daemon(cfg)
        if result is None:
            from device.selftest import run_selftest

            result = run_selftest(cfg)
    finally:
        root.setLevel(level)
    if args.json:
        print(json.dumps(result, ensure_ascii=False, indent=2))
    else:
        sys.stdout.write(table(result))
    return 0 if result.get("ok") else 1


def _unit_config(explicit):
    from provisioning import find_config, load_config

    path = find_config(explicit)
    if path is not None:
        return load_config(path), False
    from device.demo import build_demo_config

    return build_demo_config(), True


def _from_daemon(cfg) -> dict | None:
    """The running daemon's self-test, or None when no daemon answers."""
    try:
        from device.control import control_request
    except ImportError:
        return None
    answer = control_request(cfg.unit.state_dir, "selftest", timeout=DAEMON_TIMEOUT_S)
    if answer is None:
        return None
    if "checks" not in answer:
        raise LoaxaError(_("the running daemon could not run the self-test: {error}").format(
            error=answer.get("error", answer)))
    return answer


def table(result: dict) -> str:
    """The checks as an aligned table, then one line: passed, or how many failed."""
    head = (_("Check"), _("Result"), _("Required"), _("Detail"))
    rows = [(_(LABELS.get(c["name"], c["name"])),
             _("OK") if c["ok"] else (_("FAILED") if c["required"] else _("warning")),
             _("yes") if c["required"] else _("no"), c.get("detail", ""))
            for c in result["checks"]]
    widths = [max(_width(row[i]) for row in [head, *rows]) for i in range(3)]
    lines = ["  ".join(_pad(cell, widths[i]) for i, cell in enumerate(row[:3])) + "  " + row[3]
             for row in [head, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths) + "  " + "-" * max(_width(head[3]), 6))
    failed = sum(1 for c in result["checks"] if c["required"] and not c["ok"])
    lines.append("")
    lines.append(_("All required checks passed.") if result.get("ok") else
                 _("{n} required check(s) FAILED.").format(n=failed))
    return "\n".join(lines) + "\n"


def _width(text: str) -> int:
    """Columns `text` takes in a terminal: combining marks (Vietnamese tones) take none."""
    text = unicodedata.normalize("NFC", str(text))
    return sum(0 if unicodedata.combining(ch) else 2 if unicodedata.east_asian_width(ch) in "WF" else 1
               for ch in text)


def _pad(text: str, width: int) -> str:
    return str(text) + " " * (width - _width(text))
