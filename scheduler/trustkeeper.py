"""The unit's trust in one place, for the daemon to call: trust documents in, events out.

`TrustKeeper` joins the TrustStore (the trust in force) and the ScheduleStore (the
schedules in force) so that the daemon only forwards messages and publishes events:
- `on_trust(topic, raw)`: a retained trust document arrives; events `trust.accepted`
  (`version`), `trust.rejected` (`detail` says why), and `trust.revoked` (`schedules`: the
  ids that left force under the new trust, at once);
- `offer_schedule(topic, raw)`: a schedule, judged under the trust in force;
- `sweep()`: every minute or so: schedules whose signing key expired leave force
  (`trust.revoked`);
- `judge_command(...)`: a command's verdict under the trust in force when it arrives;
- `faults()`: `trust.expired` while an expired trust document stays in force.
`operator_verdicts(...)` is the operator tools' side: how a signed document fares on
each topic it is about to be published to, under a given trust document.
Time is always an argument.
"""

from dataclasses import dataclass, field
from datetime import datetime

from loaxa.errors import Rejected
from scheduler.command import parse_command
from scheduler.document import parse_schedule
from scheduler.envelope import Envelope, read_envelope
from scheduler._json import strict_loads
from scheduler.judge import (Authority, UnitContext, Verdict, command_subject, judge, release_subject,
                             schedule_subject)
from scheduler.store import Offer, ScheduleStore
from scheduler.trust import RootSet, TrustDocument
from scheduler.truststore import TrustStore

__all__ = ["Event", "TrustKeeper", "UnitIdentity", "operator_verdicts"]


@dataclass(frozen=True)
class Event:
    kind: str
    detail: str
    fields: dict = field(default_factory=dict)
    left: tuple = ()  # trust.revoked: ((schedule id, version), ...) that left force, for the player

    def to_json(self) -> dict:
        return {"kind": self.kind, "detail": self.detail, **self.fields}


@dataclass(frozen=True)
class UnitIdentity:
    unit_id: str
    groups: tuple
    prefix: str = "loaxa"
    quiet_hours: object = None
    unit_tz: object = None


class TrustKeeper:
    def __init__(self, trust: TrustStore, schedules: ScheduleStore, *, identity: UnitIdentity, legacy: dict,
                 config_roots: RootSet | None = None, min_version: int = 0):
        self.trust = trust
        self.schedules = schedules
        self.identity = identity
        self.legacy = dict(legacy or {})
        self.config_roots = config_roots
        self.min_version = min_version
        self._authority = None  # ((document, was_in_force), Authority)

    def authority(self) -> Authority:
        """Whose signatures count now; made again only when the trust in force changes
        (commands ask for it on every message, floods included)."""
        key = (self.trust.document, self.trust.was_in_force)
        cached = self._authority
        if cached is None or cached[0][0] is not key[0] or cached[0][1] != key[1]:
            cached = self._authority = (key, self.trust.authority(self.legacy))
        return cached[1]

    def _store_context(self, now: datetime, clock_trusted: bool) -> dict:
        i = self.identity
        return {"unit_id": i.unit_id, "groups": tuple(i.groups), "prefix": i.prefix, "quiet_hours": i.quiet_hours,
                "unit_tz": i.unit_tz, "now": now, "clock_trusted": clock_trusted}

    def _unit_context(self, clock_trusted: bool) -> UnitContext:
        return UnitContext(self.identity.unit_id, tuple(self.identity.groups), self.identity.prefix,
                           clock_trusted=clock_trusted)

    # ---- trust documents ----
    def on_trust(self, topic: str, raw, *, now: datetime, clock_trusted: bool) -> list[Event]:
        try:
            offer = self.trust.offer(topic, raw, config_roots=self.config_roots, legacy=self.legacy,
                                     min_version=self.min_version, now=now, clock_trusted=clock_trusted,
                                     unit_id=self.identity.unit_id, groups=self.identity.groups,
                                     prefix=self.identity.prefix)
        except Rejected as exc:
            return [Event("trust.rejected", f"{topic}: {exc}")]
        if offer.status != "accepted":
            return []
        doc = offer.document
        detail = f"trust {doc.id} version {doc.version} in force (from {topic})"
        if offer.roots_changed:
            detail += "; new root set"
        events = [Event("trust.accepted", detail, {"version": doc.version})]
        return events + self._revoke(now, clock_trusted, f"under trust version {doc.version}")

    def sweep(self, *, now: datetime, clock_trusted: bool) -> list[Event]:
        """Take out of force what no longer passes now (keys past their expiry)."""
        return self._revoke(now, clock_trusted, "at the trust in force now")

    def _revoke(self, now: datetime, clock_trusted: bool, when: str) -> list[Event]:
        left = self.schedules.revoke(self.authority(), **self._store_context(now, clock_trusted))
        if not left:
            return []
        ids = sorted({schedule.id for _, schedule, _ in left})
        why = "; ".join(f"{schedule.id} version {schedule.version} on {topic}: {reason}"
                        for topic, schedule, reason in left)
        return [Event("trust.revoked", f"left force {when}: {why}",
                      {"schedules": ids, "version": self.trust.version},
                      tuple((schedule.id, schedule.version) for _, schedule, _ in left))]

    def faults(self, now: datetime, clock_trusted: bool) -> list[str]:
        return self.trust.faults(now, clock_trusted)

    # ---- schedules and commands ----
    def offer_schedule(self, topic: str, raw, *, now: datetime, clock_trusted: bool) -> Offer:
        return self.schedules.offer(topic, raw, trusted=self.authority(), **self._store_context(now, clock_trusted))

    def judge_command(self, envelope, command, topic: str, *, now: datetime, clock_trusted: bool,
                      emergency_playing: bool = False) -> Verdict:
        subject = command_subject(command, topic, emergency_playing=emergency_playing)
        return judge(envelope, subject, self.authority(), now=now, context=self._unit_context(clock_trusted))


def operator_verdicts(raw, trust: TrustDocument, topics, *, now: datetime, fleet=None, prefix: str = "loaxa",
                      emergency_playing: bool = False) -> list[tuple[str, Verdict]]:
    """How a signed schedule, command or release fares on each topic under `trust`, judged as the
    units there will judge it (`fleet`: {unit id: groups} for `unit:` targets)."""
    envelope = raw if isinstance(raw, Envelope) else read_envelope(raw)
    doc = strict_loads(envelope.payload, "document")
    kind = doc.get("type") if isinstance(doc, dict) else None
    authority = Authority.from_trust(trust)
    context = UnitContext(None, prefix=prefix, fleet=dict(fleet or {}))
    verdicts = []
    for topic in topics:
        if kind == "command":
            subject = command_subject(parse_command(envelope.payload, now), topic, emergency_playing=emergency_playing)
        elif kind == "release":
            from updater.release import parse_release
            release = parse_release(envelope.payload)
            subject = release_subject(f"{release.id} seq {release.seq} ({release.version})", release.targets, topic)
        else:
            subject = schedule_subject(parse_schedule(envelope.payload), topic)
        verdicts.append((topic, judge(envelope, subject, authority, now=now, context=context)))
    return verdicts
