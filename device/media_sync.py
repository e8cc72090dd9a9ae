"""The media sync worker: every file the schedules in force need, fetched and prepared ahead.

The daemon calls `want(schedules)` with the documents in force whenever one is
accepted (and at start). One background thread then works through the media
they name, most urgent first: media of emergency items before priority before
normal, then the one that plays soonest. Each is downloaded (resuming after a
dropped connection), verified and prepared for air by the cache (`MediaCache`).
A more urgent file arriving interrupts a download in progress; it resumes later
from where it stopped.

Failures never stop the worker. A failure that may pass (network, server
errors, disk full) is retried with exponential backoff (10 s doubling to an
hour, with jitter, so a commune's units do not all call back at once); one that
will not (wrong sha256, over the size limit, HTTP 404) is retried hourly, in case
the server is corrected; media that verifies but does not decode is not retried.
`on_failed(media_id, reason)` is called once per failure streak: at once for a
lasting fault or a download cut off at its deadline (a server too slow: that attempt
already took minutes), after `report_after` attempts for another passing one; the
daemon turns it into a `media.failed` event.

Besides the schedules, `request()` asks for one file for a while (a `play` command
naming a URL): it is fetched like schedule media, at its priority, kept wanted until
its time is up, and then left to eviction like any media no schedule names.

After each file, and whenever the wanted set changes, media no valid schedule
needs is evicted, least recently used first, while the cache is over its budget.
`status()` gives `loaxa status` the state of each media.
"""

import logging
import math
import random
import threading
from dataclasses import dataclass, field
from datetime import timedelta

from device.media_cache import DownloadTimedOut, FetchInterrupted, MediaCache, TransientMediaError
from hw.clock import SystemClock
from loaxa.errors import MediaError
from scheduler.area_plan import windows
from scheduler.triggers import occurrences

log = logging.getLogger("loaxa.media.sync")

PRIORITY_RANK = {"emergency": 0, "priority": 1, "normal": 2}
PRIORITY_NAMES = {rank: name for name, rank in PRIORITY_RANK.items()}
STATES = ("queued", "downloading", "preparing", "prepared", "failed")
BACKOFF_S = (10.0, 3600.0)  # first retry, longest wait
JITTER = 0.2
REPORT_AFTER = 3  # attempts of a passing fault before it is reported
HORIZON = timedelta(days=8)  # how far ahead "plays soonest" looks: a weekly item shows
MB = 1024 * 1024


@dataclass
class _Job:
    """One file (by sha256) the schedules want, and how far it got."""

    sha256: str
    url: str
    size: int | None
    ids: list = field(default_factory=list)  # media ids naming it (first is shown)
    schedules: list = field(default_factory=list)
    rank: int = PRIORITY_RANK["normal"]
    next_play: float = math.inf  # epoch of its earliest play within HORIZON
    seq: int = 0
    state: str = "queued"
    bytes_done: int = 0
    bytes_total: int | None = None
    error: str | None = None
    attempts: int = 0
    streak: int = 0  # failures since the last success
    retry_at: float = 0.0  # monotonic
    reported: bool = False
    seen: bool = False  # attempted at least once since it was wanted (for wait_idle)

    def key(self) -> tuple:
        return self.rank, self.next_play, self.seq

    def ready(self, now: float) -> bool:
        return self.state == "queued" or (self.state == "failed" and self.retry_at <= now)


