"""The command line front: exit codes, one-line errors, logging, and `loaxa config`.

SPEC's promises (help, exit codes, no traceback) are checked through the real program
in a subprocess; the front's error handling is also driven in-process through this
module, which registers a few commands of its own (see `register` below).
"""

import argparse
import io
import json
import logging
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from loaxa import __version__
from loaxa.cli import COMMAND_MODULES, build_parser, format_error, main, setup_logging
from loaxa.cli import COMMANDS as PRODUCT_COMMANDS
from loaxa.errors import ConfigError, KeyFileError

ROOT = Path(__file__).resolve().parents[1]
THIS_MODULE = __name__  # "tests.test_cli": main(modules=[THIS_MODULE]) loads register() below
UNIT_ID = "dl-lak-bongkrang-01"
GOOD_TOML = f'[unit]\nid = "{UNIT_ID}"\n[broker]\nurl = "mqtt://127.0.0.1"\n[hardware]\nmode = "mock"\n'


def loaxa(*args, cwd, env=None) -> subprocess.CompletedProcess:
    """The real program, as a technician runs it."""
    environ = {k: v for k, v in os.environ.items() if k not in ("LOAXA_CONFIG", "LOAXA_DEBUG")}
    # PYTHONPATH: import this tree whatever the current folder and however it was installed.
    environ.update({"PYTHONPATH": str(ROOT), "XDG_STATE_HOME": str(cwd / "xdg")}, **(env or {}))
    return subprocess.run([sys.executable, "-m", "loaxa", *args], cwd=cwd, env=environ,
                          capture_output=True, text=True, timeout=60)


def python(code: str, *args, cwd, env=None) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != "LOAXA_DEBUG"}
    environ.update(env or {})
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, env=environ,
                          capture_output=True, text=True, timeout=60)


def assert_one_clear_line(result, exit_code=1):
    assert result.returncode == exit_code, result
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("loaxa: error: "), result.stderr


# ---------------------------------------------------------------- through the real program

def test_help_lists_the_commands(tmp_path):
    result = loaxa("--help", cwd=tmp_path)
    assert result.returncode == 0
    assert re.search(r"^\s+config\s+check or show a unit's configuration$", result.stdout, re.M)
    assert "usage: loaxa" in result.stdout


def test_version(tmp_path):
    result = loaxa("--version", cwd=tmp_path)
    assert (result.returncode, result.stdout.strip()) == (0, f"loaxa {__version__}")


def test_unknown_command_is_a_usage_error(tmp_path):
    result = loaxa("frobnicate", cwd=tmp_path)
    assert result.returncode == 2
    assert "invalid choice: 'frobnicate'" in result.stderr
    assert "Traceback" not in result.stderr


def test_no_command_prints_help_and_exits_2(tmp_path):
    result = loaxa(cwd=tmp_path)
    assert result.returncode == 2
    assert "usage: loaxa" in result.stderr and "config" in result.stderr


def test_config_without_action_prints_its_help(tmp_path):
    result = loaxa("config", cwd=tmp_path)
    assert result.returncode == 2
    assert "usage: loaxa config" in result.stderr and "check" in result.stderr


