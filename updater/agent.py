"""The unit's side of updates, without the daemon: from signed releases to a switched version.

`UpdateAgent` holds the releases judged on the unit's release topics (one per topic, the
latest), and `step()` does the next thing the rule (`choose_release`) asks for:
download (resumable, cancellable: the caller sets `cancel` when air needs the link or the
disk), install beside the running version, then — only when `between_playbacks()` says
so — switch `current` and ask for a restart (`request_restart`: the daemon stops; the
launcher starts the new version on trial). Each outcome is an event through `emit(kind,
detail, **fields)`: `update.refused`, `update.downloaded`, `update.installed`, and
`update.rolled_back` for each rollback the launcher recorded (`report_rollbacks`), each
reported once (ids kept in `<prefix>/reported-rollbacks.json`).

What remains for the daemon (issue 15): subscribe to the release topics, hand their
messages to `offer`, run `step` on a background worker that yields to air and to
emergency media, call `report_rollbacks` once online.
"""

import json
import logging
import threading

from loaxa.errors import Rejected
from loaxa.fsio import atomic_write
from updater.install import Installer, TransientUpdateError, UpdateError
from updater.launcher import read_state
from updater.release import choose_release, judge_release

log = logging.getLogger("loaxa.update")
REPORTED_FILE = "reported-rollbacks.json"


def runs_from(prefix) -> bool:
    """Is this process's loaxa one of the prefix's versions (started by the launcher)?"""
    import sys
    from pathlib import Path
    try:
        return Path(sys.prefix).resolve().is_relative_to((Path(prefix) / "versions").resolve())
    except OSError:
        return False


class UpdateAgent:
    def __init__(self, installer: Installer, *, running: str, arch: str, emit, between_playbacks=lambda: True,
                 request_restart=lambda: None, managed: bool | None = None):
        self.installer, self.running, self.arch = installer, running, arch
        # Only a loaxa the launcher started from the prefix may switch: a service running
        # the pip-installed loaxa would restart into the same old version, switch again,
        # and restart for ever.
        self.managed = runs_from(installer.prefix) if managed is None else managed
        self.emit, self.between_playbacks, self.request_restart = emit, between_playbacks, request_restart
        self.held: dict[str, object] = {}  # topic -> Release
        self._said: set = set()  # (kind, seq, detail) already reported: each once
        self._lock = threading.Lock()

    # ---- releases in ----
    def offer(self, topic: str, raw: bytes, authority, *, now, context) -> bool:
        """A message from a release topic: kept when it passes every check, else refused
        with an `update.refused` event naming why. An empty retained message clears the topic."""
        if not raw:
            with self._lock:
                self.held.pop(topic, None)
            return False
        try:
            release, _ = judge_release(raw, topic, authority, now=now, context=context)
        except Rejected as exc:
            self._say("update.refused", None, f"{topic}: {exc}")
            return False
        with self._lock:
            self.held[topic] = release
        return True

    def _say(self, kind: str, release, detail: str, **fields) -> None:
        key = (kind, getattr(release, "seq", None), detail)
        if key in self._said:
            return
        self._said.add(key)
        if release is not None:
            fields = {"seq": release.seq, "version": release.version, **fields}
        self.emit(kind, detail, **fields)

    # ---- the next step ----
    def step(self, cancel: threading.Event | None = None) -> str:
        """Do what the followed release needs next; returns what happened: "idle",
        "refused", "waiting" (installed; not between playbacks), "switched", "retry"
        (a transient failure: call again later), "failed"."""
        with self._lock:
            held = list(self.held.values())
        choice = choose_release(held, self.running, self.arch, bad=self.installer.rolled_back())
        if choice.action == "none":
            self._prune()
            return "idle"
        release = choice.release
        if choice.action == "refused":
            self._say("update.refused", release, choice.reason)
            return "refused"
        if not self.managed:
            self._say("update.refused", release, f"release seq {release.seq} (version {release.version}): this "
                      "unit runs loaxa outside the update launcher; install a first version with `loaxa release "
                      "install` and the service again with `loaxa provision --install-service`")
            return "refused"
        try:
            if not self.installer.is_installed(release.version):
                bundle = self.installer.fetch(release.artifact(self.arch), cancel=cancel)
                self._say("update.downloaded", release, f"loaxa {release.version} downloaded and verified")
                self.installer.install(release.version, bundle, health_s=release.health_s, cancel=cancel)
                self.installer.discard_download(release.artifact(self.arch).sha256)
                self._say("update.installed", release, f"loaxa {release.version} installed beside {self.running}")
        except TransientUpdateError as exc:
            log.info("update to %s paused: %s", release.version, exc)
            return "retry"
        except UpdateError as exc:
            self._say("update.refused", release, f"release seq {release.seq} (version {release.version}): {exc}")
            return "failed"
        if not self.between_playbacks():
            return "waiting"
        self.installer.switch(release.version)
        log.info("switched to loaxa %s; restarting into it", release.version)
        self.request_restart()
        return "switched"

    def _prune(self) -> None:
        """Keep the running version and the one it would go back to; remove the others
        (an SD card holds a few versions of 200+ MB at most)."""
        state = read_state(self.installer.prefix)
        keep = {self.running, state.get("confirmed"), state.get("previous")}
        try:
            for version in self.installer.prune(keep):
                log.info("loaxa %s removed (neither running nor the version to go back to)", version)
        except OSError as exc:
            log.warning("old versions not removed: %s", exc.strerror or exc)

    # ---- what the launcher recorded ----
    def report_rollbacks(self) -> int:
        """One `update.rolled_back` event per rollback the launcher recorded and nobody has
        reported yet; returns how many. The ids reported are saved before the next call."""
        path = self.installer.prefix / REPORTED_FILE
        try:
            reported = set(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):
            reported = set()
        held = [r for r in read_state(self.installer.prefix).get("rollbacks", []) if isinstance(r, dict)]
        reported &= {r.get("id") for r in held}  # the launcher keeps the last few; so does this file
        records = [r for r in held if r.get("id") not in reported]
        for record in records:
            self.emit("update.rolled_back",
                      f"loaxa {record.get('version')} was rolled back to {record.get('to')}: {record.get('reason')}",
                      version=record.get("version"), to=record.get("to"), reason=record.get("reason"))
            reported.add(record.get("id"))
        if records:
            try:
                atomic_write(path, json.dumps(sorted(reported)).encode())
            except OSError as exc:  # reported again at the next start: a duplicate, never a loss
                log.error("cannot save which rollbacks were reported: %s", exc.strerror or exc)
        return len(records)
