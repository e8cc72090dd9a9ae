"""Carries out signed commands (SPEC "Commands") and answers each on `reply`.

Commands arrive on paho's network thread. There they are screened (`CommandGate.
screen`: size, envelope, trusted key, signature, expiry, target, replay; no disk),
so only verified commands enter the queue of the command thread, which stores the
id (fsync), carries the command out and replies through the outbox. Garbage never
takes a signed command's place: refusals go to a `RefusalReporter` that lets a few
through one by one per minute (a reply and a `command.rejected` event each, written
by the command thread) and coalesces the rest into one `command.rejected` event with
a `count`.

Refused schedules go the same way (`schedule_refused`, called by the daemon on the
network thread): their `schedule.rejected` events are written by the command thread,
up to SCHEDULE_REFUSALS_PER_MINUTE one by one (an operator pushing many documents
still learns why each was refused), the rest coalesced. A flood on a schedule topic
then neither writes (fsyncs) an event per message on the network thread, where it
would hold up the commands behind it, nor fills the outbox.

A `play` whose media are not prepared yet is not handed to the player (which never
fetches): media named by URL are requested from the media sync, and the play waits
on the command thread until they are ready, then plays at once; if they are still
not ready when the lateness limit (`unit.lateness_s`) has passed since the command,
its playlog says `failed`, "media not ready".
"""

import json
import logging
import threading
from collections import deque
from dataclasses import dataclass

from device.commands import CommandGate, RefusalReporter, peek_command_id, reply_doc
from loaxa.errors import DocumentError, Rejected
from loaxa.fsio import atomic_write, quarantine
from scheduler import command_play

log = logging.getLogger("loaxa.commands")

VOLUME_FILE = "volume.json"
MAX_SIGNED = 1000  # verified commands waiting: only a trusted operator can fill this
REFUSALS_PER_MINUTE = 5  # command refusals answered one by one; the rest are counted
SCHEDULE_REFUSALS_PER_MINUTE = 200  # schedules are pushed by hand, a few documents at a time
TRUST_REFUSALS_PER_MINUTE = 20  # a unit reads a handful of trust topics
WAITING_POLL_S = 0.5  # how often plays waiting for media look again


@dataclass
class _WaitingPlay:
    """A commanded play whose media the sync is still fetching."""

    occurrence: object
    schedule: object
    shas: tuple
    until: float  # epoch: the lateness limit after the command


