"""The vehicle's area logic in one pure step: fixes in, actions out. The unit's loop calls
`AreaController.step(...)` about once a second with the latest fix and the time, and
carries out what comes back (queue a play, write a `missed` playlog, publish an area
event or a track batch, save the counters). Nothing here reads a clock or a port.

    controller = AreaController(AreaPlanState.from_json(saved) if saved else AreaPlanState())
    controller.set_schedules(schedules_in_force)
    actions = controller.step(fix, now=clock.now(), mono=clock.monotonic(), ignition=True, quiet=False)
    for play in actions.plays:        # queue it; just before it starts: recheck(...), then
        controller.play_started(play.window, start_time)   # or controller.play_dropped(play.window)
    if actions.changed: save(controller.state.to_json())   # atomically

A play request is outstanding until `play_started` or `play_dropped`: the controller never
asks for a second play of an item while one is queued.
"""

from dataclasses import dataclass, field
from datetime import datetime

from scheduler.area_plan import AreaPlanState, AreaWatch, Window, is_trusted, recheck, window_of_day
from scheduler.track import TrackRecorder

__all__ = ["AreaActions", "AreaController", "AreaEvent", "MissedPlay", "PlayRequest"]


@dataclass(frozen=True)
class PlayRequest:
    window: Window
    play_no: int


@dataclass(frozen=True)
class MissedPlay:
    window: Window
    reason: str  # "ignition off", "no GPS fix"


@dataclass(frozen=True)
class AreaEvent:
    kind: str  # "area.entered" or "area.left"
    schedule_id: str
    area_id: str
    position: dict | None  # {"lat", "lon"} of the fix that decided it, None when lost


@dataclass
class AreaActions:
    plays: list[PlayRequest] = field(default_factory=list)
    missed: list[MissedPlay] = field(default_factory=list)
    events: list[AreaEvent] = field(default_factory=list)
    batches: list[dict] = field(default_factory=list)  # track batches, oldest first
    changed: bool = False  # the counters changed: save them


class AreaController:
    def __init__(self, state: AreaPlanState | None = None, track: TrackRecorder | None = None, *,
                 play_with_ignition_off: bool = False):
        self.state = state or AreaPlanState()
        self.track = track or TrackRecorder()
        self.play_with_ignition_off = play_with_ignition_off
        self.watch = AreaWatch({})
        self.schedules = []
        self._pending: dict[str, Window] = {}  # counter key -> window of a queued play
        self._last_fix = None

    # ---- what is in force ----
    def set_schedules(self, schedules) -> list[AreaEvent]:
        """The documents in force changed; an area that went away while inside is left."""
        self.schedules = [s for s in schedules if any(item.is_area for item in s.items)]
        areas = {(s.id, item.where): s.areas[item.where] for s in self.schedules for item in s.items
                 if item.is_area}
        gone = self.watch.set_areas(areas)
        self.state.forget_except({f"{s.id}|{item.id}" for s in self.schedules for item in s.items if item.is_area})
        return [AreaEvent("area.left", key[0], key[1], None) for key, _ in gone]

    def inside(self, schedule_id: str, area_id: str) -> bool:
        return self.watch.inside((schedule_id, area_id))

    # ---- one step ----
    def step(self, fix, *, now: datetime, mono: float, ignition: bool | None = None, quiet: bool = False,
             speed_kmh: float | None = None) -> AreaActions:
        """`fix`: the receiver's latest (or None); `now`: aware wall time; `mono`: the
        monotonic seconds the fix's `at` is measured in; `quiet`: inside quiet hours."""
        actions = AreaActions()
        trusted = is_trusted(fix, mono)
        self._membership(fix, mono, actions)
        if trusted and fix is not self._last_fix:
            self.track.observe(now.timestamp(), fix.lat, fix.lon, speed_kmh)
        self._last_fix = fix
        for schedule in self.schedules:
            for item in schedule.items:
                if item.is_area:
                    self._item(schedule, item, now, trusted, ignition, quiet, actions)
        actions.batches.extend(self.track.flush() if actions.events else self.track.take(now.timestamp()))
        return actions

    def _membership(self, fix, mono: float, actions: AreaActions) -> None:
        changes = self.watch.observe(fix, mono) + self.watch.tick(mono)
        position = None if fix is None else {"lat": fix.lat, "lon": fix.lon}
        for (schedule_id, area_id), change in changes:
            actions.events.append(AreaEvent(f"area.{change}", schedule_id, area_id,
                                            position if change == "entered" or is_trusted(fix, mono) else None))

    def _item(self, schedule, item, now, trusted, ignition, quiet, actions) -> None:
        window = window_of_day(schedule, item, now)
        if window is None:
            return
        if now >= window.end:
            reason = self.state.close(window, now)
            if reason:
                actions.missed.append(MissedPlay(window, reason))
                actions.changed = True
            return
        if not window.contains(now):
            return
        before = self.state.to_json()
        self.state.attend(window, now, trusted)
        if window.counter_key not in self._pending:
            decision = self.state.decide(window, now, inside=self.inside(schedule.id, item.where), quiet=quiet,
                                         ignition=ignition, play_with_ignition_off=self.play_with_ignition_off)
            if decision.action == "play":
                self._pending[window.counter_key] = window
                actions.plays.append(PlayRequest(window, decision.play_no))
            elif decision.action == "skip":
                self.state.skipped(window, now)
                actions.missed.append(MissedPlay(window, decision.reason))
        actions.changed = actions.changed or self.state.to_json() != before

    # ---- the player's side ----
    def recheck(self, window: Window, fix, mono: float, ignition: bool | None = None) -> str | None:
        """Just before a queued play starts or a play resumes: None to go ahead, else why not."""
        return recheck(window.item, inside=self.inside(window.schedule_id, window.item.where),
                       trusted_fix=is_trusted(fix, mono), ignition=ignition,
                       play_with_ignition_off=self.play_with_ignition_off)

    def play_started(self, window: Window, now: datetime) -> int:
        """A queued play began (not a resumed one): its play number. Save the state after."""
        self._pending.pop(window.counter_key, None)
        return self.state.started(window, now)

    def play_dropped(self, window: Window) -> None:
        """A queued play will not start (outside at the re-check, or given up)."""
        self._pending.pop(window.counter_key, None)
