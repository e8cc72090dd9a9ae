"""The `loaxa` command line: one argparse front, one module per command group.

Each module named in COMMANDS exposes `register(subparsers)`, which adds its parser
and calls `set_defaults(func=handler)`; `handler(args) -> int` returns the exit code.
Only the module of the command being run is imported: the others appear in `loaxa
--help` by their line in COMMANDS, so `loaxa --help` or `loaxa media prepare` never
load paho, cryptography, SQLAlchemy or the scheduler (memory on a unit, start-up time).
This front turns every failure into SPEC's promise: one clear line, never a
traceback; exit 0 success, 1 failure, 2 usage, 130 on Ctrl-C.
"""

import argparse
import importlib
import logging
import os
import sys
from datetime import datetime
from types import ModuleType

from loaxa import __version__
from loaxa.errors import ConfigError, LoaxaError
from loaxa.i18n import translate_message, translate_problem

# name: (module, its line in `loaxa --help`, which must match the module's own `help=`;
# tests/test_cli.py checks that they agree).
COMMANDS = {
    "run": ("loaxa.commands.run", "run the unit daemon (the built-in demo when no config exists)"),
    "keys": ("loaxa.commands.keys", "operator signing keys"),
    "schedule": ("loaxa.commands.schedule", "check, sign, push and revoke schedules"),
    "config": ("loaxa.commands.config", "check or show a unit's configuration"),
    "media": ("loaxa.commands.media",
              "prepare a media file, or fetch the media the unit's schedules need"),
    "fleet": ("loaxa.commands.fleet",
              "collect unit reports; fleet status and coverage reports; simulate units"),
    "command": ("loaxa.commands.command", "send signed commands to units"),
    "status": ("loaxa.commands.status",
               "what the unit is doing now (from the running daemon, else its state folder)"),
    "provision": ("loaxa.commands.provision", "set up this unit: config, broker credentials, service"),
    "selftest": ("loaxa.commands.selftest",
                 "check every part of the unit (relays, amplifier, audio, GPS, modem, broker, clock, disk)"),
    "trust": ("loaxa.commands.trust", "roots and trust documents (who may sign what, where)"),
    "release": ("loaxa.commands.release", "build and publish software releases for the units"),
}
COMMAND_MODULES = [module for module, _ in COMMANDS.values()]

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
DEBUG_ENV = "LOAXA_DEBUG"
# Libraries that report every routine step at INFO; their chatter shows with -v only.
CHATTY_LOGGERS = ("apscheduler",)

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def load_command_modules(names) -> list[ModuleType]:
    """Import each command module; one not written yet is left out, a broken one is not."""
    loaded = []
    for name in names:
        try:
            loaded.append(importlib.import_module(name))
        except ModuleNotFoundError as exc:
            # Only the module itself missing means "command not there"; a missing
            # dependency inside it is a bug that must show.
            if exc.name != name:
                raise
    return loaded


def build_parser(modules=None, argv=()) -> argparse.ArgumentParser:
    """The parser for `argv`: with `modules` (tests), every command those modules register;
    without, every command of COMMANDS, only the one `argv` names with its own options."""
    parser = argparse.ArgumentParser(
        prog="loaxa",
        description="Controller for commune loudspeaker units (loa xã): the unit daemon "
                    "and the operators' tools.",
        epilog="Run 'loaxa COMMAND --help' for a command's options. Exit codes: 0 success, "
               f"1 failure, 2 usage error. {DEBUG_ENV}=1 shows the traceback of an internal error.")
    parser.add_argument("--version", action="version", version=f"loaxa {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages too")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    if modules is not None:
        for module in load_command_modules(modules):
            module.register(subparsers)
        return parser
    chosen = command_named(argv)
    for name, (module_name, summary) in COMMANDS.items():
        if name == chosen:
            for module in load_command_modules([module_name]):
                module.register(subparsers)
        else:
            subparsers.add_parser(name, help=summary, add_help=False)  # listed, never parsed
    return parser


def command_named(argv) -> str | None:
    """The command `argv` runs: its first word that is not an option (the front's own
    options take no value), or None for `loaxa --help`, `loaxa --version`."""
    return next((word for word in argv if not word.startswith("-")), None)


def setup_logging(verbose: bool = False, stream=None) -> None:
    """Plain lines on stdout (the journal on a unit); debug level with -v."""
    for out in (sys.stdout, sys.stderr):
        if hasattr(out, "reconfigure"):
            out.reconfigure(errors="backslashreplace")  # no log line is ever lost to its bytes
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format=LOG_FORMAT,
                        stream=stream or sys.stdout, force=True)
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET if verbose else logging.WARNING)


class ZonedFormatter(logging.Formatter):
    """Log times in a given timezone with its offset (`2026-12-01 06:00:00,123+0700`),
    whatever the system's zone: a unit's log then reads in the same times as its schedule,
    playlogs and `loaxa status`, even on an image left at UTC."""

    def __init__(self, fmt: str, zone):
        super().__init__(fmt)
        self.zone = zone

    def formatTime(self, record, datefmt=None) -> str:
        when = datetime.fromtimestamp(record.created, self.zone)
        return f"{when:%Y-%m-%d %H:%M:%S},{int(record.msecs):03d}{when:%z}"


def log_in_timezone(zone) -> None:
    """Switch the lines `setup_logging` set up to `zone` (a tzinfo): the unit's timezone."""
    for handler in logging.getLogger().handlers:
        handler.setFormatter(ZonedFormatter(LOG_FORMAT, zone))


def format_error(exc: LoaxaError) -> str:
    """`loaxa: error: <message>`; a config with several problems gets one line each.

    The message is in the technician's language where loaxa.i18n knows it.
    """
    if isinstance(exc, ConfigError) and exc.errors:
        errors = [translate_problem(error) for error in exc.errors]
        if len(errors) == 1:
            return f"loaxa: error: {exc.source}: {errors[0]}"
        return "\n".join([f"loaxa: error: {exc.source}:"] + [f"  {error}" for error in errors])
    return f"loaxa: error: {translate_message(str(exc)) or type(exc).__name__}"


def main(argv=None, *, modules=None) -> int:
    """Run one command; `modules` (a list of module names, tests) replaces COMMANDS."""
    try:
        return _run(sys.argv[1:] if argv is None else list(argv), modules)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader (`| head`) left; stop writing without a second error at exit.
        _silence_stdout()
        return EXIT_FAILURE
    except LoaxaError as exc:
        print(format_error(exc), file=sys.stderr)
        return EXIT_FAILURE
    except Exception as exc:
        if _debugging():
            raise
        message = " ".join(str(exc).split())
        print(f"loaxa: internal error: {type(exc).__name__}: {message} "
              f"(run with {DEBUG_ENV}=1 for the traceback)", file=sys.stderr)
        return EXIT_FAILURE


def _run(argv, modules) -> int:
    parser = build_parser(modules, argv)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help and --version (0), usage errors (2)
        return _exit_code(exc.code)
    # With --json, stdout carries the data; log lines there would break its readers.
    setup_logging(args.verbose, sys.stderr if getattr(args, "json", False) else sys.stdout)
    handler = getattr(args, "func", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    return _exit_code(handler(args))


def _exit_code(code) -> int:
    if code is None:
        return EXIT_OK
    return code if isinstance(code, int) else EXIT_FAILURE


def _debugging() -> bool:
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")


def _silence_stdout() -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
