"""The player thread: takes due items, drives the amplifier, plays, writes the playlog.

One thread owns the speaker, so two items never sound at once. Priorities follow
Circular 39/2020/TT-BTTTT (SPEC): an `emergency` item interrupts whatever plays
(fade out) and plays at once; `priority` goes ahead of normal items waiting;
items that collide queue up to the lateness limit and are `missed` after it. An
interrupted item resumes where it stopped if still within the limit: a second
playlog with the same `item` and `scheduled_at`.

The player never fetches nor prepares media (the sync worker does, ahead): at air
it only looks the prepared files up. Media not ready by then make the item `failed`
("media not ready") at once, so what comes next (an emergency) plays on time.
"""

import logging
import queue
from contextlib import contextmanager
import threading
import uuid
import wave
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from audio import play_files, play_stream
from audio.player import wait_until
from device.journal import CountingSink
from device.media_cache import MediaNotReady
from device.messages import iso
from loaxa.errors import HardwareError, LoaxaError
from scheduler import in_quiet_hours, parse_quiet_hours

log = logging.getLogger("loaxa.playout")

PRIORITY_RANK = {"emergency": 0, "priority": 1, "normal": 2}
LATENESS_LIMIT_S = 600.0
PREEMPTED = "preempted by an emergency item"
STOPPED_BEFORE = "the unit stopped before the item could play"
UNMUTE_AHEAD_S = 0.2  # mute released this long before air: the amplifier settles in silence
IGNITION_OFF = "ignition off"  # an area play skipped for it is `missed` (SPEC "Mobile units")
MEDIA_POLL_S = 0.1  # how often the player looks again for media still being prepared before air


@dataclass(order=True)
class PlayRequest:
    rank: int
    at_epoch: float
    seq: int
    occurrence: object = field(compare=False)
    schedule: object = field(compare=False)
    timed: bool = field(compare=False, default=True)  # from a schedule, not a command
    offset_s: float = field(compare=False, default=0.0)  # where a resumed playback starts
    area: object = field(compare=False, default=None)  # device.vehicle.AreaPlay of an area item


def wav_seconds(path) -> float:
    with wave.open(str(path), "rb") as w:
        return w.getnframes() / w.getframerate()


def file_label(started_at: datetime, item_id: str) -> str:
    """`<started_at>_<item>` without colons, so the name is portable."""
    return f"{started_at.strftime('%Y%m%dT%H%M%S')}.{started_at.microsecond // 1000:03d}" \
           f"{started_at.strftime('%z')}_{item_id}"


