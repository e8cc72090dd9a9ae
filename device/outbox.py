"""Store-and-forward outbox: a record is on disk before anyone is told about it.

Playlogs and events go through here. A row is deleted only when the broker has
acknowledged its publish with a success reason code, so a broker outage, a
crash or a power cut loses nothing (the collector drops duplicates by `id`).

The outbox is bounded: past `max_records`, health samples go first, then events,
and playlogs only when nothing else is left (`dropped` counts what went, so the
unit can report it).
"""

import logging
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("loaxa.outbox")

DEFAULT_MAX_RECORDS = 50_000
# What is given up first when the outbox is full: the least valuable first.
DROP_ORDER = ("health", "event", "record", "playlog")


@dataclass(frozen=True)
class OutboxRecord:
    seq: int
    topic: str
    payload: bytes
    qos: int
    kind: str


class Outbox:
    def __init__(self, path: Path, max_records: int = DEFAULT_MAX_RECORDS):
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        # WAL + FULL: a committed row survives power loss, and readers never block the writer.
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT,"
            " topic TEXT NOT NULL, payload BLOB NOT NULL, qos INTEGER NOT NULL,"
            " kind TEXT NOT NULL, created REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0))")
        self._closed = False
        self.max_records = max_records
        self.dropped: dict[str, int] = {}
        self._count = self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]

    def add(self, topic: str, payload: bytes, qos: int = 1, kind: str = "record") -> int:
        with self._lock:
            cur = self._db.execute("INSERT INTO outbox (topic, payload, qos, kind) VALUES (?,?,?,?)",
                                   (topic, payload, qos, kind))
            self._count += 1
            if self._count > self.max_records:
                self._trim(self._count - self.max_records)
            return cur.lastrowid

    def _trim(self, excess: int) -> None:
        for kind in DROP_ORDER + (None,):
            if excess <= 0:
                return
            where, args = ("kind = ?", (kind,)) if kind else ("1", ())
            gone = self._db.execute(
                f"DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox WHERE {where} ORDER BY seq LIMIT ?)",
                (*args, excess)).rowcount
            if gone:
                self.dropped[kind or "other"] = self.dropped.get(kind or "other", 0) + gone
                log.warning("outbox full: dropped %d oldest %s record(s)", gone, kind or "other")
            self._count -= gone
            excess -= gone

    def pending(self, after: int = 0, limit: int = 500) -> list[OutboxRecord]:
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, topic, payload, qos, kind FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?",
                (after, limit)).fetchall()
        return [OutboxRecord(seq, topic, bytes(payload), qos, kind) for seq, topic, payload, qos, kind in rows]

    def remove(self, seq: int) -> None:
        with self._lock:
            self._count -= self._db.execute("DELETE FROM outbox WHERE seq = ?", (seq,)).rowcount

    def remove_many(self, seqs) -> None:
        """One transaction (one fsync) for many acknowledged rows."""
        seqs = list(seqs)
        if not seqs:
            return
        with self._lock:
            self._db.execute("BEGIN")
            try:
                gone = sum(self._db.execute("DELETE FROM outbox WHERE seq = ?", (seq,)).rowcount
                           for seq in seqs)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._count -= gone

    def depth(self) -> int:
        with self._lock:
            return self._count

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._db.close()
