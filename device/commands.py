"""The unit's gate for signed commands: verify, check target and time, refuse replays.

`CommandGate.admit(topic, raw, now)` returns a `scheduler.Command` the unit may carry
out, or raises a `Rejected` whose `str()` is the reason for the `reply` and whose
`command_id` is the command's id when one could be read (else None).

Checks, in order: the topic is one of this unit's command topics; the envelope holds
one valid signature by a key the trust in force knows; the document is a valid command
that has not expired; its target names this unit and is the target of the topic it
arrived on; its signatures meet the roles its kind requires under the trust in force
when it arrives, each counted key in scope and unexpired (`scheduler.judge`; a `stop`
while an emergency plays needs `emergency`); its id was not seen before. All but the last step's write are cheap (a size limit, JSON, a known
key name, one Ed25519 verify: tens of microseconds) and need no disk: `screen` runs
them on the network thread, before anything is queued, so garbage never takes a
signed command's place; `remember` then stores the id (an fsync) on the command
thread. `admit` is both.

Refusals are reported through a `RefusalReporter`: one by one up to a burst per
interval, then only counted, and the count goes out as one summary per interval
(a flood of 14,000 unsigned messages is a handful of replies and one event).

Replays: each admitted id is remembered on disk (`seen.json` in the gate's folder,
written atomically with fsync before `admit` returns, so a command is never carried
out unremembered) until its `expires_at` plus RETAIN_AFTER_EXPIRY, then forgotten.
The margin keeps ids through a small step back of the clock; a command past its
`expires_at` is refused as expired anyway. A gate made anew on the same folder (a
restart) refuses the same ids.

A full or read-only disk (ENOSPC, EROFS, EIO) does not refuse commands: the id is
remembered in memory and reported to `on_write_failed` (an emergency `play` during
an SD-card failure matters more than the replay window a restart on that same broken
disk would open; the ids expire within 24 hours anyway). Any other write failure
refuses the command (`StorageError`). A damaged `seen.json` is moved aside and
reported to `on_corrupt`.
"""

import json
import logging
import threading
from datetime import datetime, timedelta
from pathlib import Path

from loaxa.errors import LoaxaError, Rejected, TargetError
from loaxa.fsio import atomic_write, is_storage_fault, quarantine
from scheduler._json import describe, strict_loads
from scheduler.command import COMMAND_ID_PATTERN, Command, parse_command
from scheduler.envelope import read_envelope
from scheduler.judge import Authority, UnitContext, command_subject, judge
from scheduler.store import StorageError, known_signatures
from scheduler.targets import topic_target, unit_targets

__all__ = ["CommandGate", "ReplayError", "peek_command_id", "reply_doc"]

log = logging.getLogger("loaxa.unit.commands")

SEEN_FILE = "seen.json"
SEEN_FORMAT = 1
RETAIN_AFTER_EXPIRY = timedelta(hours=1)
# A trusted operator sending more unexpired commands than this is a fault, not a use:
# forgetting ids to make room would let old commands play again, so new ones wait.
MAX_REMEMBERED = 10_000
MAX_DETAIL = 500


class ReplayError(Rejected):
    """A command id this unit has already seen (remembered until the command expires)."""


def reply_doc(command_id: str | None, ok: bool, detail: str, result: dict | None = None) -> dict:
    """SPEC's answer on `reply`: `{"command", "ok", "detail", "result"}`."""
    return {"command": command_id, "ok": bool(ok), "detail": _utf8_safe(str(detail))[:MAX_DETAIL],
            "result": dict(result) if result is not None else {}}


def _utf8_safe(text: str) -> str:
    # A refusal may quote a hostile string (an envelope's key name, say) holding a lone
    # surrogate; the reply must still encode as UTF-8.
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def peek_command_id(raw) -> str | None:
    """The `id` inside a command envelope without trusting it (for the reply of a refusal).

    Only an id of the allowed shape is returned; anything unreadable gives None."""
    try:
        doc = strict_loads(read_envelope(raw).payload, "document")
    except (LoaxaError, TypeError, ValueError, RecursionError):
        return None
    value = doc.get("id") if isinstance(doc, dict) else None
    return value if isinstance(value, str) and COMMAND_ID_PATTERN.fullmatch(value) else None


