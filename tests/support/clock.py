"""A clock the test moves by hand: steps forward and back, no sleeping."""

from datetime import datetime, timezone

from hw.clock import Clock


class ManualClock(Clock):
    def __init__(self, start: datetime, source: str = "ntp"):
        self._wall = start.timestamp()
        self._mono = 1000.0
        self._source = source

    def time(self) -> float:
        return self._wall

    def monotonic(self) -> float:
        return self._mono

    def sleep(self, seconds: float) -> None:
        self.advance(seconds)

    def source(self) -> str:
        return self._source

    def advance(self, seconds: float) -> None:
        """Time passes: both clocks move."""
        self._wall += seconds
        self._mono += seconds

    def step(self, seconds: float) -> None:
        """The wall clock is set (NTP, GPS, a technician): only it moves."""
        self._wall += seconds

    def set_source(self, source: str) -> None:
        self._source = source

    def now(self) -> datetime:
        return datetime.fromtimestamp(self._wall, timezone.utc)
