"""The unit daemon: starts hardware → audio → scheduler → MQTT link, stops in reverse.

`Unit.run()` is `loaxa run`. Parts are started in order and stopped in reverse
inside `finally`; one exception anywhere during start still stops what started.
"""

import json
import logging
import signal
import sqlite3
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

import loaxa
from device import sdnotify
from device.amp import AmpControl
from device.command_runner import CommandRunner
from device.control import ControlServer, SocketPathTaken, control_path, fallback_address
from device.health import HealthReporter, HealthRunner
from device.messages import iso
from device.clockwatch import ClockWatch
from device.journal import PlaybackJournal
from device.media_cache import MediaCache, download_limits
from device.media_sync import MediaSync
from device.messages import Topics, event_doc, state_doc, to_json
from device.mqtt_link import MqttLink
from device.outbox import Outbox
from device.planner import Planner
from device.playout import Playout
from device.storage import StorageMonitor
from hw import UnitHardware, make_factory
from loaxa.errors import Rejected
from loaxa.fsio import atomic_write
from provisioning import read_password
from scheduler import ScheduleStore, command_topics, expand_groups, load_trusted_keys, schedule_topics
from scheduler.store import StillRevoked
from scheduler.targets import trust_topics
from scheduler.trust import roots_from_config
from scheduler.trustkeeper import TrustKeeper, UnitIdentity
from scheduler.truststore import TrustStore

log = logging.getLogger("loaxa.unit")

SCHEDULE_LEAD_MARGIN_S = 1.0  # beyond warm-up: time to open the files before air
MB = 1024 * 1024
# Records the outbox could not take (a full or read-only disk) wait in memory up to
# this many; past it events go before playlogs, and the count shows in health `faults`.
# When the outbox cannot even be opened, an in-memory one of this size stands in.
MEMORY_OUTBOX_RECORDS = 5000
STORAGE_ERRORS = (OSError, sqlite3.Error)
TRUST_MISSING_FAULT = "trust.missing"  # trust was in force and its document is lost: nothing new accepted
TRUST_SWEEP_S = 60.0  # key expiry is looked at least this often (and at each expiry)


@dataclass(frozen=True)
class UnitInfo:
    id: str
    tz: ZoneInfo
    mock: bool
    groups: tuple


class Records:
    """Writes playlogs and events to the outbox first, then hands them to the link.

    The outbox never refuses a record: on a full or read-only disk it keeps it in a
    bounded queue in memory that the link publishes directly (device/outbox.py,
    docs/design.md "Outbox under backlog and disk faults"). Playback never waits for
    or stops on a record."""

    def __init__(self, outbox: Outbox, topics: Topics, clock, tz):
        self._outbox = outbox
        self._topics = topics
        self._clock = clock
        self._tz = tz
        self.link = None

    def _store_and_send(self, topic: str, doc: dict, kind: str) -> None:
        payload = to_json(doc)
        seq = self._outbox.add(topic, payload, qos=1, kind=kind)
        if self.link is not None:
            self.link.send_record(seq, topic, payload)

    def playlog(self, doc: dict) -> None:
        self._store_and_send(self._topics.playlog, doc, "playlog")
        log.info("proof of play for %s queued (%s)", doc["item"], doc["outcome"])

    def reply(self, doc: dict) -> None:
        self._store_and_send(self._topics.reply, doc, "reply")

    def event(self, kind: str, detail: str, **extra) -> None:
        doc = event_doc(kind, detail, self._clock.now().astimezone(self._tz), **extra)
        self._store_and_send(self._topics.event, doc, "event")

    def track(self, batch: dict) -> None:
        """A sealed track batch of a vehicle (`{"id", "points"}`), QoS 1 like a playlog."""
        self._store_and_send(self._topics.track, batch, "track")