class CommandRunner:
    def __init__(self, unit):
        self._unit = unit
        cfg = unit.cfg
        # Judged by the trust in force when each command arrives (legacy keys until a trust
        # document was ever in force); a stop while an emergency plays needs `emergency`.
        self.gate = CommandGate(cfg.unit.state_dir / "commands", trusted=unit.trust_keeper.authority,
                                unit_id=cfg.unit.id, groups=cfg.unit.groups, prefix=cfg.broker.topic_prefix,
                                emergency_playing=self._emergency_playing,
                                clock_trusted=lambda: unit.clockwatch.trusted,
                                on_write_failed=unit._write_failed, on_corrupt=unit._state_file_corrupt)
        self.refusals = {
            "command.rejected": RefusalReporter(unit.clock.monotonic, burst=REFUSALS_PER_MINUTE),
            "schedule.rejected": RefusalReporter(unit.clock.monotonic, burst=SCHEDULE_REFUSALS_PER_MINUTE),
            "trust.rejected": RefusalReporter(unit.clock.monotonic, burst=TRUST_REFUSALS_PER_MINUTE)}
        self._cond = threading.Condition()
        self._signed: deque = deque()  # (command, received_at): screened, in arrival order
        self._queued_ids: set = set()  # ids in `_signed`: a replay of a queued command is refused
        # (kind, topic, raw, reason) to report one by one: the reporters' bursts bound it
        self._refused: deque = deque(maxlen=2 * (REFUSALS_PER_MINUTE + SCHEDULE_REFUSALS_PER_MINUTE))
        self._waiting: list[_WaitingPlay] = []
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="commands", daemon=True)
        self._actions = {"play": self._play, "stop": self._stop, "set_volume": self._set_volume,
                         "ping": self._ping, "sync": self._sync, "selftest": self._selftest}

    def start(self) -> "CommandRunner":
        self._restore_volume()
        self._thread.start()
        return self

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(5)

    # ---- the network thread: screen, then queue; never block, never touch the disk ----
    def receive(self, topic: str, payload: bytes) -> None:
        if not payload:
            return  # a cleared retained message is nobody's command
        received_at = self._unit.clock.now()
        try:
            command = self.gate.screen(topic, payload, received_at)
        except Rejected as exc:
            self._refuse(topic, payload, str(exc))
            return
        with self._cond:
            if command.id in self._queued_ids:
                reason = f"command id {command.id} is already waiting to be carried out (a replay)"
            elif len(self._signed) >= MAX_SIGNED:
                reason = f"{MAX_SIGNED} commands are waiting already; send it again later"
            else:
                self._signed.append((command, received_at))
                self._queued_ids.add(command.id)
                self._cond.notify_all()
                return
        log.error("signed command %s not queued: %s", command.id, reason)
        self._refuse(topic, payload, reason)

    def schedule_refused(self, topic: str, reason: str) -> None:
        """A schedule the daemon refused on the network thread: reported like a command's."""
        self._refuse(topic, b"", reason, kind="schedule.rejected")

    def refused(self, kind: str, topic: str, reason: str) -> None:
        """A refused document of another kind (`trust.rejected`): reported the same way."""
        self._refuse(topic, b"", reason, kind=kind)

    def _emergency_playing(self) -> bool:
        current = self._unit.playout.current
        return current is not None and current.get("priority") == "emergency"

    def _refuse(self, topic: str, payload: bytes, reason: str, kind: str = "command.rejected") -> None:
        if self.refusals[kind].admit(topic, reason):
            log.warning("%s refused on %s: %s", kind.split(".")[0], topic, reason)
            with self._cond:
                self._refused.append((kind, topic, payload, reason))
                self._cond.notify_all()

    # ---- the command thread ----
    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(self._has_work, timeout=self._idle_wait())
                if self._stopping and not self._signed:
                    return
                signed = self._signed.popleft() if self._signed else None
                if signed is not None:
                    self._queued_ids.discard(signed[0].id)
                refused = self._refused.popleft() if signed is None and self._refused else None
            try:
                if signed is not None:
                    self._answer(*signed)
                elif refused is not None:
                    self._answer_refusal(*refused)
                self._report_coalesced()
                self._check_waiting()
            except Exception:  # noqa: BLE001 - the command thread must outlive any command
                log.exception("command handling failed")

    def _has_work(self) -> bool:
        return bool(self._signed or self._refused or self._stopping)

    def _idle_wait(self) -> float | None:
        waits = [w for w in [r.due_in() for r in self.refusals.values()]
                 + [WAITING_POLL_S if self._waiting else None] if w is not None]
        return max(0.05, min(waits)) if waits else None

    def _answer(self, command, received_at) -> None:
        unit = self._unit
        try:
            self.gate.remember(command, received_at)
        except Rejected as exc:  # a replay that was queued twice, or the id could not be stored
            log.warning("command %s refused: %s", command.id, exc)
            unit.records.event("command.rejected", str(exc), command=command.id)
            unit.records.reply(reply_doc(command.id, False, str(exc)))
            return
        unit.records.reply(self.gate.carry_out(command, self._execute))

    def _answer_refusal(self, kind: str, topic: str, payload: bytes, reason: str) -> None:
        if kind != "command.rejected":
            self._unit.records.event(kind, reason, topic=topic)
            return
        command_id = peek_command_id(payload)
        reply = reply_doc(command_id, False, reason)
        self._unit.records.event("command.rejected", reply["detail"], topic=topic, command=command_id)
        self._unit.records.reply(reply)

    def _report_coalesced(self) -> None:
        for kind, reporter in self.refusals.items():
            summary = reporter.summary()
            if summary is None:
                continue
            what = kind.split(".")[0]
            detail = (f"{summary['count']} more {what} message(s) refused within {summary['interval_s']:g} s "
                      f"and not reported one by one; the last: {summary['reason']}")
            log.warning("%s", detail)
            extra = {"command": None} if what == "command" else {}
            self._unit.records.event(kind, reply_doc(None, False, detail)["detail"], topic=summary["topic"],
                                     count=summary["count"], **extra)

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
        result = {"item": occ.item.id, "at": occ.at.isoformat()}
        missing = self._media_to_fetch(schedule, occ)
        if not missing:
            unit.playout.submit(occ, schedule, timed=False)
            return f"queued {occ.item.id}", result
        limit_s = unit.cfg.unit.lateness_s
        for media_id, media in missing.items():
            if media.url and command.play.source == "url":  # schedule media: the sync has them already
                unit.sync.request(media_id, media.url, media.sha256, media.size or None,
                                  priority=occ.item.priority, for_s=limit_s)
        with self._cond:
            self._waiting.append(_WaitingPlay(occ, schedule, tuple(m.sha256 for m in missing.values()),
                                              occ.at.timestamp() + limit_s))
        return (f"queued {occ.item.id} once its media are ready (fetching; failed if not ready "
                f"within {limit_s:g} s)"), dict(result, media="fetching")

    def _media_to_fetch(self, schedule, occ) -> dict:
        """The media of a commanded play that are not prepared yet (and may still be)."""
        media = self._unit.media
        return {mid: schedule.media[mid] for mid in occ.item.play
                if mid in schedule.media and not media.has(schedule.media[mid].sha256)
                and media.failure(schedule.media[mid].sha256) is None}

    def _check_waiting(self) -> None:
        """Hand plays whose media became ready to the player; fail those out of time."""
        if not self._waiting:
            return
        unit, now = self._unit, self._unit.clock.time()
        with self._cond:
            waiting, self._waiting = self._waiting, []
        for play in waiting:
            # Ready, or never playable (it does not decode): the player says which.
            if all(unit.media.has(sha) or unit.media.failure(sha) for sha in play.shas):
                unit.playout.submit(play.occurrence, play.schedule, timed=False)
            elif now >= play.until:
                unit.playout.report_failed(play.occurrence, "media not ready: not fetched and prepared "
                                                            "within the lateness limit of the command")
            else:
                with self._cond:
                    self._waiting.append(play)

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

