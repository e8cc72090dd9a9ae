"""The documents in force on a unit, one per schedule topic, and the versions seen.

Layout of the store's folder (every write atomic and durable, `loaxa.fsio`):
- `topics/<sha256(topic)[:32]>.json`: `{"topic": ..., "envelope": "<the raw envelope>"}`,
  the signed envelope in force on that topic, kept exactly as it arrived;
- `versions.json`: `{"format": 1, "versions": {"<document id>": {"version", "digest"}}}`,
  the highest version accepted per document id with its payload digest: a different
  document under an equal or lower version is refused forever (no replay, no rollback).

The highest version is written before the document itself: a crash between the two
leaves the version recorded and the retained copy, arriving again, is accepted then.

Loading re-verifies each stored envelope against the trusted keys, the unit's
targets and its quiet hours when they are given (constructor keywords or `load`);
a stored document that no longer passes is dropped from force with a log line.
When they are not given, documents load on their stored word and are re-checked on
the first `offer` (which always carries them).

Trust (docs/design.md, "Trust model"): `trusted` is either the legacy flat
`{name: public key}` map (any one key signs anything) or a `scheduler.judge.Authority`,
under which each document is judged for roles, scope and key expiry (`now`,
`clock_trusted`). A new authority takes every held document that no longer meets its
requirement out of force at once (`revoke`, also run by the first `offer` under it); its
high-water mark is recomputed from the documents still held, and its retained copy
arriving again is refused with `StillRevoked` (for the unit to stay quiet) unless it now
meets the requirement. The same payload arriving again with other signatures replaces the
held envelope once it passes. Under `Authority.nothing()` (trust was in force and its
document is lost) every new document is refused and the documents held stay in force,
unjudged, until a trust document arrives.

A file that cannot be read at all (not JSON, cut short: a damaged disk, since writes
are atomic) is moved aside as `<name>.corrupt-<time>` and reported to `on_corrupt`:
a damaged topic file leaves force (its retained copy, arriving again, is accepted);
a damaged `versions.json` is rebuilt from the stored documents. A write that fails
(full or read-only disk) refuses the offer with `StorageError`, and the documents in
force stay as they were.
"""

import hashlib
import json
import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from loaxa.errors import LoaxaError, Rejected, SignatureError, VersionError
from loaxa.fsio import atomic_write, quarantine
from scheduler._json import encode_utf8
from scheduler.document import Schedule, parse_schedule
from scheduler.envelope import check_signatures, open_envelope, read_envelope
from scheduler.judge import Authority, UnitContext, judge, schedule_subject
from scheduler.keys import public_key_b64
from scheduler.targets import check_targets
from scheduler.triggers import check_quiet_hours

__all__ = ["Offer", "ScheduleStore", "StillRevoked", "StorageError", "known_signature",
           "known_signatures"]

log = logging.getLogger("loaxa.scheduler.store")

VERSIONS_FORMAT = 1


class StorageError(Rejected):
    """The document passed every check but could not be stored, so it is not in force."""


class StillRevoked(SignatureError):
    """The retained copy of a document a trust change took out of force: refused quietly."""


@dataclass(frozen=True)
class Offer:
    status: str  # "accepted" | "unchanged" | "empty"
    schedule: Schedule | None


@dataclass(frozen=True)
class _Context:
    """What a stored document is checked against: the unit's trust, identity and quiet hours."""
    trusted: dict | None
    unit_id: str | None = None
    groups: tuple = ()
    prefix: str = "loaxa"
    quiet_hours: object = None
    unit_tz: object = None
    now: datetime | None = None  # for key expiry under an Authority; None: expiry not judged
    clock_trusted: bool = True

    def fingerprint(self) -> tuple:
        if isinstance(self.trusted, Authority):
            keys = self.trusted.fingerprint()
        else:
            keys = tuple(sorted((name, public_key_b64(key)) for name, key in (self.trusted or {}).items()))
        return keys, self.unit_id, self.groups, self.prefix, str(self.quiet_hours), str(self.unit_tz)

    def unit(self) -> UnitContext:
        return UnitContext(self.unit_id, self.groups, self.prefix,
                           clock_trusted=self.clock_trusted and self.now is not None)

    def judging_time(self) -> datetime:
        return self.now if self.now is not None else datetime.now(timezone.utc)


