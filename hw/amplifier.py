"""Amplifier drivers: the interface, a relay-only amplifier, and LXA1 over serial.

LXA1 is loaxa's amplifier control protocol (docs/amplifier-protocol.md): ASCII lines,
an XOR checksum per line, a tag echoed in each reply so a late reply is never taken
for the answer to the next request, and unsolicited notices (`!PROTECT`, `!BOOT`).
`hw.sim.AmplifierSimulator` speaks it on a pty, so this driver runs unchanged in tests
and on a mock unit.

Robustness, in one place (`Lxa1Amplifier._request`):
- each request waits `timeout_s` for its reply and is sent `attempts` times;
- lines with a bad checksum, unknown start or foreign tag are skipped (resync is
  per line: garbage never costs more than the line it is on);
- a port that fails is closed and reopened on the next request (`SerialLink`);
- after a reopen, or a `!BOOT` notice (the amplifier lost power), the driver says
  HELLO and sends the state it was asked for again (power, mute, volume, input).
"""

import logging
import re
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable

from loaxa.errors import HardwareError

from .serialport import DeviceTimeout, SerialLink, SerialLinkError

log = logging.getLogger("loaxa.amplifier")

PROTOCOL = "LXA1"
REQUEST, REPLY, ERROR, NOTICE = ":", "=", "?", "!"
STARTS = (REQUEST, REPLY, ERROR, NOTICE)
_PRINTABLE = re.compile(r"[\x20-\x29\x2b-\x7e]+")  # printable ASCII but '*'
FAULT_NONE = "none"


class AmpError(HardwareError):
    """The amplifier refused a command (`?` reply): out of range, in protect, unknown."""


@dataclass(frozen=True)
class AmpInfo:
    protocol: str  # "LXA1", or "relay" for a relay-only amplifier
    model: str | None = None
    firmware: str | None = None
    vol_max: int = 63
    inputs: int = 1


@dataclass(frozen=True)
class AmpStatus:
    """What the amplifier reports; None where it does not say."""

    power: bool | None = None
    mute: bool | None = None
    volume: int | None = None  # 0-100, mapped back from the amplifier's scale
    input: int | None = None
    temp_c: float | None = None
    protect: bool = False
    fault: str | None = None  # the amplifier's fault code ("overtemp", "short"...), None if none
    line_current_a: float | None = None
    line_impedance_ohm: float | None = None


NoticeHandler = Callable[[str, dict], None]  # (name, fields): ("PROTECT", {"state": "1", "fault": "short"})


class Amplifier(ABC):
    """One amplifier. A subclass must provide `hello`, `set_power`, `set_mute`, `set_volume`,
    `set_input`, `status`, and may override `close` and `poll_notices`.

    Commands raise HardwareError subclasses: SerialLinkError (port gone),
    DeviceTimeout (no answer), AmpError (refused). `has_link` is False for an
    amplifier loaxa can only switch (relay only): its commands do nothing and its
    status says nothing.
    """

    kind: str = "?"
    has_link: bool = False
    on_notice: NoticeHandler | None = None

    @abstractmethod
    def hello(self) -> AmpInfo:
        """Handshake: who is there."""

    @abstractmethod
    def set_power(self, on: bool) -> None:
        """The amplifier's own power stage (standby), behind the mains relay."""

    @abstractmethod
    def set_mute(self, on: bool) -> None: ...

    @abstractmethod
    def set_volume(self, volume: int) -> None:
        """0-100, mapped onto the amplifier's own scale."""

    @abstractmethod
    def set_input(self, number: int) -> None: ...

    @abstractmethod
    def status(self) -> AmpStatus: ...

    def poll_notices(self) -> None:
        """Handle notices that arrived unasked (nothing to do without a link)."""

    @property
    def connected(self) -> bool:
        return False

    def describe(self) -> str:
        return self.kind

    def close(self) -> None:
        """Release the port; safe twice."""


class RelayOnlyAmplifier(Amplifier):
    """An amplifier without a control link: loaxa switches its mains and mute relays only."""

    kind = "relay"

    def hello(self) -> AmpInfo:
        return AmpInfo("relay")

    def set_power(self, on: bool) -> None:
        pass

    def set_mute(self, on: bool) -> None:
        pass

    def set_volume(self, volume: int) -> None:
        _check_volume(volume)

    def set_input(self, number: int) -> None:
        pass

    def status(self) -> AmpStatus:
        return AmpStatus()

    def describe(self) -> str:
        return "relay-only (no control link)"


