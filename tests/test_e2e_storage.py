"""A real unit (device.daemon.Unit, mock hardware, a real mosquitto) on a full, read-only
or damaged state disk: it keeps playing, never plays twice, and says what it could not
store. Real disks: a small tmpfs filled to ENOSPC and remounted read-only; injected
faults (loaxa.fsio's hook) where a real one would take hours (the hourly reminder)."""

import errno
import json
import time
from datetime import datetime, timedelta

import paho.mqtt.publish as mqtt_publish
import paho.mqtt.client as mqtt
import pytest

from device.control import control_request
from device.daemon import Unit
from hw.clock import SystemClock
from hw.mock import MockHardware
from provisioning import load_config
from scheduler import sign_document
from tests.support.disk import FaultyDisk, bind_read_only, fill, remount, tmpfs, unbind
from tests.support.unit import OperatorKey, wait_until, write_unit_config
from tests.test_e2e_unit import GROUP, TZ, UNIT

SCHEDULE_TOPIC = f"loaxa/group/{GROUP}/schedule"


class JumpClock(SystemClock):
    """The system's clocks plus an offset the test moves forward: an hour passes in an instant
    (wall and monotonic time together, so it is time passing, not a clock step)."""

    def __init__(self):
        self.offset = 0.0

    def time(self) -> float:
        return super().time() + self.offset

    def monotonic(self) -> float:
        return super().monotonic() + self.offset

    def jump(self, seconds: float) -> None:
        self.offset += seconds


class Site:
    def __init__(self, tmp_path, broker, low_mb: float = 1, output_in_state: bool = False):
        self.tmp, self.broker = tmp_path, broker
        self.key = OperatorKey(tmp_path / "keys")
        self.config = write_unit_config(tmp_path / "unit", unit_id=UNIT, groups=[GROUP], broker_url=broker.url,
                                        trust={self.key.name: self.key.public}, warmup_s=0.2, cooldown_s=0.2,
                                        reconnect_max_s=2)
        text = self.config.read_text().replace("[unit]\n", f"[unit]\nstorage_low_mb = {low_mb}\n", 1)
        if output_in_state:  # as the demo has it: the mock's recordings share the full disk
            text = text.replace(f'mock_output_dir = "{tmp_path / "unit" / "mock-output"}"',
                                'mock_output_dir = "mock-output"')
        self.config.write_text(text)
        self.state = tmp_path / "unit" / "state"
        self.watch = broker.collector(f"loaxa/unit/{UNIT}/#")
        self.units = []

    def start_unit(self, clock=None) -> Unit:
        cfg = load_config(self.config)
        unit = Unit(cfg, hardware=MockHardware(cfg.hardware.mock_output_dir, speed=20, clock=clock))
        self.units.append(unit)
        unit.start()
        wait_until(lambda: unit.link.connected, 15, what="the unit to connect")
        return unit

    def push(self, items, version=1):
        now = datetime.now(TZ)
        doc = {"type": "schedule", "id": "dak-lak/2026-w48", "version": version, "targets": [f"group:{GROUP}"],
               "issued_at": now.isoformat(timespec="seconds"),
               "valid_from": (now - timedelta(days=1)).date().isoformat(),
               "valid_until": (now + timedelta(days=7)).date().isoformat(),
               "timezone": "Asia/Ho_Chi_Minh", "media": {}, "items": items}
        envelope = sign_document(json.dumps(doc), self.key.key, self.key.name)
        mqtt_publish.single(SCHEDULE_TOPIC, envelope, qos=1, retain=True, hostname=self.broker.host,
                            port=self.broker.port, protocol=mqtt.MQTTv5)

    def records(self, kind):
        return [json.loads(p) for p in self.watch.payloads(f"loaxa/unit/{UNIT}/{kind}")]

    def events(self, kind):
        return [e for e in self.records("event") if e["kind"] == kind]

    def wait_event(self, kind, count=1, timeout=20):
        return wait_until(lambda: len(self.events(kind)) >= count and self.events(kind), timeout,
                          what=f"{count} {kind} event(s)")

    def plays(self):
        """What the speakers of every unit started here played (their timelines in memory:
        the file may sit on the full disk)."""
        return [e for unit in self.units for e in unit.hw.timeline.events("speaker.close")]

    def close(self):
        for unit in self.units:
            unit.stop()
        self.watch.close()


