"""The journal of the playback in progress: proof of play survives kill -9 and power cuts.

While an item plays, its would-be playlog and the seconds played so far are kept
in one small file, replaced atomically every few seconds. After a crash the next
start finds it and publishes the record as `interrupted` with those seconds.

A journal write that fails (full or read-only disk) never stops the playback: it is
reported to `on_write_failed(what, exc)` and the playlog is still written at the end.
A damaged journal is moved aside (`playback.journal.corrupt-<time>`) and reported to
`on_corrupt(path, moved_to, why)`; the planner's ledger already keeps the occurrence
from playing twice.
"""

import json
import logging
import threading
from datetime import datetime
from pathlib import Path

from loaxa.fsio import atomic_write, quarantine

log = logging.getLogger("loaxa.journal")

PROGRESS_EVERY_S = 2.0


class PlaybackJournal:
    def __init__(self, path: Path, *, on_write_failed=None, on_corrupt=None):
        self.path = Path(path)
        self.on_write_failed = on_write_failed or (lambda what, exc: None)
        self.on_corrupt = on_corrupt or (lambda path, moved_to, why: None)
        self._lock = threading.Lock()
        self._record = None
        self._written_at = None

    def begin(self, record: dict) -> None:
        with self._lock:
            self._record = dict(record)
            self._write()

    def progress(self, played_s: float, monotonic_now: float) -> None:
        """Note the seconds played; written to disk at most every PROGRESS_EVERY_S."""
        with self._lock:
            if self._record is None:
                return
            self._record["played_s"] = round(played_s, 3)
            if self._written_at is None or monotonic_now - self._written_at >= PROGRESS_EVERY_S:
                self._written_at = monotonic_now
                self._write()

    def end(self) -> None:
        with self._lock:
            self._record = None
            self._written_at = None
            try:
                self.path.unlink(missing_ok=True)
            except OSError as exc:  # read-only: the next start republishes the same id (dropped)
                self._failed(exc)

    def _write(self) -> None:
        try:
            atomic_write(self.path, json.dumps(self._record, ensure_ascii=False).encode("utf-8"))
        except OSError as exc:
            self._failed(exc)

    def _failed(self, exc: OSError) -> None:
        try:
            self.on_write_failed(self.path.name, exc)
        except Exception:  # noqa: BLE001 - the playback goes on
            log.exception("could not report the failed journal write")

    def recover(self) -> dict | None:
        """The record of a playback a crash cut short, or None. The file is left in place
        until `end()`, so a crash during recovery loses nothing either."""
        try:
            record = json.loads(self.path.read_text("utf-8"))
            _check_record(record)
            return record
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError, RecursionError) as exc:
            moved_to = quarantine(self.path)
            log.error("playback journal unreadable (%s); moved to %s", exc, moved_to)
            try:
                self.on_corrupt(self.path, moved_to, str(exc))
            except Exception:  # noqa: BLE001 - the start goes on
                log.exception("could not report the damaged journal")
            return None


def _check_record(record) -> None:
    """Raise ValueError/TypeError unless `record` is a playlog the recovery can finish."""
    if not isinstance(record, dict) or not isinstance(record.get("id"), str):
        raise ValueError("not a playlog record")
    if record.get("started_at") is not None:
        datetime.fromisoformat(record["started_at"])
    played = record.get("played_s")
    if played is not None and (isinstance(played, bool) or not isinstance(played, (int, float))
                               or not 0 <= played < 10 ** 6):
        raise ValueError(f"played_s: not a number of seconds: {played!r}")


class CountingSink:
    """Wraps the speaker to count the audio written, for the journal."""

    def __init__(self, sink, on_progress):
        self._sink = sink
        self._on_progress = on_progress
        self._bytes = 0

    def open(self, label: str) -> None:
        self._bytes = 0
        self._sink.open(label)

    def write(self, pcm: bytes) -> None:
        self._sink.write(pcm)
        self._bytes += len(pcm)
        self._on_progress(self._sink.fmt.seconds(self._bytes))

    def close(self) -> None:
        self._sink.close()

    def abort(self) -> None:
        self._sink.abort()

    def __getattr__(self, name):
        return getattr(self._sink, name)
