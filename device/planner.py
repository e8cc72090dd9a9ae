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

The ledger is written before an occurrence is handed over; when the write fails
(full or read-only disk) the occurrence is handed over all the same (playing it
matters more than remembering it), the ledger stays in memory and is written again
at the next hand-over or when the storage monitor sees the disk writable again
(`retry_save`). After a restart with a ledger that is damaged (moved aside as
`fired.json.corrupt-<time>` and reported), or missing while documents are in force
(a previous run may have played them), nothing due before the start is played:
each such occurrence counts as fired and is logged `missed` ("in doubt"), unless
`already_recorded` shows a playlog for it already (then nothing more is said).
"""

import json
import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from loaxa.fsio import atomic_write, quarantine
from scheduler import ItemTrigger

log = logging.getLogger("loaxa.planner")

LEDGER_KEEP = timedelta(days=2)
MAX_WAIT_S = 1.0  # the loop looks at the clock at least this often, so a step is seen
IN_DOUBT = ("in doubt: due before the unit started and the record of what had played "
            "({why}) cannot tell whether it played; not played again")


@dataclass
class _Entry:
    trigger: ItemTrigger
    next_fire: datetime | None


class Planner:
    def __init__(self, *, clock, lead_s: float, submit, submit_missed, schedules_in_force,
                 fired_path: Path, lateness_s: float = 600.0, on_save_failed=None,
                 on_corrupt=None, already_recorded=None):
        """`submit(occurrence)` is called `lead_s` before an occurrence (or late, after a
        clock step or a restart); `submit_missed(occurrence, reason)` for occurrences
        coalesced away; `schedules_in_force()` returns the current documents.
        `on_save_failed(what, exc)` hears of a ledger write that failed, `on_corrupt(path,
        moved_to, why)` of a damaged ledger at start; `already_recorded(occurrences)`
        returns the keys of those a playlog exists for (the outbox, the journal)."""
        self._clock = clock
        self._lead = timedelta(seconds=lead_s)
        self._lateness = timedelta(seconds=lateness_s)
        self._submit = submit
        self._submit_missed = submit_missed
        self._schedules_in_force = schedules_in_force
        self._fired_path = Path(fired_path)
        self._on_save_failed = on_save_failed or (lambda what, exc: None)
        self._on_corrupt = on_corrupt or (lambda path, moved_to, why: None)
        self._already_recorded = already_recorded or (lambda occs: set())
        self._unsaved = False  # the ledger in memory is ahead of the file
        self._doubt = None  # why fire times up to `_started` are in doubt, or None
        self._started = clock.now()
        self._fired: dict[str, datetime] = self._load_fired()
        self._entries: list[_Entry] = []
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = None
        self._first_plan = True

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
            ledger_missing = entries and not self._fired_path.exists()
            first, self._first_plan = self._first_plan, False
            if ledger_missing and first and self._doubt is None:
                # A run that planned these documents wrote the ledger (below): it was lost.
                self._doubt = "missing"
            self._entries = entries
            self._forget_old_fired(now)
            if (ledger_missing or first) and not self._save_fired() and first and self._doubt is None:
                # The disk refuses the ledger now, so it may have refused it before the
                # restart too: what the last run handed over may be missing from it.
                self._doubt = "not writable (full or read-only disk)"
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
        if self._doubt is not None:
            due = self._set_aside_in_doubt(due)
        if not due:
            return
        for occ in due[:-1]:
            self._mark_fired(occ)
            self._submit_missed(occ, "coalesced: a later play of the same item fell due at the "
                                     "same time (clock step or restart)")
        self._mark_fired(due[-1])
        self._submit(due[-1])

    def _set_aside_in_doubt(self, due: list) -> list:
        """Occurrences whose fire time was before the start, with the ledger in doubt:
        counted as fired and logged missed (unless a playlog exists); the rest returned."""
        doubtful = [occ for occ in due if occ.at - self._lead <= self._started]
        if not doubtful:
            return due
        recorded = self._recorded(doubtful)
        for occ in doubtful:
            self._mark_fired(occ)
            if occ.key not in recorded:
                self._submit_missed(occ, IN_DOUBT.format(why=f"the fired-occurrence ledger was {self._doubt}"))
        log.warning("%d occurrence(s) due before the start not replayed (ledger %s)", len(doubtful), self._doubt)
        return [occ for occ in due if occ not in doubtful]

    def _recorded(self, occs) -> set:
        try:
            return set(self._already_recorded(occs))
        except Exception:  # noqa: BLE001 - without the cross-check each is logged missed
            log.exception("could not look for playlogs already recorded")
            return set()

    def _mark_fired(self, occ) -> None:
        """Remember `occ` as handed over: on disk first when the disk lets us, in memory
        always (a failed save never stops the hand-over)."""
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
            fired = {_current_key(str(key)): datetime.fromisoformat(at) for key, at in raw.items()}
            if any(at.tzinfo is None for at in fired.values()):
                raise ValueError("a time without its UTC offset")
            return fired
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, AttributeError, TypeError, RecursionError) as exc:
            # Written atomically, so this is a damaged disk or a hand edit: keep the file
            # for inspection, and let nothing due before this start play again.
            self._doubt = "damaged"
            moved_to = quarantine(self._fired_path, self._clock.time())
            log.error("fired-occurrence ledger unreadable (%s); moved to %s; nothing due before "
                      "this start plays again", exc, moved_to or "nowhere (the disk refuses)")
            try:
                self._on_corrupt(self._fired_path, moved_to, str(exc))
            except Exception:  # noqa: BLE001 - reporting must not stop the start
                log.exception("could not report the damaged ledger")
            return {}

    def _save_fired(self) -> bool:
        """Write the ledger; on failure keep it in memory, tell `on_save_failed`, and
        return False (the next hand-over or `retry_save` writes it)."""
        data = {key: at.isoformat() for key, at in self._fired.items()}
        try:
            atomic_write(self._fired_path, json.dumps(data).encode("utf-8"))
        except OSError as exc:
            self._unsaved = True
            try:
                self._on_save_failed(self._fired_path.name, exc)
            except Exception:  # noqa: BLE001 - the hand-over goes on regardless
                log.exception("could not report the failed ledger write")
            return False
        if self._unsaved:
            log.info("fired-occurrence ledger written again after a storage fault")
        self._unsaved = False
        return True

    def retry_save(self) -> None:
        """The disk may be writable again: write the ledger if memory is ahead of it."""
        with self._lock:
            if self._unsaved:
                self._save_fired()

    @property
    def unsaved(self) -> bool:
        return self._unsaved


def _current_key(key: str) -> str:
    """Ledgers written by earlier releases keyed a play with its document's version too
    (`id|version|item|at`); read them as today's `id|item|at`, so an update never replays."""
    parts = key.split("|")
    return "|".join((parts[0], *parts[2:])) if len(parts) == 4 else key
