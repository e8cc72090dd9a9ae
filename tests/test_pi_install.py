"""What a Raspberry Pi install needs, checked as far as a PC can (the unit file: test_service.py)."""

import json
import os
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

from tests.support.unit import run_loaxa

ROOT = Path(__file__).resolve().parents[1]
PI_64 = {"platform_machine": "aarch64", "sys_platform": "linux", "python_version": "3.11",
         "python_full_version": "3.11.2", "implementation_name": "cpython", "os_name": "posix",
         "platform_system": "Linux"}


def dependencies() -> dict[str, Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return {req.name: req for req in map(Requirement, project["dependencies"])}


def test_lgpio_comes_with_a_64_bit_pi_install_and_only_there():
    """gpiozero cannot drive a Pi 5 without lgpio; a PC install must not try to build it."""
    lgpio = dependencies()["lgpio"]
    assert lgpio.marker.evaluate(PI_64) and lgpio.marker.evaluate({**PI_64, "python_version": "3.13"})
    assert not lgpio.marker.evaluate({**PI_64, "platform_machine": "x86_64"})
    assert not lgpio.marker.evaluate({**PI_64, "sys_platform": "darwin", "platform_system": "Darwin"})
    # 0.2.2.0 has the cp311 aarch64 wheel; PyPI's 0.0.0.2 is an empty placeholder module.
    assert lgpio.specifier.contains("0.2.2.0") and not lgpio.specifier.contains("0.0.0.2")


def test_gpiozero_fallbacks_are_told_not_hidden(tmp_path):
    """A Pi whose lgpio does not load (here: one that raises on import, as a missing one
    does) logs each of gpiozero's fallbacks, and the GPIO check names them."""
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "lgpio.py").write_text('raise ImportError("No module named \'lgpio\'")\n')
    config = tmp_path / "config.toml"
    config.write_text(f'[unit]\nid = "pi-unit-01"\nstate_dir = "{tmp_path / "state"}"\n'
                      '[broker]\nurl = "mqtt://127.0.0.1:1"\n[hardware]\nmode = "pi"\n')
    env = {k: v for k, v in os.environ.items() if k != "GPIOZERO_PIN_FACTORY"}
    env.update(PYTHONPATH=str(broken), LOAXA_LANG="en")
    result = run_loaxa("selftest", "--config", str(config), "--json", env=env, timeout=90)
    assert "Falling back from lgpio: No module named 'lgpio'" in result.stderr, result.stderr
    gpio = {check["name"]: check for check in json.loads(result.stdout)["checks"]}["gpio"]
    if not gpio["ok"]:  # on a PC no driver loads: the one line says what each one lacked
        assert "Falling back from lgpio: No module named 'lgpio'" in gpio["detail"], gpio