class MediaSync:
    """Background fetching and preparing of the media the schedules in force need.

    `clock` gives `now()` (validity dates, next plays) and `monotonic()` (retry
    times); default the system clock. `on_failed(media_id, reason)` is called from
    the worker thread; an exception in it is logged and ignored. `close()` stops the
    worker (a download in progress keeps what arrived) and is safe twice.
    """

    def __init__(self, cache: MediaCache, *, budget_bytes: int = 2048 * MB, clock=None,
                 on_failed=None, backoff_s: tuple[float, float] = BACKOFF_S,
                 report_after: int = REPORT_AFTER, name: str = "media-sync"):
        self.cache, self.budget_bytes = cache, budget_bytes
        self.clock = clock or SystemClock()
        self.on_failed = on_failed
        self.backoff_s, self.report_after = backoff_s, report_after
        self._cond = threading.Condition()
        self._jobs: dict[str, _Job] = {}
        self._schedules: list = []  # the documents of the last `want`
        self._requests: dict[str, tuple] = {}  # sha256 -> (media_id, url, size, rank, until monotonic)
        self._current: _Job | None = None
        self._interrupt = threading.Event()  # stops the download in progress (kept for resume)
        self._closing = threading.Event()  # stops everything, preparation included
        self._evict_due = True
        self._seq = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._random = random.Random()

    # ---- the daemon's side ----
    def start(self) -> "MediaSync":
        self._thread.start()
        return self

    def want(self, schedules) -> None:
        """The media of `schedules` (all documents in force) are what the cache must hold.

        Media of a schedule past its `valid_until` are not wanted (and may be evicted);
        media of one not yet valid are fetched ahead. Safe from any thread.
        """
        schedules = list(schedules)
        wanted = self._wanted(schedules)
        with self._cond:
            self._schedules = schedules
            for sha, job in self._requested().items():
                if sha in wanted:
                    wanted[sha].rank = min(wanted[sha].rank, job.rank)
                    wanted[sha].next_play = 0.0
                else:
                    wanted[sha] = job
            if self._closing.is_set():
                return
            old = self._jobs
            self._jobs = {sha: self._merge(old.get(sha), job) for sha, job in wanted.items()}
            current = self._current
            if current is not None and current.state == "downloading":
                better = any(job.ready(self.clock.monotonic()) and job.key() < current.key()
                             for job in self._jobs.values() if job is not current)
                if current.sha256 not in self._jobs or better:
                    self._interrupt.set()
            self._evict_due = True
            self._cond.notify_all()

    def request(self, media_id: str, url: str, sha256: str, size: int | None, *,
                priority: str = "priority", for_s: float) -> None:
        """Fetch and prepare one file outside the schedules (a `play` command naming a
        URL), wanted for `for_s` seconds; `cache.has(sha256)` says when it is ready."""
        until = self.clock.monotonic() + for_s
        with self._cond:
            old = self._requests.get(sha256)
            rank = PRIORITY_RANK[priority] if old is None else min(old[3], PRIORITY_RANK[priority])
            self._requests[sha256] = (media_id, url, size, rank, max(until, old[4] if old else until))
        self.want(self._schedules)

    def retry_now(self) -> None:
        """Try failed media again at once (the `sync` command, a technician on site),
        except media that will never decode."""
        with self._cond:
            for job in self._jobs.values():
                if job.state == "failed" and job.retry_at < math.inf:
                    job.retry_at = 0.0
            self._cond.notify_all()

    def status(self) -> dict:
        """{"cache": {...}, "counts": {state: n}, "media": [per media, most urgent first]}.

        Per media: id, ids, schedules, sha256, priority, state (queued, downloading,
        preparing, prepared, failed), bytes_done, bytes_total, error, attempts,
        retry_in_s (failed ones), next_play (epoch or None).
        """
        now = self.clock.monotonic()
        with self._cond:
            jobs = sorted(self._jobs.values(), key=_Job.key)
            media = [_job_status(job, now) for job in jobs]
        counts = {state: sum(1 for m in media if m["state"] == state) for state in STATES}
        usage = self.cache.usage()
        cache = {"folder": str(self.cache.folder), "used_mb": round(usage["total"] / MB, 1),
                 "budget_mb": round(self.budget_bytes / MB, 1),
                 "over_budget": usage["total"] > self.budget_bytes}
        return {"cache": cache, "counts": counts, "media": media}

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until every wanted media is prepared or has failed at least once since
        it was wanted (what a one-shot `loaxa media sync` waits for); False on timeout."""
        with self._cond:
            return self._cond.wait_for(self._idle, timeout)

    def close(self, timeout: float = 10.0) -> None:
        with self._cond:
            self._closing.set()
            self._interrupt.set()
            self._cond.notify_all()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    # ---- what is wanted ----
    def _wanted(self, schedules) -> dict[str, _Job]:
        now = self.clock.now()
        jobs: dict[str, _Job] = {}
        for schedule in schedules:
            if schedule.valid_until < now.astimezone(schedule.timezone).date():
                continue  # expired: nothing of it plays again
            ranks, plays = _item_needs(schedule, now)
            for media_id, media in schedule.media.items():
                job = jobs.get(media.sha256)
                if job is None:
                    job = jobs[media.sha256] = _Job(media.sha256, media.url, media.size,
                                                    bytes_total=media.size)
                _add_name(job.ids, media_id)
                _add_name(job.schedules, schedule.id)
                job.rank = min(job.rank, ranks.get(media_id, PRIORITY_RANK["normal"]))
                job.next_play = min(job.next_play, plays.get(media_id, math.inf))
        return jobs

    def _requested(self) -> dict[str, _Job]:
        """Jobs for the `request`s still in their time (called with the lock held)."""
        now = self.clock.monotonic()
        self._requests = {sha: r for sha, r in self._requests.items() if r[4] > now}
        jobs = {}
        for sha, (media_id, url, size, rank, _) in self._requests.items():
            jobs[sha] = _Job(sha, url, size, ids=[media_id], schedules=["command"], rank=rank,
                             next_play=0.0, bytes_total=size)
        return jobs

    def _merge(self, old: _Job | None, new: _Job) -> _Job:
        """A wanted file keeps its progress and failure record; a new one starts queued."""
        if old is None:
            self._seq += 1
            new.seq = self._seq
            if self.cache.has(new.sha256):
                new.state, new.bytes_done, new.seen = "prepared", new.size or 0, True
            elif self.cache.failure(new.sha256):
                new.state, new.error, new.retry_at = "failed", self.cache.failure(new.sha256), math.inf
                new.seen = True
            else:
                new.bytes_done = self.cache.partial_bytes(new.sha256)
            return new
        old.url, old.size, old.ids, old.schedules = new.url, new.size, new.ids, new.schedules
        old.rank, old.next_play = new.rank, new.next_play
        old.bytes_total = old.bytes_total or new.size
        if old.state == "prepared" and not self.cache.has(old.sha256):
            old.state = "queued"  # evicted or deleted behind our back
        return old

    def _idle(self) -> bool:
        return all(job.state == "prepared" or (job.state == "failed" and job.seen)
                   for job in self._jobs.values())

    # ---- the worker ----
    def _run(self) -> None:
        while not self._closing.is_set():
            try:
                job = self._next_job()
                if job is not None:
                    self._work(job)
                self._evict_if_due()
            except Exception:  # noqa: BLE001 - the worker must outlive any one file
                log.exception("media sync: unexpected error; carrying on")
                self._closing.wait(1.0)

    def _next_job(self) -> _Job | None:
        with self._cond:
            now = self.clock.monotonic()
            ready = [job for job in self._jobs.values() if job.ready(now)]
            if not ready:
                if not self._evict_due:
                    self._cond.wait(self._idle_wait(now))
                return None
            job = min(ready, key=_Job.key)
            job.state, job.error = "downloading", None
            self._current = job
            self._interrupt.clear()
            return job

    def _idle_wait(self, now: float) -> float | None:
        retries = [job.retry_at for job in self._jobs.values()
                   if job.state == "failed" and job.retry_at < math.inf]
        return max(0.05, min(retries) - now) if retries else None

    def _work(self, job: _Job) -> None:
        try:
            if not self.cache.has_original(job.sha256):
                self.cache.fetch(job.url, job.sha256, job.size, cancel=self._interrupt,
                                 progress=lambda done, total: self._progress(job, done, total))
            self._set(job, state="preparing")
            self.cache.prepare(job.sha256, cancel=self._closing)
        except FetchInterrupted:
            self._set(job, state="queued")
        except MediaError as exc:
            if self._closing.is_set():
                self._set(job, state="queued")
            else:
                self._failed(job, str(exc), transient=isinstance(exc, TransientMediaError),
                             report_now=isinstance(exc, DownloadTimedOut))
        except Exception as exc:  # noqa: BLE001 - a bug on one file must not stop the others
            log.exception("media %s: unexpected error", job.ids[0])
            self._failed(job, f"internal error: {type(exc).__name__}: {exc}", transient=True)
        else:
            self._succeeded(job)
        finally:
            with self._cond:
                self._current = None
                self._evict_due = True
                self._cond.notify_all()

    def _progress(self, job: _Job, done: int, total: int | None) -> None:
        job.bytes_done = done
        if total:
            job.bytes_total = total

    def _set(self, job: _Job, **values) -> None:
        with self._cond:
            for name, value in values.items():
                setattr(job, name, value)
            self._cond.notify_all()

    def _succeeded(self, job: _Job) -> None:
        log.info("media %s ready", job.ids[0])
        self._set(job, state="prepared", error=None, streak=0, reported=False, seen=True,
                  bytes_done=job.bytes_total or job.bytes_done)

    def _failed(self, job: _Job, reason: str, *, transient: bool, report_now: bool = False) -> None:
        undecodable = self.cache.failure(job.sha256) is not None
        with self._cond:
            job.attempts += 1
            job.streak += 1
            job.state, job.error = "failed", reason
            job.retry_at = self.clock.monotonic() + self._delay(job.streak, transient, undecodable)
            report = not job.reported and (not transient or report_now or job.streak >= self.report_after)
            job.reported = job.reported or report
        log.warning("media %s failed (attempt %d): %s", job.ids[0], job.attempts, reason)
        if report:
            self._report(job, reason)
        self._set(job, seen=True)  # after the report: whoever waits sees both

    def _delay(self, streak: int, transient: bool, undecodable: bool) -> float:
        first, longest = self.backoff_s
        if undecodable:
            return math.inf
        base = min(longest, first * 2 ** (streak - 1)) if transient else longest
        return base * self._random.uniform(1 - JITTER, 1 + JITTER)

    def _report(self, job: _Job, reason: str) -> None:
        if self.on_failed is None:
            return
        for media_id in job.ids:
            try:
                self.on_failed(media_id, reason)
            except Exception:  # noqa: BLE001 - a reporting bug must not stop the worker
                log.exception("media %s: reporting the failure failed", media_id)

    def _evict_if_due(self) -> None:
        with self._cond:
            if not self._evict_due:
                return
            self._evict_due = False
            keep = set(self._jobs)
        removed = self.cache.evict(keep, self.budget_bytes)
        if self.cache.usage()["total"] > self.budget_bytes:
            log.warning("media cache over its budget of %d MB with media the schedules need",
                        self.budget_bytes // MB)
        if removed:
            log.info("evicted %d media no schedule needs", len(removed))


def _item_needs(schedule, now) -> tuple[dict, dict]:
    """Per media id of `schedule`: the best priority rank of the items that sound it,
    and the epoch of its first play within HORIZON."""
    ranks, plays = {}, {}
    for item in schedule.items:
        for media_id in item.media_ids:
            ranks[media_id] = min(ranks.get(media_id, 9), PRIORITY_RANK[item.priority])
    for occurrence in occurrences(schedule, now, now + HORIZON):
        for media_id in occurrence.item.media_ids:
            plays.setdefault(media_id, occurrence.at.timestamp())
    # An area item may play from its window's start (or now, in an open window): the
    # vehicle may be inside by then, so its media count as playing then.
    for window in windows(schedule, now, now + HORIZON):
        for media_id in window.item.media_ids:
            plays[media_id] = min(plays.get(media_id, math.inf), max(window.start, now).timestamp())
    return ranks, plays


def _add_name(names: list, name: str) -> None:
    if name not in names:
        names.append(name)


def _job_status(job: _Job, now: float) -> dict:
    retry = None
    if job.state == "failed" and job.retry_at < math.inf:
        retry = round(max(0.0, job.retry_at - now), 1)
    return {"id": job.ids[0], "ids": list(job.ids), "schedules": list(job.schedules),
            "sha256": job.sha256, "priority": PRIORITY_NAMES[job.rank], "state": job.state,
            "bytes_done": job.bytes_done, "bytes_total": job.bytes_total, "error": job.error,
            "attempts": job.attempts, "retry_in_s": retry,
            "next_play": None if job.next_play == math.inf else job.next_play}
