"""Health reports: a heartbeat every `interval_s`, and at once on a significant change.

SPEC's health document (`loaxa/unit/{id}/health`, QoS 0):

    {"ts", "uptime_s", "cpu_temp_c", "mem_free_mb", "disk_free_mb", "clock",
     "amp": {"power", "fault", "temp_c", "volume"}, "net": {"signal_dbm", "operator"},
     "gps": {"lat", "lon", "fix"}, "queue", "next": {"item", "at"}, "faults": [...]}

Each field comes from a probe, a callable the daemon supplies (a probe that raises
gives null). A significant change, compared with the last report sent, is: the
amplifier's fault line flipping, the clock becoming trusted or untrusted, free disk
crossing `storage_low_mb`, a GPS fix lost or regained, or a new entry in `faults`.

Data budget (a unit on a metered 4G plan): at most `budget_bytes` (150 KiB) in any
24 hours, counting each report's payload plus `overhead_bytes` of MQTT framing:
- heartbeats: at most 86400 / 300 = 288 a day; a change report restarts the
  heartbeat interval, so it stands in for a heartbeat rather than adding one;
- change reports: at least `min_gap_s` (60 s) apart, drawn from a bucket of `burst`
  (5) refilled one per `refill_s` (1 hour): at most 5 + 24 = 29 in any 24 hours;
- a typical document is 375 bytes (423 with framing; tests/test_health.py builds it),
  so the worst case at the defaults is (289 + 29) x 423 = 134,514 bytes = 131 KiB,
  and a document may grow to 435 bytes (483 with framing: a few faults) before
  150 KiB is reached;
- a rolling 24-hour ledger of the bytes sent is the backstop: a report that would go
  over the budget waits (a change is folded into the next report that fits).
A change held back by these limits is not lost: it stays a difference from the last
report sent, so it goes out as soon as a report is allowed.

Pure decisions take `now` (monotonic seconds) and the wall time for `ts` as
arguments; `HealthRunner` is the thread that samples on a clock you give it.
"""

import json
import logging
import threading
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from typing import Callable, Mapping

__all__ = ["HEALTH_FIELDS", "HealthReport", "HealthReporter", "HealthRunner", "change_reasons",
           "significant_change"]

log = logging.getLogger("loaxa.unit.health")

HEALTH_FIELDS = ("uptime_s", "cpu_temp_c", "mem_free_mb", "disk_free_mb", "clock", "amp", "net", "gps",
                 "queue", "next", "faults")
# Fields only a unit that has them reports (a vehicle's `power`: ignition and battery).
OPTIONAL_FIELDS = ("power",)
DEFAULT_INTERVAL_S = 300.0
DEFAULT_MIN_GAP_S = 60.0
DEFAULT_BURST = 5
DEFAULT_REFILL_S = 3600.0
DEFAULT_BUDGET_BYTES = 150 * 1024
# A QoS 0 PUBLISH in MQTT 5: fixed header (1) + length (2) + topic length (2) + topic
# (`loaxa/unit/<id>/health`, 37 bytes for a typical id) + properties length (1).
DEFAULT_OVERHEAD_BYTES = 48
DEFAULT_STORAGE_LOW_MB = 200
DEFAULT_SAMPLE_S = 15.0
DAY_S = 86400.0
MAX_FAULTS = 10
MAX_TEXT = 80


@dataclass(frozen=True)
class HealthReport:
    kind: str  # "heartbeat" | "change"
    doc: dict
    payload: bytes
    reasons: tuple[str, ...] = ()

    @property
    def size(self) -> int:
        return len(self.payload)


def _part(doc: dict | None, name: str, key: str | None = None):
    value = (doc or {}).get(name)
    if key is None:
        return value
    return value.get(key) if isinstance(value, dict) else None


def _flip(prev, cur) -> bool:
    return prev is not None and cur is not None and bool(prev) != bool(cur)


