"""The vehicle's area loop on the unit: SPEC "Mobile units" wired to the GPS, the player
and the outbox.

`AreaRunner` calls the pure `scheduler.area_unit.AreaController.step` about once a
second with the GPS receiver's latest fix, the ignition and quiet hours, and carries
out what comes back:

- a play is submitted to the player's priority queue like any other item, with an
  `AreaPlay` attached: the player asks it again (area, fix, ignition) just before the
  play starts and when a preempted play resumes, and a play that would start outside
  is dropped with no record;
- `missed` records ("no GPS fix", "ignition off") go out as playlogs through the outbox;
- `area.entered` / `area.left` events and sealed track batches (`.../track`, QoS 1)
  through the outbox, so a dead zone in the hills loses nothing;
- the counters (plays today, last start) are written atomically to `area-state.json`
  in the state folder whenever they change and read back at start: a restart inside
  the area does not play again before `every_s`. A damaged file is moved aside and
  reported; the unit starts with fresh counters (it may play once early rather than
  stay silent).

The loop never dies: one bad step is logged and the next second tries again.
"""

import logging
import math
import threading
from dataclasses import dataclass
from pathlib import Path

from loaxa.fsio import atomic_write_text, quarantine
from scheduler.area_plan import IGNITION_REASON, AreaPlanState, AreaStateError, Window
from scheduler.area_unit import AreaController
from scheduler.areas import haversine_m
from scheduler.triggers import Occurrence

log = logging.getLogger("loaxa.vehicle")

STEP_S = 1.0
STATE_FILE = "area-state.json"


@dataclass
class AreaPlay:
    """What the player needs to know of an area play (device/playout.py)."""

    runner: "AreaRunner"
    window: Window
    play_no: int | None = None  # set when the play starts
    left_area: bool = False  # the vehicle left the area while it played
    started: bool = False

    @property
    def area(self) -> str:
        return self.window.item.where

    def before_start(self, now, *, resumed: bool) -> str | None:
        """Just before the play starts or resumes: None to go ahead, else why not."""
        return self.runner.before_start(self, now, resumed=resumed)

    def finished(self) -> None:
        self.runner.finished(self)


