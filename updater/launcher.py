#!/usr/bin/env python3
"""The launcher: starts `<prefix>/current`'s loaxa, and abandons a new version that
does not prove itself. Standard library only, one file: it is copied to
`<prefix>/launcher.py` (updater.install.install_launcher) and run by the system's
python3, outside every updated version, so no update can break it.

    python3 <prefix>/launcher.py --prefix <prefix> [--once] [--max-attempts 2] -- run --config ...

Each start:
- reads `current` (a symlink to `versions/<version>`); a version without its install
  marker, or one abandoned before, is not run: `current` goes back to the confirmed one;
- the first version ever run here is confirmed at once (there is nothing to go back to);
- a version that is not the confirmed one is on trial: the boot-attempt counter in
  `launcher-state.json` is raised and saved *before* it starts (a power cut during its
  first start still counts); at `max_attempts` it is abandoned unstarted;
- the child gets `LOAXA_UPDATE_HEALTH_FILE`: a path it writes once it is online and its
  start checks pass (updater.health). That file within the version's `health_s` confirms
  it; an exit before (a crash on import or at start: the reason quotes its last stderr
  line) or silence until `health_s` (the child is stopped) abandons it: it is marked bad
  for good, a rollback record is kept for the daemon's `update.rolled_back` event, and
  `current` goes back to the confirmed version;
- with `--once` (systemd, or `INVOCATION_ID` set) the launcher exits when the child does
  and systemd's `Restart=` starts it again; otherwise it starts the child again itself.
SIGTERM/SIGINT are passed to the child; the launcher then exits with it.

State writes are atomic (temp file, fsync, rename, fsync folder), in this order on a
rollback: state (bad + record) first, then the `current` link; a kill between the two
finds `current` on a bad version at the next start and moves it back.
"""

from __future__ import annotations  # the system's python3 runs this file, whatever its version

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import deque
from pathlib import Path

INSTALL_MARKER = ".loaxa-install.json"
STATE_FILE = "launcher-state.json"
HEALTH_ENV = "LOAXA_UPDATE_HEALTH_FILE"
DEFAULT_HEALTH_S = 300
DEFAULT_MAX_ATTEMPTS = 2
MAX_ROLLBACK_RECORDS = 20
RESTART_DELAY_S = 2.0
POLL_S = 0.1
STOP_GRACE_S = 20.0


def log(message: str) -> None:
    print(f"loaxa-launcher: {message}", file=sys.stderr, flush=True)


# ---- files ----

