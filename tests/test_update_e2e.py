"""End to end with real builds of the whole package: `loaxa release build --source
--from-installed` (offline), the installer's real venv, the launcher, and the real daemon
against mosquitto. The running build is confirmed; a newer build comes online and is
confirmed by the daemon's own health report; newer builds that crash on import, or run
but never come online and pass their start checks, are rolled back to it; the unit's
retained state says which version runs."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from fleet.broker import BrokerOptions, read_retained
from loaxa import __version__
from loaxa.brokerurl import parse_broker_url
from loaxa.cli import main
from tests.support.broker import Broker
from tests.support.unit import OperatorKey, write_unit_config
from tests.support.updates import launcher_process, stop, wait_for
from updater.install import Installer, install_launcher
from updater.launcher import read_state

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("loaxa", "device", "scheduler", "audio", "provisioning", "hw", "fleet", "updater")
UNIT_ID = "dl-update-01"


def source_tree(folder: Path, version: str, *, crash_on_import: bool = False, never_online: bool = False) -> Path:
    """A copy of the loaxa source at another version (both places that carry it)."""
    folder.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, folder / name)
    for package in PACKAGES:
        shutil.copytree(REPO / package, folder / package, ignore=shutil.ignore_patterns("__pycache__"))
    pyproject = folder / "pyproject.toml"
    pyproject.write_text(re.sub(r'(?m)^version = ".*"$', f'version = "{version}"', pyproject.read_text(), count=1))
    init = folder / "loaxa" / "__init__.py"
    init.write_text(re.sub(r'__version__ = ".*"', f'__version__ = "{version}"', init.read_text(), count=1))
    if crash_on_import:
        main_py = folder / "loaxa" / "__main__.py"
        main_py.write_text('raise ImportError("broken build")\n' + main_py.read_text())
    if never_online:  # a daemon that runs and plays, and never proves itself to the launcher
        health = folder / "updater" / "health.py"
        text = health.read_text()
        assert "    global _reported\n" in text
        health.write_text(text.replace("    global _reported\n", "    return False\n    global _reported\n", 1))
    return folder


def build(source: Path, out: Path) -> Path:
    code = main(["release", "build", "--source", str(source), "--from-installed", "--out", str(out),
                 "--url-base", "http://127.0.0.1:9/", "--seq", "1", "--to", "group:dak-lak"])
    assert code == 0
    (bundle,) = out.glob("loaxa-*.tar")
    return bundle


def child_pid(prefix: Path, version: str) -> int:
    found = subprocess.run(["pgrep", "-f", str(prefix / "versions" / version / "bin")], capture_output=True,
                           text=True).stdout.split()
    assert len(found) == 1, found
    return int(found[0])


def unit_state(broker_url: str) -> dict:
    raw = read_retained(BrokerOptions(parse_broker_url(broker_url)), f"loaxa/unit/{UNIT_ID}/state", timeout=3)
    return json.loads(raw) if raw else {}


@pytest.fixture(scope="module")
def unit(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    broker = Broker(root / "broker").start()
    key = OperatorKey(root / "keys")
    config = write_unit_config(root / "unit", unit_id=UNIT_ID, groups=["dak-lak/lak"], broker_url=broker.url,
                               trust={key.name: key.public})
    prefix = root / "prefix"
    installer = Installer(prefix)
    installer.install(__version__, build(REPO, root / "b0"), health_s=60)
    installer.switch(__version__)
    install_launcher(prefix)
    yield root, broker, config, prefix, installer
    broker.stop()


def test_a_newer_build_is_confirmed_and_builds_that_crash_or_stay_silent_are_rolled_back(unit):
    root, broker, config, prefix, installer = unit
    newer, broken, silent = "9.0.1", "9.0.2", "9.0.3"
    installer.install(newer, build(source_tree(root / "src1", newer), root / "b1"), health_s=60)
    installer.install(broken, build(source_tree(root / "src2", broken, crash_on_import=True), root / "b2"),
                      health_s=60)
    installer.install(silent, build(source_tree(root / "src3", silent, never_online=True), root / "b3"),
                      health_s=10)
    launcher = launcher_process(prefix, loaxa_args=("run", "--config", str(config)), output=root / "console.log")
    try:
        # the first version on this prefix is confirmed at once, and runs
        wait_for(lambda: unit_state(broker.url).get("version") == __version__, timeout=60, what="the unit online")
        assert read_state(prefix)["confirmed"] == __version__
        # switch and restart (what the unit does between playbacks): the newer build on trial
        installer.switch(newer)
        subprocess.run(["kill", "-TERM", str(child_pid(prefix, __version__))], check=True)
        wait_for(lambda: read_state(prefix).get("confirmed") == newer, timeout=60, what="the newer build confirmed")
        assert read_state(prefix)["previous"] == __version__
        wait_for(lambda: unit_state(broker.url).get("version") == newer, timeout=30, what="state.version")
        # a build that crashes on import: abandoned, back to the newer one, never retried
        installer.switch(broken)
        subprocess.run(["kill", "-TERM", str(child_pid(prefix, newer))], check=True)
        wait_for(lambda: broken in read_state(prefix).get("bad", {}), timeout=60, what="the broken build abandoned")
        reason = read_state(prefix)["bad"][broken]
        assert reason.startswith("exited with code 1 before coming online") and "ImportError: broken build" in reason
        # the verdict is written before the switch back (a kill between them is repaired at start)
        wait_for(lambda: installer.current_version() == newer, timeout=30, what="switched back to the newer build")
        online_again = lambda: unit_state(broker.url) == {  # noqa: E731
            **unit_state(broker.url), "state": "online", "version": newer}
        wait_for(online_again, timeout=60, what="the newer build online again")
        # a build that starts and runs but never comes online and passes its start checks
        installer.switch(silent)
        subprocess.run(["kill", "-TERM", str(child_pid(prefix, newer))], check=True)
        wait_for(lambda: silent in read_state(prefix).get("bad", {}), timeout=60, what="the silent build abandoned")
        assert read_state(prefix)["bad"][silent] == "did not come online and pass its start checks within 10 s"
        wait_for(lambda: installer.current_version() == newer, timeout=30, what="switched back to the newer build")
        wait_for(online_again, timeout=60, what="the newer build online after the silent one")
    finally:
        assert stop(launcher, timeout=30) == 0, (root / "console.log").read_text()[-3000:]
    console = (root / "console.log").read_text()
    assert console.count(f"trying loaxa {broken}") == 1
    assert unit_state(broker.url).get("state") == "offline"  # a clean stop, passed through the launcher
