"""The launcher with real processes in temporary prefixes: a new version is confirmed only
when it reports itself online; one that crashes on import, crashes at start, or stays
silent past health_s is abandoned for the previous one, recorded, and never retried;
a power cut (kill -9 of the launcher and its child) during a first start still counts."""

import json
import os
import signal
import subprocess

import pytest

from tests.support.updates import (current_of, fake_version, launcher_process, log_lines, point_current,
                                   power_cut, stop, wait_for)
from updater.install import install_launcher
from updater.launcher import read_state


@pytest.fixture
def prefix(tmp_path):
    root = tmp_path / "prefix"
    root.mkdir()
    install_launcher(root)
    return root


@pytest.fixture
def log(tmp_path):
    return tmp_path / "runs.log"


def start(prefix, log, *args):
    return launcher_process(prefix, *args, env={"FAKE_LOG": str(log)})


def test_the_first_version_is_confirmed_and_runs(prefix, log):
    fake_version(prefix, "1.0.0", "silent")  # nothing to go back to: no health gate
    point_current(prefix, "1.0.0")
    proc = start(prefix, log)
    wait_for(lambda: "1.0.0 start" in log_lines(log), what="1.0.0 to start")
    assert stop(proc) == 0
    assert read_state(prefix)["confirmed"] == "1.0.0"
    assert log_lines(log)[-1] == "1.0.0 stopped"  # SIGTERM reached the child


def prepared(prefix, log, new_behaviour, health_s=5):
    fake_version(prefix, "1.0.0", "healthy")
    point_current(prefix, "1.0.0")
    proc = start(prefix, log)
    wait_for(lambda: read_state(prefix).get("confirmed") == "1.0.0", what="1.0.0 confirmed")
    wait_for(lambda: "1.0.0 online" in log_lines(log), what="1.0.0 online")
    fake_version(prefix, "2.0.0", new_behaviour, health_s=health_s)
    point_current(prefix, "2.0.0")  # what the installer's switch does
    return proc


@pytest.mark.parametrize("behaviour, reason", [
    ("crash-import", "exited with code 1 before coming online: ModuleNotFoundError: No module named 'paho'"),
    ("crash-start", "exited with code 3 before coming online: loaxa: error: cannot start"),
    ("silent", "did not come online and pass its start checks within 1 s"),
])
def test_a_new_version_that_does_not_prove_itself_is_rolled_back(prefix, log, behaviour, reason):
    proc = prepared(prefix, log, behaviour, health_s=1)
    try:
        # the running 1.0.0 exits (as the daemon does after a switch); the launcher tries 2.0.0
        wait_for(lambda: "1.0.0 online" in log_lines(log), what="1.0.0 online")
        script = str(prefix / "versions" / "1.0.0" / "fake_main.py")
        pids = subprocess.run(["pgrep", "-f", script], capture_output=True, text=True).stdout.split()
        assert len(pids) == 1
        os.kill(int(pids[0]), signal.SIGTERM)
        wait_for(lambda: read_state(prefix).get("bad"), what="2.0.0 abandoned")
        wait_for(lambda: log_lines(log).count("1.0.0 online") == 2, what="1.0.0 running again")
    finally:
        stop(proc)
    state = read_state(prefix)
    assert state["bad"] == {"2.0.0": reason}
    assert state["confirmed"] == "1.0.0" and current_of(prefix) == "1.0.0"
    (record,) = state["rollbacks"]
    assert (record["version"], record["to"], record["reason"]) == ("2.0.0", "1.0.0", reason)
    assert log_lines(log).count("2.0.0 start") == 1


def test_an_abandoned_version_is_never_retried(prefix, log):
    fake_version(prefix, "1.0.0", "healthy")
    fake_version(prefix, "2.0.0", "healthy")
    point_current(prefix, "2.0.0")
    (prefix / "launcher-state.json").write_text(json.dumps(
        {"confirmed": "1.0.0", "bad": {"2.0.0": "crashed on import"}}))
    proc = start(prefix, log)
    try:
        wait_for(lambda: "1.0.0 online" in log_lines(log), what="1.0.0 started instead")
    finally:
        stop(proc)
    assert "2.0.0 start" not in log_lines(log) and current_of(prefix) == "1.0.0"


def test_a_healthy_new_version_is_confirmed(prefix, log):
    fake_version(prefix, "1.0.0", "healthy")
    fake_version(prefix, "2.0.0", "healthy")
    point_current(prefix, "2.0.0")
    (prefix / "launcher-state.json").write_text(json.dumps({"confirmed": "1.0.0"}))
    proc = start(prefix, log)
    try:
        wait_for(lambda: read_state(prefix).get("confirmed") == "2.0.0", what="2.0.0 confirmed")
    finally:
        stop(proc)
    state = read_state(prefix)
    assert state["previous"] == "1.0.0" and "trial" not in state and not state.get("bad")
    assert not list((prefix / "run").iterdir())  # the health file is consumed