@pytest.fixture
def site(tmp_path, broker):
    s = Site(tmp_path, broker)
    yield s
    s.close()


def chimes(first_in_s: float, count: int, apart_s: float = 4):
    at = datetime.now(TZ).replace(microsecond=0) + timedelta(seconds=first_in_s)
    return [{"id": f"tin-{n}", "play": ["chime"], "at": (at + timedelta(seconds=apart_s * n)).isoformat()}
            for n in range(count)]


@pytest.mark.parametrize("fault", ["full", "readonly"])
def test_playback_goes_on_when_the_disk_fills_or_turns_read_only_and_says_what_it_could_not_store(
        tmp_path, broker, fault):
    with tmpfs(tmp_path / "unit" / "state", size="8m"):
        site = Site(tmp_path, broker, output_in_state=fault == "full")
        try:
            unit = site.start_unit()
            site.push(chimes(6, 2))
            site.wait_event("schedule.accepted")
            unit.media.builtin("chime")  # as the sync does ahead of air
            if fault == "full":
                filler = fill(site.state)
            else:
                bind_read_only(site.state)
            wait_until(lambda: len(site.plays()) >= 2, 30, what="both items to play")
            event = site.wait_event(f"storage.{fault}")[0]
            assert "fired.json" in event["detail"] or fault == "readonly", event
            # Each playback leaves a playlog all the same: published directly, kept in memory.
            logs = wait_until(lambda: len(site.records("playlog")) >= 2 and site.records("playlog"), 15,
                              what="two playlogs")
            assert sorted(r["item"] for r in logs) == ["tin-0", "tin-1"]
            assert all(r["outcome"] == "completed" for r in logs)
            assert any(f.startswith(f"storage.{fault}") for f in unit.faults()), unit.faults()
            if fault == "full":  # (under the bind mount the open outbox still writes)
                assert "outbox: state disk full" in unit.faults(), unit.faults()
            # Space (or writability) returns: recovered, the ledger and the records are stored.
            if fault == "full":
                filler.unlink()
            else:
                unbind(site.state)
            # The next look would come within a minute anyway; under a loaded machine the
            # monitor may still find the disk busy at the first look, so ask again.
            wait_until(lambda: unit.storage._wake.set() or site.events("storage.recovered"), 60,
                       interval=1.0, what="storage.recovered")
            wait_until(lambda: len(json.loads((site.state / "fired.json").read_text())) == 2, 10,
                       what="the ledger written after the disk came back")
            wait_until(lambda: unit.outbox.in_memory() == 0, 30, what="records moved to the outbox")
            assert not [f for f in unit.faults() if f.startswith("storage.")]
        finally:
            site.close()


@pytest.mark.parametrize("fault", ["readonly", "full"])
def test_a_unit_starts_on_a_read_only_or_full_state_folder_plays_and_reports(tmp_path, broker, fault):
    with tmpfs(tmp_path / "unit" / "state", size="16m"):
        site = Site(tmp_path, broker)
        try:
            first = site.start_unit()
            site.push(chimes(12, 1))
            site.wait_event("schedule.accepted")
            first.media.builtin("chime")
            first.stop()
            if fault == "readonly":
                remount(site.state, "ro")  # the SD card fails read-only while the unit is off
            else:
                fill(site.state)
            unit = site.start_unit()  # the old code: "internal error" (OSError from the start)
            event = site.wait_event(f"storage.{fault}")[0]
            assert str(site.state) in event["detail"]
            faults = unit.faults()
            assert any(f.startswith(f"storage.{fault}") for f in faults), faults
            if fault == "readonly":
                assert any("control socket" in f for f in faults), faults
                assert any("outbox" in f for f in faults), faults
            # `loaxa status` still reaches the daemon (on the fallback address if need be).
            status = control_request(site.state, "status")
            assert any(f.startswith(f"storage.{fault}") for f in status["faults"]), status
            wait_until(lambda: len(site.plays()) >= 1, 30, what="the stored item to play")
            log = wait_until(lambda: site.records("playlog"), 15, what="its playlog")[0]
            assert log["item"] == "tin-0" and log["outcome"] == "completed"
            unit.stop()
            if fault == "readonly":
                remount(site.state, "rw")
        finally:
            site.close()