def test_config_check_good_file(tmp_path):
    (tmp_path / "config.toml").write_text(GOOD_TOML)
    result = loaxa("config", "check", "--config", "config.toml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "config OK: config.toml"
    assert lines[1].startswith("warning: trust.keys:")


def test_config_check_bad_file_lists_every_problem(tmp_path):
    (tmp_path / "config.toml").write_text(
        '[unit]\nid = "X"\n[amplifier]\nbaudrate = "fast"\n[brokr]\nurl = "mqtt://h"\n')
    result = loaxa("config", "check", "--config", "config.toml", cwd=tmp_path)
    assert_one_clear_line(result)
    assert result.stderr.splitlines() == [
        "loaxa: error: config.toml:",
        "  brokr (line 5): unknown table (did you mean 'broker'?)",
        "  unit.id (line 2): must be 3-64 characters of a-z, 0-9 and '-', not starting with '-' "
        "([a-z0-9][a-z0-9-]{2,63}), got 'X'",
        "  broker.url: required",
        "  amplifier.baudrate (line 4): expected an integer, got 'fast'",
    ]
    assert result.stdout == ""


def test_config_check_syntax_error_is_one_line(tmp_path):
    (tmp_path / "config.toml").write_text('[unit]\nid = "abc"\n\nbaudrate = = 3\n')
    result = loaxa("config", "check", "--config", "config.toml", cwd=tmp_path)
    assert_one_clear_line(result)
    assert len(result.stderr.splitlines()) == 1
    assert "config.toml: TOML syntax error:" in result.stderr and "line 4" in result.stderr


def test_config_check_missing_file(tmp_path):
    result = loaxa("config", "check", "--config", "nope.toml", cwd=tmp_path)
    assert_one_clear_line(result)
    assert "nope.toml: no such file" in result.stderr


def test_config_check_reads_loaxa_config(tmp_path):
    (tmp_path / "unit.toml").write_text(GOOD_TOML)
    result = loaxa("config", "check", cwd=tmp_path, env={"LOAXA_CONFIG": str(tmp_path / "unit.toml")})
    assert result.returncode == 0 and result.stdout.startswith(f"config OK: {tmp_path / 'unit.toml'}")
    result = loaxa("config", "check", cwd=tmp_path, env={"LOAXA_CONFIG": str(tmp_path / "gone.toml")})
    assert_one_clear_line(result)
    assert "$LOAXA_CONFIG" in result.stderr


def test_config_check_json(tmp_path):
    (tmp_path / "bad.toml").write_text('[unit]\nidd = "x"\n')
    result = loaxa("config", "check", "--config", "bad.toml", "--json", cwd=tmp_path)
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False and report["path"] == "bad.toml"
    assert "unit.idd (line 2): unknown key (did you mean 'id'?)" in report["errors"]


def test_config_show_json_and_toml_agree_and_hide_the_password(tmp_path):
    (tmp_path / "broker.pass").write_text("hunter2-do-not-show\n")
    (tmp_path / "config.toml").write_text(GOOD_TOML.replace(
        "[broker]", f'[broker]\npassword_file = "{tmp_path / "broker.pass"}"'))
    as_json = loaxa("config", "show", "--config", "config.toml", "--json", cwd=tmp_path)
    assert as_json.returncode == 0, as_json.stderr
    shown = json.loads(as_json.stdout)
    assert shown["unit"]["id"] == UNIT_ID
    assert shown["broker"]["password_file"] == str(tmp_path / "broker.pass")
    assert shown["unit"]["state_dir"] == str(tmp_path / "xdg" / "loaxa")
    as_toml = loaxa("config", "show", "--config", "config.toml", cwd=tmp_path)
    assert as_toml.returncode == 0
    assert tomllib.loads(as_toml.stdout) == shown
    assert "# port: not set" in as_toml.stdout
    for output in (as_json.stdout, as_toml.stdout):
        assert "hunter2" not in output


def test_subcommand_help_exits_0(tmp_path):
    result = loaxa("config", "show", "--help", cwd=tmp_path)
    assert result.returncode == 0 and "--json" in result.stdout


# ---------------------------------------------------------------- loading command modules

# What a command that does not need them must never load: each costs megabytes on a unit.
HEAVY_PACKAGES = ("paho", "cryptography", "sqlalchemy", "numpy", "apscheduler", "scheduler", "fleet",
                  "provisioning", "device")
LOADED_AFTER = ("import runpy, sys\nwatched = set(sys.argv.pop(1).split(','))\n"
                "try:\n    runpy.run_module('loaxa', run_name='__main__')\n"
                "except SystemExit:\n    pass\n"
                "print(sorted({m.split('.')[0] for m in sys.modules} & watched), "
                "file=sys.stderr)\n")


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["media", "prepare", "--help"],
                                  ["media", "--help"], ["-v", "status", "--help"], ["bogus"]])
def test_a_command_loads_only_what_it_needs(tmp_path, argv):
    result = python(LOADED_AFTER, ",".join(HEAVY_PACKAGES), *argv, cwd=tmp_path,
                    env={"PYTHONPATH": str(ROOT)})
    assert result.stderr.splitlines()[-1] == "[]", result.stderr


def test_media_prepare_runs_without_the_operator_packages(tmp_path):
    """The whole CLI path of `loaxa media prepare`: only audio (and numpy) come in."""
    from audio import builtin_wav
    src = builtin_wav("chime", tmp_path)
    result = python(LOADED_AFTER, ",".join(HEAVY_PACKAGES), "media", "prepare", str(src), "--out",
                    str(tmp_path / "out.wav"), cwd=tmp_path, env={"PYTHONPATH": str(ROOT)})
    assert result.stdout.startswith("prepared "), result
    assert result.stderr.splitlines()[-1] == "['numpy']", result.stderr


def test_the_preparing_child_loads_only_what_preparing_needs(tmp_path):
    """`python -m audio.preparation` (the unit's preparing child, beside the daemon and
    ffmpeg) loaded the player, the stream relay and the ALSA sink through `audio/__init__`."""
    code = "import json, sys, audio.preparation; print(json.dumps([m for m in sys.modules if m.startswith('audio.')]))"
    result = python(code, cwd=tmp_path, env={"PYTHONPATH": str(ROOT)})
    loaded = json.loads(result.stdout)
    assert not {"audio.player", "audio.stream", "audio.alsa", "audio.builtin"} & set(loaded), loaded
    assert "audio.preparation" in loaded


