"""The outbox under disk faults (issue 11, items 2, 3 and 4): a damaged file, a full disk,
a read-only state folder. The unit never fails to start or to add a record; records the
disk cannot take are kept in memory, published, and moved back to disk when it works.

Real faults where the machine allows (a 1 MiB tmpfs filled to ENOSPC, a read-only
remount; tests run as root), and an injected SQLite failure through the outbox's
`connect` seam for what a mount cannot show."""

import json
import os
import sqlite3
import subprocess
import uuid
from pathlib import Path

import pytest

from device.outbox import Outbox
from tests.support.waiting import wait_until
from tests.test_outbox_backlog import TOPIC, FakeClock, bulk_fill, make_link


def fill_rows(path, count):
    bulk_fill(path, count, payload=b"x" * 200)


# ---- a damaged file ----

def _garbage(path):
    path.write_bytes(os.urandom(8192))


def _text(path):
    path.write_text("this is not a database, it is a note someone saved over it\n" * 20)


def _truncated(path):
    fill_rows(path, 3_000)
    os.truncate(path, path.stat().st_size // 2)


def _header_only(path):
    fill_rows(path, 100)
    os.truncate(path, 60)


@pytest.mark.parametrize("damage", [_garbage, _text, _truncated, _header_only])
def test_a_damaged_outbox_is_set_aside_and_a_fresh_one_started(tmp_path, damage):
    path = tmp_path / "state" / "outbox.sqlite"
    path.parent.mkdir()
    damage(path)
    kept = path.read_bytes()
    box = Outbox(path)  # used to raise "file is not a database" and stop the unit
    try:
        assert box.recovered_from is not None and box.recovered_from.name.startswith("outbox.sqlite.corrupt-")
        assert box.recovered_from.read_bytes() == kept  # kept as it was, for inspection
        assert box.degraded is None
        seq = box.add(TOPIC, b"after", kind="playlog")
        assert box.pending(after=seq - 1)[0].payload == b"after"
    finally:
        box.close()
    again = Outbox(path)  # the fresh file is a good one: nothing more set aside
    assert again.recovered_from is None and again.depth() == 1 + box.salvaged
    again.close()


def test_readable_rows_of_a_truncated_outbox_are_salvaged(tmp_path):
    path = tmp_path / "outbox.sqlite"
    _truncated(path)
    box = Outbox(path)
    assert 0 < box.salvaged < 3_000 and box.depth() == box.salvaged
    assert all(r.payload == b"x" * 200 for r in box.pending(limit=10))
    box.close()


def test_a_damaged_wal_or_shm_does_not_stop_the_start(tmp_path):
    path = tmp_path / "outbox.sqlite"
    box = Outbox(path)
    for n in range(50):
        box.add(TOPIC, b"%d" % n, kind="playlog")
    # Copy the files while open, as a power cut leaves them, then damage the copies.
    copy = tmp_path / "copy" / "outbox.sqlite"
    copy.parent.mkdir()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{copy}{suffix}").write_bytes(Path(f"{path}{suffix}").read_bytes())
    box.close()
    with open(f"{copy}-wal", "r+b") as f:
        f.seek(100)
        f.write(os.urandom(4000))
    with open(f"{copy}-shm", "r+b") as f:
        f.write(os.urandom(4000))
    opened = Outbox(copy)  # SQLite drops WAL frames whose checksums fail; the rest opens
    opened.add(TOPIC, b"after", kind="playlog")
    assert opened.degraded is None
    opened.close()


def test_three_damaged_copies_at_most_are_kept(tmp_path):
    path = tmp_path / "outbox.sqlite"
    for n in range(5):
        _garbage(path)
        Outbox(path).close()
    kept = [p.name for p in tmp_path.iterdir() if ".corrupt-" in p.name]
    assert len(kept) == 3, kept


def test_status_only_looks_at_a_damaged_outbox(tmp_path):
    path = tmp_path / "outbox.sqlite"
    _garbage(path)
    with pytest.raises(sqlite3.DatabaseError):
        Outbox(path, recover=False)
    assert path.exists() and not list(tmp_path.glob("*.corrupt-*"))


# ---- an injected SQLite failure (no mount needed) ----

class FailingConnection(sqlite3.Connection):
    """A real connection whose writes fail while `failing` holds an error to raise."""
    failing = None

    def execute(self, sql, *args):
        if FailingConnection.failing is not None and sql.lstrip().upper().startswith(("INSERT", "DELETE", "BEGIN")):
            raise FailingConnection.failing
        return super().execute(sql, *args)


def failing_connect(*args, **kwargs):
    return sqlite3.connect(*args, factory=FailingConnection, **kwargs)


@pytest.fixture
def injected():
    FailingConnection.failing = None
    yield FailingConnection
    FailingConnection.failing = None


@pytest.mark.parametrize("error, reason", [
    (sqlite3.OperationalError("database or disk is full"), "state disk full"),
    (sqlite3.OperationalError("attempt to write a readonly database"), "state folder read-only"),
    (OSError(28, "No space left on device"), "state disk full"),
    (OSError(30, "Read-only file system"), "state folder read-only"),
])
def test_a_failing_write_keeps_the_record_in_memory_and_back_on_disk_later(tmp_path, injected, error, reason):
    clock = FakeClock()
    path = tmp_path / "outbox.sqlite"
    box = Outbox(path, connect=failing_connect, clock=clock, retry_s=10)
    first = box.add(TOPIC, b"on disk", kind="playlog")
    injected.failing = error
    held = [box.add(TOPIC, b"held %d" % n, kind="playlog") for n in range(3)]  # never raises
    assert box.degraded == reason
    assert box.in_memory() == 3 and box.depth() == 4
    assert [r.seq for r in box.pending()] == [first] + held  # the link sends them like any other
    box.remove_many([held[0]])  # acknowledged straight from memory
    injected.failing = None
    box.maintain()
    assert box.in_memory() == 2  # not retried before retry_s
    clock.now += 11
    box.maintain()
    assert box.in_memory() == 0 and box.degraded is None
    box.close()
    again = Outbox(path)
    assert [(r.seq, r.payload) for r in again.pending()] == [
        (first, b"on disk"), (held[1], b"held 1"), (held[2], b"held 2")]  # same seqs, same order
    again.close()


def test_the_memory_queue_is_bounded_and_drops_events_before_playlogs(tmp_path, injected):
    box = Outbox(tmp_path / "outbox.sqlite", connect=failing_connect, memory_limit=10)
    injected.failing = sqlite3.OperationalError("database or disk is full")
    for n in range(8):
        box.add(TOPIC, b"p%d" % n, kind="playlog")
    for n in range(6):
        box.add(TOPIC, b"e%d" % n, kind="event")
    assert box.in_memory() == 10
    assert box.dropped == {"event": 4}
    kept = [r.payload for r in box.pending()]
    assert kept == [b"p%d" % n for n in range(8)] + [b"e4", b"e5"]
    box.close()


def test_corruption_found_while_running_sets_the_file_aside(tmp_path, injected):
    box = Outbox(tmp_path / "outbox.sqlite", connect=failing_connect)
    box.add(TOPIC, b"one", kind="playlog")
    injected.failing = sqlite3.DatabaseError("database disk image is malformed")
    held = box.add(TOPIC, b"two", kind="playlog")
    assert box.in_memory() == 1
    injected.failing = None
    box.add(TOPIC, b"three", kind="playlog")
    assert box.recovered_from is not None and box.in_memory() == 0
    assert [r.payload for r in box.pending()] == [b"one", b"two", b"three"]  # "one" salvaged
    box.remove_many([held])  # a PUBACK for the seq it had in memory still finds it on disk
    assert [r.payload for r in box.pending()] == [b"one", b"three"]
    box.close()


# ---- real faults on a small tmpfs ----

@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs: filled, it gives ENOSPC; remounted read-only, EROFS."""
    mount = tmp_path / "state"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()} (the injected tests cover this)")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill_disk(folder):
    filler = folder / "filler"
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    return filler


def remount(folder, mode):
    subprocess.run(["mount", "-o", f"remount,{mode}", str(folder)], check=True)


def test_a_full_disk_keeps_records_in_memory_and_stores_them_when_space_returns(small_disk):
    clock = FakeClock()
    box = Outbox(small_disk / "outbox.sqlite", clock=clock, retry_s=5)
    stored = box.add(TOPIC, b'{"n": -1}', kind="playlog")
    filler = fill_disk(small_disk)
    payload = lambda n: json.dumps({"n": n, "pad": "x" * 2000}).encode()  # noqa: E731
    seqs = [box.add(TOPIC, payload(n), kind="playlog") for n in range(40)]  # ENOSPC: never raises
    assert box.degraded == "state disk full"
    assert box.in_memory() > 0 and box.depth() == 41
    filler.unlink()
    clock.now += 6
    box.maintain()
    assert box.degraded is None and box.in_memory() == 0
    box.close()
    again = Outbox(small_disk / "outbox.sqlite")
    assert [r.seq for r in again.pending(limit=100)] == [stored] + seqs
    again.close()


def test_records_held_in_memory_reach_the_broker_and_leave_memory(small_disk, broker):
    box = Outbox(small_disk / "outbox.sqlite")
    fill_disk(small_disk)
    ids = []
    for n in range(40):
        ids.append(str(uuid.uuid4()))
        box.add(TOPIC, json.dumps({"id": ids[-1], "pad": "x" * 2000}).encode(), kind="playlog")
    assert box.degraded == "state disk full" and box.in_memory() > 0
    watch = broker.collector(TOPIC)
    link = make_link(broker.url, box)
    link.start()
    try:
        wait_until(lambda: box.depth() == 0, 20, what="every record delivered")
        assert box.in_memory() == 0
        wait_until(lambda: len(watch.payloads(TOPIC)) >= 40, 10)
        assert {json.loads(p)["id"] for p in watch.payloads(TOPIC)} == set(ids)
    finally:
        link.stop()
        box.close()
        watch.close()


@pytest.fixture
def ext4_disk(tmp_path):
    """A loop-mounted ext4 with errors=remount-ro, as a Pi's SD card is mounted: a
    triggered filesystem error turns it read-only under open files, as a failing card does
    (a plain `remount,ro` is refused while files are open for writing)."""
    image, mount = tmp_path / "sd.img", tmp_path / "state"
    mount.mkdir()
    with open(image, "wb") as f:
        f.truncate(8 * 1024 * 1024)
    made = subprocess.run(["mkfs.ext4", "-q", str(image)], capture_output=True, text=True)
    done = made.returncode == 0 and subprocess.run(
        ["mount", "-o", "loop,errors=remount-ro", str(image), str(mount)], capture_output=True).returncode == 0
    if not done:
        pytest.skip("cannot loop-mount an ext4 here (the injected tests cover this)")
    device = subprocess.run(["findmnt", "-n", "-o", "SOURCE", str(mount)], capture_output=True,
                            text=True).stdout.strip()
    try:
        yield type("Disk", (), dict(folder=mount, trigger=Path(f"/sys/fs/ext4/{Path(device).name}/trigger_fs_error")))
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_state_folder_turned_read_only_under_the_unit(ext4_disk, broker):
    box = Outbox(ext4_disk.folder / "outbox.sqlite")
    box.add(TOPIC, b'{"n": -1}', kind="playlog")
    ext4_disk.trigger.write_text("1")  # the card fails: the kernel remounts it read-only
    for n in range(5):
        box.add(TOPIC, json.dumps({"n": n}).encode(), kind="playlog")  # never raises
    assert box.degraded == "state folder read-only"
    assert box.depth() == 6
    watch = broker.collector(TOPIC)
    link = make_link(broker.url, box)
    link.start()
    try:
        wait_until(lambda: box.in_memory() == 0, 20, what="the records held in memory delivered")
        wait_until(lambda: len(watch.payloads(TOPIC)) >= 6, 10)
        assert sorted(json.loads(p)["n"] for p in watch.payloads(TOPIC)) == [-1, 0, 1, 2, 3, 4]
    finally:
        link.stop()
        box.close()
        watch.close()


@pytest.mark.parametrize("existing", [False, True])
def test_opening_on_a_read_only_folder_starts_in_memory(small_disk, existing):
    if existing:
        box = Outbox(small_disk / "outbox.sqlite")
        box.add(TOPIC, b"old", kind="playlog")
        box.close()
    remount(small_disk, "ro")
    try:
        box = Outbox(small_disk / "outbox.sqlite")  # used to raise: "internal error" at start
        seq = box.add(TOPIC, b"new", kind="playlog")
        assert box.degraded == "state folder read-only"
        assert [r.seq for r in box.pending()][-1] == seq
        box.close()
    finally:
        remount(small_disk, "rw")


def test_opening_on_a_full_disk_starts_in_memory_and_finds_its_backlog_when_space_returns(small_disk):
    old = Outbox(small_disk / "outbox.sqlite")
    before = [old.add(TOPIC, b"old %d" % n, kind="playlog") for n in range(3)]
    old.close()
    filler = fill_disk(small_disk)
    clock = FakeClock()
    box = Outbox(small_disk / "outbox.sqlite", clock=clock, retry_s=5)  # used to raise at start
    new = box.add(TOPIC, b"new", kind="playlog")
    assert box.degraded == "state disk full" and box.in_memory() == 1
    filler.unlink()
    clock.now += 6
    box.maintain()
    assert box.degraded is None and box.in_memory() == 0
    assert [r.payload for r in box.pending()] == [b"old 0", b"old 1", b"old 2", b"new"]
    box.remove_many([new])  # the PUBACK for its in-memory seq
    assert [r.seq for r in box.pending()] == before
    box.close()


# ---- the whole unit ----

def test_a_unit_with_a_damaged_outbox_starts_and_says_so(tmp_path, broker):
    from tests.support.unit import UnitProcess, write_unit_config
    unit_id = "dl-outbox-01"
    config = write_unit_config(tmp_path / "unit", unit_id=unit_id, groups=["dak-lak"], broker_url=broker.url,
                               trust={}, extra="[outbox]\nmax_mb = 16\n")
    state = tmp_path / "unit" / "state"
    state.mkdir(parents=True)
    _text(state / "outbox.sqlite")
    watch = broker.collector(f"loaxa/unit/{unit_id}/event")
    unit = UnitProcess(config)  # used to die at start: "file is not a database"
    try:
        topic, payload = watch.wait_for(lambda t, p: json.loads(p)["kind"] == "storage.corrupt", 30)
        event = json.loads(payload)
        assert "outbox.sqlite.corrupt-" in event["file"] and "moved aside" in event["detail"]
        assert os.path.exists(event["file"])
    finally:
        assert unit.stop() == 0
        watch.close()


def test_a_unit_over_its_budget_drops_events_first_and_says_how_many(tmp_path, broker_factory):
    # As docs/operator.md sets a province's broker: mosquitto's default (1000) drops QoS 1
    # messages queued for a slow subscriber (this test's collector) in the unit's burst.
    broker = broker_factory(extra="max_queued_messages 0")
    from tests.support.unit import UnitProcess, write_unit_config
    unit_id = "dl-outbox-02"
    topic = f"loaxa/unit/{unit_id}"
    config = write_unit_config(tmp_path / "unit", unit_id=unit_id, groups=["dak-lak"], broker_url=broker.url,
                               trust={}, extra="[outbox]\nmax_mb = 1\n")
    path = tmp_path / "unit" / "state" / "outbox.sqlite"
    path.parent.mkdir(parents=True)
    Outbox(path).close()
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("BEGIN")  # 2 MB waiting from a long outage: old events, then 100 playlogs
    db.executemany("INSERT INTO outbox (topic, payload, qos, kind) VALUES (?,?,?,?)",
                   [(f"{topic}/event", json.dumps({"id": str(uuid.uuid4()), "kind": "gps.lost",
                                                   "pad": "x" * 400}).encode(), 1, "event")] * 4_000
                   + [(f"{topic}/playlog", json.dumps({"id": f"p{n}"}).encode(), 1, "playlog")
                      for n in range(100)])
    db.execute("COMMIT")
    db.close()
    watch = broker.collector(f"{topic}/event", f"{topic}/playlog")
    unit = UnitProcess(config)
    try:
        _, payload = watch.wait_for(lambda t, p: json.loads(p).get("kind") == "outbox.dropped", 90)
        dropped = json.loads(payload)["counts"]
        assert set(dropped) == {"event"} and 1_000 < dropped["event"] < 4_000
        wait_until(lambda: len(watch.payloads(f"{topic}/playlog")) >= 100, 20, what="every playlog kept")
        assert {json.loads(p)["id"] for p in watch.payloads(f"{topic}/playlog")} == {f"p{n}" for n in range(100)}
    finally:
        assert unit.stop() == 0
        watch.close()
