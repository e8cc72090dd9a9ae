"""Installing a release beside the running version, under a prefix the service may write.

Layout of the prefix (`[update].prefix`; docs/design.md, "Software updates"):
- `downloads/`: bundles as they arrive (`partial/<sha256>.part`, resumed with HTTP Range)
  and once verified (`sha256/<sha256>`): `device.media_cache`'s downloader, reused;
- `versions/<version>/`: one venv per version, made by `python -m venv` and filled by
  `pip install --no-index --find-links` from the bundle's wheels; complete only once its
  marker `versions/<version>/.loaxa-install.json` exists (written last, after a sync);
- `versions/.<version>.wheels/`: the unpacked bundle while installing;
- `current`: a relative symlink to `versions/<version>`, switched atomically;
- `launcher.py`, `launcher-state.json`, `run/`: the launcher's (updater/launcher.py).

Crash points and what the next start finds (each tested with kill -9):
1. download: a `.part` file; the next fetch resumes it; `current` untouched.
2. unpack: a `.<version>.wheels` folder: removed and unpacked again.
3. install: `versions/<version>` without its marker: removed and installed again; the
   launcher never runs a version without a marker.
4. switch: `current` is the old link or the new one (rename is atomic); a leftover
   `.current.<pid>.tmp` link is removed.
5. first start: the launcher's persisted boot-attempt counter (updater/launcher.py).

Order of writes for `install`: wheels unpacked -> venv -> pip -> `os.sync()` (every file
pip wrote is on disk) -> marker written atomically (temp, fsync, rename, fsync folder).
For `switch`: new symlink under a temporary name -> rename over `current` -> fsync the
prefix folder. Nothing here needs root.
"""

import json
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import threading
import time
import zipfile
from pathlib import Path

from loaxa.errors import LoaxaError, MediaError
from loaxa.fsio import atomic_write, fsync_dir
from updater.launcher import INSTALL_MARKER, installed_version_info, read_state, switch_current

log = logging.getLogger("loaxa.update")

MAX_BUNDLE_BYTES = 1 << 30
INSTALL_GROWTH = 3  # unpacked wheels + the venv they fill, per byte of bundle (numpy, av: ~2.2)
MIN_FREE_BYTES = 64 * 1024 * 1024  # as the media cache: logs, the outbox and the OS need room
CRASH_ENV = "LOAXA_TEST_CRASH_AT"  # tests: kill -9 this process at a named crash point
STEP_TIMEOUT_S = 1800.0  # venv + pip on a Pi 3 from an SD card: minutes, not half an hour


class UpdateError(LoaxaError):
    """An update step failed; the running version is untouched. The message says which step."""


class TransientUpdateError(UpdateError):
    """A step that may work later: network, disk full, a download interrupted on purpose."""


