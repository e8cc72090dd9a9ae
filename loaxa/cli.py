"""The `loaxa` command line: one argparse front, one module per command group.

Each module named in COMMAND_MODULES exposes `register(subparsers)`, which adds its
parsers and calls `set_defaults(func=handler)`; `handler(args) -> int` returns the exit
code. This front turns every failure into SPEC's promise: one clear line, never a
traceback; exit 0 success, 1 failure, 2 usage, 130 on Ctrl-C.
"""

import argparse
import importlib
import logging
import os
import sys
from types import ModuleType

from loaxa import __version__
from loaxa.errors import ConfigError, LoaxaError
from loaxa.i18n import translate_message, translate_problem

COMMAND_MODULES = [
    "loaxa.commands.run",
    "loaxa.commands.keys",
    "loaxa.commands.schedule",
    "loaxa.commands.config",
    "loaxa.commands.media",
    "loaxa.commands.fleet",
    "loaxa.commands.command",
    "loaxa.commands.status",
    "loaxa.commands.provision",
    "loaxa.commands.selftest",
    "loaxa.commands.trust",
]

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


def build_parser(modules=COMMAND_MODULES) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="loaxa",
        description="Controller for commune loudspeaker units (loa xã): the unit daemon "
                    "and the operators' tools.",
        epilog="Run 'loaxa COMMAND --help' for a command's options. Exit codes: 0 success, "
               f"1 failure, 2 usage error. {DEBUG_ENV}=1 shows the traceback of an internal error.")
    parser.add_argument("--version", action="version", version=f"loaxa {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages too")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    for module in load_command_modules(modules):
        module.register(subparsers)
    return parser


def setup_logging(verbose: bool = False, stream=None) -> None:
    """Plain lines on stdout (the journal on a unit); debug level with -v."""
    for out in (sys.stdout, sys.stderr):
        if hasattr(out, "reconfigure"):
            out.reconfigure(errors="backslashreplace")  # no log line is ever lost to its bytes
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format=LOG_FORMAT,
                        stream=stream or sys.stdout, force=True)
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET if verbose else logging.WARNING)


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
    """Run one command; `modules` replaces COMMAND_MODULES (tests)."""
    try:
        return _run(argv, COMMAND_MODULES if modules is None else modules)
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
    parser = build_parser(modules)
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
