"""The service in launcher mode: once the update prefix holds an installed version,
`loaxa provision --install-service` runs the launcher, lets the daemon (its child) notify
systemd, and gives the prefix to the service user."""

import os
import subprocess
import sys
from pathlib import Path

from provisioning.service import Installer, render_unit
from tests.support.updates import fake_version, point_current
from tests.test_service import needs_systemd_tools, provision_pi, unit_settings, writable_paths


def test_launcher_mode_runs_the_launcher_and_lets_its_child_notify():
    text = render_unit("/srv/venv/bin/loaxa", "/etc/loaxa/config.toml", "/var/lib/loaxa",
                       launcher=("/usr/bin/python3", "/var/lib/loaxa/software"))
    settings = unit_settings(text)
    assert settings["ExecStart"] == ["/usr/bin/python3 /var/lib/loaxa/software/launcher.py --prefix "
                                     "/var/lib/loaxa/software --once -- run --config /etc/loaxa/config.toml"]
    assert settings["NotifyAccess"] == ["all"] and settings["KillMode"] == ["mixed"]
    assert settings["ReadWritePaths"] == ["/var/lib/loaxa"]  # the prefix is inside already
    outside = unit_settings(render_unit("/srv/venv/bin/loaxa", "/etc/loaxa/config.toml", "/var/lib/loaxa",
                                        launcher=("/usr/bin/python3", "/opt/loaxa")))
    assert Path("/opt/loaxa") in writable_paths(outside)


def test_launcher_mode_passes_systemd_analyze_verify(tmp_path):
    (tmp_path / "state").mkdir()
    path = tmp_path / "loaxa.service"
    python = Path(sys.base_prefix) / "bin" / "python3"
    path.write_text(render_unit(Path(sys.prefix) / "bin" / "loaxa", tmp_path / "config.toml", tmp_path / "state",
                                launcher=(python, tmp_path / "state" / "software")))
    result = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert [line for line in result.stderr.splitlines() if "loaxa.service" in line] == []


@needs_systemd_tools
def test_install_with_an_installed_version_uses_the_launcher(tmp_path):
    root = tmp_path / "root"
    config = provision_pi(root)
    prefix = root / "var/lib/loaxa/software"
    fake_version(prefix, "1.0.0", "healthy")
    point_current(prefix, "1.0.0")
    Installer(config, root).install()
    settings = unit_settings((root / "etc/systemd/system/loaxa.service").read_text())
    assert settings["ExecStart"][0].endswith("/var/lib/loaxa/software/launcher.py --prefix /var/lib/loaxa/software "
                                             "--once -- run --config /etc/loaxa/config.toml")
    assert settings["NotifyAccess"] == ["all"]
    assert (prefix / "launcher.py").read_bytes() == (Path(__file__).parents[1] / "updater/launcher.py").read_bytes()
    if os.geteuid() == 0:
        uid = int(next(line.split(":")[2] for line in (root / "etc/passwd").read_text().splitlines()
                       if line.startswith("loaxa:")))
        assert {p.lstat().st_uid for p in [prefix, *prefix.rglob("*")]} == {uid}


@needs_systemd_tools
def test_install_without_an_installed_version_runs_loaxa_directly(tmp_path):
    root = tmp_path / "root"
    config = provision_pi(root)
    Installer(config, root).install()
    settings = unit_settings((root / "etc/systemd/system/loaxa.service").read_text())
    assert settings["ExecStart"][0].endswith(" run --config /etc/loaxa/config.toml")
    assert "launcher.py" not in settings["ExecStart"][0] and settings["NotifyAccess"] == ["main"]