class Unit:
    def __init__(self, cfg, *, hardware=None, after_start=None):
        """`hardware` overrides the factory `hardware.mode` picks (tests, benchmarks);
        `after_start(unit)` runs once everything is up (the demo installs its schedule)."""
        self.cfg = cfg
        self._hardware = hardware
        self._after_start = after_start
        self._stop = threading.Event()
        self._started: list = []  # (name, stop callable), stopped in reverse
        self.start_faults: list[str] = []  # what could not be set up; the unit runs without it
        self.control = None
        self.storage = None
        self.boot = str(uuid.uuid4())
        self.version = loaxa.__version__
        self.topics = Topics(cfg.broker.topic_prefix, cfg.unit.id)
        self.groups = expand_groups(cfg.unit.groups)
        self.tz = ZoneInfo(cfg.unit.timezone)

    # ---- start-up, in order ----
    def start(self) -> None:
        try:
            self._start_storage_folder()
            self._start_control()
            self._start_hardware()
            self._start_audio()
            self._start_scheduler()
            self._start_link()
            if self._after_start:
                self._after_start(self)
        except BaseException:
            self.stop()
            raise
        self._started_all = True
        self._report_healthy()

    def _report_healthy(self) -> None:
        """Every part started and the broker link up: a version on trial proves itself to
        the launcher (updater.health; a no-op outside a trial)."""
        if getattr(self, "_started_all", False) and self.link.connected:
            from updater.health import report_healthy
            report_healthy()

    def _started_part(self, name: str, stop) -> None:
        self._started.append((name, stop))

    def _start_storage_folder(self) -> None:
        """The state folder; a full or read-only disk is a fault to report, not a reason
        to stay silent (the documents already stored can still be read and played)."""
        try:
            self.cfg.unit.state_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self._start_fault(f"state folder {self.cfg.unit.state_dir} cannot be made", exc)

    def _start_fault(self, what: str, exc: Exception) -> None:
        reason = getattr(exc, "strerror", None) or str(exc)
        log.error("%s: %s; the unit runs without it", what, reason)
        self.start_faults.append(f"{what}: {reason}")

    def _start_control(self) -> None:
        """First: the socket `loaxa status` and `loaxa selftest` talk to. Binding it also
        makes sure no other daemon runs on this state folder (it would fight over pins):
        a daemon that answers there stops this start. A socket that cannot be made (a
        read-only or full state folder) is a fault: the unit plays without it."""
        server = ControlServer(control_path(self.cfg.unit.state_dir),
                               {"status": self.status_doc, "selftest": self.selftest})
        try:
            self.control = server.start()
        except (OSError, SocketPathTaken) as exc:
            server.close()
            self._start_fault("control socket (loaxa selftest; loaxa status on a fallback address)", exc)
            fallback = ControlServer(control_path(self.cfg.unit.state_dir), {"status": self.status_doc})
            try:
                self.control = fallback.start_abstract(fallback_address(self.cfg.unit.state_dir))
            except OSError as exc2:  # ControlError (a daemon answers there) still stops the start
                self._start_fault("control socket fallback", exc2)
                return
        self._started_part("control socket", self.control.close)

    def _start_hardware(self) -> None:
        cfg = self.cfg
        hw = self._hardware or make_factory(
            cfg.hardware.mode, output_dir=cfg.hardware.mock_output_dir,
            speed=cfg.hardware.mock_speed, audio_device=cfg.audio.device)
        self.hw = hw
        self._started_part("hardware", hw.close)
        self.clock = hw.clock
        self.clockwatch = ClockWatch(self.clock, self.cfg.clock.trust, on_change=self._clock_trust_changed,
                                     on_step=self._clock_stepped)
        self.info = UnitInfo(cfg.unit.id, self.tz, hw.mock, tuple(self.groups))
        self.unit_hw = UnitHardware(cfg, hw).start()
        self._started_part("hardware parts", self.unit_hw.close)
        self.amp = AmpControl.for_unit(self.unit_hw, cfg).start()
        self._started_part("amplifier", self.amp.close)
        self.unit_hw.led.set_connection("starting")
        log.info("hardware ready (%s)", "mock" if hw.mock else "Raspberry Pi")

    def _wire_hardware(self) -> None:
        """Once records and the player exist: hardware events, the fault hook, buttons."""
        self.unit_hw.on_event = self.records.event
        self.amp.on_event = self._amp_event
        self.amp.on_fault = lambda reason: self.playout.stop_current(f"amplifier fault: {reason}")
        self.unit_hw.on_press("button_stop", lambda: self.playout.stop_current("stop button pressed"))
        self.unit_hw.on_press("button_test", self.play_test_announcement)

    def _amp_event(self, kind: str, detail: str, **extra) -> None:
        self.records.event(kind, detail, **extra)
        if getattr(self, "health", None) is not None:
            self.health.poke()  # an amplifier fault is news now, not at the next heartbeat

    def play_test_announcement(self) -> None:
        """The local test button: chime and test tone, now, at priority."""
        from scheduler import Item, Occurrence, Schedule
        now = self.clock.now().astimezone(self.tz)
        item = Item(id="test-button", play=("chime", "test-tone"), at=now.isoformat(), priority="priority")
        schedule = Schedule(id="local", version=1, targets=(), issued_at=now, valid_from=now.date(),
                            valid_until=now.date(), timezone=self.tz, media={}, items=(item,),
                            payload="", digest="")
        self.playout.submit(Occurrence("local", 1, item, now), schedule, timed=False)

    def _start_audio(self) -> None:
        state_dir = self.cfg.unit.state_dir
        self.outbox = self._open_outbox(state_dir / "outbox.sqlite")
        self._started_part("outbox", self.outbox.close)
        self.records = Records(self.outbox, self.topics, self.clock, self.tz)
        self.storage = StorageMonitor(state_dir, clock=self.clock, on_event=self.records.event,
                                      low_mb=self.cfg.unit.storage_low_mb)
        self._report_outbox_state()
        audio_cfg = self.cfg.audio
        self.media = MediaCache(self.cfg.unit.media_dir, lufs=audio_cfg.lufs,
                                max_bytes=audio_cfg.max_media_mb * MB, max_seconds=audio_cfg.max_media_s,
                                limits=download_limits(audio_cfg))
        # Media are fetched and prepared as soon as a schedule is accepted, long before air.
        self.sync = MediaSync(self.media, budget_bytes=audio_cfg.cache_budget_mb * MB, clock=self.clock,
                              on_failed=self._media_failed).start()
        self._started_part("media sync", self.sync.close)
        self.playout = Playout(amp=self.amp, speaker=self.hw.speaker(), media=self.media,
                               clock=self.clock, clockwatch=self.clockwatch, unit=self.info,
                               records=self.records, quiet_hours=self.cfg.unit.quiet_hours,
                               zone_count=len(self.cfg.gpio.zones), lateness_s=self.cfg.unit.lateness_s,
                               journal=PlaybackJournal(state_dir / "playback.journal",
                                                       on_write_failed=self._write_failed,
                                                       on_corrupt=self._state_file_corrupt),
                               position=self.unit_hw.position, ignition=self.unit_hw.ignition_on,
                               play_with_ignition_off=self.cfg.vehicle.play_with_ignition_off,
                               emergency_min_volume=audio_cfg.emergency_min_volume)
        self._wire_hardware()
        self.playout.recover_interrupted()
        self.playout.start()
        self._started_part("player", self.playout.stop)

    def _report_outbox_state(self) -> None:
        """A damaged outbox set aside at start is told once; drops over the budget as they come."""
        self.outbox.on_dropped = lambda counts: self.records.event(
            "outbox.dropped", f"outbox over its budget: dropped {sum(counts.values())} oldest record(s)",
            counts=counts)
        if self.outbox.recovered_from is not None:
            self.records.event("storage.corrupt", f"the outbox was damaged: moved aside to "
                               f"{self.outbox.recovered_from.name}, {self.outbox.salvaged} record(s) "
                               "salvaged, a fresh one started", file=str(self.outbox.recovered_from))

    def _open_outbox(self, path) -> Outbox:
        """The outbox on disk; when the disk will not open it (read-only, full, failing),
        a bounded one in memory, drained to the broker as usual (docs/design.md)."""
        try:
            return Outbox(path, max_bytes=self.cfg.outbox.max_mb * MB)
        except STORAGE_ERRORS as exc:
            self._start_fault(f"outbox {path.name} (records kept in memory, at most "
                              f"{MEMORY_OUTBOX_RECORDS})", exc)
            return Outbox(":memory:", max_bytes=self.cfg.outbox.max_mb * MB, memory_limit=MEMORY_OUTBOX_RECORDS)

    def _write_failed(self, what: str, exc: OSError) -> None:
        """A state write failed: the storage monitor reports it (never raises)."""
        if self.storage is not None:
            self.storage.write_failed(what, exc)

    def _state_file_corrupt(self, path, moved_to, why: str) -> None:
        """A damaged state file at start: kept aside for inspection, and said once."""
        where = f"moved to {moved_to.name}" if moved_to else "left in place (the disk refuses writes)"
        self.records.event("storage.corrupt", f"{path.name} was unreadable ({why}); {where}; "
                           "the unit goes on without it", file=path.name,
                           moved_to=moved_to.name if moved_to else None)

    def _start_scheduler(self) -> None:
        self._start_trust()
        self.store = ScheduleStore(self.cfg.unit.state_dir / "schedules", on_corrupt=self._state_file_corrupt,
                                   **self._trust_context())
        self.trust_keeper = TrustKeeper(self.trust_store, self.store, identity=self._identity(),
                                        legacy=self.trusted, config_roots=self._config_roots,
                                        min_version=self.cfg.trust.min_version)
        self.planner = Planner(clock=self.clock, lead_s=self.cfg.amplifier.warmup_s + SCHEDULE_LEAD_MARGIN_S,
                               submit=self._due, submit_missed=self._due_missed,
                               schedules_in_force=self.store.in_force,
                               fired_path=self.cfg.unit.state_dir / "fired.json",
                               lateness_s=self.cfg.unit.lateness_s, on_save_failed=self._write_failed,
                               on_corrupt=self._state_file_corrupt, already_recorded=self._recorded)
        self.planner.start()
        self._started_part("planner", self.planner.stop)
        self.storage.on_writable.append(self.planner.retry_save)
        self.storage.start()
        self._started_part("storage monitor", self.storage.stop)
        self.clockwatch.start()
        self._started_part("clock watch", self.clockwatch.stop)
        if not self.clockwatch.trusted:
            self._clock_trust_changed(None, "untrusted")
        self.commands = CommandRunner(self).start()
        self._started_part("commands", self.commands.stop)
        self._trust_sweeper = threading.Thread(target=self._sweep_trust, name="trust sweep", daemon=True)
        self._trust_sweep_now = threading.Event()
        self._trust_sweeper.start()
        self._started_part("trust sweep", self._trust_sweep_now.set)
        self._start_areas()
        self.want_media()
        log.info("%d schedule(s) in force", len(self.store.in_force()))

    def _start_areas(self) -> None:
        """A vehicle (a unit with a GPS): the area loop of SPEC "Mobile units"."""
        self.areas = None
        if self.unit_hw.gps is None:
            return
        from device.vehicle import AreaRunner
        gps = self.unit_hw.gps
        self.areas = AreaRunner(
            clock=self.clock, gps_fix=lambda: gps.fix, gps_speed=lambda: getattr(gps, "speed_kmh", None),
            schedules_in_force=self.store.in_force,
            submit=lambda occ, schedule, play: self.playout.submit(occ, schedule, area=play),
            report_missed=self._area_missed, event=self.records.event, track=self.records.track,
            state_dir=self.cfg.unit.state_dir, ignition=self._ignition, quiet=self.playout.in_quiet_hours,
            play_with_ignition_off=self.cfg.vehicle.play_with_ignition_off,
            on_save_failed=self._write_failed, on_corrupt=self._state_file_corrupt).start()
        self._started_part("area loop", self.areas.stop)

    def _ignition(self) -> bool | None:
        """The vehicle's ignition: True/False, None when no input is fitted."""
        return self.unit_hw.ignition_on()

    def _area_missed(self, window, reason: str) -> None:
        self.playout.report_missed(window.occurrence, reason, extra={"area": window.item.where, "play_no": None})

    def _start_link(self) -> None:
        cfg = self.cfg
        self.link = MqttLink(
            url=cfg.broker.url, client_id=cfg.unit.id, username=cfg.broker.username,
            password=read_password(cfg), ca_file=cfg.broker.ca_file,
            state_topic=self.topics.state, online_payload=lambda: self._state("online"),
            will_payload=self._state("lost"), offline_payload=lambda: self._state("offline"),
            subscriptions=trust_topics(cfg.broker.topic_prefix, cfg.unit.id, cfg.unit.groups)
            + schedule_topics(cfg.broker.topic_prefix, cfg.unit.id, cfg.unit.groups)
            + command_topics(cfg.broker.topic_prefix, cfg.unit.id, cfg.unit.groups),
            on_message=self.handle_message, outbox=self.outbox,
            on_connection_change=self._connection_changed, max_delay_s=cfg.broker.reconnect_max_s)
        self.records.link = self.link
        self.link.start()
        self._started_part("broker link", self.link.stop)
        log.info("connecting to broker %s in the background", self.link.address)
        self.health = HealthRunner(
            HealthReporter(self._health_probes(), interval_s=cfg.unit.health_interval_s,
                           overhead_bytes=len(self.topics.health) + 6,
                           storage_low_mb=cfg.unit.storage_low_mb),
            self._publish_health, self.clock, tz=self.tz).start()
        self._started_part("health", self.health.stop)

    def _connection_changed(self, up: bool) -> None:
        self.unit_hw.led.set_connection("online" if up else "offline")
        if up:
            self._report_healthy()

    def _health_probes(self) -> dict:
        upcoming = lambda: next(({"item": o.item.id, "at": iso(o.at)}  # noqa: E731
                                 for o in self.planner.upcoming(1)), None)
        hardware = {key: (lambda key=key: self.unit_hw.health()[key])
                    for key in ("uptime_s", "cpu_temp_c", "mem_free_mb", "disk_free_mb", "net", "gps")}
        vehicle = {"power": self.unit_hw.power} if self.unit_hw.power() is not None else {}
        return {**hardware, "clock": self.clockwatch.source, "amp": self.amp.health,
                "queue": self.playout.queued, "next": upcoming, "faults": self.faults, **vehicle}

    def _publish_health(self, payload: bytes) -> bool:
        if not self.link.connected:
            return False
        self.link.publish_volatile(self.topics.health, payload, qos=0)
        return True

    def faults(self) -> list:
        found = self.unit_hw.faults() + self.amp.faults()
        if self.link.refused:
            found.append(self.link.refused)
        if self.outbox.dropped:
            found.append(f"outbox full: dropped {self.outbox.dropped}")
        if not self.clockwatch.trusted:
            found.append("clock untrusted")
        keeper = getattr(self, "trust_keeper", None)
        if keeper is not None:
            found.extend(keeper.faults(self.clock.now(), self.clockwatch.trusted))
            if self.trust_store.was_in_force and self.trust_store.document is None:
                found.append(TRUST_MISSING_FAULT)
        return found + self.storage_faults()

    def storage_faults(self) -> list[str]:
        """The state folder's faults: its state, what runs without it, records in memory."""
        found = list(self.storage.faults()) if self.storage is not None else []
        found += [f"start: {fault}" for fault in self.start_faults]
        if self.outbox.degraded:
            found.append(f"outbox: {self.outbox.degraded}")
        if self.outbox.in_memory():
            found.append(f"records in memory only: {self.outbox.in_memory()}")
        return found

    def status_doc(self) -> dict:
        """What `loaxa status` shows (loaxa/commands/status.py lists the keys)."""
        link = getattr(self, "link", None)
        store = getattr(self, "store", None)
        planner = getattr(self, "planner", None)
        return {
            "unit": self.cfg.unit.id, "version": self.version, "boot": self.boot, "mock": self.info.mock,
            "now": iso(self.clock.now().astimezone(self.tz)), "clock": self.clockwatch.source(),
            "clock_trusted": self.clockwatch.trusted, "current": self.playout.current,
            "next": [{"item": o.item.id, "schedule": o.schedule_id, "at": iso(o.at)}
                     for o in (planner.upcoming(5) if planner else [])],
            "queue": self.playout.queued(), "outbox": self.outbox.depth(),
            "broker": None if link is None else {
                "url": str(link.address), "connected": link.connected,
                "last_contact": iso(datetime.fromtimestamp(link.last_contact, self.tz))
                if link.last_contact else None},
            "schedules": [{"id": s.id, "version": s.version, "topic": t}
                          for t, s in (store.topics_in_force().items() if store else [])],
            "faults": self.faults() if link else [],
            "media": self.sync.status(),
            "trust": self._trust_status(),
        }

    def _trust_status(self) -> dict | None:
        """The trust in force, for `loaxa status`: None before the scheduler started."""
        store = getattr(self, "trust_store", None)
        if store is None:
            return None
        doc = store.document
        if doc is None:
            return {"mode": "lost" if store.was_in_force else "legacy", "version": store.version}
        return {"mode": "trust", "id": doc.id, "version": doc.version, "expires_at": iso(doc.expires_at)}

    def selftest(self) -> dict:
        """The self-test, between playbacks: it clicks relays and plays a tone itself."""
        from device.selftest import run_selftest  # the self-test owns its own imports
        link = getattr(self, "link", None)
        broker = (lambda: (link.connected, f"connected to {link.address}" if link.connected
                           else f"not connected to {link.address}")) if link else True
        with self.playout.exclusive(timeout=120):
            return run_selftest(self.cfg, self.unit_hw, amp=self.amp, broker_check=broker)

    def _state(self, state: str) -> bytes:
        return to_json(state_doc(state, self.clock.now().astimezone(self.tz), self.boot,
                                 self.groups, self.info.mock))

    # ---- shutdown, in reverse ----
    def stop(self) -> None:
        """Stop every started part in reverse order; a part that fails to stop is logged."""
        self._stop.set()
        self._stop_player_first()
        while self._started:
            name, stop = self._started.pop()
            try:
                stop()
            except Exception:  # noqa: BLE001 - the rest must still stop
                log.exception("stopping %s failed", name)

    def _stop_player_first(self) -> None:
        """The player fades out before anything else stops: its `interrupted` playlog is
        then in the outbox while the link is still up, and the link's bounded drain
        delivers it before `offline` (stopped in reverse, the link went first and the
        record left only at the next start). `Playout.stop` is safe twice."""
        for name, stop in sorted(self._started, key=lambda part: part[0] != "area loop"):
            if name in ("area loop", "player"):  # the area loop's last track batch goes too
                try:
                    stop()
                except Exception:  # noqa: BLE001 - the rest must still stop
                    log.exception("stopping the player failed")

    def run(self) -> None:
        """Run until SIGTERM/SIGINT (or `request_stop`)."""
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: self._stop.set())
        self.start()
        sdnotify.ready(f"unit {self.cfg.unit.id}: {len(self.store.in_force())} schedule(s) in force")
        try:
            interval = sdnotify.watchdog_interval() or 30.0
            while not self._stop.wait(interval):
                if self._alive():
                    sdnotify.watchdog()
                else:
                    log.error("a part of the unit has died; systemd's watchdog will restart it")
        finally:
            log.info("stopping")
            sdnotify.stopping("fading out, saving proof of play")
            self.stop()

    def _alive(self) -> bool:
        """Every long-running thread still runs (else the watchdog is left to fire)."""
        vehicle = (self.areas,) if getattr(self, "areas", None) is not None else ()
        return all(part.is_alive() for part in (self.playout, self.planner, self.link, self.health,
                                                 self.storage, self._trust_sweeper, *vehicle))

    def request_stop(self) -> None:
        self._stop.set()
        if getattr(self, "_trust_sweep_now", None) is not None:
            self._trust_sweep_now.set()

    # ---- what the unit does ----
    def _due(self, occurrence) -> None:
        """APScheduler calls this lead_s before an occurrence."""
        schedule = self._schedule_in_force(occurrence.schedule_id, occurrence.version)
        if schedule is None:
            log.info("%s no longer in force; skipped", occurrence.key)
            return
        self.playout.submit(occurrence, schedule)

    def _due_missed(self, occurrence, reason: str) -> None:
        schedule = self._schedule_in_force(occurrence.schedule_id, occurrence.version)
        if schedule is not None:
            self.playout.report_missed(occurrence, reason)

    def _recorded(self, occurrences) -> set:
        """The keys of `occurrences` a playlog already waits for in the outbox (the
        planner's cross-check when its ledger was lost)."""
        wanted = {(o.schedule_id, o.item.id, o.at.timestamp()): o.key for o in occurrences}
        found = set()
        for payload in self._playlogs_waiting():
            try:
                doc = json.loads(payload)
                key = (doc["schedule"], doc["item"], datetime.fromisoformat(doc["scheduled_at"]).timestamp())
            except (ValueError, KeyError, TypeError):
                continue
            if key in wanted:
                found.add(wanted[key])
        return found

    def _playlogs_waiting(self):
        """Payloads of the playlogs not yet acknowledged: in the outbox (on disk or in memory)."""
        after = 0
        while batch := self.outbox.pending(after=after, limit=500):
            yield from (rec.payload for rec in batch if rec.kind == "playlog")
            after = batch[-1].seq

    def _schedule_in_force(self, schedule_id: str, version: int):
        for schedule in self.store.in_force():
            if schedule.id == schedule_id and schedule.version == version:
                return schedule
        return None

    def handle_message(self, topic: str, payload: bytes) -> None:
        if topic.endswith("/schedule"):
            self.offer_schedule(topic, payload)
        elif topic.endswith("/cmd"):
            self.commands.receive(topic, payload)
        elif topic.endswith("/trust"):
            self.offer_trust(topic, payload)

    def offer_schedule(self, topic: str, payload: bytes) -> None:
        """Accept or refuse one signed schedule, judged under the trust in force (legacy
        keys until a trust document was ever in force); the documents in force stay on refusal."""
        try:
            offer = self.trust_keeper.offer_schedule(topic, payload, now=self.clock.now(),
                                                     clock_trusted=self.clockwatch.trusted)
        except StillRevoked as exc:  # its retained copy again, after a trust change: quietly
            log.info("schedule on %s still out of force: %s", topic, exc)
            return
        except Rejected as exc:
            # Rate-limited and written by the command thread: a flood of garbage on a
            # schedule topic must not fsync an event per message on the network thread.
            self.commands.schedule_refused(topic, str(exc))
            if isinstance(exc.__cause__, OSError):  # StorageError: the disk refused it
                self._write_failed("schedules", exc.__cause__)
            return
        if offer.status != "accepted":
            return
        schedule = offer.schedule
        log.info("schedule %s version %s accepted (%d items)", schedule.id, schedule.version,
                 len(schedule.items))
        self.playout.reinstate(schedule.id, schedule.version)
        self.records.event("schedule.accepted", f"{schedule.id} version {schedule.version} accepted",
                           topic=topic, schedule=schedule.id, version=schedule.version)
        self.planner.replan()
        self.want_media()

    # ---- trust (SPEC "Trust"; docs/design.md "Trust on the unit") ----
    def _start_trust(self) -> None:
        """The trust in force: persisted trust wins over the config, and once trust was in
        force the legacy `[trust].keys` never count again (the mark outside the store)."""
        cfg = self.cfg
        self.trusted = load_trusted_keys(cfg.trust.keys)
        self._config_roots = roots_from_config(cfg.trust.root, cfg.trust.root_threshold)
        self.trust_store = TrustStore(cfg.unit.state_dir / "trust", write=self._write_trust)
        if self.trust_store.was_in_force:
            held = self.trust_store.document
            log.info("trust in force: %s", f"{held.id} version {held.version}" if held else
                     "its document is lost; nothing new is accepted until the roots send one")

    def _write_trust(self, path, data: bytes) -> None:
        """The trust store's writes: a disk that refuses one is reported like any state
        write (the document is then refused, and the trust in force stays)."""
        try:
            atomic_write(path, data)
        except OSError as exc:
            self._write_failed(f"trust ({path.name})", exc)
            raise

    def _identity(self) -> UnitIdentity:
        cfg = self.cfg
        return UnitIdentity(cfg.unit.id, tuple(cfg.unit.groups), cfg.broker.topic_prefix,
                            cfg.unit.quiet_hours, self.tz)

    def offer_trust(self, topic: str, payload: bytes) -> None:
        """A retained trust document: into force, or refused with the reason; a new trust
        takes the schedules it no longer allows out of force at once."""
        try:
            events = self.trust_keeper.on_trust(topic, payload, now=self.clock.now(),
                                                clock_trusted=self.clockwatch.trusted)
        except Exception:  # noqa: BLE001 - the network thread must outlive any document
            log.exception("trust document on %s could not be handled", topic)
            return
        self._trust_events(events, topic)
        if any(e.kind == "trust.accepted" for e in events):
            log.info("%s", events[0].detail)
            self._trust_sweep_now.set()  # the next key expiry may have changed
            self.planner.replan()
            self.want_media()
            if getattr(self, "health", None) is not None:
                self.health.poke()

    def _trust_events(self, events, topic: str | None = None) -> None:
        for event in events:
            if event.kind == "trust.rejected":
                # Rate-limited, written by the command thread, like refused schedules.
                self.commands.refused(event.kind, topic or "", event.detail.removeprefix(f"{topic}: "))
                continue
            self.records.event(event.kind, event.detail, **event.fields)
            if event.kind == "trust.revoked":
                self._withdraw(event)

    def _withdraw(self, event) -> None:
        """Schedules that left force stop playing now: what plays of them fades out, what
        is queued is not played, and the plan is made again without them."""
        self.playout.withdraw(event.left, f"left force: trust version {event.fields.get('version')}")
        self.planner.replan()
        self.want_media()

    def _sweep_trust(self) -> None:
        """Keys past their `expires_at` stop counting: their schedules leave force within
        TRUST_SWEEP_S, at once when the expiry is known ahead. Never dies."""
        expired = None
        while not self._stop.is_set():
            self._trust_sweep_now.wait(self._next_sweep_s())
            self._trust_sweep_now.clear()
            if self._stop.is_set():
                return
            try:
                now, trusted = self.clock.now(), self.clockwatch.trusted
                self._trust_events(self.trust_keeper.sweep(now=now, clock_trusted=trusted))
                faults = self.trust_keeper.faults(now, trusted)
                if faults != expired and expired is not None and getattr(self, "health", None) is not None:
                    self.health.poke()  # the trust in force expired: news now, not at the next heartbeat
                expired = faults
            except Exception:  # noqa: BLE001 - the sweep must outlive any one document
                log.exception("trust sweep failed")

    def _next_sweep_s(self) -> float:
        """Until just past the next key or trust expiry, at most TRUST_SWEEP_S."""
        doc = self.trust_store.document
        if doc is None:
            return TRUST_SWEEP_S
        now = self.clock.time()
        times = [k.expires_at.timestamp() for k in doc.keys.values() if k.expires_at is not None]
        ahead = [t - now for t in times + [doc.expires_at.timestamp()] if t > now]
        return max(0.2, min([TRUST_SWEEP_S] + [a + 0.2 for a in ahead]))

    def _clock_trust_changed(self, old: str, new: str) -> None:
        if new == "untrusted":
            self.records.event("clock.untrusted", "the clock is not synchronised (no NTP, GPS or RTC): "
                               "timed normal items are missed until it is", source=new)
        else:
            self.records.event("clock.trusted", f"the clock is synchronised ({new})", source=new)
            self.planner.replan()
            if getattr(self, "_trust_sweep_now", None) is not None:
                self._trust_sweep_now.set()  # key expiry can be judged now

    def _clock_stepped(self, delta_s: float) -> None:
        self.records.event("clock.step", f"the clock stepped {delta_s:+.1f} s", delta_s=round(delta_s, 3))
        self.planner.clock_stepped()

    def _trust_context(self) -> dict:
        """What the stored schedules are checked against at start: the trust in force."""
        return dict(trusted=self.trust_store.authority(self.trusted), unit_id=self.cfg.unit.id,
                    groups=self.cfg.unit.groups, prefix=self.cfg.broker.topic_prefix,
                    quiet_hours=self.cfg.unit.quiet_hours, unit_tz=self.tz, now=self.clock.now(),
                    clock_trusted=self.clockwatch.trusted)

    def want_media(self) -> None:
        """Every document in force, always: the sync may evict what is not named."""
        self.sync.want(self.store.in_force())

    def _media_failed(self, media_id: str, reason: str) -> None:
        self.records.event("media.failed", reason, media=media_id)