class Installer:
    def __init__(self, prefix, *, python: str | None = None, clock=time.time, limits=None,
                 timeout_s: float = 30.0, step_timeout_s: float = STEP_TIMEOUT_S):
        self.prefix = Path(prefix)
        self.versions = self.prefix / "versions"
        self.downloads = self.prefix / "downloads"
        self.current = self.prefix / "current"
        self.python = python or sys.executable
        self.clock = clock
        self.limits, self.timeout_s, self.step_timeout_s = limits, timeout_s, step_timeout_s

    # ---- what is here ----
    def version_dir(self, version: str) -> Path:
        return self.versions / version

    def is_installed(self, version: str) -> bool:
        return (self.version_dir(version) / INSTALL_MARKER).exists()

    def current_version(self) -> str | None:
        """The version `current` points at, when it is a complete install."""
        try:
            target = os.readlink(self.current)
        except OSError:
            return None
        version = Path(target).name
        return version if self.is_installed(version) else None

    def rolled_back(self) -> dict:
        """{version: reason} of the versions the launcher abandoned here (never installed again)."""
        return dict(read_state(self.prefix).get("bad", {}))

    # ---- 1. download ----
    def fetch(self, artifact, *, cancel=None, progress=None) -> Path:
        """The verified bundle (resumed across attempts and restarts); raises UpdateError."""
        from device.media_cache import DownloadLimits, MediaCache, TransientMediaError
        cache = MediaCache(self.downloads, max_bytes=MAX_BUNDLE_BYTES, timeout_s=self.timeout_s,
                           limits=self.limits or DownloadLimits())
        try:
            return cache.fetch(artifact.url, artifact.sha256, artifact.size, progress=progress, cancel=cancel)
        except TransientMediaError as exc:
            raise TransientUpdateError(f"download: {exc}") from exc
        except MediaError as exc:
            raise UpdateError(f"download: {exc}") from exc

    # ---- 2 and 3. unpack and install ----
    def install(self, version: str, bundle: Path, *, health_s: int = 300, cancel=None) -> Path:
        """Install the bundle's wheels as `versions/<version>`; returns its folder.

        Idempotent: a complete install is kept as it is; an incomplete one (a crash) is
        removed and made again. The running version is never touched."""
        target = self.version_dir(version)
        if self.is_installed(version):
            return target
        self.versions.mkdir(parents=True, exist_ok=True)
        self._check_space(Path(bundle).stat().st_size * INSTALL_GROWTH)
        wheels = self.versions / f".{version}.wheels"
        for leftover in (target, wheels):
            if leftover.exists() or leftover.is_symlink():
                shutil.rmtree(leftover, ignore_errors=True)
        try:
            unpack_bundle(Path(bundle), wheels)
            crash_point("unpack")
            self._run([self.python, "-m", "venv", str(target)], "venv", cancel)
            crash_point("venv")
            self._run([str(target / "bin" / "python"), "-m", "pip", "install", "--no-index", "--find-links",
                       str(wheels), "--no-cache-dir", "--disable-pip-version-check", "--quiet",
                       f"loaxa=={version}"], "pip install", cancel)
            crash_point("pip")
            os.sync()  # everything pip wrote reaches the disk before the marker says "complete"
            atomic_write(target / INSTALL_MARKER, json.dumps(
                {"version": version, "health_s": health_s, "installed_at": self.clock()}).encode())
            fsync_dir(self.versions)
        except OSError as exc:
            shutil.rmtree(target, ignore_errors=True)
            raise TransientUpdateError(f"install {version}: {exc.strerror or exc}") from exc
        except UpdateError:
            shutil.rmtree(target, ignore_errors=True)
            raise
        finally:
            shutil.rmtree(wheels, ignore_errors=True)
        log.info("loaxa %s installed in %s", version, target)
        return target

    def _check_space(self, needed: int) -> None:
        free = shutil.disk_usage(self.versions).free
        if free - needed < MIN_FREE_BYTES:
            raise TransientUpdateError(f"install: not enough disk space: {free >> 20} MB free, {needed >> 20} MB "
                                       f"needed plus a reserve of {MIN_FREE_BYTES >> 20} MB")

    def discard_download(self, sha256: str) -> None:
        """Drop a bundle once installed: the venv holds all of it, and it is large."""
        for path in (self.downloads / "sha256" / sha256, self.downloads / "partial" / f"{sha256}.part"):
            path.unlink(missing_ok=True)

    def _run(self, cmd, step: str, cancel) -> None:
        """Run one step as a child, bounded by `step_timeout_s` and `cancel`."""
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        output: list[bytes] = []
        reader = threading.Thread(target=lambda: output.append(proc.stdout.read()), daemon=True)
        reader.start()
        deadline = time.monotonic() + self.step_timeout_s
        while proc.poll() is None:
            if (cancel is not None and cancel.is_set()) or time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                reader.join(5)
                why = "cancelled" if cancel is not None and cancel.is_set() else \
                    f"took longer than {self.step_timeout_s:.0f} s"
                raise TransientUpdateError(f"{step}: {why}")
            time.sleep(0.05)
        reader.join(5)
        if proc.returncode != 0:
            text = b"".join(output).decode("utf-8", "replace").strip().splitlines()
            raise UpdateError(f"{step} failed (exit {proc.returncode}): {text[-1] if text else 'no output'}")

    # ---- 4. switch ----
    def switch(self, version: str) -> None:
        """Point `current` at an installed version, atomically."""
        if not self.is_installed(version):
            raise UpdateError(f"switch: version {version} is not (completely) installed")
        switch_current(self.prefix, version)
        log.info("current version is now %s", version)

    def prune(self, keep) -> list[str]:
        """Remove installed versions not in `keep` (and never the current one)."""
        keep = set(keep) | {self.current_version()}
        removed = []
        for entry in sorted(self.versions.iterdir()) if self.versions.exists() else ():
            if entry.name not in keep and not entry.name.startswith("."):
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry.name)
        return removed


def crash_point(name: str) -> None:
    """Tests: die here as a power cut would (SIGKILL, nothing flushed) when named in
    $LOAXA_TEST_CRASH_AT; a no-op otherwise."""
    if os.environ.get(CRASH_ENV) == name:
        os.kill(os.getpid(), 9)


def unpack_bundle(bundle: Path, into: Path) -> list[str]:
    """The `.whl` files of a tar or zip bundle into `into` (flat; any other member is
    ignored, so no path in the archive can reach outside); returns their names."""
    into.mkdir(parents=True)
    names = []
    try:
        # A tar first: a tar of uncompressed wheels also looks like a zip (its last wheel's
        # directory is near the end of the file).
        if tarfile.is_tarfile(bundle):
            with tarfile.open(bundle) as archive:
                for member in archive:
                    name = Path(member.name).name
                    if name.endswith(".whl") and member.isfile():
                        with archive.extractfile(member) as src, open(into / name, "wb") as dst:
                            shutil.copyfileobj(src, dst)
                        names.append(name)
        else:
            with zipfile.ZipFile(bundle) as archive:
                for info in archive.infolist():
                    name = Path(info.filename).name
                    if name.endswith(".whl") and not info.is_dir():
                        with archive.open(info) as src, open(into / name, "wb") as dst:
                            shutil.copyfileobj(src, dst)
                        names.append(name)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError) as exc:
        raise UpdateError(f"unpack: {bundle.name} is not a tar or zip of wheels: {exc}") from exc
    if not any(n.startswith("loaxa-") for n in names):
        raise UpdateError(f"unpack: {bundle.name} holds no loaxa wheel")
    return names


def install_launcher(prefix) -> Path:
    """Copy the launcher (stdlib only) to `<prefix>/launcher.py`, outside every version."""
    source = Path(__file__).with_name("launcher.py")
    target = Path(prefix) / "launcher.py"
    atomic_write(target, source.read_bytes(), mode=0o755)
    return target


__all__ = ["Installer", "TransientUpdateError", "UpdateError", "install_launcher", "installed_version_info",
           "switch_current", "unpack_bundle"]
