"""Store-and-forward outbox: a record is on disk before anyone is told about it.

Playlogs, events and replies go through here. A row is deleted only when the broker
has acknowledged its publish with a success reason code, so a broker outage, a crash
or a power cut loses nothing (the collector drops duplicates by `id`).

Bounded by bytes (`[outbox].max_mb`), not by a count: past the budget the oldest
health samples go first, then events, replies and other records, and playlogs only
when nothing else is left. `dropped` counts what went; `on_dropped(counts)` is told
(at most once a minute, the counts since the last call) so the unit can say so in an
`outbox.dropped` event.

Faults never reach the caller (docs/design.md, "Outbox under backlog and disk faults"):
- A damaged file ("file is not a database", truncated, garbage) is moved aside with its
  -wal/-shm as `outbox.sqlite.corrupt-<UTC time>` for inspection, the rows still readable
  are copied into a fresh file, and `recovered_from` names where it went.
- A full, read-only or failing disk (ENOSPC, EROFS, SQLITE_FULL, SQLITE_READONLY, disk
  I/O errors), at open or later: records are kept in a bounded in-memory queue
  (`memory_limit`, least valuable dropped first, counted) that the link publishes like
  any other; `degraded` says why in a few words. Every `retry_s` the disk is tried again
  and what waits in memory moves back to SQLite, oldest first, keeping its `seq`.
"""

import errno
import logging
import os
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

log = logging.getLogger("loaxa.outbox")

MB = 1024 * 1024
DEFAULT_MAX_MB = 256
DEFAULT_MAX_BYTES = DEFAULT_MAX_MB * MB
ROW_OVERHEAD = 48        # bytes a row costs beyond topic + payload (seq, qos, kind, created, index)
MEMORY_LIMIT = 1_000     # records kept in memory while the disk cannot take them
RETRY_S = 10.0           # how often a failing disk is tried again
REPORT_S = 60.0          # at most one drop report a minute (the report is itself a record)
KEEP_CORRUPT = 3         # damaged files kept for inspection; older ones are deleted
MAX_UNDELETED = 20_000   # acknowledged rows a refusing disk would not delete, remembered (~1.5 MB)
# What is given up first when the budget is reached: the least valuable first. Kinds not
# named here come after these; playlogs (the proof of play) always last.
DROP_ORDER = ("health", "event", "reply", "record")
LAST_TO_DROP = "playlog"

FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
READONLY_ERRNOS = {errno.EROFS, errno.EACCES, errno.EPERM}
DISK_ERRORS = (sqlite3.OperationalError, sqlite3.DatabaseError, OSError)


@contextmanager
def _transaction(db, begin: str = "BEGIN IMMEDIATE"):
    """One transaction: committed when the block ends, rolled back when it raises (a
    rollback that fails too, on a failing disk, must not hide the first error)."""
    db.execute(begin)
    try:
        yield db
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            try:
                db.execute("ROLLBACK")
            except sqlite3.Error:
                pass
        raise


@dataclass(frozen=True)
class OutboxRecord:
    seq: int
    topic: str
    payload: bytes
    qos: int
    kind: str


def is_corrupt(exc: BaseException) -> bool:
    """SQLite says the file is damaged (as opposed to a disk that refuses writes)."""
    name = getattr(exc, "sqlite_errorname", None) or ""
    text = str(exc).lower()
    return (name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB"))
            or "not a database" in text or "malformed" in text)


def _probe_write(folder: Path) -> int | None:
    """The errno of writing one block into `folder`, or None when that works. statvfs is not
    enough: ext4's emergency read-only (errors=remount-ro on a failing card) leaves it "rw"."""
    probe = Path(folder) / ".outbox-probe"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, b"\0" * 4096)
            os.fsync(fd)
        finally:
            os.close(fd)
            probe.unlink(missing_ok=True)
    except OSError as exc:
        try:
            probe.unlink(missing_ok=True)
        except OSError:
            pass
        return exc.errno
    return None