def test_power_cuts_during_first_starts_count_and_end_in_the_previous_version(prefix, log):
    fake_version(prefix, "1.0.0", "healthy")
    fake_version(prefix, "2.0.0", "silent", health_s=60)
    point_current(prefix, "2.0.0")
    (prefix / "launcher-state.json").write_text(json.dumps({"confirmed": "1.0.0"}))
    for attempt in (1, 2):
        proc = start(prefix, log)
        wait_for(lambda: log_lines(log).count("2.0.0 start") == attempt, what=f"attempt {attempt}")
        power_cut(proc)
        assert read_state(prefix)["trial"] == {**read_state(prefix)["trial"], "version": "2.0.0",
                                               "attempts": attempt}
    proc = start(prefix, log)
    try:
        wait_for(lambda: "1.0.0 online" in log_lines(log), what="1.0.0 after two cut attempts")
    finally:
        stop(proc)
    assert "2 boot attempts" in read_state(prefix)["bad"]["2.0.0"]
    assert log_lines(log).count("2.0.0 start") == 2 and current_of(prefix) == "1.0.0"


def test_once_mode_exits_after_a_rollback_and_the_next_start_runs_the_previous(prefix, log):
    """On a Pi: the launcher exits and systemd's Restart= starts it again."""
    fake_version(prefix, "1.0.0", "healthy")
    fake_version(prefix, "2.0.0", "crash-import")
    point_current(prefix, "2.0.0")
    (prefix / "launcher-state.json").write_text(json.dumps({"confirmed": "1.0.0"}))
    proc = start(prefix, log, "--once")
    assert proc.wait(15) == 1
    assert current_of(prefix) == "1.0.0"
    proc = start(prefix, log, "--once")
    try:
        wait_for(lambda: "1.0.0 online" in log_lines(log), what="1.0.0 after the restart")
    finally:
        assert stop(proc) == 0


def test_a_kill_between_verdict_and_switch_is_repaired_at_the_next_start(prefix, log):
    """The rollback saved its verdict, and power went before `current` moved back."""
    fake_version(prefix, "1.0.0", "healthy")
    fake_version(prefix, "2.0.0", "crash-import")
    point_current(prefix, "2.0.0")
    (prefix / "launcher-state.json").write_text(json.dumps({"confirmed": "1.0.0", "bad": {"2.0.0": "x"}}))
    proc = start(prefix, log, "--once")
    try:
        wait_for(lambda: "1.0.0 online" in log_lines(log), what="1.0.0")
    finally:
        stop(proc)
    assert current_of(prefix) == "1.0.0" and "2.0.0 start" not in log_lines(log)


def test_an_incomplete_install_is_never_run(prefix, log):
    fake_version(prefix, "1.0.0", "healthy")
    fake_version(prefix, "2.0.0", "healthy")
    (prefix / "versions" / "2.0.0" / ".loaxa-install.json").unlink()  # killed before its marker
    point_current(prefix, "2.0.0")
    (prefix / "launcher-state.json").write_text(json.dumps({"confirmed": "1.0.0"}))
    proc = start(prefix, log)
    try:
        wait_for(lambda: "1.0.0 online" in log_lines(log), what="1.0.0")
    finally:
        stop(proc)
    assert "2.0.0 start" not in log_lines(log) and current_of(prefix) == "1.0.0"


def test_a_boot_attempt_that_cannot_be_counted_is_not_made(prefix, log, monkeypatch):
    """A full or read-only disk: an uncounted trial could crash-loop for ever, so the
    confirmed version runs instead (the write seam raises as the kernel would)."""
    import errno
    from updater import launcher
    fake_version(prefix, "1.0.0", "crash-start")  # exits at once, so run_once returns
    fake_version(prefix, "2.0.0", "healthy")
    point_current(prefix, "2.0.0")
    (prefix / "launcher-state.json").write_text(json.dumps({"confirmed": "1.0.0"}))

    def full(path, value):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(launcher, "atomic_write_json", full)
    monkeypatch.setenv("FAKE_LOG", str(log))
    assert launcher.Launcher(prefix, ["run"], once=True).run_once() == 3
    assert log_lines(log) == ["1.0.0 start"]
    assert read_state(prefix) == {"confirmed": "1.0.0"}