class CommandGate:
    def __init__(self, folder, *, trusted, unit_id: str, groups, prefix: str = "loaxa",
                 emergency_playing=lambda: False, clock_trusted=lambda: True, on_write_failed=None,
                 on_corrupt=None):
        """`trusted`: the legacy `{name: public key}` map, an `Authority`, or a callable
        giving the Authority in force now (the daemon's TrustKeeper.authority);
        `emergency_playing()` and `clock_trusted()` are asked for each command."""
        self.folder = Path(folder)
        self._path = self.folder / SEEN_FILE
        self._on_write_failed = on_write_failed or (lambda what, exc: None)
        self._on_corrupt = on_corrupt or (lambda path, moved_to, why: None)
        if isinstance(trusted, dict):
            trusted = Authority.from_legacy(trusted)  # once, not per message
        self._trusted = trusted
        self._groups = tuple(groups)
        self._emergency_playing = emergency_playing
        self._clock_trusted = clock_trusted
        self._unit_id = unit_id
        self._mine = unit_targets(unit_id, groups)
        self._prefix = prefix
        self._lock = threading.Lock()
        self._seen = self._read_seen()  # id -> forget after (epoch seconds)

    # ---- admitting ----
    def admit(self, topic: str, raw: bytes, now: datetime) -> Command:
        """The command to carry out, or a Rejected (with `.command_id`) saying why not."""
        try:
            command = self.screen(topic, raw, now)
            self.remember(command, now)
            return command
        except Rejected as exc:
            exc.command_id = peek_command_id(raw)
            raise

    def screen(self, topic: str, raw: bytes, now: datetime) -> Command:
        """Every check but storing the id: no disk, fit for the network thread. Raises
        Rejected (without `.command_id`: `peek_command_id` costs a second parse, worth
        it only for a refusal that is answered)."""
        self._check_topic(topic)
        authority = self.authority()
        envelope, checks = known_signatures(raw, authority)  # cheap: before the payload is parsed
        command = parse_command(envelope.payload, now)
        self._check_target(command, topic)
        subject = command_subject(command, topic, emergency_playing=self._emergency_playing())
        context = UnitContext(self._unit_id, self._groups, self._prefix, clock_trusted=self._clock_trusted())
        verdict = judge(envelope, subject, authority, now=now, context=context, checks=checks).check()
        command = command.signed(verdict.counted[0] if verdict.counted else _first_valid(checks))
        with self._lock:
            if command.id in self._unexpired(now):
                raise _replay(command)
        return command

    def authority(self) -> Authority:
        """Whose signatures count now (asked for each command: trust may change any time)."""
        trusted = self._trusted() if callable(self._trusted) else self._trusted
        return trusted if isinstance(trusted, Authority) else Authority.from_legacy(dict(trusted or {}))

    def remember(self, command: Command, now: datetime) -> None:
        """Store the id of a screened command (atomic, fsynced) before it is carried out."""
        with self._lock:
            self._remember(command, now)

    def _check_topic(self, topic: str) -> None:
        arrived = topic_target(self._prefix, topic, "cmd")
        if arrived is None or arrived not in self._mine:
            raise TargetError(f"arrived on {describe(topic)}, which is not one of this unit's command topics")

    def _check_target(self, command: Command, topic: str) -> None:
        if command.target not in self._mine:
            raise TargetError(f"target {command.target} names neither unit {self._unit_id} nor any of its groups")
        if topic_target(self._prefix, topic, "cmd") != command.target:
            raise TargetError(f"arrived on {topic}, which is not the command topic of its target {command.target}")

    # ---- remembering ----
    def _remember(self, command: Command, now: datetime) -> None:
        seen = self._unexpired(now)
        if command.id in seen:
            raise _replay(command)
        if len(seen) >= MAX_REMEMBERED:
            raise StorageError(f"{len(seen)} unexpired commands are remembered already; wait for some to expire")
        seen[command.id] = (command.expires_at + RETAIN_AFTER_EXPIRY).timestamp()
        try:
            self._write_seen(seen)
        except OSError as exc:
            if is_storage_fault(exc):
                log.error("command id %s remembered in memory only: %s", command.id, exc)
                self._on_write_failed(f"commands/{SEEN_FILE}", exc)
                self._seen = seen
                return
            raise StorageError(f"the command id could not be stored, so it is not carried out: "
                               f"{exc.strerror or exc}") from exc
        self._seen = seen

    def _unexpired(self, now: datetime) -> dict[str, float]:
        cutoff = now.timestamp()
        return {cid: until for cid, until in self._seen.items() if until > cutoff}

    def remembered(self, now: datetime) -> list[str]:
        """The ids still remembered at `now` (for status and tests)."""
        with self._lock:
            return sorted(self._unexpired(now))

    def _write_seen(self, seen: dict[str, float]) -> None:
        data = {"format": SEEN_FORMAT, "seen": dict(sorted(seen.items()))}
        atomic_write(self._path, json.dumps(data, indent=0).encode("utf-8"), mode=0o600)

    def _read_seen(self) -> dict[str, float]:
        try:
            data = json.loads(self._path.read_text(encoding="utf-8"))
            if data.get("format") != SEEN_FORMAT:
                raise ValueError(f"unknown format {data.get('format')!r}")
            return {str(cid): float(until) for cid, until in data["seen"].items()}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
            # Atomic writes make this a damaged disk, not a torn write. Refusing every
            # command forever would be worse than the replay window this opens.
            moved_to = quarantine(self._path)
            log.error("%s is unreadable (%s); moved to %s; command ids seen before are forgotten",
                      self._path, exc, moved_to)
            try:
                self._on_corrupt(self._path, moved_to, str(exc))
            except Exception:  # noqa: BLE001 - the gate works without the report
                log.exception("could not report the damaged %s", SEEN_FILE)
            return {}

    # ---- one message in, one reply out ----
    def respond(self, topic: str, raw: bytes, now: datetime, execute) -> tuple[dict, Command | None]:
        """Admit and carry out one command message; return (the reply document, the command).

        `execute(command) -> (detail, result)` carries it out; a LoaxaError it raises
        becomes `ok: false` with its message, any other exception `ok: false` with a
        plain "internal error" line (logged with its traceback). The command is None
        when it was refused before `execute`.
        """
        try:
            command = self.admit(topic, raw, now)
        except Rejected as exc:
            log.warning("command refused on %s: %s", topic, exc)
            return reply_doc(exc.command_id, False, str(exc)), None
        return self.carry_out(command, execute), command

    def carry_out(self, command: Command, execute) -> dict:
        """Carry out an admitted command; return its reply (see `respond`)."""
        try:
            detail, result = execute(command)
        except LoaxaError as exc:
            log.warning("command %s (%s) failed: %s", command.id, command.action, exc)
            return reply_doc(command.id, False, str(exc) or type(exc).__name__)
        except Exception as exc:  # noqa: BLE001 - the MQTT thread must survive any action
            log.exception("command %s (%s) failed", command.id, command.action)
            return reply_doc(command.id, False, f"internal error: {type(exc).__name__}: {exc}"[:300])
        return reply_doc(command.id, True, detail, result)