def change_reasons(prev: dict | None, cur: dict, storage_low_mb: float = DEFAULT_STORAGE_LOW_MB) -> list[str]:
    """Why `cur` is worth reporting at once after `prev` (the last report sent); [] if not."""
    if prev is None:
        return []
    reasons = []
    if _flip(_part(prev, "amp", "fault"), _part(cur, "amp", "fault")):
        reasons.append("amp.fault" if _part(cur, "amp", "fault") else "amp.recovered")
    clocks = _part(prev, "clock"), _part(cur, "clock")
    if None not in clocks and (clocks[0] == "untrusted") != (clocks[1] == "untrusted"):
        reasons.append("clock.untrusted" if clocks[1] == "untrusted" else "clock.trusted")
    disks = _part(prev, "disk_free_mb"), _part(cur, "disk_free_mb")
    if None not in disks and (disks[0] < storage_low_mb) != (disks[1] < storage_low_mb):
        reasons.append("storage.low" if disks[1] < storage_low_mb else "storage.ok")
    if _flip(_part(prev, "gps", "fix"), _part(cur, "gps", "fix")):
        reasons.append("gps.fix" if _part(cur, "gps", "fix") else "gps.lost")
    new_faults = [f for f in (_part(cur, "faults") or []) if f not in (_part(prev, "faults") or [])]
    reasons.extend(f"fault: {f}" for f in new_faults)
    return reasons


def significant_change(prev: dict | None, cur: dict, storage_low_mb: float = DEFAULT_STORAGE_LOW_MB) -> bool:
    return bool(change_reasons(prev, cur, storage_low_mb))


def _short(value):
    """Bound what a probe returns, so no report can outgrow the budget."""
    if isinstance(value, str):
        return value[:MAX_TEXT]
    if isinstance(value, dict):
        return {str(k)[:MAX_TEXT]: _short(v) for k, v in list(value.items())[:MAX_FAULTS]}
    if isinstance(value, (list, tuple)):
        return [_short(v) for v in value[:MAX_FAULTS]]
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return str(value)[:MAX_TEXT]


def encode(doc: dict) -> bytes:
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")


