"""Carries out signed commands (SPEC "Commands") and answers each on `reply`.

Commands arrive on paho's network thread; they are queued and carried out on a
thread of their own (a `selftest` plays a tone, the id ledger fsyncs), and the
reply goes through the outbox like every record.
"""

import json
import logging
import queue
import threading

from device.commands import CommandGate
from loaxa.errors import DocumentError
from loaxa.fsio import atomic_write, quarantine
from scheduler import command_play

log = logging.getLogger("loaxa.commands")

VOLUME_FILE = "volume.json"


class CommandRunner:
    def __init__(self, unit):
        self._unit = unit
        cfg = unit.cfg
        self.gate = CommandGate(cfg.unit.state_dir / "commands", trusted=unit.trusted, unit_id=cfg.unit.id,
                                groups=cfg.unit.groups, prefix=cfg.broker.topic_prefix,
                                on_write_failed=unit._write_failed, on_corrupt=unit._state_file_corrupt)
        self._queue: queue.Queue = queue.Queue(maxsize=1000)
        self._thread = threading.Thread(target=self._run, name="commands", daemon=True)
        self._actions = {"play": self._play, "stop": self._stop, "set_volume": self._set_volume,
                         "ping": self._ping, "sync": self._sync, "selftest": self._selftest}

    def start(self) -> "CommandRunner":
        self._restore_volume()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join(5)

    def receive(self, topic: str, payload: bytes) -> None:
        """From the network thread: queue it, never block there."""
        if not payload:
            return  # a cleared retained message is nobody's command
        try:
            self._queue.put_nowait((topic, payload, self._unit.clock.now()))
        except queue.Full:
            log.error("command queue full; command on %s dropped", topic)

    def _run(self) -> None:
        while (job := self._queue.get()) is not None:
            try:
                self._answer(*job)
            except Exception:  # noqa: BLE001 - the command thread must outlive any command
                log.exception("command handling failed")

    def _answer(self, topic: str, payload: bytes, received_at) -> None:
        reply, command = self.gate.respond(topic, payload, received_at, self._execute)
        unit = self._unit
        if command is None:
            unit.records.event("command.rejected", reply["detail"], topic=topic, command=reply["command"])
        unit.records.reply(reply)

    def _execute(self, command):
        return self._actions[command.action](command)

    # ---- actions: each returns (detail, result) or raises LoaxaError ----
    def _play(self, command):
        unit = self._unit
        schedule, occ = command_play(command, unit.clock.now(), unit.store.in_force(), unit.tz)
        zones = occ.item.zones or ()
        if any(z > len(unit.cfg.gpio.zones) for z in zones):
            raise DocumentError(f"args.zones: this unit has {len(unit.cfg.gpio.zones)} zone(s), got {list(zones)}")
        if occ.item.priority != "emergency" and unit.playout.in_quiet_hours():
            raise DocumentError("quiet hours: only emergency items sound now")
        unit.playout.submit(occ, schedule, timed=False)
        return f"queued {occ.item.id}", {"item": occ.item.id, "at": occ.at.isoformat()}

    def _stop(self, command):
        stopped = self._unit.playout.stop_current("stopped by command")
        return (f"stopped {stopped}" if stopped else "nothing was playing"), {"stopped": stopped}

    def _set_volume(self, command):
        self._apply_volume(command.volume)
        try:
            atomic_write(self._unit.cfg.unit.state_dir / VOLUME_FILE,
                         json.dumps({"volume": command.volume}).encode())
        except OSError as exc:  # a full or read-only disk: the volume holds until a restart
            self._unit._write_failed(VOLUME_FILE, exc)
            return (f"volume {command.volume} (not saved: {exc.strerror or exc}; it lasts until "
                    "the unit restarts)"), {"volume": command.volume, "saved": False}
        return f"volume {command.volume}", {"volume": command.volume}

    def _apply_volume(self, volume: int) -> None:
        """An amplifier with serial control turns itself down; a relay-only one cannot, so
        the player scales the audio of items that name no volume of their own."""
        unit = self._unit
        if unit.amp.health()["link"] is not None:
            unit.amp.set_volume(volume)
        else:
            unit.playout.default_volume = volume

    def _restore_volume(self) -> None:
        try:
            volume = json.loads((self._unit.cfg.unit.state_dir / VOLUME_FILE).read_text())["volume"]
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError) as exc:
            path = self._unit.cfg.unit.state_dir / VOLUME_FILE
            log.error("saved volume unreadable (%s); using each item's own", exc)
            self._unit._state_file_corrupt(path, quarantine(path), str(exc))
            return
        if isinstance(volume, int) and not isinstance(volume, bool) and 0 <= volume <= 100:
            self._apply_volume(volume)

    def _ping(self, command):
        unit = self._unit
        return "pong", {"version": unit.version, "boot": unit.boot, "clock": unit.clockwatch.source(),
                        "queue": unit.playout.queued(), "outbox": unit.outbox.depth()}

    def _sync(self, command):
        unit = self._unit
        unit.link.resubscribe()
        unit.want_media()
        unit.sync.retry_now()
        return "re-reading the retained schedules and checking the media cache", {}

    def _selftest(self, command):
        report = self._unit.selftest()
        failed = [c["name"] for c in report.get("checks", []) if c.get("required") and not c.get("ok")]
        detail = "self-test passed" if report.get("ok") else f"self-test failed: {', '.join(failed) or 'see result'}"
        return detail, report

