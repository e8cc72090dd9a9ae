"""Turns the documents in force into APScheduler jobs, one per occurrence.

The signed documents on disk are the truth; jobs are derived from them at start
and whenever a document is accepted, never pickled. The maths of *when* lives in
scheduler.triggers (pure, `now` passed in); this module only hands the results
to APScheduler, which wakes the player `lead_s` before each item so the
amplifier is warm when the first sample goes out.
"""

import logging
import threading
from datetime import timedelta, timezone

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from scheduler import occurrences

log = logging.getLogger("loaxa.planner")

HORIZON = timedelta(hours=26)
REPLAN_EVERY = timedelta(hours=1)
REPLAN_JOB = "replan"


class Planner:
    def __init__(self, *, clock, lead_s: float, submit, schedules_in_force):
        """`submit(occurrence)` is called at `occurrence.at - lead_s`;
        `schedules_in_force()` returns the current documents (for the hourly replan)."""
        self._clock = clock
        self._lead = timedelta(seconds=lead_s)
        self._submit = submit
        self._schedules_in_force = schedules_in_force
        self._fired: dict[str, object] = {}  # occurrence key -> its time, to never fire twice
        self._lock = threading.Lock()
        self._scheduler = BackgroundScheduler(
            timezone=timezone.utc,
            job_defaults={"misfire_grace_time": 300, "coalesce": True, "max_instances": 1})

    def start(self) -> None:
        self._scheduler.start()
        self._scheduler.add_job(self.replan, IntervalTrigger(seconds=REPLAN_EVERY.total_seconds()),
                                id=REPLAN_JOB, replace_existing=True)
        self.replan()

    def replan(self) -> None:
        """Make the jobs match the documents in force over the next HORIZON."""
        now = self._clock.now()
        wanted = {occ.key: occ for schedule in self._schedules_in_force()
                  for occ in occurrences(schedule, now, now + HORIZON)}
        with self._lock:
            self._forget_old_fired(now)
            for job in self._scheduler.get_jobs():
                if job.id != REPLAN_JOB and job.id not in wanted:
                    job.remove()
            for key, occ in wanted.items():
                if key not in self._fired:
                    self._add(occ, now)
        log.debug("planned %d occurrences", len(wanted))

    def _add(self, occ, now) -> None:
        run_at = max(occ.at - self._lead, now)
        self._scheduler.add_job(self._fire, DateTrigger(run_date=run_at), args=(occ,),
                                id=occ.key, replace_existing=True)

    def _fire(self, occ) -> None:
        with self._lock:
            if occ.key in self._fired:
                return
            self._fired[occ.key] = occ.at
        self._submit(occ)

    def _forget_old_fired(self, now) -> None:
        for key, at in list(self._fired.items()):
            if at < now - HORIZON:
                del self._fired[key]

    def upcoming(self, limit: int = 5) -> list:
        """The next occurrences still to be handed to the player, soonest first."""
        jobs = [j for j in self._scheduler.get_jobs() if j.id != REPLAN_JOB]
        occs = sorted((j.args[0] for j in jobs), key=lambda o: o.at)
        return occs[:limit]

    def stop(self) -> None:
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)
