"""The journal of the playback in progress: proof of play survives kill -9 and power cuts.

While an item plays, its would-be playlog and the seconds played so far are kept
in one small file, replaced atomically every few seconds. After a crash the next
start finds it and publishes the record as `interrupted` with those seconds.
"""

import json
import logging
import threading
from pathlib import Path

from loaxa.fsio import atomic_write

log = logging.getLogger("loaxa.journal")

PROGRESS_EVERY_S = 2.0


class PlaybackJournal:
    def __init__(self, path: Path):
        self.path = Path(path)
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
            self.path.unlink(missing_ok=True)

    def _write(self) -> None:
        atomic_write(self.path, json.dumps(self._record, ensure_ascii=False).encode("utf-8"))

    def recover(self) -> dict | None:
        """The record of a playback a crash cut short, or None. The file is left in place
        until `end()`, so a crash during recovery loses nothing either."""
        try:
            return json.loads(self.path.read_text("utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.error("playback journal unreadable (%s); discarded", exc)
            self.path.unlink(missing_ok=True)
            return None


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
