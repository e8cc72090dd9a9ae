"""The player thread: takes due items, drives the amplifier, plays, writes the playlog.

One thread owns the speaker, so two items never sound at once. Emergency items
go ahead of priority items, priority ahead of normal ones (SPEC); an item that
cannot start within the lateness limit is logged `missed`.
"""

import logging
import queue
import threading
import uuid
import wave
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from audio import play_files
from loaxa.errors import LoaxaError
from scheduler import in_quiet_hours, parse_quiet_hours
from device.journal import CountingSink
from device.messages import iso

log = logging.getLogger("loaxa.playout")

PRIORITY_RANK = {"emergency": 0, "priority": 1, "normal": 2}
LATENESS_LIMIT_S = 600.0


@dataclass(order=True)
class PlayRequest:
    rank: int
    at_epoch: float
    seq: int
    occurrence: object = field(compare=False)
    schedule: object = field(compare=False)


def wav_seconds(path) -> float:
    with wave.open(str(path), "rb") as w:
        return w.getnframes() / w.getframerate()


def file_label(started_at: datetime, item_id: str) -> str:
    """`<started_at>_<item>` without colons, so the name is portable."""
    return f"{started_at.strftime('%Y%m%dT%H%M%S')}.{started_at.microsecond // 1000:03d}" \
           f"{started_at.strftime('%z')}_{item_id}"