def test_the_help_line_of_each_command_is_the_modules_own():
    """`loaxa --help` lists commands from COMMANDS without importing them: the lines must agree."""
    parser = build_parser(COMMAND_MODULES)
    (subparsers,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    registered = {action.dest: action.help for action in subparsers._choices_actions}
    assert registered == {name: summary for name, (_, summary) in PRODUCT_COMMANDS.items()}


def test_each_command_parses_with_only_its_own_module():
    for name in PRODUCT_COMMANDS:
        assert build_parser(argv=[name, "--help"])._subparsers is not None
    args = build_parser(argv=["config", "show", "--json"]).parse_args(["config", "show", "--json"])
    assert args.func.__name__ == "show_config"


def test_the_product_registers_the_config_command():
    assert "loaxa.commands.config" in COMMAND_MODULES
    parser = build_parser(["loaxa.commands.config"])
    args = parser.parse_args(["config", "show", "--json", "--config", "x.toml"])
    assert (args.json, args.config, args.func.__name__) == (True, "x.toml", "show_config")


BROKEN_MODULE = "import no_such_dependency_xyz\n"
MAIN_WITH = "import sys; from loaxa.cli import main; sys.exit(main(sys.argv[1:], modules={!r}))"


def test_a_missing_command_module_is_skipped(tmp_path):
    (tmp_path / "fakecmds").mkdir()
    (tmp_path / "fakecmds" / "__init__.py").write_text("")
    code = MAIN_WITH.format(["fakecmds.not_written_yet", "loaxa.commands.config"])
    result = python(code, "--help", cwd=tmp_path, env={"PYTHONPATH": f"{tmp_path}:{ROOT}"})
    assert result.returncode == 0, result.stderr
    assert "config" in result.stdout


def test_a_broken_command_module_surfaces(tmp_path):
    (tmp_path / "fakecmds").mkdir()
    (tmp_path / "fakecmds" / "__init__.py").write_text("")
    (tmp_path / "fakecmds" / "broken.py").write_text(BROKEN_MODULE)
    code = MAIN_WITH.format(["fakecmds.broken"])
    env = {"PYTHONPATH": f"{tmp_path}:{ROOT}"}
    result = python(code, "--help", cwd=tmp_path, env=env)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "loaxa: internal error: ModuleNotFoundError: No module named 'no_such_dependency_xyz' "
        "(run with LOAXA_DEBUG=1 for the traceback)"]
    debug = python(code, "--help", cwd=tmp_path, env=env | {"LOAXA_DEBUG": "1"})
    assert debug.returncode == 1
    assert "Traceback" in debug.stderr and "no_such_dependency_xyz" in debug.stderr


# ---------------------------------------------------------------- the front's error handling, in-process
# The commands below exist only for these tests: main(modules=[THIS_MODULE]) registers them.

def register(subparsers) -> None:
    for name, handler in COMMANDS.items():
        parser = subparsers.add_parser(name, help=f"test command {name}")
        parser.add_argument("--json", action="store_true")
        parser.set_defaults(func=handler)


def _log_and_print(args):
    logging.getLogger("loaxa.test").info("a log line")
    logging.getLogger("loaxa.test").debug("a debug line")
    print(json.dumps({"ok": True}) if args.json else "plain output")
    return 0


def _raise(exc):
    def handler(args):
        raise exc
    return handler


COMMANDS = {
    "ok": _log_and_print,
    "returns-3": lambda args: 3,
    "returns-none": lambda args: None,
    "key-error": _raise(KeyFileError("operator.key: not an Ed25519 private key")),
    "config-errors": _raise(ConfigError(["unit.id: required", "broker.url: required"], "unit.toml")),
    "config-error": _raise(ConfigError(["unit.id: required"], "unit.toml")),
    "crash": _raise(RuntimeError("boom\nsecond line")),
    "interrupt": _raise(KeyboardInterrupt()),
}


