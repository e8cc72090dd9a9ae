"""The installer: a download that resumes after a cut and refuses a wrong sha256; a real
venv + pip install of a wheel bundle beside the running version; the atomic switch; and
kill -9 at each named crash point (download, unpack, venv, pip, switch) leaving the old
version runnable and the install completable."""

import hashlib
import json
import os
import subprocess
import sys
import tarfile
import threading
from pathlib import Path

import pytest

from tests.support.http_media import MediaHttpServer
from tests.support.updates import current_of, fake_wheel, launcher_process, log_lines, stop, wait_for
from updater.install import Installer, TransientUpdateError, UpdateError, install_launcher, unpack_bundle
from updater.launcher import read_state
from updater.release import Artifact

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def server():
    srv = MediaHttpServer()
    yield srv
    srv.close()


def artifact(url, data: bytes, sha256=None) -> Artifact:
    return Artifact("x86_64", url, sha256 or hashlib.sha256(data).hexdigest(), len(data))


def bundle_of(folder: Path, *wheels: Path) -> Path:
    path = folder / "bundle.tar"
    with tarfile.open(path, "w") as tar:
        for wheel in wheels:
            tar.add(wheel, arcname=f"wheels/{wheel.name}")
    return path


# ---- download ----

def test_a_download_cut_halfway_resumes_with_range(tmp_path, server):
    data = os.urandom(300_000)
    url = server.add("b.tar", data, drop_after=120_000, drops=1)
    installer = Installer(tmp_path / "prefix")
    with pytest.raises(TransientUpdateError, match="^download: .*connection lost"):
        installer.fetch(artifact(url, data))
    path = installer.fetch(artifact(url, data))
    assert path.read_bytes() == data
    assert server.requests[-1][1] == "bytes=120000-"


def test_a_wrong_sha256_is_refused_and_nothing_kept(tmp_path, server):
    data = b"not the bundle" * 100
    url = server.add("b.tar", data)
    installer = Installer(tmp_path / "prefix")
    with pytest.raises(UpdateError, match="^download: .*sha256 mismatch"):
        installer.fetch(artifact(url, data, sha256="0" * 64))
    assert not list((tmp_path / "prefix" / "downloads" / "sha256").iterdir())


def test_a_download_killed_midway_resumes_in_the_next_process(tmp_path, server):
    data = os.urandom(200_000)
    url = server.add("b.tar", data, drop_after=50_000, drops=1)
    # first process: the connection is cut at 50,000 bytes, then the process is killed
    script = tmp_path / "fetch.py"
    script.write_text(
        "import os, sys\n"
        "from updater.install import Installer\n"
        "from updater.release import Artifact\n"
        "try:\n"
        f"    Installer(sys.argv[1]).fetch(Artifact('x86_64', sys.argv[2], sys.argv[3], {len(data)}))\n"
        "except Exception as exc:\n"
        "    print(exc)\n"
        "os.kill(os.getpid(), 9)\n")
    result = subprocess.run([sys.executable, str(script), str(tmp_path / "prefix"), url,
                             hashlib.sha256(data).hexdigest()], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                            timeout=30)
    assert result.returncode == -9
    part = next((tmp_path / "prefix" / "downloads" / "partial").iterdir())
    assert part.stat().st_size == 50_000
    assert Installer(tmp_path / "prefix").fetch(artifact(url, data)).read_bytes() == data
    assert server.requests[-1][1] == "bytes=50000-"


def test_a_slow_server_is_cut_at_the_overall_deadline(tmp_path, server):
    from device.media_cache import DownloadLimits
    data = os.urandom(1000)
    url = server.add("b.tar", data, trickle_s=0.5)
    installer = Installer(tmp_path / "prefix", limits=DownloadLimits(min_s=1.0, max_s=1.0))
    with pytest.raises(TransientUpdateError, match="too slow"):
        installer.fetch(artifact(url, data))


def test_a_download_can_be_cancelled(tmp_path, server):
    data = os.urandom(1000)
    url = server.add("b.tar", data, trickle_s=0.5)
    cancel = threading.Event()
    threading.Timer(0.5, cancel.set).start()
    with pytest.raises(TransientUpdateError, match="paused"):
        Installer(tmp_path / "prefix").fetch(artifact(url, data), cancel=cancel)


# ---- unpack ----

def test_unpack_takes_only_wheels_and_never_leaves_the_folder(tmp_path):
    wheel = fake_wheel(tmp_path / "w", "1.0.0", "healthy")
    path = tmp_path / "evil.tar"
    with tarfile.open(path, "w") as tar:
        tar.add(wheel, arcname=f"../../{wheel.name}")
        evil = tmp_path / "evil.sh"
        evil.write_text("rm -rf /")
        tar.add(evil, arcname="../../etc/evil.sh")
    assert unpack_bundle(path, tmp_path / "out") == [wheel.name]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [wheel.name]


def test_a_bundle_without_loaxa_or_not_an_archive_is_refused(tmp_path):
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"\x00" * 1000)
    with pytest.raises(UpdateError, match="^unpack: "):
        unpack_bundle(junk, tmp_path / "a")
    empty = tmp_path / "empty.tar"
    with tarfile.open(empty, "w"):
        pass
    with pytest.raises(UpdateError, match="no loaxa wheel"):
        unpack_bundle(empty, tmp_path / "b")


