"""`loaxa provision --install-service`: the unit file, and its installation into a temporary root.

What a PC can check: the unit file's hardening and paths, `systemd-analyze verify`, and
the whole install (`systemd-sysusers --root`, `systemctl --root enable`, owners and modes)
against a folder, never the running system.
"""

import base64
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from provisioning.service import (
    SERVICE_GROUPS,
    TEMPLATE,
    Installer,
    ServiceError,
    render_unit,
    sysusers_text,
)
from tests.support.unit import run_loaxa

ROOT = Path(__file__).resolve().parents[1]
PUB = base64.b64encode(bytes(32)).decode()
UNIT = "pi-unit-01"


def unit_settings(text: str) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


def writable_paths(settings: dict[str, list[str]]) -> list[Path]:
    """What a service may write under ProtectSystem=strict (systemd.exec(5)): its
    ReadWritePaths, its StateDirectory under /var/lib, and with PrivateTmp its /tmp."""
    assert settings["ProtectSystem"] == ["strict"]
    paths = [Path(p.lstrip("-+")) for value in settings.get("ReadWritePaths", []) for p in value.split()]
    paths += [Path("/var/lib") / name for value in settings.get("StateDirectory", []) for name in value.split()]
    if settings.get("PrivateTmp") == ["true"]:
        paths += [Path("/tmp"), Path("/var/tmp")]
    return paths


def assert_lgpio_can_write(settings: dict[str, list[str]], state_dir: str) -> None:
    """lgpio makes its notification pipes in LG_WD, else the working directory
    (systemd's default "/"): both must be the state folder, writable (gpiozero#1106)."""
    workdir = settings.get("WorkingDirectory", ["/"])
    assert workdir == [state_dir]
    environment = dict(item.split("=", 1) for value in settings.get("Environment", []) for item in value.split())
    assert environment.get("LG_WD") == state_dir
    assert any(Path(state_dir).is_relative_to(p) for p in writable_paths(settings)), writable_paths(settings)


def test_packaged_unit_is_the_one_shipped():
    assert TEMPLATE.read_text() == (ROOT / "packaging" / "loaxa.service").read_text()


def test_unit_file_is_hardened():
    settings = unit_settings(TEMPLATE.read_text())
    expected = {"Type": ["notify"], "User": ["loaxa"], "Group": ["loaxa"], "Restart": ["always"],
                "ProtectSystem": ["strict"], "NoNewPrivileges": ["true"], "ReadWritePaths": ["/var/lib/loaxa"],
                "StateDirectory": ["loaxa"], "StandardOutput": ["journal"], "WantedBy": ["multi-user.target"],
                "ExecStart": ["/opt/loaxa/venv/bin/loaxa run --config /etc/loaxa/config.toml"]}
    for key, value in expected.items():
        assert settings.get(key) == value, key
    assert set(settings["SupplementaryGroups"][0].split()) == set(SERVICE_GROUPS) == {"gpio", "dialout", "audio"}
    assert int(settings["WatchdogSec"][0]) > 0 and int(settings["RestartSec"][0]) > 0
    assert settings["StartLimitIntervalSec"] == ["0"]   # never stops restarting
    assert "PrivateDevices" not in settings              # GPIO, serial and ALSA live in /dev
    assert settings["CapabilityBoundingSet"] == ["CAP_SYS_TIME"] == settings["AmbientCapabilities"]
    assert_lgpio_can_write(settings, "/var/lib/loaxa")


def test_render_fills_in_this_machines_paths():
    text = render_unit("/srv/venv/bin/loaxa", "/etc/loaxa/unit.toml", "/data/loaxa")
    settings = unit_settings(text)
    assert settings["ExecStart"] == ["/srv/venv/bin/loaxa run --config /etc/loaxa/unit.toml"]
    assert settings["ReadWritePaths"] == ["/data/loaxa"]
    assert_lgpio_can_write(settings, "/data/loaxa")  # the state folder moved: lgpio's too
    with pytest.raises(ServiceError):
        render_unit("/my venv/bin/loaxa", "/etc/loaxa/config.toml")