class AreaRunner:
    def __init__(self, *, clock, gps_fix, schedules_in_force, submit, report_missed, event, track,
                 state_dir: Path, ignition=lambda: None, quiet=lambda: False, gps_speed=lambda: None,
                 play_with_ignition_off: bool = False, on_save_failed=None, on_corrupt=None,
                 step_s: float = STEP_S):
        """`gps_fix()` is the receiver's latest fix (hw.gps.GpsFix, monotonic `at`, or None);
        `submit(occurrence, schedule, area_play)` queues a play; `report_missed(window,
        reason)` writes a `missed` playlog; `event(kind, detail, **extra)`; `track(batch)`
        publishes a sealed track batch; `ignition()` is True/False, or None when not fitted."""
        self._clock = clock
        self._gps_fix = gps_fix
        self._gps_speed = gps_speed
        self._schedules_in_force = schedules_in_force
        self._submit = submit
        self._report_missed = report_missed
        self._event = event
        self._track = track
        self._ignition = ignition
        self._quiet = quiet
        self._on_save_failed = on_save_failed
        self._on_corrupt = on_corrupt
        self.step_s = step_s
        self.path = Path(state_dir) / STATE_FILE
        self._lock = threading.RLock()  # the loop and the player thread both ask the controller
        self.controller = AreaController(self._load(), play_with_ignition_off=play_with_ignition_off)
        self._known = None  # (id, version) of the documents the controller has
        self._playing: list[AreaPlay] = []  # plays started and not finished
        self._last_fix = None
        self._stop = threading.Event()
        self._dirty = False
        self._thread = threading.Thread(target=self._run, name="areas", daemon=True)

    # ---- counters on disk ----
    def _load(self) -> AreaPlanState:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return AreaPlanState()
        except (OSError, UnicodeDecodeError) as exc:
            return self._damaged(str(exc))
        try:
            return AreaPlanState.from_json(text)
        except AreaStateError as exc:
            return self._damaged(str(exc))

    def _damaged(self, why: str) -> AreaPlanState:
        moved = quarantine(self.path) if self.path.exists() else None
        log.error("%s is damaged (%s); area counters start afresh", self.path.name, why)
        if self._on_corrupt is not None:
            self._on_corrupt(self.path, moved, why)
        return AreaPlanState()

    def _save(self) -> None:
        """Atomically; a failed write keeps the counters in memory and tries at the next step."""
        try:
            atomic_write_text(self.path, self.controller.state.to_json())
            self._dirty = False
        except OSError as exc:
            self._dirty = True
            if self._on_save_failed is not None:
                self._on_save_failed(self.path.name, exc)

    # ---- the loop ----
    def start(self) -> "AreaRunner":
        self._thread.start()
        return self

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        """Stop the loop; the open track batch is sealed and published. Safe twice."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(5.0)
        with self._lock:
            batches = self.controller.track.flush()
            if self._dirty:
                self._save()
        for batch in batches:
            self._publish_track(batch)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.step()
            except Exception:  # noqa: BLE001 - the loop must outlive any one bad step
                log.exception("area step failed; trying again")
            self._stop.wait(self.step_s)

    def step(self) -> None:
        """One second of the vehicle: membership, due plays, records, track."""
        with self._lock:
            self._refresh_schedules()
            fix = self._gps_fix()
            speed = self._speed(fix)
            actions = self.controller.step(fix, now=self._clock.now(), mono=self._clock.monotonic(),
                                           ignition=self._ignition(), quiet=self._quiet(), speed_kmh=speed)
            for event in actions.events:
                if event.kind == "area.left":
                    for play in self._playing:
                        if (play.window.schedule_id, play.area) == (event.schedule_id, event.area_id):
                            play.left_area = True
            if actions.changed or self._dirty:
                self._save()
        for event in actions.events:
            verb = "entered" if event.kind == "area.entered" else "left"
            log.info("%s: %s of %s", event.kind, event.area_id, event.schedule_id)
            self._event(event.kind, f"the vehicle {verb} area {event.area_id} of {event.schedule_id}",
                        schedule=event.schedule_id, area=event.area_id, position=event.position)
        for missed in actions.missed:
            self._report_missed(missed.window, missed.reason)
        for batch in actions.batches:
            self._publish_track(batch)
        for request in actions.plays:
            self._queue(request.window)

    def _speed(self, fix) -> float | None:
        """km/h: the receiver's RMC speed when it gives one, else from the last two fixes."""
        speed = self._gps_speed()
        last, self._last_fix = self._last_fix, fix
        if speed is not None or fix is None or last is None or fix.at <= last.at:
            return speed
        return haversine_m(last.lat, last.lon, fix.lat, fix.lon) / (fix.at - last.at) * 3.6

    def _refresh_schedules(self) -> None:
        schedules = self._schedules_in_force()
        known = tuple((s.id, s.version) for s in schedules)
        if known == self._known:
            return
        self._known = known
        for event in self.controller.set_schedules(schedules):
            self._event(event.kind, f"the vehicle left area {event.area_id} of {event.schedule_id} "
                        "(the area was withdrawn)", schedule=event.schedule_id, area=event.area_id,
                        position=None)
        self._schedules = {(s.id, s.version): s for s in schedules}

    def _queue(self, window: Window) -> None:
        schedule = self._schedules.get((window.schedule_id, window.version))
        if schedule is None:
            with self._lock:
                self.controller.play_dropped(window)
            return
        now = self._clock.now().astimezone(window.start.tzinfo)
        occurrence = Occurrence(window.schedule_id, window.version, window.item, now)
        self._submit(occurrence, schedule, AreaPlay(self, window))

    def _publish_track(self, batch: dict) -> None:
        try:
            self._track(batch)
        except Exception:  # noqa: BLE001 - the outbox keeps what it can; the loop goes on
            log.exception("track batch %s could not be stored", batch.get("id"))

    # ---- the player's side ----
    def before_start(self, play: AreaPlay, now, *, resumed: bool) -> str | None:
        with self._lock:
            reason = self.controller.recheck(play.window, self._gps_fix(), self._clock.monotonic(),
                                             self._ignition())
            if reason is None:
                if not resumed:
                    play.play_no = self.controller.play_started(play.window, now)
                    play.started = True
                    self._save()
                if play not in self._playing:
                    self._playing.append(play)
                return None
            if not resumed:
                self.controller.play_dropped(play.window)
                if reason == IGNITION_REASON:  # as a due play skipped for it: every_s restarts
                    self.controller.state.skipped(play.window, now)
                    self._save()
            return reason

    def dropped(self, play: AreaPlay, reason: str, now) -> None:
        """The player will not start a queued play (quiet hours, too late, stopping, the
        ignition); one skipped for the ignition restarts `every_s` as a skipped due play."""
        with self._lock:
            self.controller.play_dropped(play.window)
            if reason == IGNITION_REASON:
                self.controller.state.skipped(play.window, now)
                self._save()

    def finished(self, play: AreaPlay) -> None:
        with self._lock:
            if play in self._playing:
                self._playing.remove(play)

    def position(self) -> dict | None:
        fix = self._gps_fix()
        if fix is None or not math.isfinite(fix.lat):
            return None
        return {"lat": fix.lat, "lon": fix.lon}
