"""Turns the documents in force into due occurrences, on the unit's own clock.

The signed documents on disk are the truth; the plan is derived from them at
start and whenever a document is accepted, never pickled. *When* is APScheduler's
trigger API (`scheduler.ItemTrigger`, pure: `now` passed in); *waiting* is this
module's small loop on the injectable clock, because APScheduler 3's schedulers
read `datetime.now()` themselves and a unit must stay right through clock steps:

- a step back never plays an occurrence twice: every occurrence handed over is
  kept in a ledger on disk (`fired_path`), which a restart reads too;
- a step forward never bursts: of several occurrences of one item that fall due
  at once, only the latest is handed over, the others are reported missed
  (APScheduler's `coalesce`); a late one is handed over all the same, and the
  player plays it within the lateness limit or logs it `missed`.
"""

import json
import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from loaxa.fsio import atomic_write
from scheduler import ItemTrigger

log = logging.getLogger("loaxa.planner")

LEDGER_KEEP = timedelta(days=2)
MAX_WAIT_S = 1.0  # the loop looks at the clock at least this often, so a step is seen


@dataclass
class _Entry:
    trigger: ItemTrigger
    next_fire: datetime | None


class Planner:
    def __init__(self, *, clock, lead_s: float, submit, submit_missed, schedules_in_force,
                 fired_path: Path, lateness_s: float = 600.0):
        """`submit(occurrence)` is called `lead_s` before an occurrence (or late, after a
        clock step or a restart); `submit_missed(occurrence, reason)` for occurrences
        coalesced away; `schedules_in_force()` returns the current documents."""
        self._clock = clock
        self._lead = timedelta(seconds=lead_s)
        self._lateness = timedelta(seconds=lateness_s)
        self._submit = submit
        self._submit_missed = submit_missed
        self._schedules_in_force = schedules_in_force
        self._fired_path = Path(fired_path)
        self._fired: dict[str, datetime] = self._load_fired()
        self._entries: list[_Entry] = []
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = None

    # ---- plan ----
    def replan(self) -> None:
        """Rebuild the plan from the documents in force. Occurrences up to the lateness
        limit in the past are included: a unit that starts late still plays them."""
        now = self._clock.now()
        since = now - self._lateness
        entries = []
        for schedule in self._schedules_in_force():
            for item in schedule.items:
                trigger = ItemTrigger(schedule, item, self._lead)
                entries.append(_Entry(trigger, trigger.get_next_fire_time(None, since)))
        with self._lock:
            self._entries = entries
            self._forget_old_fired(now)
        self._wake.set()
        log.debug("planned %d items", len(entries))

    def tick(self) -> float:
        """Hand over what is due now; return the seconds until the next fire time."""
        now = self._clock.now()
        with self._lock:
            for entry in self._entries:
                self._hand_over_due(entry, now)
            upcoming = [e.next_fire for e in self._entries if e.next_fire is not None]
        if not upcoming:
            return MAX_WAIT_S
        return max(0.0, (min(upcoming) - now).total_seconds())

    def _hand_over_due(self, entry: _Entry, now: datetime) -> None:
        due = []
        while entry.next_fire is not None and entry.next_fire <= now:
            due.append(entry.trigger.occurrence_for(entry.next_fire))
            entry.next_fire = entry.trigger.get_next_fire_time(entry.next_fire, now)
        due = [occ for occ in due if occ.key not in self._fired]
        if not due:
            return
        for occ in due[:-1]:
            self._mark_fired(occ)
            self._submit_missed(occ, "coalesced: a later play of the same item fell due at the "
                                     "same time (clock step or restart)")
        self._mark_fired(due[-1])
        self._submit(due[-1])

    def _mark_fired(self, occ) -> None:
        self._fired[occ.key] = occ.at
        self._save_fired()

    # ---- loop ----
    def start(self) -> None:
        self.replan()
        self._thread = threading.Thread(target=self._run, name="planner", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                wait = self.tick()
            except Exception:  # noqa: BLE001 - the planner must never die
                log.exception("planner tick failed")
                wait = MAX_WAIT_S
            self._wake.wait(min(wait, MAX_WAIT_S))
            self._wake.clear()

    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def clock_stepped(self) -> None:
        """Look at the clock again now: a forward step may have made items due."""
        self._wake.set()

    def upcoming(self, limit: int = 5) -> list:
        """The next occurrences still to be handed to the player, soonest first."""
        with self._lock:
            occs = [e.trigger.occurrence_for(e.next_fire) for e in self._entries if e.next_fire]
        return sorted(occs, key=lambda o: o.at)[:limit]

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(2)

    # ---- the ledger of occurrences handed over ----
    def _forget_old_fired(self, now) -> None:
        old = [key for key, at in self._fired.items() if at < now - LEDGER_KEEP]
        for key in old:
            del self._fired[key]
        if old:
            self._save_fired()

    def _load_fired(self) -> dict:
        try:
            raw = json.loads(self._fired_path.read_text("utf-8"))
            return {key: datetime.fromisoformat(at) for key, at in raw.items()}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, AttributeError, TypeError) as exc:
            log.error("fired-occurrence ledger unreadable (%s); starting a new one", exc)
            return {}

    def _save_fired(self) -> None:
        data = {key: at.isoformat() for key, at in self._fired.items()}
        atomic_write(self._fired_path, json.dumps(data).encode("utf-8"))
