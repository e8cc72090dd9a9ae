"""The state folder's health: free space, full, read-only; what could not be stored.

A unit keeps playing whatever its storage does (docs/design.md, "Field faults:
storage"). Parts that fail to write a state file say so here (`write_failed`);
the monitor looks at the folder every `interval_s` and at once after a failure,
and reports the state as an event:

- `storage.low`: free space below `low_mb` (`unit.storage_low_mb`, default 200 MB,
  the same line health uses);
- `storage.full`: writes fail with ENOSPC (or less than FULL_MB is free);
- `storage.readonly`: the file system is mounted read-only, or writes fail with EROFS;
- `storage.recovered`: writes work again (after full or read-only) or space is above
  the low line again.

Each bad state is reported on entering it and again every `repeat_s` (an hour) while
it lasts, so an operator who missed the first event still hears of it; the time is
the unit's injectable clock. `faults()` lists the state for health and status. When
writes work, `on_writable` callbacks run (the planner saves its ledger, records kept
in memory go into the outbox).
"""

import errno
import logging
import os
import shutil
import threading
from pathlib import Path

from loaxa.fsio import probe_writable

log = logging.getLogger("loaxa.storage")

DEFAULT_LOW_MB = 200.0
FULL_MB = 1.0  # below this a state write cannot be counted on, even if a probe passes
CHECK_INTERVAL_S = 60.0
REPEAT_S = 3600.0
MAX_WAIT_S = 1.0  # looks at the (injectable) clock at least this often

OK, LOW, FULL, READONLY = "ok", "low", "full", "readonly"


def _existing(folder: Path) -> Path:
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


class StorageMonitor:
    def __init__(self, folder, *, clock, on_event, low_mb: float = DEFAULT_LOW_MB,
                 interval_s: float = CHECK_INTERVAL_S, repeat_s: float = REPEAT_S):
        """`on_event(kind, detail, **extra)` publishes an event (never raises)."""
        self.folder = Path(folder)
        self._clock = clock
        self._on_event = on_event
        self.low_mb = low_mb
        self.interval_s, self.repeat_s = interval_s, repeat_s
        self.on_writable: list = []
        self.state = OK
        self.free_mb: float | None = None
        self._lock = threading.Lock()
        self._failed: dict[str, str] = {}  # what could not be stored -> why, since the last good probe
        self._suspect = False
        self._reported_at: float | None = None  # monotonic time of the last event for `state`
        self._next_check = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = None

    # ---- what the parts tell it ----
    def write_failed(self, what: str, exc: OSError) -> None:
        """A state write failed (`what` names the file or record). Never raises."""
        with self._lock:
            self._failed[what] = exc.strerror or str(exc)
            self._suspect = True
        log.error("could not store %s: %s", what, exc)
        self._wake.set()

    def unsaved(self) -> list[str]:
        with self._lock:
            return sorted(self._failed)

    # ---- looking ----
    def check(self) -> str:
        """Look at the folder now; report a new state (or a bad one an hour old)."""
        with self._lock:
            suspect, self._suspect = self._suspect, False
        state, reason = self._look(suspect)
        if state in (OK, LOW):
            with self._lock:
                self._failed.clear()
            self._writable()
        self._report(state, reason)
        return state

    def _look(self, suspect: bool) -> tuple[str, str]:
        folder = _existing(self.folder)
        try:
            vfs = os.statvfs(folder)
            self.free_mb = shutil.disk_usage(folder).free / (1024 * 1024)
        except OSError as exc:
            return FULL, f"cannot read the state folder: {exc.strerror or exc}"
        if vfs.f_flag & os.ST_RDONLY:
            return READONLY, "the file system is mounted read-only"
        if suspect or self.state in (FULL, READONLY) or self.free_mb < FULL_MB:
            try:
                probe_writable(folder)
            except OSError as exc:
                if exc.errno == errno.EROFS:
                    return READONLY, f"writes fail: {exc.strerror}"
                return FULL, f"writes fail: {exc.strerror or exc}"
        if self.free_mb < FULL_MB:
            return FULL, f"{self.free_mb:.1f} MB free"
        if self.free_mb < self.low_mb:
            return LOW, f"{self.free_mb:.0f} MB free, below {self.low_mb:g} MB"
        return OK, f"{self.free_mb:.0f} MB free"

    def _writable(self) -> None:
        for callback in list(self.on_writable):
            try:
                callback()
            except Exception:  # noqa: BLE001 - one part's retry must not stop the others
                log.exception("retrying a write after storage came back failed")

    def _report(self, state: str, reason: str) -> None:
        now = self._clock.monotonic()
        previous = self.state
        self.state = state
        if state == OK:
            self._reported_at = None
            if previous != OK:
                self._event("storage.recovered", f"the state folder {self.folder} is writable again "
                                                 f"({reason})", previous=previous)
            return
        if state == previous and self._reported_at is not None and now - self._reported_at < self.repeat_s:
            return
        if state == LOW and previous in (FULL, READONLY):
            self._event("storage.recovered", f"the state folder {self.folder} is writable again, "
                                             f"space is still low ({reason})", previous=previous)
        self._reported_at = now
        self._event(f"storage.{state}", self._detail(state, reason), previous=previous)

    def _detail(self, state: str, reason: str) -> str:
        unsaved = self.unsaved()
        what = {LOW: f"the state folder {self.folder} is low on space",
                FULL: f"the state folder {self.folder} is full",
                READONLY: f"the state folder {self.folder} is read-only"}[state]
        tail = "; playback goes on, records are kept in memory (bounded) and stored when it can write again"
        if state == LOW:
            tail = ""
        not_stored = f"; not stored: {', '.join(unsaved)}" if unsaved else ""
        return f"{what} ({reason}){not_stored}{tail}"

    def _event(self, kind: str, detail: str, **extra) -> None:
        log.warning("%s: %s", kind, detail)
        try:
            free = None if self.free_mb is None else round(self.free_mb, 1)
            self._on_event(kind, detail, folder=str(self.folder), free_mb=free, **extra)
        except Exception:  # noqa: BLE001 - reporting must never stop the monitor
            log.exception("could not report %s", kind)

    def faults(self) -> list[str]:
        """For health and status: the storage state when it is not ok."""
        if self.state == OK:
            return []
        unsaved = self.unsaved()
        return [f"storage.{self.state}" + (f": not stored: {', '.join(unsaved)}" if unsaved else "")]

    # ---- the thread ----
    def start(self) -> "StorageMonitor":
        self._thread = threading.Thread(target=self._run, name="storage", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            now = self._clock.monotonic()
            if self._next_check is None or now >= self._next_check or self._wake.is_set():
                self._wake.clear()
                try:
                    self.check()
                except Exception:  # noqa: BLE001 - the monitor must never die
                    log.exception("storage check failed")
                self._next_check = self._clock.monotonic() + self.interval_s
            self._wake.wait(MAX_WAIT_S)

    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        """Safe twice."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(2)