class Playout:
    def __init__(self, *, amp, speaker, media, clock, clockwatch, unit, records, zone_count: int,
                 journal, lateness_s: float = LATENESS_LIMIT_S, quiet_hours: str = "",
                 position=lambda: None, ignition=lambda: None, play_with_ignition_off: bool = False,
                 emergency_min_volume: int = 80):
        """`unit` gives id, tz, mock; `records` has playlog(doc) and event(kind, detail, **extra);
        `journal` keeps the playback in progress on disk (device.journal.PlaybackJournal)."""
        self._amp = amp
        self._speaker = speaker
        self._media = media
        self._clock = clock
        self._clockwatch = clockwatch
        self._unit = unit
        self._records = records
        self._zone_count = zone_count
        self._journal = journal
        self._quiet = parse_quiet_hours(quiet_hours)
        self.lateness_s = lateness_s
        self.emergency_min_volume = emergency_min_volume  # SPEC "Trust": never quieter than this
        self._position = position  # the GPS position for playlogs of mobile units
        self._ignition = ignition  # a vehicle's ignition: True/False, None when not wired
        self.play_with_ignition_off = play_with_ignition_off
        self._busy = threading.Lock()  # held while an item plays; a self-test waits for it
        self.default_volume = None  # `set_volume`: for items that name no volume
        self._withdrawn: dict = {}  # (schedule id, version) -> why it left force (a trust change)
        self._counting_speaker = CountingSink(
            speaker, lambda played_s: journal.progress(played_s, clock.monotonic()))
        self._queue: queue.PriorityQueue = queue.PriorityQueue()
        self._area_plays: dict = {}  # playlog id -> AreaPlay, until its playlog is written
        self._seq = 0
        self._seq_lock = threading.Lock()
        self._stop = threading.Event()
        self._abort_current = threading.Event()
        self._interrupt_reason = None
        self._thread = threading.Thread(target=self._run, name="playout", daemon=True)
        self.current = None  # what plays now, for status: {"item", "schedule", "priority", "started_at"}

    # ---- what the rest of the unit calls ----
    def start(self) -> None:
        self._thread.start()

    def submit(self, occurrence, schedule, *, timed: bool = True, offset_s: float = 0.0, area=None) -> None:
        with self._seq_lock:
            self._seq += 1
            seq = self._seq
        item = occurrence.item
        self._queue.put(PlayRequest(PRIORITY_RANK[item.priority], occurrence.at.timestamp(), seq,
                                    occurrence, schedule, timed, offset_s, area))
        current = self.current
        if item.priority == "emergency" and current and current["priority"] != "emergency":
            self._interrupt(PREEMPTED)

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def stop_current(self, reason: str) -> str | None:
        """Fade out what plays now (its playlog: `interrupted`); the queue stays. Returns
        the item stopped, or None."""
        current = self.current
        if current is None:
            return None
        self._interrupt(reason)
        return current["item"]

    def withdraw(self, documents, reason: str) -> None:
        """Schedules that left force (a trust change): what plays of them fades out now
        (`interrupted`), what is queued is logged `missed` instead of playing."""
        documents = {(str(i), int(v)) for i, v in documents}
        for document in documents:
            self._withdrawn[document] = reason
        current = self.current
        if current is not None and (current["schedule"], current.get("version")) in documents:
            self._interrupt(reason)

    def reinstate(self, schedule_id: str, version: int) -> None:
        """A withdrawn document accepted again (it meets the trust in force now)."""
        self._withdrawn.pop((schedule_id, version), None)

    def queued(self) -> int:
        return self._queue.qsize()

    def stop(self, timeout: float = 5.0) -> None:
        """Fade out what plays (its playlog says `interrupted`), switch off. Safe twice."""
        self._stop.set()
        self._interrupt("the unit is stopping")
        if self._thread.is_alive():
            self._thread.join(timeout)

    @contextmanager
    def exclusive(self, timeout: float):
        """Hold the speaker and amplifier between playbacks (the self-test)."""
        if not self._busy.acquire(timeout=timeout):
            raise HardwareError("the unit is busy playing; try the self-test again later")
        try:
            yield
        finally:
            self._busy.release()

    def report_missed(self, occ, reason: str, extra: dict | None = None) -> None:
        """`extra`: more playlog fields (an area item's `area`)."""
        self._finish(dict(self._base_record(occ), **(extra or {})), outcome="missed", reason=reason)

    def report_failed(self, occ, reason: str) -> None:
        """A playlog `failed` for an item that never reached the player (its media never
        became ready: a `play` command naming a URL)."""
        self._finish(self._base_record(occ), outcome="failed", reason=reason)

    def _interrupt(self, reason: str) -> None:
        self._interrupt_reason = reason
        self._abort_current.set()

    # ---- the thread ----
    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                request = self._queue.get(timeout=self._idle_wait())
            except queue.Empty:
                self._cool_down_if_due()
                continue
            try:
                with self._busy:
                    self._handle(request)
            except Exception as exc:  # noqa: BLE001 - the player must outlive any one item
                log.exception("playback of %s failed unexpectedly", request.occurrence.key)
                self._record_unexpected(request, exc)
        self._amp.power_off()

    def _record_unexpected(self, request: PlayRequest, exc: Exception) -> None:
        """An item that failed in a way nobody foresaw still leaves a playlog: never a
        silent drop."""
        self.current = None
        try:
            self._amp.mute()
            self._finish(self._base_record(request.occurrence), outcome="failed",
                         reason=f"unexpected: {type(exc).__name__}: {exc}"[:300])
        except Exception:  # noqa: BLE001 - the player thread goes on
            log.exception("could not record the failed playback of %s", request.occurrence.key)

    def _idle_wait(self) -> float:
        """How long to sleep on the queue: until the cooldown ends, else a while (a new
        item wakes the queue at once)."""
        left = self._amp.seconds_until_cooldown()
        return 5.0 if left is None else max(0.05, min(left, 5.0))

    def _cool_down_if_due(self) -> None:
        if self._amp.seconds_until_cooldown() == 0.0:
            self._amp.power_off()

    def _handle(self, request: PlayRequest) -> None:
        occ = request.occurrence
        base = self._base_record(occ)
        refusal = self._why_not_now(request)
        if request.area is not None:
            if not self._area_ready(request, base, refusal):
                return
        elif refusal:
            self._finish(base, outcome="missed", reason=refusal)
            return
        item = occ.item
        if item.stream:
            files = self._fallback_files(occ, request.schedule)
        else:
            try:
                files = self._media_at_air(request)
            except MediaNotReady as exc:
                if self._stop.is_set():  # stopped while it waited for its media, before air
                    self._finish(base, outcome="missed", reason=STOPPED_BEFORE)
                else:
                    self._finish(base, outcome="failed", reason=str(exc))
                return
            except LoaxaError as exc:
                self._records.event("media.failed", str(exc), item=item.id, schedule=occ.schedule_id)
                self._finish(base, outcome="failed", reason=f"media: {exc}")
                return
        if item.stream:
            base["source"] = "stream"
            base["expected_s"] = float(item.duration_s)
        else:
            base["expected_s"] = round(sum(wav_seconds(f) for f in files) * item.repeat, 3)
        if request.offset_s:
            base["resumed_from_s"] = round(request.offset_s, 3)
        self._play(request, base, files)

    def _area_ready(self, request: PlayRequest, base: dict, refusal: str | None) -> bool:
        """An area play: area, fix and ignition are checked again now (SPEC "Mobile
        units"). One that would start outside, without a fix, in quiet hours or too late
        is dropped with no record (the area loop asks again when it is due); one skipped
        for the ignition is `missed`. The playlog carries the window's start as
        `scheduled_at`, the area and the play's number."""
        play = request.area
        now = self._clock.now().astimezone(self._unit.tz)
        resumed = request.offset_s > 0
        reason = refusal or play.before_start(now, resumed=resumed)
        if refusal and not resumed:
            play.runner.dropped(play, refusal, now)
        base.update(scheduled_at=iso(play.window.start), area=play.area, play_no=play.play_no)
        if reason is None:
            base["position_end"] = None
            base["left_area"] = False
            self._area_plays[base["id"]] = play
            return True
        if reason == IGNITION_OFF and not resumed:
            self._finish(base, outcome="missed", reason=reason)
        else:
            log.info("area play of %s dropped: %s", request.occurrence.item.id, reason)
        return False

    def _media_at_air(self, request: PlayRequest) -> list:
        """The prepared files of an item. Media still being prepared are looked for again
        until air (the item reaches the player `lead_s` early), never later: not ready
        then raises MediaNotReady."""
        occ = request.occurrence
        air = occ.at.timestamp() - UNMUTE_AHEAD_S
        while True:
            try:
                return [self._media.resolve(m, request.schedule.media) for m in occ.item.play]
            except MediaNotReady:
                if self._clock.time() >= air or self._stop.wait(min(MEDIA_POLL_S, air - self._clock.time())):
                    raise

    def _fallback_files(self, occ, schedule) -> list:
        """A stream item's fallback, ready before air; without it the stream still relays."""
        if not occ.item.fallback:
            return []
        try:
            return [self._media.resolve(occ.item.fallback, schedule.media)]
        except LoaxaError as exc:
            self._records.event("media.failed", f"fallback: {exc}", item=occ.item.id, schedule=occ.schedule_id)
            return []

    def _why_not_now(self, request: PlayRequest) -> str | None:
        """The reason an item may not sound now, or None."""
        item = request.occurrence.item
        if self._stop.is_set():
            return STOPPED_BEFORE
        withdrawn = self._withdrawn.get((request.occurrence.schedule_id, request.occurrence.version))
        if withdrawn is not None:
            return withdrawn
        if request.timed and item.priority != "emergency" and not self._clockwatch.trusted:
            return "clock untrusted: a timed item is never played at a possibly wrong hour"
        if self._clock.time() - request.occurrence.at.timestamp() > self.lateness_s:
            return f"too late: past the {self.lateness_s:g} s lateness limit"
        if item.priority != "emergency" and self.in_quiet_hours():
            return "quiet hours: only emergency items sound now"
        if item.priority != "emergency" and not self.play_with_ignition_off and self._ignition() is False:
            return IGNITION_OFF  # a vehicle parked with the engine off: the amplifier stays off
        return None

    def in_quiet_hours(self) -> bool:
        local = self._clock.now().astimezone(self._unit.tz)
        return self._quiet is not None and in_quiet_hours(local.time(), self._quiet)

    def _play(self, request: PlayRequest, base: dict, files) -> None:
        restore = self._amp_loud_enough(request.occurrence.item)
        try:
            self._play_item(request, base, files)
        finally:
            if restore is not None and self._amp.volume == self.emergency_min_volume:
                self._amp.set_volume(restore)  # unless a set_volume came meanwhile

    def _volume(self, item) -> int | None:
        """The item's volume, else set_volume's; an emergency never below the floor (None: full)."""
        volume = item.volume if item.volume is not None else self.default_volume
        if item.priority == "emergency" and volume is not None:
            volume = max(volume, self.emergency_min_volume)
        return volume

    def _amp_loud_enough(self, item) -> int | None:
        """An emergency raises an amplifier turned down below the floor for its duration;
        returns the volume to go back to, or None."""
        before = getattr(self._amp, "volume", None)
        if item.priority != "emergency" or before is None or before >= self.emergency_min_volume:
            return None
        try:
            self._amp.set_volume(self.emergency_min_volume)
        except (HardwareError, ValueError) as exc:
            log.error("could not raise the amplifier to %d for an emergency: %s", self.emergency_min_volume, exc)
        return before

    def _play_item(self, request: PlayRequest, base: dict, files) -> None:
        occ, item = request.occurrence, request.occurrence.item
        self._abort_current.clear()
        self._interrupt_reason = None
        if self._stop.is_set():  # stop() came between items: its abort must not be lost
            self._interrupt("the unit is stopping")
        try:
            start_at = self._amplifier_ready(occ)
        except (HardwareError, ValueError) as exc:
            self._amp.mute()
            self._finish(base, outcome="failed", reason=f"amplifier: {exc}")
            return
        self.current = {"item": item.id, "schedule": occ.schedule_id, "version": occ.version,
                        "priority": item.priority, "started_at": None}
        withdrawn = self._withdrawn.get((occ.schedule_id, occ.version))
        if withdrawn is not None:  # it left force while the amplifier warmed up
            self._interrupt(withdrawn)
        volume = base["volume"] = self._volume(item)
        try:
            played = self._stream(request, base, files, start_at, volume)
        except LoaxaError as exc:
            self._amp.mute()
            self._records.event("media.failed", str(exc), item=item.id, schedule=occ.schedule_id)
            self._finish_journalled(base, outcome="failed", reason=f"playback: {exc}",
                                    played_s=round(getattr(exc, "played_s", 0.0), 3))
            return
        finally:
            self.current = None
        self._amp.mute()
        self._conclude(request, base, played)

    def _amplifier_ready(self, occ) -> float:
        """Power, zones, then the mute released: the epoch the first sample goes out.
        On time when early; at once when late (a resumed or queued item)."""
        self._amp.power_on()
        self._amp.select_zones(occ.item.zones)
        self._wait_until_before(occ.at.timestamp())
        self._amp.unmute()  # waits out the warm-up; no relay moves from here to mute()
        return max(occ.at.timestamp(), self._clock.time())

    def _wait_until_before(self, epoch: float) -> None:
        """Wait until just before `epoch`, so the mute is released right before air."""
        left = epoch - UNMUTE_AHEAD_S - self._clock.time()
        if left > 0:
            self._abort_current.wait(left)

    def _stream(self, request: PlayRequest, base: dict, files, start_at: float, volume) -> float:
        item = request.occurrence.item
        # The label and record name the time the first sample goes out: start_at.
        started_at = datetime.fromtimestamp(start_at, self._unit.tz)
        base["started_at"] = iso(started_at)
        self.current["started_at"] = base["started_at"]
        self._journal.begin(dict(base, outcome="interrupted",
                                 reason="the unit stopped during playback (crash or power cut)"))
        label = file_label(started_at, item.id)
        if item.stream:
            return self._relay(item, base, label, files, start_at, volume)
        log.info("playing %s: %s", item.id, ", ".join(item.play))
        return play_files(self._counting_speaker, label, files, self._abort_current, volume=volume,
                          repeat=item.repeat, start_at=start_at, clock=self._clock,
                          offset_s=request.offset_s)

    def _relay(self, item, base: dict, label: str, fallback, start_at: float, volume) -> float:
        """A live stream for its duration; when it cannot open or drops, the fallback
        plays from its start and the playlog says so (`source`, `reason`)."""
        if not wait_until(start_at, self._abort_current, self._clock):
            return 0.0
        log.info("relaying %s: %s for %s s", item.id, item.stream, item.duration_s)
        result = play_stream(self._counting_speaker, label, item.stream, item.duration_s,
                             self._abort_current, volume)
        if result.error is None or self._abort_current.is_set():
            return result.played_s
        if not fallback:
            base["stream_error"] = result.error
            return result.played_s
        log.warning("stream of %s failed (%s); playing the fallback", item.id, result.error)
        base.update(source="fallback", stream_error=result.error,
                    expected_s=round(result.played_s + sum(wav_seconds(f) for f in fallback), 3))
        played = play_files(self._counting_speaker, f"{label}-fallback", fallback, self._abort_current,
                            volume=volume)
        return result.played_s + played

    def _conclude(self, request: PlayRequest, base: dict, played: float) -> None:
        reached = request.offset_s + played
        reason = self._interrupt_reason
        stream_error = base.pop("stream_error", None)
        if stream_error and base["source"] == "stream" and not reason:
            self._finish_journalled(base, outcome="failed", reason=f"stream: {stream_error}",
                                    played_s=round(played, 3))
        elif reached >= base["expected_s"] - 0.05:
            note = f"stream: {stream_error}; the fallback played" if stream_error else None
            self._finish_journalled(base, outcome="completed", reason=note, played_s=round(played, 3))
        elif reason and reason.startswith("amplifier fault"):
            self._finish_journalled(base, outcome="failed", reason=reason, played_s=round(played, 3))
        elif reason == PREEMPTED:
            self._finish_journalled(base, outcome="preempted", reason=reason, played_s=round(played, 3))
            if not request.occurrence.item.stream:  # live audio cannot resume where it stopped
                self._resume_later(request, reached)
        else:
            self._finish_journalled(base, outcome="interrupted", reason=reason or "stopped",
                                    played_s=round(played, 3))

    def _resume_later(self, request: PlayRequest, position_s: float) -> None:
        """Back into the queue, to continue from `position_s` once the emergency is over;
        `_why_not_now` logs it missed if the lateness limit passes first."""
        self.submit(request.occurrence, request.schedule, timed=request.timed, offset_s=position_s,
                    area=request.area)

    def _base_record(self, occ) -> dict:
        item = occ.item
        return {
            "id": str(uuid.uuid4()), "unit": self._unit.id, "schedule": occ.schedule_id,
            "version": occ.version, "item": item.id, "media": list(item.play),
            "priority": item.priority, "source": "media",
            "scheduled_at": iso(occ.at), "started_at": None, "ended_at": None,
            "expected_s": None, "played_s": 0.0, "outcome": None, "reason": None,
            "volume": self._volume(item),
            "zones": list(item.zones or range(1, self._zone_count + 1)),
            "position": self._position(), "clock": self._clockwatch.source(), "mock": self._unit.mock,
        }

    def _finish(self, record: dict, *, outcome: str, reason, played_s: float | None = None) -> None:
        area_play = self._area_plays.pop(record["id"], None)
        if area_play is not None:  # where the play ended; whether the vehicle drove out meanwhile
            record["position_end"] = self._position()
            record["left_area"] = area_play.left_area
            area_play.finished()
        record["outcome"] = outcome
        record["reason"] = reason
        if played_s is not None:
            record["played_s"] = played_s
        record["ended_at"] = iso(self._clock.now().astimezone(self._unit.tz))
        log.info("%s %s (%s s of audio)%s", record["item"], outcome, record["played_s"],
                 f": {reason}" if reason else "")
        self._records.playlog(record)

    def _finish_journalled(self, record: dict, **outcome) -> None:
        """Finish the playback the journal holds; the journal goes only once the playlog is
        in the outbox (a crash in between republishes the same `id`, which collectors drop)."""
        self._finish(record, **outcome)
        self._journal.end()

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