def test_an_install_that_would_fill_the_disk_is_not_started(tmp_path):
    from tests.support.disk import tmpfs
    wheel = fake_wheel(tmp_path / "w", "2.0.0", "healthy")
    bundle = bundle_of(tmp_path, wheel)
    with tmpfs(tmp_path / "small", size="48m") as small:
        installer = Installer(small / "prefix")
        with pytest.raises(TransientUpdateError, match="^install: not enough disk space"):
            installer.install("2.0.0", bundle)
        assert not (small / "prefix" / "versions" / "2.0.0").exists()


# ---- real installs (a venv each: built once per module) ----

@pytest.fixture(scope="module")
def real(tmp_path_factory):
    """A prefix with loaxa 1.0.0 (healthy) installed, confirmed and current, and the
    bundles of 2.0.0 (crashes on import) and 3.0.0 (healthy)."""
    root = tmp_path_factory.mktemp("real")
    prefix = root / "prefix"
    installer = Installer(prefix)
    installer.install("1.0.0", bundle_of(root, fake_wheel(root / "w1", "1.0.0", "healthy")), health_s=30)
    installer.switch("1.0.0")
    install_launcher(prefix)
    (prefix / "launcher-state.json").write_text(json.dumps({"confirmed": "1.0.0"}))
    (root / "b2").mkdir()
    (root / "b3").mkdir()
    bundles = {"2.0.0": bundle_of(root / "b2", fake_wheel(root / "w2", "2.0.0", "crash-import")),
               "3.0.0": bundle_of(root / "b3", fake_wheel(root / "w3", "3.0.0", "healthy"))}
    return prefix, bundles


def test_an_install_is_a_real_venv_with_the_release_and_its_marker(real):
    prefix, _ = real
    info = json.loads((prefix / "versions" / "1.0.0" / ".loaxa-install.json").read_text())
    assert info["version"] == "1.0.0" and info["health_s"] == 30
    out = subprocess.run([str(prefix / "versions" / "1.0.0" / "bin" / "python"), "-c",
                          "import loaxa; print(loaxa.__version__)"], capture_output=True, text=True, check=True,
                         cwd=prefix)
    assert out.stdout.strip() == "1.0.0"
    assert os.readlink(prefix / "current") == "versions/1.0.0"
    assert not list((prefix / "versions").glob(".*"))  # no staging left


def test_a_crash_on_import_is_rolled_back_with_real_venvs(real, tmp_path):
    prefix, bundles = real
    installer = Installer(prefix)
    installer.install("2.0.0", bundles["2.0.0"], health_s=30)
    installer.switch("2.0.0")
    log = tmp_path / "runs.log"
    proc = launcher_process(prefix, "--once", env={"FAKE_LOG": str(log)})
    assert proc.wait(30) == 1
    assert "ModuleNotFoundError" in read_state(prefix)["bad"]["2.0.0"]
    assert installer.current_version() == "1.0.0" and "2.0.0" in installer.rolled_back()
    proc = launcher_process(prefix, "--once", env={"FAKE_LOG": str(log)})
    try:
        wait_for(lambda: "1.0.0 online" in log_lines(log), what="1.0.0 back")
    finally:
        stop(proc)


def run_installer(prefix: Path, version: str, bundle: Path, crash_at: str):
    code = ("import sys; from updater.install import Installer; i = Installer(sys.argv[1]);"
            "i.install(sys.argv[2], sys.argv[3]); i.switch(sys.argv[2])")
    return subprocess.run([sys.executable, "-c", code, str(prefix), version, str(bundle)], cwd=REPO,
                          env={**os.environ, "LOAXA_TEST_CRASH_AT": crash_at}, timeout=120)


@pytest.mark.parametrize("crash_at", ["unpack", "venv", "pip", "switch"])
def test_kill_9_at_each_install_step_leaves_the_old_version_and_a_completable_install(real, tmp_path, crash_at):
    prefix, bundles = real
    result = run_installer(prefix, "3.0.0", bundles["3.0.0"], crash_at)
    assert result.returncode == -9
    installer = Installer(prefix)
    assert current_of(prefix) == "1.0.0"
    if crash_at != "switch":
        assert not installer.is_installed("3.0.0")
    # the old version still starts, whatever was left behind
    log = tmp_path / "runs.log"
    proc = launcher_process(prefix, env={"FAKE_LOG": str(log)})
    try:
        wait_for(lambda: "1.0.0 online" in log_lines(log), what="1.0.0 runs")
    finally:
        stop(proc)
    # and the next attempt completes
    assert run_installer(prefix, "3.0.0", bundles["3.0.0"], "").returncode == 0
    assert installer.current_version() == "3.0.0"
    assert not list(prefix.glob(".current.*")) and not list((prefix / "versions").glob(".*"))
    installer.switch("1.0.0")  # back, for the next case
    installer.prune(["1.0.0", "2.0.0"])
