"""NMEA 0183 from GPS receivers: checksums, GGA and RMC, any talker. Pure: no I/O, no clock.

What real receivers send, and what this module does with it:
- `$GPGGA`, `$GNRMC`, `$GLGGA`, `$GARMC`, `$BDGGA`, `$GBRMC`...: the talker (GP GPS,
  GL GLONASS, GA Galileo, BD/GB BeiDou, GQ QZSS, GN multi-system) does not matter;
  the sentence type does.
- Every sentence must end in `*HH`, the XOR of the characters between `$` and `*`;
  a sentence without one, or with a wrong one, is dropped (a line hit by noise on
  the wire is worse than no line).
- Lines cut short (the receiver or the adapter restarting mid-sentence), binary
  (u-blox UBX, a receiver at another speed) and proprietary `$P...` sentences are
  ignored.
- Dates are given as the receiver states them (two-digit years 80-99 are 19xx). Old
  receivers hit by the GPS week-number rollover report dates 1024 weeks (19.6 years)
  in the past; `plausible_utc()` tells such a date from a real one, so a clock never
  follows it (guessing the right era would be worse than no GPS time).
"""

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timezone

MAX_SENTENCE = 82  # NMEA 0183: at most 82 characters including $ and CR LF
_SENTENCE = re.compile(r"\$([A-Z][A-Z0-9])([A-Z]{3}),([\x20-\x7e]*)\*([0-9A-Fa-f]{2})")
EARLIEST_DATE = date(2024, 1, 1)  # no unit ran before this: an earlier date is a rollover

FIX_QUALITY = {0: "none", 1: "gps", 2: "dgps", 3: "pps", 4: "rtk", 5: "float-rtk",
               6: "estimated", 7: "manual", 8: "simulation"}
REAL_FIX = {1, 2, 3, 4, 5}  # measured positions; 6-8 are dead reckoning or typed in


@dataclass(frozen=True)
class Sentence:
    talker: str  # "GP", "GN", ...
    kind: str  # "GGA", "RMC", ...
    fields: tuple[str, ...]


@dataclass(frozen=True)
class GGA:
    """Fix data: position, quality, satellites in use."""

    talker: str
    utc_time: time | None
    lat: float | None
    lon: float | None
    quality: int  # 0 = no fix; see FIX_QUALITY
    satellites: int | None
    hdop: float | None
    altitude_m: float | None

    @property
    def has_fix(self) -> bool:
        return self.quality in REAL_FIX and self.lat is not None and self.lon is not None


@dataclass(frozen=True)
class RMC:
    """Recommended minimum: UTC date and time, validity, position, speed."""

    talker: str
    utc: datetime | None  # aware, UTC; None without both date and time
    valid: bool  # status A
    lat: float | None
    lon: float | None
    speed_kn: float | None
    course_deg: float | None


def checksum(body: str) -> int:
    """XOR of the characters between `$` and `*`."""
    value = 0
    for char in body.encode("ascii"):
        value ^= char
    return value


def with_checksum(body: str) -> str:
    """`$body*HH` — how a receiver (or a simulator) frames a sentence."""
    return f"${body}*{checksum(body):02X}"


def parse_sentence(line) -> Sentence | None:
    """A checksummed NMEA sentence, or None for anything else (cut, garbled, no checksum)."""
    if isinstance(line, (bytes, bytearray)):
        line = bytes(line).decode("ascii", "replace")
    line = line.strip()
    start = line.rfind("$")  # a line may carry the tail of a cut one before it
    if start < 0 or len(line) - start > MAX_SENTENCE:
        return None
    match = _SENTENCE.fullmatch(line[start:])
    if match is None:
        return None
    talker, kind, rest, given = match.groups()
    if talker.startswith("P") or checksum(f"{talker}{kind},{rest}") != int(given, 16):
        return None
    return Sentence(talker, kind, tuple(rest.split(",")))