class HealthReporter:
    def __init__(self, probes: Mapping[str, Callable[[], object]], *, interval_s: float = DEFAULT_INTERVAL_S,
                 min_gap_s: float = DEFAULT_MIN_GAP_S, burst: int = DEFAULT_BURST,
                 refill_s: float = DEFAULT_REFILL_S, budget_bytes: int = DEFAULT_BUDGET_BYTES,
                 overhead_bytes: int = DEFAULT_OVERHEAD_BYTES, storage_low_mb: float = DEFAULT_STORAGE_LOW_MB):
        unknown = set(probes) - set(HEALTH_FIELDS) - set(OPTIONAL_FIELDS)
        if unknown:
            raise ValueError(f"unknown health fields: {', '.join(sorted(unknown))}")
        self._probes = dict(probes)
        self.interval_s = interval_s
        self.min_gap_s = min_gap_s
        self.burst = burst
        self.refill_s = refill_s
        self.budget_bytes = budget_bytes
        self.overhead_bytes = overhead_bytes
        self.storage_low_mb = storage_low_mb
        self.last_sent: dict | None = None
        self._last_sent_at: float | None = None
        self._tokens = float(burst)
        self._tokens_at: float | None = None
        self._ledger: deque[tuple[float, int]] = deque()
        self._ledger_sum = 0
        self._failing: set[str] = set()

    # ---- the document ----
    def sample(self, wall: datetime) -> dict:
        """A health document at wall time `wall` (aware, in the unit's zone)."""
        doc = {"ts": wall.isoformat(timespec="seconds")}
        for name in HEALTH_FIELDS + tuple(n for n in OPTIONAL_FIELDS if n in self._probes):
            doc[name] = self._read(name)
        if doc["faults"] is None:
            doc["faults"] = []
        return doc

    def _read(self, name: str):
        probe = self._probes.get(name)
        if probe is None:
            return None
        try:
            value = _short(probe())
        except Exception as exc:  # noqa: BLE001 - a broken probe is a null field, not a dead reporter
            if name not in self._failing:
                log.warning("health probe %s failed: %s: %s", name, type(exc).__name__, exc)
                self._failing.add(name)
            return None
        self._failing.discard(name)
        return value

    # ---- the decisions (now = monotonic seconds) ----
    def due(self, now: float) -> bool:
        """Is a heartbeat due?"""
        return self._last_sent_at is None or now - self._last_sent_at >= self.interval_s

    def _refill(self, now: float) -> None:
        if self._tokens_at is not None and now > self._tokens_at:
            self._tokens = min(float(self.burst), self._tokens + (now - self._tokens_at) / self.refill_s)
        self._tokens_at = now if self._tokens_at is None else max(now, self._tokens_at)

    def change_allowed(self, now: float) -> bool:
        """May a change report go out now (gap since the last report, a token left)?"""
        self._refill(now)
        gap_ok = self._last_sent_at is None or now - self._last_sent_at >= self.min_gap_s
        return gap_ok and self._tokens >= 1.0

    def sent_last_day(self, now: float) -> int:
        """Bytes counted against the budget over the 24 hours before `now`."""
        while self._ledger and self._ledger[0][0] <= now - DAY_S:
            self._ledger_sum -= self._ledger.popleft()[1]
        return self._ledger_sum

    def within_budget(self, now: float, size: int) -> bool:
        return self.sent_last_day(now) + size + self.overhead_bytes <= self.budget_bytes

    def decide(self, now: float, doc: dict) -> tuple[str | None, list[str]]:
        """("heartbeat" | "change" | None, the change's reasons) for a fresh sample."""
        reasons = change_reasons(self.last_sent, doc, self.storage_low_mb)
        if self.due(now):
            return "heartbeat", reasons
        if reasons and self.change_allowed(now):
            return "change", reasons
        return None, reasons

    def next_report(self, now: float, wall: datetime) -> HealthReport | None:
        """Sample, and return the report to publish now, or None."""
        doc = self.sample(wall)
        kind, reasons = self.decide(now, doc)
        if kind is None:
            return None
        payload = encode(doc)
        if not self.within_budget(now, len(payload)):
            log.debug("health %s held back: the daily data budget is spent", kind)
            return None
        return HealthReport(kind, doc, payload, tuple(reasons))

    def sent(self, now: float, report: HealthReport) -> None:
        """Record a report as published (only then does it count)."""
        if report.kind == "change":
            self._refill(now)
            self._tokens -= 1.0
        self.last_sent = report.doc
        self._last_sent_at = now
        size = report.size + self.overhead_bytes
        self._ledger.append((now, size))
        self._ledger_sum += size


class HealthRunner:
    """Samples every `sample_s` (or at once on `poke()`) and publishes what the reporter decides.

    `publish(payload: bytes)` returning False means "not sent" (no broker): the report is
    not counted and is tried again on the next sample. `clock` gives `monotonic()` and
    `now()` (an `hw.clock.Clock`); `tz` is the zone of `ts`.
    """

    def __init__(self, reporter: HealthReporter, publish: Callable[[bytes], object], clock, *, tz=None,
                 sample_s: float = DEFAULT_SAMPLE_S):
        self.reporter = reporter
        self._publish = publish
        self._clock = clock
        self._tz = tz
        self._sample_s = sample_s
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None

    def start(self) -> "HealthRunner":
        self._thread = threading.Thread(target=self._run, name="health", daemon=True)
        self._thread.start()
        return self

    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def poke(self) -> None:
        """Sample now (the daemon calls this on an amplifier fault, a clock change, ...)."""
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread; safe twice."""
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stopping:
            self._wake.clear()  # before the tick: a poke during it brings the next one forward
            self.tick()
            self._wake.wait(self._sample_s)

    def tick(self) -> HealthReport | None:
        """One sample and, if due, one publish; never raises."""
        try:
            wall = self._clock.now()
            report = self.reporter.next_report(self._clock.monotonic(),
                                               wall.astimezone(self._tz) if self._tz else wall)
            if report is None or self._publish(report.payload) is False:
                return None
            self.reporter.sent(self._clock.monotonic(), report)
            if report.kind == "change":
                log.info("health report at once: %s", ", ".join(report.reasons))
            return report
        except Exception:  # noqa: BLE001 - the reporter thread must outlive any failure
            log.exception("health report failed")
            return None