def _first_valid(checks) -> str | None:
    return next((c.key for c in checks if c.status == "valid"), None)


def _replay(command: Command) -> ReplayError:
    return ReplayError(f"command id {command.id} was already received (a replay); "
                       "send a new command with a new id")


class RefusalReporter:
    """Rate limit and coalescing for refusal reports (replies and `command.rejected`).

    Within each `interval_s` window (opened by its first refusal) the first `burst`
    refusals are reported one by one (`admit` says True); the rest are only counted
    and `summary()` hands out the count once the window has closed. Thread-safe:
    `admit` runs on the network thread. `monotonic` is the clock's."""

    def __init__(self, monotonic, *, interval_s: float = 60.0, burst: int = 5):
        self._monotonic, self.interval_s, self.burst = monotonic, interval_s, burst
        self._lock = threading.Lock()
        self._window_end: float | None = None
        self._reported = 0
        self._counted = 0
        self._last: tuple[str, str] | None = None  # (topic, reason) of the last one counted

    def admit(self, topic: str, reason: str) -> bool:
        """True: report this refusal in full; False: it was counted for the summary."""
        now = self._monotonic()
        with self._lock:
            if self._window_end is None or (now >= self._window_end and not self._counted):
                self._window_end, self._reported = now + self.interval_s, 0
            if self._reported < self.burst and now < self._window_end:
                self._reported += 1
                return True
            self._counted += 1
            self._last = (topic, reason)
            return False

    def due_in(self) -> float | None:
        """Seconds until a summary is due (0: now), None when nothing is counted."""
        with self._lock:
            if not self._counted:
                return None
            return max(0.0, self._window_end - self._monotonic())

    def summary(self) -> dict | None:
        """{"count", "topic", "reason", "interval_s"} once a window with counted refusals
        has closed (and a new window opens), else None."""
        now = self._monotonic()
        with self._lock:
            if not self._counted or now < self._window_end:
                return None
            (topic, reason), count = self._last, self._counted
            self._counted, self._last = 0, None
            self._window_end, self._reported = now + self.interval_s, self.burst
            return {"count": count, "topic": topic, "reason": reason, "interval_s": self.interval_s}