@pytest.fixture
def run_main(capsys, monkeypatch):
    """main() in-process, with the root logger put back afterwards (setup_logging replaces it)."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    monkeypatch.delenv("LOAXA_DEBUG", raising=False)

    def run(*argv):
        code = main(list(argv), modules=[THIS_MODULE])
        out, err = capsys.readouterr()
        return code, out, err

    yield run
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])


def test_exit_codes_from_handlers(run_main):
    assert run_main("returns-3")[0] == 3
    assert run_main("returns-none")[0] == 0
    assert run_main("interrupt") == (130, "", "")


def test_loaxa_error_is_one_line(run_main):
    code, out, err = run_main("key-error")
    assert (code, out) == (1, "")
    assert err == "loaxa: error: operator.key: not an Ed25519 private key\n"


def test_config_errors_one_per_line(run_main):
    assert run_main("config-errors")[2] == (
        "loaxa: error: unit.toml:\n  unit.id: required\n  broker.url: required\n")
    assert run_main("config-error")[2] == "loaxa: error: unit.toml: unit.id: required\n"


def test_unexpected_exception_is_one_line_unless_debugging(run_main, monkeypatch):
    code, out, err = run_main("crash")
    assert code == 1
    assert err == ("loaxa: internal error: RuntimeError: boom second line "
                   "(run with LOAXA_DEBUG=1 for the traceback)\n")
    monkeypatch.setenv("LOAXA_DEBUG", "0")  # "0" means off
    assert run_main("crash")[0] == 1
    monkeypatch.setenv("LOAXA_DEBUG", "1")
    with pytest.raises(RuntimeError, match="boom"):
        main(["crash"], modules=[THIS_MODULE])


def test_usage_errors_return_2(run_main):
    code, _, err = run_main("ok", "--bogus")
    assert code == 2 and "unrecognized arguments: --bogus" in err
    assert run_main("--help")[0] == 0


def test_logs_go_to_stdout_and_leave_json_alone(run_main):
    code, out, _ = run_main("ok")
    assert code == 0
    assert re.search(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO loaxa.test: a log line$", out, re.M)
    assert "a debug line" not in out and out.endswith("plain output\n")
    code, out, err = run_main("ok", "--json")
    assert json.loads(out) == {"ok": True}
    assert "INFO loaxa.test: a log line" in err


def test_verbose_shows_debug(run_main):
    code, out, _ = run_main("-v", "ok")
    assert "DEBUG loaxa.test: a debug line" in out


def test_setup_logging_quiets_chatty_libraries():
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    stream = io.StringIO()
    try:
        setup_logging(False, stream)
        logging.getLogger("apscheduler.scheduler").info("Added job")
        logging.getLogger("loaxa.x").info("kept")
        setup_logging(True, stream)
        logging.getLogger("apscheduler.scheduler").debug("Looking for jobs")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        logging.getLogger("apscheduler").setLevel(logging.NOTSET)
    text = stream.getvalue()
    assert "kept" in text and "Added job" not in text and "Looking for jobs" in text


def test_format_error_names_the_type_when_the_message_is_empty():
    assert format_error(KeyFileError()) == "loaxa: error: KeyFileError"
    assert isinstance(build_parser([]), argparse.ArgumentParser)


# ---------------------------------------------------------------- the daemon's log times (issue 11, item 13)

def test_the_daemon_logs_in_the_units_timezone_on_a_system_at_utc(tmp_path):
    """The unit's schedule, playlogs and status read in its zone; its log did in the system's (UTC)."""
    from datetime import datetime, timedelta
    from zoneinfo import ZoneInfo

    from tests.support.unit import UnitProcess, write_unit_config
    config = write_unit_config(tmp_path / "unit", unit_id="log-tz-01", groups=["dak-lak"],
                               broker_url="mqtt://127.0.0.1:9", trust={})
    env = {k: v for k, v in os.environ.items() if k not in ("LOAXA_DEBUG", "LOAXA_CONFIG")}
    unit = UnitProcess(config, env=env | {"TZ": "UTC"})
    try:
        unit.wait_console("unit log-tz-01 starting")
    finally:
        unit.stop()
    line = next(line for line in unit.console().splitlines() if "unit log-tz-01 starting" in line)
    stamp = re.match(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),\d{3}(\+0700) INFO ", line)
    assert stamp, line
    logged = datetime.strptime(stamp[1] + stamp[2], "%Y-%m-%d %H:%M:%S%z")
    now = datetime.now(ZoneInfo("Asia/Ho_Chi_Minh"))
    assert abs(now - logged) < timedelta(minutes=2)


def test_the_readme_says_how_to_reach_loaxa_and_choose_its_language():
    """A newcomer after `make run` found no `loaxa` on PATH and no word of LOAXA_LANG."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    venv = re.search(r"^VENV \?= (\S+)$", (ROOT / "Makefile").read_text(), re.M)[1]
    assert f". {venv}/bin/activate" in readme and f"{venv}/bin/loaxa" in readme
    for variable in ("LOAXA_LANG", "LC_ALL", "LC_MESSAGES", "LANG"):  # what loaxa.i18n reads
        assert f"`{variable}" in readme or f"/{variable}`" in readme or f"{variable}=" in readme, variable