class Lxa1Amplifier(Amplifier):
    """An LXA1 amplifier on a SerialLink; thread-safe (one request at a time)."""

    kind = "lxa1"
    has_link = True

    def __init__(self, link: SerialLink, *, timeout_s: float = 0.3, attempts: int = 3,
                 on_notice: NoticeHandler | None = None):
        self.link = link
        self.timeout_s, self.attempts = timeout_s, attempts
        self.on_notice = on_notice
        self.info: AmpInfo | None = None
        self.notices_seen = 0
        self.garbage_lines = 0  # lines skipped: bad checksum, foreign, malformed
        self._want: dict[str, int] = {}  # the state asked for: resent after a resync
        self._synced = 0  # the link generation the amplifier was last synced on
        self._booted = False  # a !BOOT notice: the amplifier restarted
        self._tag = 0
        self._lock = threading.RLock()

    # ---- commands ----
    def hello(self) -> AmpInfo:
        """Handshake now (and send the state asked for so far again)."""
        with self._lock:
            self._booted = True  # forces the resync below
            self._sync_if_needed()
            return self.info

    def set_power(self, on: bool) -> None:
        self._set("PWR", int(bool(on)))

    def set_mute(self, on: bool) -> None:
        self._set("MUTE", int(bool(on)))

    def set_volume(self, volume: int) -> None:
        _check_volume(volume)
        with self._lock:
            self._want["VOL_PCT"] = volume
            self._sync_if_needed()  # the scale (vol_max) comes with the handshake
            self._set("VOL", self._to_steps(volume))

    def set_input(self, number: int) -> None:
        self._set("INPUT", int(number))

    def clear_protect(self) -> None:
        """Ask the amplifier to leave protect (refused while the cause persists)."""
        with self._lock:
            self._request("CLEAR")

    def status(self) -> AmpStatus:
        with self._lock:
            fields = _key_values(self._request("STATUS"))
        vol_max = self.info.vol_max if self.info else 63
        fault = fields.get("fault", FAULT_NONE)
        return AmpStatus(
            power=_flag(fields.get("pwr")), mute=_flag(fields.get("mute")),
            volume=_percent(fields.get("vol"), vol_max), input=_number(fields.get("input"), int),
            temp_c=_number(fields.get("temp"), float), protect=fields.get("prot") == "1",
            fault=None if fault == FAULT_NONE else fault,
            line_current_a=_number(fields.get("line_a"), float),
            line_impedance_ohm=_number(fields.get("line_ohm"), float))

    def poll_notices(self) -> None:
        with self._lock:
            while True:
                line = self.link.read_line(time.monotonic())
                if line is None:
                    return
                self._dispatch(line, tag=None)

    @property
    def connected(self) -> bool:
        return self.link.is_open and self._synced == self.link.generation and not self._booted

    def describe(self) -> str:
        if self.info is None:
            return f"LXA1 on {self.link.url}"
        return f"{self.info.model or 'LXA1'} firmware {self.info.firmware or '?'} on {self.link.url}"

    def close(self) -> None:
        self.link.close()

    # ---- the exchange ----
    def _set(self, command: str, value: int) -> None:
        with self._lock:
            self._want[command] = value
            self._request(command, str(value))

    def _request(self, command: str, *args: str, sync: bool = True) -> list[str]:
        """Send and wait for the tagged reply; retried; resyncs first when needed."""
        if sync:
            self._sync_if_needed()
        last_error = None
        for attempt in range(self.attempts):
            tag = self._next_tag()
            try:
                self.link.write(frame(REQUEST, " ".join((tag, command) + args)))
                reply = self._await(tag, command)
            except (DeviceTimeout, SerialLinkError) as exc:
                last_error = exc
                if attempt + 1 < self.attempts:
                    time.sleep(min(0.05 * (attempt + 1), self.timeout_s))
                continue
            return reply
        raise last_error

    def _await(self, tag: str, command: str) -> list[str]:
        deadline = time.monotonic() + self.timeout_s
        while True:
            line = self.link.read_line(deadline)
            if line is None:
                raise DeviceTimeout(f"amplifier: no answer to {command} within "
                                    f"{self.timeout_s:g} s on {self.link.url}")
            reply = self._dispatch(line, tag)
            if reply is not None:
                kind, fields = reply
                if kind == ERROR:
                    raise AmpError(f"amplifier refused {command}: {' '.join(fields) or 'error'}")
                return fields

    def _dispatch(self, line: bytes, tag: str | None):
        """A reply to `tag` as (kind, fields); notices handled; everything else skipped."""
        parsed = parse_frame(line)
        if parsed is None:
            self.garbage_lines += 1
            return None
        start, tokens = parsed
        if start == NOTICE and tokens:
            self._notice(tokens[0], tokens[1:])
            return None
        if start in (REPLY, ERROR) and len(tokens) >= 2 and tokens[0] == tag:
            return start, tokens[2:]
        self.garbage_lines += 1  # a late reply to an earlier attempt, or our own echo
        return None

    def _notice(self, name: str, tokens: list[str]) -> None:
        self.notices_seen += 1
        fields = _key_values(tokens)
        if tokens and "=" not in tokens[0]:
            fields["state"] = tokens[0]
        if name == "BOOT":
            self._booted = True
        if self.on_notice is not None:
            try:
                self.on_notice(name, fields)
            except Exception:  # noqa: BLE001 - a handler bug must not break the link
                log.exception("amplifier notice handler")

    def _sync_if_needed(self) -> None:
        if self._synced == self.link.generation and self.link.is_open and not self._booted:
            return
        self.link.open()
        self.link.discard_input()
        self._booted = False
        self._take_hello(self._request("HELLO", sync=False))
        for command in ("PWR", "INPUT", "VOL", "MUTE"):
            if command in self._want:
                value = self._want[command]
                if command == "VOL" and "VOL_PCT" in self._want:
                    value = self._to_steps(self._want["VOL_PCT"])
                try:
                    self._request(command, str(value), sync=False)
                except AmpError as exc:  # e.g. PWR 1 in protect: the status will say why
                    log.warning("%s", exc)
        self._synced = self.link.generation
        log.info("amplifier in step: %s", self.describe())

    def _take_hello(self, fields: list[str]) -> AmpInfo:
        if not fields or fields[0] != PROTOCOL:
            raise AmpError(f"amplifier speaks {' '.join(fields[:1]) or 'nothing'}, not {PROTOCOL}")
        values = _key_values(fields[1:])
        self.info = AmpInfo(PROTOCOL, values.get("model"), values.get("fw"),
                            _number(values.get("vol_max"), int) or 63,
                            _number(values.get("inputs"), int) or 1)
        return self.info

    def _to_steps(self, volume: int) -> int:
        vol_max = self.info.vol_max if self.info else 63
        return round(volume * vol_max / 100)

    def _next_tag(self) -> str:
        self._tag = (self._tag + 1) % 256
        return f"{self._tag:02X}"