def test_sysusers_makes_the_user_and_its_groups():
    lines = sysusers_text().splitlines()
    assert lines[1].startswith("u loaxa - ")
    assert lines[2:] == ["m loaxa gpio", "m loaxa dialout", "m loaxa audio"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_analyze_verify(tmp_path):
    # Rendered with paths that exist here: verify checks the program, and reads the rest.
    (tmp_path / "state").mkdir()
    path = tmp_path / "loaxa.service"
    path.write_text(render_unit(Path(sys.prefix) / "bin" / "loaxa", tmp_path / "config.toml", tmp_path / "state"))
    result = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    noise = [line for line in result.stderr.splitlines() if "loaxa.service" in line]
    assert noise == [], noise


def provision_pi(root: Path) -> Path:
    out = root / "etc" / "loaxa"
    result = run_loaxa("provision", "--non-interactive", "--unit-id", UNIT, "--group", "a/b", "--broker",
                       "mqtt://127.0.0.1:1", "--trust-key", f"k={PUB}", "--mode", "pi", "--out", str(out),
                       "--state-dir", str(root / "var" / "lib" / "loaxa"), "--no-selftest",
                       env={**os.environ, "LOAXA_LANG": "en"})
    assert result.returncode == 0, result.stderr
    return out / "config.toml"


needs_systemd_tools = pytest.mark.skipif(
    not (shutil.which("systemd-sysusers") and shutil.which("systemctl")), reason="systemd tools not installed")


@needs_systemd_tools
def test_install_into_a_temporary_root(tmp_path):
    root = tmp_path / "root"
    config = provision_pi(root)
    result = run_loaxa("provision", "--install-service", "--config", str(config), "--root", str(root),
                       env={**os.environ, "LOAXA_LANG": "en"})
    assert result.returncode == 0, result.stderr
    unit = root / "etc/systemd/system/loaxa.service"
    settings = unit_settings(unit.read_text())
    # The installed system sees its own paths, not this machine's temporary folder.
    assert settings["ExecStart"][0].endswith(" run --config /etc/loaxa/config.toml")
    assert settings["ReadWritePaths"] == ["/var/lib/loaxa"]
    assert_lgpio_can_write(settings, "/var/lib/loaxa")
    link = root / "etc/systemd/system/multi-user.target.wants/loaxa.service"
    assert link.is_symlink() and os.readlink(link) == "/etc/systemd/system/loaxa.service"
    passwd = {line.split(":")[0]: line.split(":") for line in (root / "etc/passwd").read_text().splitlines()}
    assert passwd["loaxa"][5] == "/var/lib/loaxa" and passwd["loaxa"][6].endswith("nologin")
    groups = {line.split(":")[0]: line.split(":")[3].split(",") for line in (root / "etc/group").read_text().splitlines()}
    assert all("loaxa" in groups[group] for group in ("gpio", "dialout", "audio"))
    if os.geteuid() == 0:
        uid, gid = int(passwd["loaxa"][2]), int(passwd["loaxa"][3])
        state = (root / "var/lib/loaxa").stat()
        assert (state.st_uid, state.st_gid, stat.S_IMODE(state.st_mode)) == (uid, gid, 0o750)
        secret = (root / "etc/loaxa/broker.pass").stat()
        assert (secret.st_uid, secret.st_gid, stat.S_IMODE(secret.st_mode)) == (0, gid, 0o640)
    assert "enabled" in result.stdout and str(root) in result.stdout


@needs_systemd_tools
def test_install_twice_is_fine(tmp_path):
    root = tmp_path / "root"
    config = provision_pi(root)
    first = Installer(config, root).install()
    again = Installer(config, root).install()
    assert [s.text for s in first] == [s.text for s in again]
    users = [line.split(":")[0] for line in (root / "etc/passwd").read_text().splitlines()]
    assert users.count("loaxa") == 1


def test_real_system_needs_root(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("running as root: this would install on the real system")
    config = provision_pi(tmp_path / "root")
    with pytest.raises(ServiceError, match="root"):
        Installer(config, "/").install()


def test_bad_config_is_refused_before_anything_is_written(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text('[unit]\nid = "X"\n')
    result = run_loaxa("provision", "--install-service", "--config", str(config), "--root", str(tmp_path / "r"),
                       env={**os.environ, "LOAXA_LANG": "en"})
    assert result.returncode == 1 and "unit.id (line 2)" in result.stderr
    assert not (tmp_path / "r").exists()