def disk_fault_reason(exc: BaseException, folder: Path) -> str:
    """A few words for health `faults`: what the state disk is doing wrong."""
    name = getattr(exc, "sqlite_errorname", None) or ""
    code = getattr(exc, "errno", None)
    text = str(exc).lower()
    if code in READONLY_ERRNOS or name.startswith("SQLITE_READONLY") or "readonly" in text \
            or "read-only" in text:
        return "state folder read-only"
    if code in FULL_ERRNOS or name == "SQLITE_FULL" or "disk is full" in text:
        return "state disk full"
    # SQLite reports EROFS/ENOSPC on a write as a plain "disk I/O error": ask the disk itself.
    code = _probe_write(folder)
    if code in READONLY_ERRNOS:
        return "state folder read-only"
    if code in FULL_ERRNOS:
        return "state disk full"
    if is_corrupt(exc):
        return "outbox file damaged"
    return f"state disk error ({exc})"


def _plausible(row) -> bool:
    topic, payload, qos, kind = row
    return (isinstance(topic, str) and bool(topic) and isinstance(payload, bytes)
            and qos in (0, 1, 2) and isinstance(kind, str) and bool(kind))


class Outbox:
    def __init__(self, path: Path, max_bytes: int = DEFAULT_MAX_BYTES, *,
                 memory_limit: int = MEMORY_LIMIT, recover: bool = True,
                 connect: Callable = sqlite3.connect, clock: Callable[[], float] = time.monotonic,
                 retry_s: float = RETRY_S, report_s: float = REPORT_S):
        """`recover=False` (for `loaxa status`, which only looks) raises on a damaged file or
        a disk fault instead of moving anything aside or falling back to memory.
        `connect` is sqlite3.connect's seam (tests inject failing connections)."""
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.memory_limit = memory_limit
        self._recover = recover
        self._connect = connect
        self._clock = clock
        self._retry_s = retry_s
        self._report_s = report_s
        self._lock = threading.RLock()
        self._db: sqlite3.Connection | None = None
        self._closed = False
        self._count = 0            # rows on disk
        self._bytes = 0            # their size, as ROW_OVERHEAD + topic + payload
        self._last_seq = 0         # the highest seq handed out
        self._memory: dict[int, OutboxRecord] = {}  # seq -> record the disk could not take
        self._renamed: dict[int, int] = {}          # memory seq -> disk seq it was stored under
        self._undeleted: set[int] = set()           # acknowledged, but the delete failed
        self._last_try = float("-inf")
        self._last_report = float("-inf")
        self._unreported: dict[str, int] = {}
        self._force_set_aside = False
        self.epoch = 0             # bumped when rows appear below seqs already handed out
        self.dropped: dict[str, int] = {}
        self.degraded: str | None = None
        self.recovered_from: Path | None = None
        self.salvaged = 0
        self.on_dropped: Callable[[dict], None] | None = None
        if recover:
            with self._lock:
                self._try_open()
        else:
            self._db = self._open()

    # ---- opening, and what to do when the file or the disk is bad ----
    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = self._connect(str(self.path), check_same_thread=False, isolation_level=None)
        try:
            # WAL + FULL: a committed row survives power loss, and readers never block the writer.
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute(
                "CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT,"
                " topic TEXT NOT NULL, payload BLOB NOT NULL, qos INTEGER NOT NULL,"
                " kind TEXT NOT NULL, created REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0))")
            self._keep_size(db)
            self._seqs_above_handed_out(db)
        except BaseException:
            db.close()
            raise
        self._read_size(db)
        return db

    def _seqs_above_handed_out(self, db) -> None:
        """A fresh file (after a damaged one) or one opened late numbers its new rows above
        every seq already handed out: a late PUBACK for an old seq must never delete another
        record that happens to get the same number."""
        top = db.execute("SELECT MAX(seq) FROM outbox").fetchone()[0] or 0
        used = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
        floor = max(top, used[0] if used else 0)
        if self._last_seq > floor:
            if used:
                db.execute("UPDATE sqlite_sequence SET seq = ? WHERE name = 'outbox'", (self._last_seq,))
            else:
                db.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('outbox', ?)", (self._last_seq,))
        self._last_seq = max(self._last_seq, floor)

    @staticmethod
    def _keep_size(db) -> None:
        """Rows and bytes kept by triggers in one row: the budget is known at open without
        reading a 256 MB file (the first open of an older file counts it once)."""
        if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'outbox_size_add'").fetchone():
            return
        row = f"length({{0}}.topic) + length({{0}}.payload) + {ROW_OVERHEAD}"
        with _transaction(db):
            # Trimming picks the oldest rows of one kind: without this it scans the whole table.
            db.execute("CREATE INDEX IF NOT EXISTS outbox_kind ON outbox (kind, seq)")
            db.execute("CREATE TABLE IF NOT EXISTS outbox_size (id INTEGER PRIMARY KEY CHECK (id = 1),"
                       " rows INTEGER NOT NULL, bytes INTEGER NOT NULL)")
            db.execute("CREATE TRIGGER outbox_size_add AFTER INSERT ON outbox BEGIN UPDATE outbox_size"
                       f" SET rows = rows + 1, bytes = bytes + {row.format('NEW')} WHERE id = 1; END")
            db.execute("CREATE TRIGGER outbox_size_remove AFTER DELETE ON outbox BEGIN UPDATE outbox_size"
                       f" SET rows = rows - 1, bytes = bytes - ({row.format('OLD')}) WHERE id = 1; END")
            db.execute("INSERT OR REPLACE INTO outbox_size (id, rows, bytes)"
                       f" SELECT 1, COUNT(*), CAST(TOTAL({row.format('outbox')}) AS INTEGER) FROM outbox")

    @staticmethod
    def _size_of(db) -> tuple[int, int]:
        return db.execute("SELECT rows, bytes FROM outbox_size WHERE id = 1").fetchone()

    def _read_size(self, db) -> None:
        """After a commit only: a rolled-back transaction must not leave its counts behind."""
        self._count, self._bytes = self._size_of(db)

    def _try_open(self) -> bool:
        """Open (or reopen) the file; on a damaged one, set it aside and start afresh.
        False (and `degraded` set) when the disk will not have it: records stay in memory."""
        self._last_try = self._clock()
        try:
            try:
                if self._force_set_aside:  # found damaged while running
                    raise sqlite3.DatabaseError("database disk image is malformed")
                db = self._open()
            except sqlite3.DatabaseError as exc:
                if not is_corrupt(exc):
                    raise
                damaged = self._set_aside(exc)
                db = self._open()
                self._salvage(damaged, db)
            self._trim_at_open(db)
        except DISK_ERRORS as exc:
            self._degrade(exc)
            return False
        self._db = db
        self.epoch += 1  # rows on disk may sit below seqs already handed out from memory
        return True

    def _trim_at_open(self, db) -> None:
        """A budget lowered in the config applies at once (the drops are reported as usual)."""
        if self._bytes <= self.max_bytes:
            return
        try:
            with _transaction(db):
                gone = self._trim(db)
        except BaseException:
            db.close()
            raise
        self._read_size(db)
        self._count_drops(gone)

    def _set_aside(self, exc) -> Path:
        """Move the damaged file, -wal and -shm out of the way, kept for inspection."""
        self._force_set_aside = False
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        n = 1
        while target.exists():
            target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{n}")
            n += 1
        # The main file last: a crash half-way leaves a damaged file found again at the next
        # start, never a stale -wal that SQLite would replay into a fresh database.
        for suffix in ("-wal", "-shm", ""):
            source = Path(f"{self.path}{suffix}")
            if source.exists():
                os.replace(source, Path(f"{target}{suffix}"))
        self._fsync_folder()
        log.error("outbox %s is damaged (%s): moved aside to %s, starting a fresh one",
                  self.path, exc, target.name)
        self.recovered_from = target
        self._prune_corrupt()
        return target

    def _fsync_folder(self) -> None:
        try:
            fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError:
            pass

    def _prune_corrupt(self) -> None:
        """Keep the newest KEEP_CORRUPT damaged files: an SD card that keeps corrupting must not fill up."""
        damaged = sorted((p for p in self.path.parent.glob(f"{self.path.name}.corrupt-*")
                          if not p.name.endswith(("-wal", "-shm"))),
                         key=lambda p: (p.stat().st_ctime_ns, p.name))  # ctime: when it was set aside
        for old in damaged[:-KEEP_CORRUPT]:
            for suffix in ("", "-wal", "-shm"):
                try:
                    Path(f"{old}{suffix}").unlink(missing_ok=True)
                except OSError:
                    pass

    def _salvage(self, damaged: Path, db: sqlite3.Connection) -> None:
        """Copy the rows still readable from a damaged file, oldest first, until the first error:
        read-only with its WAL (the newest records may only be there), else the main file alone."""
        uri = damaged.absolute().as_uri()
        copied = self._copy_rows(f"{uri}?mode=ro", db) or self._copy_rows(f"{uri}?immutable=1", db)
        if copied:
            self.salvaged += copied
            self._read_size(db)
            self._last_seq = max(self._last_seq, db.execute("SELECT MAX(seq) FROM outbox").fetchone()[0] or 0)
            log.warning("outbox: %d record(s) salvaged from the damaged file", copied)

    @staticmethod
    def _copy_rows(uri: str, db) -> int:
        """Rows are copied a thousand at a time: a damaged 256 MB file is never held in memory."""
        copied, chunk = 0, []

        def store():
            with _transaction(db, "BEGIN"):
                db.executemany("INSERT INTO outbox (topic, payload, qos, kind) VALUES (?,?,?,?)", chunk)
            return len(chunk)

        try:
            old = sqlite3.connect(uri, uri=True)
        except sqlite3.Error:
            return 0
        try:
            try:
                # A file shorter than its header says is refused at once unless the schema
                # checks are relaxed; the pages that are there can then still be read.
                old.execute("PRAGMA writable_schema=ON")
                for row in old.execute("SELECT topic, payload, qos, kind FROM outbox ORDER BY seq"):
                    if _plausible(row):  # a damaged page can still yield rows of nonsense
                        chunk.append(row)
                    if len(chunk) == 1000:
                        copied += store()
                        chunk = []
            except sqlite3.Error:
                pass  # the damaged page: what came before it is still worth keeping
            if chunk:
                copied += store()
        except sqlite3.Error:  # the fresh file refuses the copy (a full disk): keep what is in
            pass
        finally:
            old.close()
        return copied

    def _degrade(self, exc) -> None:
        reason = disk_fault_reason(exc, self.path.parent)
        if reason != self.degraded:
            log.error("outbox: %s (%s): records are kept in memory (at most %d) until it works again",
                      reason, exc, self.memory_limit)
        self.degraded = reason
        if is_corrupt(exc) and self._recover:
            # Damaged under our feet: set it aside at the next write, not after `retry_s`.
            self._force_set_aside = True
            self._last_try = float("-inf")
            self._close_db()

    def _close_db(self) -> None:
        if self._db is not None:
            try:
                self._db.close()
            except sqlite3.Error:
                pass
            self._db = None

    def _disk_usable(self) -> bool:
        """The disk is tried again at most every `retry_s` once it has failed."""
        if self._closed:
            return False
        if self.degraded is None and self._db is not None:
            return True
        if self._clock() - self._last_try < self._retry_s:
            return False
        self._last_try = self._clock()
        return self._db is not None or self._try_open()

    # ---- adding ----
    def add(self, topic: str, payload: bytes, qos: int = 1, kind: str = "record") -> int:
        """Store a record; never raises for a disk fault (it is then kept in memory)."""
        with self._lock:
            seq = None
            if self._disk_usable():
                try:
                    seq = self._store(topic, payload, qos, kind)
                except DISK_ERRORS as exc:
                    self._degrade(exc)
            if seq is None:
                seq = self._keep_in_memory(topic, payload, qos, kind)
        self._report_drops()
        return seq

    def _store(self, topic: str, payload: bytes, qos: int, kind: str) -> int:
        """One transaction (one fsync): what waited in memory, the new row, the trim."""
        db = self._db
        with _transaction(db):
            moved = self._move_memory_to(db)
            seq = db.execute("INSERT INTO outbox (topic, payload, qos, kind) VALUES (?,?,?,?)",
                             (topic, payload, qos, kind)).lastrowid
            gone = self._trim(db)
        self._finish_move(moved)
        self._read_size(db)
        self._count_drops(gone)
        self._last_seq = max(self._last_seq, seq)
        if self.degraded:
            log.warning("outbox: the state disk takes records again")
            self.degraded = None
        return seq

    def _move_memory_to(self, db) -> list[tuple[OutboxRecord, int]]:
        """Insert what waits in memory under its own seq when that is free (the link may have
        it in flight under that seq), else under a new one (remembered in `_renamed`)."""
        if not self._memory:
            return []
        top = db.execute("SELECT MAX(seq) FROM outbox").fetchone()[0] or 0
        used = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
        floor = max(top, used[0] if used else 0)
        moved = []
        for rec in sorted(self._memory.values(), key=lambda r: r.seq):
            if rec.seq > floor:
                db.execute("INSERT INTO outbox (seq, topic, payload, qos, kind) VALUES (?,?,?,?,?)",
                           (rec.seq, rec.topic, rec.payload, rec.qos, rec.kind))
                moved.append((rec, rec.seq))
            else:
                new = db.execute("INSERT INTO outbox (topic, payload, qos, kind) VALUES (?,?,?,?)",
                                 (rec.topic, rec.payload, rec.qos, rec.kind)).lastrowid
                moved.append((rec, new))
            floor = max(floor, moved[-1][1])
        return moved

    def _finish_move(self, moved) -> None:
        if not moved:
            return
        renumbered = False
        for rec, seq in moved:
            del self._memory[rec.seq]
            if seq != rec.seq:
                self._renamed[rec.seq] = seq
                renumbered = True
            self._last_seq = max(self._last_seq, seq)
        while len(self._renamed) > 10 * self.memory_limit:
            self._renamed.pop(next(iter(self._renamed)))
        if renumbered:
            self.epoch += 1
        log.info("outbox: %d record(s) kept in memory are on disk again", len(moved))

    def _trim(self, db) -> list[str]:
        """Delete the oldest rows of the least valuable kind until the rows fit the budget;
        the kinds of the rows that went."""
        gone: list[str] = []
        count, size = self._size_of(db)
        if size <= self.max_bytes:
            return gone
        for kind in self._kinds_in_drop_order(db):
            while size > self.max_bytes and count > 1:
                need = max(1, -(-(size - self.max_bytes) * count // size))  # rows of average size
                rows = db.execute(
                    "DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox WHERE kind = ?"
                    " ORDER BY seq LIMIT ?) RETURNING kind", (kind, need)).fetchall()
                if not rows:
                    break
                gone += [row[0] for row in rows]
                count, size = self._size_of(db)
            if size <= self.max_bytes:
                break
        return gone

    @staticmethod
    def _kinds_in_drop_order(db) -> list[str]:
        present = {row[0] for row in db.execute("SELECT DISTINCT kind FROM outbox")}
        first = [k for k in DROP_ORDER if k in present]
        middle = sorted(present - set(DROP_ORDER) - {LAST_TO_DROP})
        return first + middle + ([LAST_TO_DROP] if LAST_TO_DROP in present else [])

    def _keep_in_memory(self, topic: str, payload: bytes, qos: int, kind: str) -> int:
        if self._last_seq == 0:
            # No file could be read yet, so its seqs are unknown: number from far above any
            # AUTOINCREMENT a unit reaches (the ms clock), so these keep their seq on disk later.
            self._last_seq = int(time.time() * 1000)
        self._last_seq += 1
        rec = OutboxRecord(self._last_seq, topic, bytes(payload), qos, kind)
        self._memory[rec.seq] = rec
        while len(self._memory) > self.memory_limit:
            victim = self._memory_victim()
            del self._memory[victim.seq]
            self._count_drops([victim.kind])
        return rec.seq

    def _memory_victim(self) -> OutboxRecord:
        rank = {kind: n for n, kind in enumerate(DROP_ORDER)}
        order = lambda r: (2 if r.kind == LAST_TO_DROP else 0, rank.get(r.kind, len(rank)), r.seq)  # noqa: E731
        return min(self._memory.values(), key=order)

    # ---- drop reports ----
    def _count_drops(self, kinds) -> None:
        for kind in kinds:
            self.dropped[kind] = self.dropped.get(kind, 0) + 1
            self._unreported[kind] = self._unreported.get(kind, 0) + 1

    def _report_drops(self) -> None:
        """Tell `on_dropped` what went since the last report, at most once per `report_s`
        (the report is itself a record: it must not feed on itself)."""
        with self._lock:
            if not self._unreported or self._clock() - self._last_report < self._report_s:
                return
            counts, self._unreported = self._unreported, {}
            self._last_report = self._clock()
        log.warning("outbox over its budget: dropped %s", counts)
        if self.on_dropped is not None:
            try:
                self.on_dropped(counts)
            except Exception:  # noqa: BLE001 - a report must never lose the record being added
                log.exception("reporting dropped records failed")

    def maintain(self) -> None:
        """Called often (the link's network loop): retry a failing disk, move what waits in
        memory back to it, finish failed deletes, and report drops. Cheap when all is well."""
        with self._lock:
            if (self._memory or self._undeleted or self.degraded) and self._disk_usable():
                try:
                    self._restore()
                except DISK_ERRORS as exc:
                    self._degrade(exc)
        self._report_drops()

    def _restore(self) -> None:
        db = self._db
        if self._undeleted:
            self._delete_on_disk(sorted(self._undeleted))
        if self._memory:
            with _transaction(db):
                moved = self._move_memory_to(db)
            self._finish_move(moved)
            self._read_size(db)
        else:
            db.execute("SELECT 1 FROM outbox LIMIT 1").fetchall()
        if self.degraded and not self._undeleted:
            # A write is the only proof the disk takes records again: the next add shows it.
            probe = db.execute("PRAGMA user_version").fetchone()[0]
            db.execute(f"PRAGMA user_version = {int(probe)}")
            log.warning("outbox: the state disk takes records again")
            self.degraded = None

    # ---- reading and deleting ----
    def pending(self, after: int = 0, limit: int = 500) -> list[OutboxRecord]:
        """Up to `limit` records with seq > `after`, oldest first: the disk's, then memory's."""
        with self._lock:
            found: list[OutboxRecord] = []
            if self._db is not None:
                try:
                    found = self._pending_on_disk(after, limit)
                except DISK_ERRORS as exc:
                    self._degrade(exc)
            if self._memory:
                found += [r for r in self._memory.values() if r.seq > after]
                found.sort(key=lambda r: r.seq)
            return found[:limit]

    def _pending_on_disk(self, after: int, limit: int) -> list[OutboxRecord]:
        found = []
        while len(found) < limit:
            rows = self._db.execute(
                "SELECT seq, topic, payload, qos, kind FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?",
                (after, limit - len(found))).fetchall()
            if not rows:
                break
            after = rows[-1][0]
            found += [OutboxRecord(seq, topic, bytes(payload), qos, kind)
                      for seq, topic, payload, qos, kind in rows if seq not in self._undeleted]
        return found

    def remove(self, seq: int) -> None:
        self.remove_many([seq])

    def remove_many(self, seqs) -> None:
        """Forget acknowledged records: one transaction (one fsync) for many rows.
        Never raises: a delete the disk refuses is retried by `maintain`."""
        with self._lock:
            on_disk = []
            for seq in seqs:
                if self._memory.pop(seq, None) is None:
                    on_disk.append(self._renamed.pop(seq, seq))
            if not on_disk or self._db is None:
                if on_disk:
                    self._remember_undeleted(on_disk)
                return
            try:
                self._delete_on_disk(on_disk)
            except DISK_ERRORS as exc:
                self._degrade(exc)
                self._remember_undeleted(on_disk)

    def _delete_on_disk(self, seqs) -> None:
        db = self._db
        with _transaction(db, "BEGIN"):
            for seq in seqs:
                db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))
        self._undeleted.difference_update(seqs)
        self._read_size(db)

    def _remember_undeleted(self, seqs) -> None:
        # Bounded: forgetting one only means the broker gets it twice (deduplicated by `id`).
        if len(self._undeleted) + len(seqs) <= MAX_UNDELETED:
            self._undeleted.update(seqs)

    def depth(self) -> int:
        with self._lock:
            return max(0, self._count - len(self._undeleted)) + len(self._memory)

    def in_memory(self) -> int:
        with self._lock:
            return len(self._memory)

    def size_bytes(self) -> int:
        with self._lock:
            return self._bytes

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            if self._memory and self._db is not None:
                try:
                    self._restore()
                except DISK_ERRORS as exc:
                    self._degrade(exc)
            if self._memory:
                log.error("outbox closed with %d record(s) the disk never took: they are lost",
                          len(self._memory))
            self._closed = True
            self._close_db()