# ---- framing, shared with the simulator ----

def checksum(body: str) -> int:
    value = 0
    for char in body.encode("ascii", "replace"):
        value ^= char
    return value


def frame(start: str, body: str) -> bytes:
    """One LXA1 line: start character, body, `*`, two hex digits of XOR, CR LF."""
    return f"{start}{body}*{checksum(body):02X}\r\n".encode("ascii")


def parse_frame(line: bytes) -> tuple[str, list[str]] | None:
    """(start character, body tokens) of a valid line, else None.

    Noise before the start character (a line hit by garbage) is skipped: the
    first start character whose body matches the checksum wins.
    """
    text = line.decode("ascii", "replace").strip()
    if len(text) < 5 or text[-3] != "*":
        return None
    try:
        given = int(text[-2:], 16)
    except ValueError:
        return None
    for index, char in enumerate(text[:-3]):
        if char in STARTS:
            body = text[index + 1:-3]
            if body and _PRINTABLE.fullmatch(body) and checksum(body) == given:
                return char, body.split()
    return None


def _key_values(tokens) -> dict[str, str]:
    return dict(token.split("=", 1) for token in tokens if "=" in token)


def _flag(value: str | None) -> bool | None:
    return None if value is None else value == "1"


def _number(value: str | None, kind):
    try:
        return None if value is None else kind(value)
    except ValueError:
        return None


def _percent(value: str | None, vol_max: int) -> int | None:
    steps = _number(value, int)
    return None if steps is None or vol_max <= 0 else round(steps * 100 / vol_max)


def _check_volume(volume: int) -> None:
    if isinstance(volume, bool) or not isinstance(volume, int) or not 0 <= volume <= 100:
        raise ValueError(f"volume must be 0-100, got {volume!r}")


__all__ = ["AmpError", "AmpInfo", "AmpStatus", "Amplifier", "Lxa1Amplifier", "RelayOnlyAmplifier",
           "frame", "parse_frame"]