def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_json(path: Path, value) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(value, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(path.parent)


def read_state(prefix) -> dict:
    """The launcher's state: {"confirmed", "trial": {"version", "attempts"}, "bad":
    {version: reason}, "rollbacks": [...]}; a missing or damaged file reads empty."""
    try:
        state = json.loads((Path(prefix) / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def installed_version_info(version_dir) -> dict | None:
    """The install marker of a version folder, or None for an incomplete install."""
    try:
        info = json.loads((Path(version_dir) / INSTALL_MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def switch_current(prefix: Path, version: str) -> None:
    for stale in prefix.glob(".current.*.tmp"):
        stale.unlink(missing_ok=True)
    tmp = prefix / f".current.{os.getpid()}.tmp"
    tmp.unlink(missing_ok=True)
    os.symlink(f"versions/{version}", tmp)
    if os.environ.get("LOAXA_TEST_CRASH_AT") == "switch":  # tests: a power cut between link and rename
        os.kill(os.getpid(), 9)
    os.replace(tmp, prefix / "current")
    _fsync_dir(prefix)


# ---- the launcher ----

class Launcher:
    def __init__(self, prefix, args=(), *, once: bool = False, max_attempts: int = DEFAULT_MAX_ATTEMPTS,
                 clock=time.time, restart_delay_s: float = RESTART_DELAY_S):
        self.prefix = Path(prefix)
        self.restart_delay_s = restart_delay_s
        self.args = list(args)
        self.once, self.max_attempts, self.clock = once, max_attempts, clock
        self.state = read_state(self.prefix)
        self.child = None
        self.stopping = False

    def save(self) -> None:
        atomic_write_json(self.prefix / STATE_FILE, self.state)

    def installed(self, version) -> bool:
        return version is not None and installed_version_info(self.prefix / "versions" / version) is not None

    def current(self) -> str | None:
        try:
            return Path(os.readlink(self.prefix / "current")).name
        except OSError:
            return None

    # -- choosing what to run --
    def runnable(self) -> str | None:
        """The version to run now, repairing `current` when it points at nothing usable."""
        version = self.current()
        confirmed = self.state.get("confirmed")
        bad = self.state.get("bad", {})
        if version in bad or not self.installed(version):
            why = "was abandoned before" if version in bad else "is not a complete install"
            if self.installed(confirmed) and confirmed not in bad:
                log(f"current version {version} {why}; back to {confirmed}")
                switch_current(self.prefix, confirmed)
                return confirmed
            log(f"current version {version} {why}, and no confirmed version to go back to")
            return None
        if confirmed is None or not self.installed(confirmed):
            self.state["confirmed"] = version  # nothing to go back to: this one is it
            self.state.pop("trial", None)
            try:
                self.save()
            except OSError as exc:
                log(f"cannot save the launcher's state ({exc.strerror or exc}); running {version} anyway")
        return version

    # -- running --
    def run(self) -> int:
        """Start, supervise and restart; returns the exit code to leave with."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        while True:
            try:
                code = self.run_once()
            except Exception as exc:  # noqa: BLE001 - the launcher never dies: a unit must play
                log(f"error: {type(exc).__name__}: {exc}")
                code = 1
            if self.once or self.stopping:
                return code
            time.sleep(self.restart_delay_s)
            if self.stopping:
                return code

    def _on_signal(self, signum, _frame) -> None:
        self.stopping = True
        child = self.child
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    def run_once(self) -> int:
        if self.stopping:  # a stop that came between two starts
            return 0
        version = self.runnable()
        if version is None:
            return 1
        if version == self.state.get("confirmed"):
            return self._run_confirmed(version)
        return self._run_trial(version)

    def _command(self, version: str) -> list[str]:
        # The resolved folder, not `current/`: a later switch must not change the files a
        # running daemon imports from. -P: the working folder is not on the path, so
        # nothing there can stand in for the installed loaxa.
        return [str(self.prefix / "versions" / version / "bin" / "python"), "-P", "-m", "loaxa"] + self.args

    def _start(self, version: str, health_file: Path | None):
        env = dict(os.environ)
        env.pop(HEALTH_ENV, None)
        if health_file is not None:
            env[HEALTH_ENV] = str(health_file)
        self.child = subprocess.Popen(self._command(version), env=env, stderr=subprocess.PIPE,
                                      stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
        tail = deque(maxlen=5)
        reader = threading.Thread(target=_copy_stderr, args=(self.child.stderr, tail), daemon=True)
        reader.start()
        return self.child, tail, reader

    def _run_confirmed(self, version: str) -> int:
        log(f"starting loaxa {version}")
        child, _, reader = self._start(version, None)
        code = child.wait()
        reader.join(2)
        log(f"loaxa {version} exited with {code}")
        return code

    def _run_trial(self, version: str) -> int:
        trial = self.state.get("trial") or {}
        attempts = trial.get("attempts", 0) if trial.get("version") == version else 0
        if attempts >= self.max_attempts:
            return self.abandon(version, f"did not come online in {attempts} boot attempts "
                                         "(stopped by power loss or a kill during its start)")
        self.state["trial"] = {"version": version, "attempts": attempts + 1, "started_at": self.clock()}
        try:
            self.save()  # counted before it starts: a power cut during the start still counts
        except OSError as exc:
            # An attempt that cannot be counted is not made (it could loop for ever); the
            # confirmed version plays meanwhile, from its own folder, `current` untouched.
            self.state = read_state(self.prefix)
            confirmed = self.state.get("confirmed")
            log(f"cannot count boot attempts ({exc.strerror or exc}): {version} is not tried; running {confirmed}")
            return self._run_confirmed(confirmed) if self.installed(confirmed) else 1
        info = installed_version_info(self.prefix / "versions" / version) or {}
        health_s = float(info.get("health_s") or DEFAULT_HEALTH_S)
        run_dir = self.prefix / "run"
        run_dir.mkdir(exist_ok=True)
        for stale in run_dir.glob("healthy-*"):  # of trials a power cut ended: never a proof for this one
            stale.unlink(missing_ok=True)
        health_file = run_dir / f"healthy-{uuid.uuid4().hex}"
        log(f"trying loaxa {version} (attempt {attempts + 1} of {self.max_attempts}; it must come online "
            f"within {health_s:.0f} s)")
        child, tail, reader = self._start(version, health_file)
        deadline = time.monotonic() + health_s
        while True:
            if health_file.exists():
                health_file.unlink(missing_ok=True)
                return self._confirm(version, child, reader)
            code = child.poll()
            if code is not None:
                reader.join(2)
                if self.stopping:  # stopped on purpose during its trial: not its fault
                    self.state["trial"]["attempts"] = attempts
                    self.save()
                    return code
                last = tail[-1] if tail else "no error output"
                return self.abandon(version, f"exited with code {code} before coming online: {last}")
            if time.monotonic() > deadline:
                _stop(child)
                reader.join(2)
                return self.abandon(version, f"did not come online and pass its start checks within "
                                             f"{health_s:.0f} s")
            time.sleep(POLL_S)

    def _confirm(self, version: str, child, reader) -> int:
        previous = self.state.get("confirmed")
        self.state["confirmed"] = version
        self.state["previous"] = previous
        self.state.pop("trial", None)
        self.save()
        log(f"loaxa {version} is online and passed its start checks: confirmed (was {previous})")
        code = child.wait()
        reader.join(2)
        log(f"loaxa {version} exited with {code}")
        return code

    def abandon(self, version: str, reason: str) -> int:
        back_to = self.state.get("confirmed")
        log(f"loaxa {version} abandoned for {back_to}: {reason}")
        self.state.setdefault("bad", {})[version] = reason
        records = self.state.setdefault("rollbacks", [])
        records.append({"id": uuid.uuid4().hex, "version": version, "to": back_to, "reason": reason,
                        "ts": self.clock()})
        del records[:-MAX_ROLLBACK_RECORDS]
        self.state.pop("trial", None)
        self.save()  # first the verdict, then the link: a kill between is repaired at the next start
        if self.installed(back_to):
            switch_current(self.prefix, back_to)
        return 1


def _copy_stderr(stream, tail) -> None:
    """The child's stderr to ours (the journal), keeping its last lines for a crash reason."""
    for raw in iter(stream.readline, b""):
        try:
            sys.stderr.buffer.write(raw)
            sys.stderr.buffer.flush()
        except (OSError, ValueError):
            pass
        line = raw.decode("utf-8", "replace").strip()
        if line:
            tail.append(line[:300])
    stream.close()


def _stop(child) -> None:
    child.terminate()
    try:
        child.wait(STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


def _die_with_parent() -> None:
    """The child gets SIGTERM if the launcher dies (kill -9 outside systemd): never two daemons."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="loaxa-launcher", description=__doc__.split("\n\n")[0])
    parser.add_argument("--prefix", required=True, type=Path)
    parser.add_argument("--once", action="store_true",
                        help="exit when loaxa exits (systemd restarts the launcher); default under systemd")
    parser.add_argument("--max-attempts", type=int, default=DEFAULT_MAX_ATTEMPTS)
    parser.add_argument("--restart-delay", type=float, default=RESTART_DELAY_S, metavar="S",
                        help="seconds between an exit and the next start (without --once)")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="loaxa's arguments, after --")
    ns = parser.parse_args(argv)
    args = ns.args[1:] if ns.args[:1] == ["--"] else ns.args
    once = ns.once or bool(os.environ.get("INVOCATION_ID"))
    return Launcher(ns.prefix, args or ["run"], once=once, max_attempts=max(1, ns.max_attempts),
                    restart_delay_s=max(0.0, ns.restart_delay)).run()


if __name__ == "__main__":
    sys.exit(main())