@dataclass(frozen=True)
class _Held:
    schedule: Schedule
    raw: bytes


def topic_file_name(topic: str) -> str:
    return hashlib.sha256(topic.encode("utf-8", "surrogatepass")).hexdigest()[:32] + ".json"


def known_signature(raw: bytes, authority: Authority):
    """The cheap check before parsing: one valid signature by a key the authority knows."""
    return known_signatures(raw, authority)[0]


def known_signatures(raw: bytes, authority: Authority):
    """`known_signature` and the checks it made (for `judge(checks=...)`: each signature
    verified once)."""
    envelope = read_envelope(raw)
    checks = check_signatures(envelope, authority.ring())
    if any(c.status == "valid" for c in checks):
        return envelope, checks
    bad = [c.key for c in checks if c.status == "bad"]
    if bad:
        raise SignatureError(f"bad signature: it does not match the payload under key {bad[0]!r}")
    if authority.lost:
        raise SignatureError("no trust document in force (trust was in force on this unit); waiting for one "
                             "verified by the roots")
    names = ", ".join(repr(c.key) for c in checks)
    raise SignatureError(f"key {names} is not trusted by this unit (unknown key)")


def _verify(topic: str, raw: bytes, context: _Context) -> Schedule:
    """Every check a unit makes on a schedule, in the order SPEC lists the refusals."""
    authority = context.trusted if isinstance(context.trusted, Authority) else None
    envelope = None
    if context.trusted is None:
        payload = read_envelope(raw).payload  # loading on the stored word: see the module doc
    elif authority is not None:
        envelope = known_signature(raw, authority)
        payload = envelope.payload
    else:
        payload, _ = open_envelope(raw, context.trusted)
    schedule = parse_schedule(payload)
    if context.unit_id is not None:
        check_targets(schedule, context.unit_id, context.groups, topic, context.prefix)
        check_quiet_hours(schedule, context.quiet_hours, context.unit_tz)
        if authority is not None:
            judge(envelope, schedule_subject(schedule, topic), authority, now=context.judging_time(),
                  context=context.unit()).check()
    return schedule


