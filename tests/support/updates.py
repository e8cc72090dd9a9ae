"""Tiny stand-ins for loaxa versions, for the installer and the launcher.

- `fake_version(prefix, version, behaviour)`: a version folder as the installer leaves it
  (its install marker included) whose `bin/python -m loaxa run` is a small script: fast,
  no venv.
- `fake_wheel(folder, version, behaviour)`: a real wheel named `loaxa` with the same
  script as `loaxa/__main__.py`, for the installer's real venv + pip path.
Behaviours: `healthy` (writes the launcher's health file, then runs until SIGTERM),
`silent` (runs, never reports), `crash-import` (an ImportError at start), `crash-start`
(exit 3). Every start and stop is appended to `$FAKE_LOG` as "<version> <what>".
"""

import base64
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

MAIN = '''import os, sys, time, signal
VERSION, BEHAVIOUR = {version!r}, {behaviour!r}
def note(what):
    path = os.environ.get("FAKE_LOG")
    if path:
        with open(path, "a") as f:
            f.write(f"{{VERSION}} {{what}}\\n")
note("start")
if BEHAVIOUR == "crash-import":
    raise ModuleNotFoundError("No module named 'paho'")
if BEHAVIOUR == "crash-start":
    print("loaxa: error: cannot start", file=sys.stderr)
    sys.exit(3)
signal.signal(signal.SIGTERM, lambda *_: (note("stopped"), sys.exit(0)))
if BEHAVIOUR == "healthy":
    path = os.environ.get("LOAXA_UPDATE_HEALTH_FILE")
    if path:
        with open(path, "w") as f:
            f.write("{{}}")
    note("online")
while True:
    time.sleep(0.05)
'''


def fake_version(prefix: Path, version: str, behaviour: str, *, health_s: float = 5) -> Path:
    folder = Path(prefix) / "versions" / version
    (folder / "bin").mkdir(parents=True, exist_ok=True)
    (folder / "fake_main.py").write_text(MAIN.format(version=version, behaviour=behaviour))
    python = folder / "bin" / "python"
    python.write_text(f'#!/bin/sh\nexec {sys.executable} -I {folder / "fake_main.py"} "$@"\n')
    python.chmod(0o755)
    (folder / ".loaxa-install.json").write_text(json.dumps({"version": version, "health_s": health_s}))
    return folder


def point_current(prefix: Path, version: str) -> None:
    link = Path(prefix) / "current"
    if link.is_symlink():
        link.unlink()
    os.symlink(f"versions/{version}", link)


def current_of(prefix: Path) -> str:
    return Path(os.readlink(Path(prefix) / "current")).name


def fake_wheel(folder: Path, version: str, behaviour: str) -> Path:
    """A pure-Python wheel `loaxa-<version>-py3-none-any.whl`."""
    folder.mkdir(parents=True, exist_ok=True)
    info = f"loaxa-{version}.dist-info"
    files = {
        "loaxa/__init__.py": f"__version__ = {version!r}\n",
        "loaxa/__main__.py": MAIN.format(version=version, behaviour=behaviour),
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: loaxa\nVersion: {version}\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: loaxa-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for name, body in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(body.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(body.encode())}")
    record.append(f"{info}/RECORD,,")
    files[f"{info}/RECORD"] = "\n".join(record) + "\n"
    path = folder / f"loaxa-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as wheel:
        for name, body in files.items():
            wheel.writestr(name, body)
    return path


def launcher_process(prefix: Path, *args, env=None, loaxa_args=("run",), output=None) -> subprocess.Popen:
    """The launcher as installed: `<prefix>/launcher.py` run by an isolated python (-I:
    no loaxa, no venv packages on its path), in a session of its own so a test can
    kill -9 the launcher and its child at once, as a power cut does. `output`: a file
    for the launcher's and the child's stdout and stderr (else both are discarded)."""
    out = open(output, "ab") if output is not None else None
    try:
        return subprocess.Popen([sys.executable, "-I", str(Path(prefix) / "launcher.py"), "--prefix", str(prefix),
                                 "--restart-delay", "0.2", *args, "--", *loaxa_args],
                                env={**os.environ, **(env or {})}, start_new_session=True,
                                stdout=out or subprocess.DEVNULL, stderr=out or subprocess.DEVNULL)
    finally:
        if out is not None:
            out.close()


def power_cut(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def stop(proc: subprocess.Popen, timeout: float = 10) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout)
    finally:
        power_cut(proc)


def log_lines(path: Path) -> list[str]:
    try:
        return path.read_text().splitlines()
    except OSError:
        return []


def wait_for(predicate, timeout: float = 15, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")