class Playout:
    def __init__(self, *, amp, speaker, media, clock, clockwatch, unit, records, zone_count: int,
                 journal, lateness_s: float = LATENESS_LIMIT_S, quiet_hours: str = ""):
        """`unit` gives id, tz, mock; `records` has playlog(doc) and event(kind, detail, **extra);
        `journal` keeps the playback in progress on disk (device.journal.PlaybackJournal)."""
        self._amp = amp
        self._speaker = speaker
        self._media = media
        self._clock = clock
        self._unit = unit
        self._records = records
        self._zone_count = zone_count
        self._journal = journal
        self._clockwatch = clockwatch
        self._quiet = parse_quiet_hours(quiet_hours)
        self.lateness_s = lateness_s
        self._counting_speaker = CountingSink(
            speaker, lambda played_s: journal.progress(played_s, clock.monotonic()))
        self._queue: queue.PriorityQueue = queue.PriorityQueue()
        self._seq = 0
        self._stop = threading.Event()
        self._abort_current = threading.Event()
        self._thread = threading.Thread(target=self._run, name="playout", daemon=True)
        self.current = None

    def start(self) -> None:
        self._thread.start()

    def submit(self, occurrence, schedule) -> None:
        self._seq += 1
        self._queue.put(PlayRequest(PRIORITY_RANK[occurrence.item.priority],
                                    occurrence.at.timestamp(), self._seq, occurrence, schedule))

    def queued(self) -> int:
        return self._queue.qsize()

    def stop(self, timeout: float = 5.0) -> None:
        """Fade out what plays (its playlog says `interrupted`), switch off. Safe twice."""
        self._stop.set()
        self._abort_current.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                request = self._queue.get(timeout=self._idle_wait())
            except queue.Empty:
                self._cool_down_if_due()
                continue
            try:
                self._handle(request)
            except Exception:  # noqa: BLE001 - the player must outlive any one item
                log.exception("playback of %s failed unexpectedly", request.occurrence.key)
        self._amp.power_off()

    def _idle_wait(self) -> float:
        left = self._amp.seconds_until_cooldown()
        return 0.5 if left is None else max(0.05, min(left, 0.5))

    def _cool_down_if_due(self) -> None:
        if self._amp.seconds_until_cooldown() == 0.0:
            self._amp.power_off()

    def _handle(self, request: PlayRequest) -> None:
        occ, schedule = request.occurrence, request.schedule
        item = occ.item
        base = self._base_record(occ)
        refusal = self._why_not_now(occ)
        if refusal:
            self._finish(base, outcome="missed", reason=refusal)
            return
        try:
            files = [self._media.resolve(m, schedule.media) for m in item.play]
        except LoaxaError as exc:
            self._records.event("media.failed", str(exc), item=item.id, schedule=occ.schedule_id)
            self._finish(base, outcome="failed", reason=f"media: {exc}")
            return
        base["expected_s"] = round(sum(wav_seconds(f) for f in files) * item.repeat, 3)
        self._play(occ, base, files)

    def report_missed(self, occ, reason: str) -> None:
        self._finish(self._base_record(occ), outcome="missed", reason=reason)

    def _why_not_now(self, occ) -> str | None:
        """The reason an item may not sound now, or None."""
        item = occ.item
        if item.priority != "emergency" and not self._clockwatch.trusted:
            return "clock untrusted: a timed item is never played at a possibly wrong hour"
        if self._clock.time() - occ.at.timestamp() > self.lateness_s:
            return f"too late: past the {self.lateness_s:g} s lateness limit"
        local = self._clock.now().astimezone(self._unit.tz)
        if item.priority != "emergency" and self._quiet and in_quiet_hours(local.time(), self._quiet):
            return "quiet hours: only emergency items sound now"
        return None

    def _play(self, occ, base: dict, files) -> None:
        item = occ.item
        ready_at = self._amp.power_on()
        self._wait_until(max(occ.at.timestamp(), self._clock.time() + ready_at - self._clock.monotonic()))
        if self._stop.is_set():
            self._finish(base, outcome="interrupted", reason="unit stopped before the item began", played_s=0.0)
            return
        self._amp.unmute()
        started_at = self._clock.now().astimezone(self._unit.tz)
        base["started_at"] = iso(started_at)
        self.current = {"item": item.id, "schedule": occ.schedule_id, "started_at": base["started_at"]}
        log.info("playing %s: %s", item.id, ", ".join(item.play))
        self._abort_current.clear()
        self._journal.begin(dict(base, outcome="interrupted",
                                 reason="the unit stopped during playback (crash or power cut)"))
        try:
            played = play_files(self._counting_speaker, file_label(started_at, item.id), files,
                                self._abort_current, volume=item.volume, repeat=item.repeat)
        except LoaxaError as exc:
            self._amp.mute()
            self._records.event("media.failed", str(exc), item=item.id, schedule=occ.schedule_id)
            self._finish(base, outcome="failed", reason=f"playback: {exc}",
                         played_s=round(getattr(exc, "played_s", 0.0), 3))
            return
        finally:
            self.current = None
        self._amp.mute()
        complete = played >= base["expected_s"] - 0.05
        self._finish(base, outcome="completed" if complete else "interrupted",
                     reason=None if complete else "stopped", played_s=round(played, 3))

    def _wait_until(self, epoch: float) -> None:
        left = epoch - self._clock.time()
        if left > 0:
            self._stop.wait(left)

    def _base_record(self, occ) -> dict:
        item = occ.item
        return {
            "id": str(uuid.uuid4()), "unit": self._unit.id, "schedule": occ.schedule_id,
            "version": occ.version, "item": item.id, "media": list(item.play),
            "priority": item.priority, "source": "media",
            "scheduled_at": iso(occ.at), "started_at": None, "ended_at": None,
            "expected_s": None, "played_s": 0.0, "outcome": None, "reason": None,
            "volume": item.volume, "zones": list(item.zones or range(1, self._zone_count + 1)),
            "position": None, "clock": self._clockwatch.source(), "mock": self._unit.mock,
        }

    def _finish(self, record: dict, *, outcome: str, reason, played_s: float | None = None) -> None:
        record["outcome"] = outcome
        record["reason"] = reason
        if played_s is not None:
            record["played_s"] = played_s
        record["ended_at"] = iso(self._clock.now().astimezone(self._unit.tz))
        log.info("%s %s (%s s of audio)%s", record["item"], outcome, record["played_s"],
                 f": {reason}" if reason else "")
        self._records.playlog(record)
        self._journal.end()  # only now: a crash before this line republishes the same id

    def recover_interrupted(self) -> None:
        """Publish the playback a crash or power cut cut short, as `interrupted`."""
        record = self._journal.recover()
        if record is None:
            return
        if record.get("started_at") and record.get("played_s") is not None:
            started = datetime.fromisoformat(record["started_at"])
            record["ended_at"] = iso(started + timedelta(seconds=record["played_s"]))
        log.warning("the last playback (%s) was cut short after %s s; reporting it as interrupted",
                    record.get("item"), record.get("played_s"))
        self._records.playlog(record)
        self._journal.end()