def test_a_truncated_ledger_does_not_replay_after_a_restart(site):
    first = site.start_unit()
    site.push(chimes(5, 2))
    wait_until(lambda: len(site.plays()) >= 2, 30, what="both items to play")
    first.stop()
    ledger = site.state / "fired.json"
    text = ledger.read_text()
    ledger.write_text(text[: len(text) // 2])  # a damaged card: half the file
    site.start_unit()
    time.sleep(4)  # the planner has looked at the clock a few times by now
    assert len(site.plays()) == 2  # the old code played both again at once
    corrupt = site.wait_event("storage.corrupt")[0]
    assert corrupt["file"] == "fired.json" and (site.state / corrupt["moved_to"]).exists()
    # Neither playlog was still waiting in the outbox, so each is also reported "in doubt".
    doubt = wait_until(lambda: [r for r in site.records("playlog") if r["outcome"] == "missed"], 10,
                       what="the in-doubt records")
    assert all("in doubt" in r["reason"] for r in doubt)


def test_while_the_disk_stays_full_the_unit_says_so_every_hour(site):
    clock = JumpClock()
    unit = site.start_unit(clock)
    with FaultyDisk(site.state, errno.ENOSPC) as disk:
        site.push(chimes(600, 1))
        rejected = site.wait_event("schedule.rejected")[0]
        assert "could not be stored" in rejected["detail"]
        site.wait_event("storage.full")
        for hours in (1, 2, 3):
            clock.jump(3600)
            site.wait_event("storage.full", 1 + hours, timeout=10)
        assert len(site.events("storage.full")) == 4  # once on entering, then hourly, no more
        assert any(f.startswith("storage.full") for f in unit.faults())
        disk.heal()
        clock.jump(61)  # the next look at the disk
        site.wait_event("storage.recovered", timeout=10)
    assert not [f for f in unit.faults() if f.startswith("storage.")]


def test_every_damaged_state_file_is_set_aside_reported_and_the_unit_plays(site):
    first = site.start_unit()
    site.push(chimes(10, 1))
    site.wait_event("schedule.accepted")
    first.stop()
    damage = {"fired.json": '{"k": "2026-12-01T06:00:00"}',  # a time without its offset
              "playback.journal": '{"id": "r-1", "started_at": "yesterday", "played_s": 3}',
              "commands/seen.json": "[",
              "volume.json": '{"vol',
              "schedules/versions.json": '{"format": 1, "versions": {"dak-lak/2026-w48": {"vers'}
    for name, text in damage.items():
        (site.state / name).parent.mkdir(parents=True, exist_ok=True)
        (site.state / name).write_text(text)
    (site.state / "control.sock").write_text("not a socket")  # kept as it is, never replaced
    unit = site.start_unit()
    wait_until(lambda: len(site.events("storage.corrupt")) >= 5, 15, what="five storage.corrupt events")
    assert sorted(e["file"] for e in site.events("storage.corrupt")) == sorted(
        name.rsplit("/", 1)[-1] for name in damage)
    for name in damage:
        path = site.state / name
        assert len(list(path.parent.glob(path.name + ".corrupt-*"))) == 1, name  # kept for inspection
    assert (site.state / "control.sock").read_text() == "not a socket"
    assert control_request(site.state, "status")["unit"] == UNIT  # on the fallback address
    wait_until(lambda: len(site.plays()) >= 1, 30, what="the stored item to play")
    assert unit.store.versions() == {"dak-lak/2026-w48": 1}  # rebuilt from the stored document
