"""Is the unit's clock to be trusted, and did it just jump?

A Pi has no RTC and may boot with a clock hours or years off, then step when
NTP or GPS corrects it. Timed items must never sound at a wrong hour, so the
unit knows where its time comes from (`ntp`, `gps`, `rtc` from the hardware
clock's `source()`; `system` when the config says to trust the clock as it is,
else `untrusted`) and notices steps: the wall clock moving against the
monotonic clock.
"""

import logging
import threading

log = logging.getLogger("loaxa.clock")

STEP_THRESHOLD_S = 2.0


class ClockWatch:
    def __init__(self, clock, trust: str, *, on_change=lambda old, new: None, on_step=lambda delta: None,
                 step_threshold_s: float = STEP_THRESHOLD_S, every_s: float = 1.0):
        """`clock.source()` says what vouches for the time ("ntp", "gps", "rtc") or
        "system" for nothing; `trust` is the config's `[clock] trust`."""
        self._clock = clock
        self._trust = trust
        self._on_change = on_change
        self._on_step = on_step
        self._step_threshold_s = step_threshold_s
        self._every_s = every_s
        self._offset, self._error = self._wall_minus_monotonic()
        self._source = self.evaluate()
        self._stop = threading.Event()
        self._thread = None
        self._ticks = 0

    def _wall_minus_monotonic(self) -> tuple[float, float]:
        """(wall - monotonic, how far off that may be).

        The thread may lose the CPU between two clock reads (a loaded machine, a busy
        GIL): a wall read that comes late looks like a step. So the wall read is
        bracketed by two monotonic reads, and the tightest of a few tries is kept."""
        best = None
        for _ in range(3):
            before = self._clock.monotonic()
            wall = self._clock.time()
            after = self._clock.monotonic()
            reading = (wall - (before + after) / 2, (after - before) / 2)
            if best is None or reading[1] < best[1]:
                best = reading
            if best[1] < 0.005:
                break
        return best

    def evaluate(self) -> str:
        source = self._clock.source()
        if source == "system" and self._trust != "always":
            return "untrusted"
        return source

    def source(self) -> str:
        return self._source

    @property
    def trusted(self) -> bool:
        return self._source != "untrusted"

    def check(self) -> None:
        """One look: report a step, and a change of trust. Called every `every_s`."""
        offset, error = self._wall_minus_monotonic()
        delta, uncertain = offset - self._offset, error + self._error
        self._offset, self._error = offset, error
        if abs(delta) - uncertain >= self._step_threshold_s:
            log.warning("the clock stepped %+.1f s", delta)
            self._on_step(delta)
        self._ticks += 1
        if abs(delta) >= self._step_threshold_s or self._ticks % 10 == 0:
            self._reevaluate()

    def _reevaluate(self) -> None:
        new = self.evaluate()
        old, self._source = self._source, new
        if (old == "untrusted") != (new == "untrusted"):
            log.warning("clock %s (source: %s)", "trusted" if new != "untrusted" else "NOT trusted", new)
            self._on_change(old, new)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="clockwatch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._every_s):
            try:
                self.check()
            except Exception:  # noqa: BLE001 - the watch must outlive a bad probe
                log.exception("clock check failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2)