def parse(line) -> GGA | RMC | Sentence | None:
    """GGA and RMC decoded; other valid sentences as `Sentence`; None for invalid lines."""
    sentence = parse_sentence(line)
    if sentence is None:
        return None
    decode = _DECODERS.get(sentence.kind)
    if decode is None:
        return sentence
    try:
        return decode(sentence)
    except (ValueError, IndexError):
        return None  # checksum right, content wrong: a receiver bug; skip it


def _gga(s: Sentence) -> GGA:
    f = s.fields
    return GGA(s.talker, _utc_time(f[0]), _coordinate(f[1], f[2], 2), _coordinate(f[3], f[4], 3),
               int(f[5] or 0), _int(f[6]), _float(f[7]), _float(f[8]))


def _rmc(s: Sentence) -> RMC:
    f = s.fields
    moment = _utc_time(f[0])
    day = _date(f[8])
    utc = datetime.combine(day, moment, timezone.utc) if day and moment else None
    # NMEA 2.3 added a mode indicator: "N" (data not valid) overrides status A.
    valid = f[1] == "A" and not (len(f) > 11 and f[11] == "N")
    return RMC(s.talker, utc, valid, _coordinate(f[2], f[3], 2),
               _coordinate(f[4], f[5], 3), _float(f[6]), _float(f[7]))


_DECODERS = {"GGA": _gga, "RMC": _rmc}


def _coordinate(value: str, hemisphere: str, degree_digits: int) -> float | None:
    """`ddmm.mmmm`/`dddmm.mmmm` and N/S/E/W to signed decimal degrees."""
    if not value or not hemisphere:
        return None
    if hemisphere not in "NSEW" or len(hemisphere) != 1:
        raise ValueError(f"hemisphere {hemisphere!r}")
    degrees = int(value[:degree_digits])
    minutes = float(value[degree_digits:])
    if not 0 <= minutes < 60:
        raise ValueError(f"minutes {minutes}")
    decimal = degrees + minutes / 60
    limit = 90 if degree_digits == 2 else 180
    if decimal > limit:
        raise ValueError(f"coordinate {decimal} out of range")
    return round(-decimal if hemisphere in "SW" else decimal, 7)


def _utc_time(value: str) -> time | None:
    if not value:
        return None
    whole, _, fraction = value.partition(".")
    if len(whole) != 6:
        raise ValueError(f"time {value!r}")
    micro = int(round(float(f"0.{fraction}") * 1_000_000)) if fraction else 0
    seconds = int(whole[4:6])
    # 60 is a leap second; hold it at :59.999999 rather than refuse the sentence.
    if seconds == 60:
        seconds, micro = 59, 999_999
    return time(int(whole[:2]), int(whole[2:4]), seconds, min(micro, 999_999))


def _date(value: str) -> date | None:
    if not value:
        return None
    if len(value) != 6:
        raise ValueError(f"date {value!r}")
    year = int(value[4:6])
    return date(year + (1900 if year >= 80 else 2000), int(value[2:4]), int(value[:2]))


def plausible_utc(moment: datetime | None) -> bool:
    """False for no time, or a date before any unit ran (a week-number rollover)."""
    return moment is not None and moment.date() >= EARLIEST_DATE


def _int(value: str) -> int | None:
    return int(value) if value else None


def _float(value: str) -> float | None:
    return float(value) if value else None


class NmeaDecoder:
    """Bytes in (any chunking), decoded sentences out; counts what it had to drop."""

    def __init__(self):
        self._buffer = bytearray()
        self.dropped = 0  # lines that were not valid sentences

    def feed(self, data: bytes) -> list:
        self._buffer += data
        out = []
        while True:
            end = self._buffer.find(b"\n")
            if end < 0:
                if len(self._buffer) > 4 * MAX_SENTENCE:  # no line end in sight: garbage
                    self.dropped += 1
                    self._buffer.clear()
                return out
            line = bytes(self._buffer[:end])
            del self._buffer[:end + 1]
            decoded = self.line(line)
            if decoded is not None:
                out.append(decoded)

    def line(self, line: bytes):
        """Decode one complete line; None (and counted) when it is not a valid sentence."""
        if not line.strip():
            return None
        decoded = parse(line)
        if decoded is None:
            self.dropped += 1
        return decoded
