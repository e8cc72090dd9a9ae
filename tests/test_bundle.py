"""The offline bundle: built for the Pi (aarch64) and a PC (x86_64), installed with no network.

Building needs the package index (PyPI, or the pip configuration of this machine); the
Debian part (--no-debs here) is large and was verified by hand (docs/technician.md).
The x86_64 bundle is then installed into a fresh virtualenv inside a network namespace
with no interfaces (`unshare -rn`), or, where namespaces are not allowed, with every
proxy pointing at a closed port: pip must find everything in the bundle.
"""

import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.timeout(300)


def sh(*args, env=None, timeout=240) -> subprocess.CompletedProcess:
    environ = {**os.environ, "PYTHON": sys.executable, "LOAXA_LANG": "en", **(env or {})}
    result = subprocess.run(list(args), capture_output=True, text=True, env=environ, timeout=timeout, cwd=ROOT)
    assert result.returncode == 0, f"{args}:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    return result


def offline_prefix() -> tuple[list[str], dict]:
    """A command prefix and environment under which nothing on the network answers."""
    if shutil.which("unshare") and subprocess.run(["unshare", "-rn", "true"], capture_output=True).returncode == 0:
        return ["unshare", "-rn"], {}
    dead = "http://127.0.0.1:9"
    return [], {"http_proxy": dead, "https_proxy": dead, "HTTP_PROXY": dead, "HTTPS_PROXY": dead,
                "PIP_NO_INDEX": "1"}


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    out = tmp_path_factory.mktemp("offline")
    for arch in ("x86_64", "aarch64"):
        sh("sh", "scripts/bundle-offline.sh", "--arch", arch, "--no-debs", "--out", str(out))
    return {arch: next(out.glob(f"loaxa-offline-*-{arch}")) for arch in ("x86_64", "aarch64")}


def wheels(bundle: Path) -> list[str]:
    return sorted(path.name for path in (bundle / "wheels").glob("*.whl"))


def test_aarch64_bundle_has_arm_wheels(bundles):
    names = wheels(bundles["aarch64"])
    assert any(n.startswith("loaxa-") and n.endswith("-py3-none-any.whl") for n in names)
    binary = [n for n in names if not n.endswith("-none-any.whl")]
    assert binary and all("aarch64" in n for n in binary), binary
    for package in ("cryptography-", "cffi-", "lgpio-", "paho_mqtt-", "gpiozero-", "apscheduler-", "pyserial-"):
        assert any(n.lower().startswith(package) for n in names), (package, names)
    assert not any("x86_64" in n for n in names)


def test_x86_64_bundle_has_pc_wheels(bundles):
    names = wheels(bundles["x86_64"])
    binary = [n for n in names if not n.endswith("-none-any.whl")]
    assert binary and all("x86_64" in n for n in binary), binary
    assert not any(n.startswith("lgpio-") for n in names)


def test_bundle_is_checksummed_and_archived(bundles):
    bundle = bundles["aarch64"]
    sums = (bundle / "SHA256SUMS").read_text().splitlines()
    assert any(line.endswith("./install-offline.sh") for line in sums)
    assert len(sums) == len(wheels(bundle)) + 1
    with tarfile.open(bundle.parent / f"{bundle.name}.tar.gz") as archive:
        assert f"{bundle.name}/install-offline.sh" in archive.getnames()


def test_installs_offline_into_a_fresh_virtualenv(bundles, tmp_path):
    prefix, env = offline_prefix()
    venv = tmp_path / "venv"
    installer = bundles["x86_64"] / "install-offline.sh"
    result = sh(*prefix, "sh", str(installer), "--venv", str(venv), "--no-debs", "--no-link", env=env)
    assert "done: loaxa" in result.stdout
    version = sh(str(venv / "bin" / "loaxa"), "--version").stdout
    assert version.startswith("loaxa ")
    # The installed copy carries its translations and the service template (package data).
    out = tmp_path / "unit"
    result = sh(*prefix, str(venv / "bin" / "loaxa"), "provision", "--non-interactive", "--unit-id", "pc-test-01",
                "--group", "a/b", "--broker", "mqtt://127.0.0.1:1", "--trust-key", "k=" + "A" * 43 + "=",
                "--mode", "mock", "--out", str(out), "--no-selftest", env={**env, "LOAXA_LANG": "vi"})
    assert "Các bước tiếp theo" in result.stdout
    site = next(venv.glob("lib/python*/site-packages"))
    assert (site / "loaxa" / "locale" / "vi" / "LC_MESSAGES" / "loaxa.mo").is_file()
    assert "Type=notify" in (site / "provisioning" / "data" / "loaxa.service").read_text()


def test_damaged_bundle_is_refused(bundles, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(bundles["x86_64"], copy)
    wheel = next((copy / "wheels").glob("paho_mqtt-*.whl"))
    wheel.write_bytes(wheel.read_bytes()[:-10])
    result = subprocess.run(["sh", str(copy / "install-offline.sh"), "--venv", str(tmp_path / "v"), "--no-debs"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "damaged" in result.stderr
    assert not (tmp_path / "v").exists()