class ScheduleStore:
    def __init__(self, folder, *, trusted=None, unit_id=None, groups=(), prefix="loaxa",
                 quiet_hours=None, unit_tz=None, now=None, clock_trusted=True, on_corrupt=None):
        self.folder = Path(folder)
        self._on_corrupt = on_corrupt or (lambda path, moved_to, why: None)
        self._topics_dir = self.folder / "topics"
        self._versions_path = self.folder / "versions.json"
        self._lock = threading.RLock()  # the MQTT thread offers while the planner reads
        self._held: dict[str, _Held] = {}
        self._versions: dict[str, tuple[int, str]] = {}
        self._revoked: dict[str, str] = {}  # payload digest -> why a trust change took it out of force
        self._checked = None  # fingerprint of the context the held documents passed
        self.load(trusted=trusted, unit_id=unit_id, groups=groups, prefix=prefix,
                  quiet_hours=quiet_hours, unit_tz=unit_tz, now=now, clock_trusted=clock_trusted)

    # ---- loading ----
    def load(self, *, trusted=None, unit_id=None, groups=(), prefix="loaxa", quiet_hours=None,
             unit_tz=None, now=None, clock_trusted=True) -> None:
        """(Re)read the folder; with `trusted`, every stored envelope is verified again."""
        if isinstance(trusted, Authority) and trusted.lost:
            trusted = None  # trust lost: keep playing what is stored, on its stored word (module doc)
        context = _Context(trusted, unit_id, tuple(groups), prefix, quiet_hours, unit_tz, now, clock_trusted)
        with self._lock:
            self._versions = self._read_versions()
            self._held = {}
            for path in sorted(self._topics_dir.glob("*.json")):
                self._load_one(path, context)
            self._checked = context.fingerprint() if trusted is not None else None
            if trusted is None and self._held:
                log.warning("%d stored schedule(s) loaded without re-verification (no trusted keys "
                            "given); they are re-checked on the first offer", len(self._held))

    def _read_versions(self) -> dict[str, tuple[int, str]]:
        try:
            data = json.loads(self._versions_path.read_text(encoding="utf-8"))
            return {doc_id: (int(rec["version"]), str(rec["digest"]))
                    for doc_id, rec in data["versions"].items()}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:
            log.error("%s is unreadable (%s); rebuilding it from the stored documents",
                      self._versions_path, exc)
            self._set_aside(self._versions_path, exc)
            return {}

    def _read_topic_file(self, path: Path) -> tuple[str, bytes]:
        data = json.loads(path.read_text(encoding="utf-8"))
        topic, envelope = data["topic"], data["envelope"]
        if not isinstance(topic, str) or not isinstance(envelope, str) or topic_file_name(topic) != path.name:
            raise ValueError("not a stored schedule file")
        return topic, envelope.encode("utf-8")

    def _set_aside(self, path: Path, exc: Exception) -> None:
        moved_to = quarantine(path)
        try:
            self._on_corrupt(path, moved_to, str(exc))
        except Exception:  # noqa: BLE001 - loading goes on without the report
            log.exception("could not report the damaged %s", path.name)

    def _load_one(self, path: Path, context: _Context) -> None:
        try:
            topic, raw = self._read_topic_file(path)
        except (OSError, ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:
            log.error("stored schedule %s dropped: unreadable (%s); set aside for inspection", path.name, exc)
            self._set_aside(path, exc)
            return
        try:
            schedule = _verify(topic, raw, context)
        except (OSError, ValueError, TypeError, KeyError, LoaxaError, RecursionError) as exc:
            log.warning("stored schedule %s dropped: %s", path.name, exc)
            return
        if not self._reconcile_version(schedule):
            log.warning("stored schedule %s (%s version %d) dropped: another document was accepted "
                        "under that version", path.name, schedule.id, schedule.version)
            return
        self._held[topic] = _Held(schedule, raw)

    def _reconcile_version(self, schedule: Schedule) -> bool:
        """Make versions.json at least as new as a stored document (a crash may sit between them)."""
        recorded = self._versions.get(schedule.id)
        if recorded is not None and recorded[0] == schedule.version:
            return recorded[1] == schedule.digest
        if recorded is None or recorded[0] < schedule.version:
            try:
                self._write_versions({**self._versions, schedule.id: (schedule.version, schedule.digest)})
            except OSError as exc:
                log.error("cannot update %s: %s", self._versions_path, exc)
        return True

    # ---- offering ----
    def offer(self, topic: str, raw: bytes, *, trusted, unit_id, groups, prefix, quiet_hours,
              unit_tz, now: datetime | None = None, clock_trusted: bool = True) -> Offer:
        """Accept a retained schedule for `topic`, or raise a Rejected saying why (nothing changes)."""
        if not raw:
            return Offer("empty", None)  # unsigned, so it revokes nothing
        context = _Context(trusted, unit_id, tuple(groups), prefix, quiet_hours, unit_tz, now, clock_trusted)
        raw = encode_utf8(raw, "envelope") if isinstance(raw, str) else bytes(raw)
        with self._lock:
            self._recheck(context)
            try:
                schedule = _verify(topic, raw, context)
            except Rejected as exc:
                raise self._quietly_if_revoked(raw, exc) from exc
            self._revoked.pop(schedule.digest, None)
            held = self._held.get(topic)
            if held is not None and held.schedule.digest == schedule.digest:
                if held.raw == raw:
                    return Offer("unchanged", held.schedule)
                self._persist(topic, raw, schedule)  # the same payload, signed again: keep this envelope
                self._held[topic] = _Held(schedule, raw)
                return Offer("unchanged", schedule)
            self._check_version(schedule)
            self._persist(topic, raw, schedule)
            self._held[topic] = _Held(schedule, raw)
            return Offer("accepted", schedule)

    def _quietly_if_revoked(self, raw: bytes, exc: Rejected) -> Rejected:
        try:
            digest = hashlib.sha256(encode_utf8(read_envelope(raw).payload, "payload")).hexdigest()
        except Rejected:
            return exc
        if digest in self._revoked and not isinstance(exc, StorageError):
            return StillRevoked(f"still out of force since a trust change: {exc}")
        return exc

    def revoke(self, trusted, *, unit_id, groups, prefix, quiet_hours, unit_tz, now: datetime | None = None,
               clock_trusted: bool = True) -> list[tuple[str, Schedule, str]]:
        """Take out of force every held document that fails under `trusted` now (a new trust
        version, a key past its expiry): [(topic, schedule, why)] for `trust.revoked`."""
        context = _Context(trusted, unit_id, tuple(groups), prefix, quiet_hours, unit_tz, now, clock_trusted)
        with self._lock:
            self._checked = None
            return self._recheck(context)

    def _recheck(self, context: _Context) -> list[tuple[str, Schedule, str]]:
        """Drop held documents that no longer pass, once per new trust/identity context."""
        if isinstance(context.trusted, Authority) and context.trusted.lost:
            return []  # nothing can be judged until the roots send trust again; keep what plays
        fingerprint = context.fingerprint()
        if fingerprint == self._checked:
            return []
        left = []
        for topic, held in list(self._held.items()):
            try:
                _verify(topic, held.raw, context)
            except Rejected as exc:
                log.warning("schedule %s on %s leaves force: %s", held.schedule.id, topic, exc)
                del self._held[topic]
                self._revoked[held.schedule.digest] = str(exc)
                left.append((topic, held.schedule, str(exc)))
        if left:
            self._recompute_versions({schedule.id for _, schedule, _ in left})
        self._checked = fingerprint
        return left

    def _recompute_versions(self, ids) -> None:
        """The high-water mark of each id whose documents left force, from those still held."""
        versions = dict(self._versions)
        for doc_id in ids:
            still = [h.schedule for h in self._held.values() if h.schedule.id == doc_id]
            best = max(still, key=lambda s: s.version, default=None)
            if best is None:
                versions.pop(doc_id, None)
            else:
                versions[doc_id] = (best.version, best.digest)
        try:
            self._write_versions(versions)
        except OSError as exc:  # the marks on disk stay higher: safe, only stricter
            log.error("cannot update %s: %s", self._versions_path, exc)
            self._versions = versions

    def _check_version(self, schedule: Schedule) -> None:
        recorded = self._versions.get(schedule.id)
        if recorded is None:
            return
        version, digest = recorded
        if schedule.version < version or (schedule.version == version and schedule.digest != digest):
            raise VersionError(f"{schedule.id}: version {schedule.version} is not newer than version "
                               f"{version} already accepted")

    def _persist(self, topic: str, raw: bytes, schedule: Schedule) -> None:
        recorded = self._versions.get(schedule.id)
        try:
            if recorded is None or recorded[0] < schedule.version:
                self._write_versions({**self._versions, schedule.id: (schedule.version, schedule.digest)})
            stored = {"topic": topic, "envelope": raw.decode("utf-8")}
            atomic_write(self._topics_dir / topic_file_name(topic),
                         json.dumps(stored, ensure_ascii=False).encode("utf-8"))
        except OSError as exc:
            raise StorageError(f"{schedule.id} version {schedule.version} could not be stored: "
                               f"{exc.strerror or exc}") from exc

    def _write_versions(self, versions: dict[str, tuple[int, str]]) -> None:
        data = {"format": VERSIONS_FORMAT,
                "versions": {doc_id: {"version": v, "digest": d} for doc_id, (v, d) in sorted(versions.items())}}
        atomic_write(self._versions_path, json.dumps(data, indent=1).encode("utf-8"))
        self._versions = versions

    # ---- reading ----
    def in_force(self) -> list[Schedule]:
        """The union of the documents held on the topics; per id only the highest version accepted."""
        with self._lock:
            best: dict[str, Schedule] = {}
            for held in self._held.values():
                schedule = held.schedule
                recorded = self._versions.get(schedule.id)
                if recorded is not None and schedule.version < recorded[0]:
                    continue  # superseded elsewhere: playing it would be a rollback
                best.setdefault(schedule.id, schedule)
            return sorted(best.values(), key=lambda s: s.id)

    def topics_in_force(self) -> dict[str, Schedule]:
        """Each topic and the document held there (for status and `sync`)."""
        with self._lock:
            return {topic: held.schedule for topic, held in sorted(self._held.items())}

    def versions(self) -> dict[str, int]:
        """The highest version accepted per document id."""
        with self._lock:
            return {doc_id: version for doc_id, (version, _) in self._versions.items()}
