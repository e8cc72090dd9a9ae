"""Who may have signed this: a pure judgement of an envelope under the trust in force.

`judge(envelope, subject, authority, now=..., context=...)` returns a `Verdict` modelled
on python-tuf's VerificationResult: per requirement (a kind and its list of roles) which
keys met which role and which roles are missing, plus every signature that did not count
and why (unknown key, bad signature, same public key as another, expired, wrong slot,
outside its scope naming the place that crossed it). Nothing here reads a clock or a file.

- Roles: each kind of document needs a list of roles (`require`, else DEFAULT_REQUIRE),
  each met by a *different* key: a maximum bipartite matching of counted keys to role
  slots, so A{editor, approver} + B{editor} meet [editor, approver] and one key holding
  both roles does not count twice. A document needing several kinds (a schedule with
  normal and emergency items) must meet each kind's list; each list is matched on its own.
- Scope: by whole path segments (`dak-lak-2` is not inside `dak-lak`). The topic, each
  `group:` target, each `unit:` target naming this unit (judged by the unit's groups; by
  the fleet database's groups in operator tools) and a schedule id's leading group path
  (`dak-lak/lak` in `dak-lak/lak/2026-w48`) must lie inside the scope of a counted key.
- Legacy `[trust].keys` (no trust ever in force) are full-power keys: every role, every
  scope, every slot, no expiry.
"""

from dataclasses import dataclass, field
from datetime import datetime

from loaxa.errors import SignatureError
from scheduler.envelope import Envelope, check_signatures, read_envelope
from scheduler.keys import public_key_b64
from scheduler.targets import is_group_path, parse_target
from scheduler.trust import ROLES, TrustDocument, TrustKey, topic_parts

__all__ = ["DEFAULT_REQUIRE", "Authority", "Requirement", "Subject", "Uncounted", "UnitContext", "Verdict",
           "assign_roles", "command_subject", "high_water", "id_group_path", "is_inside", "judge",
           "release_subject", "schedule_kinds", "schedule_subject", "schedules_out_of_force"]

DEFAULT_REQUIRE = {
    "schedule": ("editor",), "emergency": ("emergency",), "announce": ("approver",), "play": ("operator",),
    "stop": ("operator",), "set_volume": ("operator",), "ping": ("technician",), "selftest": ("technician",),
    "sync": ("technician",), "resend": ("operator",), "release": ("release",),
}


@dataclass(frozen=True)
class Authority:
    """The keys that may count and what each kind requires: a trust document, or legacy keys."""
    keys: dict  # name -> TrustKey
    require: dict = field(default_factory=dict)
    legacy: bool = False
    version: int | None = None  # of the trust document in force
    lost: bool = False  # trust was in force once, and no trust document is held now

    @classmethod
    def from_trust(cls, doc: TrustDocument) -> "Authority":
        return cls(dict(doc.keys), dict(doc.require), version=doc.version)

    @classmethod
    def from_legacy(cls, trusted: dict) -> "Authority":
        """`[trust].keys` as `{name: Ed25519PublicKey}`: every role, whole scope."""
        keys = {name: TrustKey(name=name, pub=public_key_b64(key), public_key=key, roles=frozenset(ROLES), scope=())
                for name, key in trusted.items()}
        return cls(keys, legacy=True)

    @classmethod
    def nothing(cls) -> "Authority":
        """Trust was in force and its document is lost: no key counts until the roots send one."""
        return cls({}, lost=True)

    def fingerprint(self) -> tuple:
        """Equal for two authorities that judge every envelope alike."""
        keys = tuple(sorted((k.name, k.pub, tuple(sorted(k.roles)), k.scope, str(k.expires_at), k.slots)
                            for k in self.keys.values()))
        return ("authority", self.legacy, self.lost, self.version, keys, tuple(sorted(self.require.items())))

    def roles_for(self, kind: str) -> tuple[str, ...]:
        return tuple(self.require.get(kind, DEFAULT_REQUIRE[kind]))

    def ring(self) -> dict:
        return {name: key.public_key for name, key in self.keys.items()}


@dataclass(frozen=True)
class UnitContext:
    unit_id: str | None
    groups: tuple = ()
    prefix: str = "loaxa"
    clock_trusted: bool = True
    fleet: dict | None = None  # operator tools: {unit id: its groups}, for foreign unit: targets

    def groups_of(self, unit_id: str):
        """The groups a unit is judged by, or None when nobody here knows that unit."""
        if unit_id == self.unit_id:
            return tuple(self.groups)
        if self.fleet is not None and unit_id in self.fleet:
            return tuple(self.fleet[unit_id])
        return None


@dataclass(frozen=True)
class Subject:
    """What is being signed, as far as trust cares."""
    what: str  # for messages: `schedule dak-lak/2026-w48 version 3`
    kinds: tuple[str, ...]
    targets: tuple[str, ...] = ()
    topic: str | None = None
    id_path: str | None = None  # a schedule id, whose leading group path must be in scope


@dataclass(frozen=True)
class Requirement:
    kind: str
    roles: tuple[str, ...]
    assignment: tuple[tuple[str, str], ...]  # (role, key name) for each role met
    missing: tuple[str, ...]

    @property
    def met(self) -> bool:
        return not self.missing


@dataclass(frozen=True)
class Uncounted:
    key: str
    reason: str  # one line: "unknown key", "outside its scope: ...", "expired at ..."
    crossed: str | None = None  # the place outside the key's scope, for scope refusals


@dataclass(frozen=True)
class Verdict:
    subject: Subject
    requirements: tuple[Requirement, ...]
    counted: tuple[str, ...]
    uncounted: tuple[Uncounted, ...]

    @property
    def ok(self) -> bool:
        return all(r.met for r in self.requirements)

    @property
    def missing(self) -> tuple[tuple[str, str], ...]:
        """(kind, role) for every role not met."""
        return tuple((r.kind, role) for r in self.requirements for role in r.missing)

    def reason(self) -> str:
        """One line: what is missing, what counted, and why the other signatures did not."""
        if self.ok:
            return f"{self.subject.what}: signed as required"
        parts = []
        for req in self.requirements:
            if req.met:
                continue
            met = ", ".join(f"{key} as {role}" for role, key in req.assignment) or "none"
            parts.append(f"{req.kind} needs {'+'.join(req.roles)}: missing role {', '.join(req.missing)} "
                         f"(counted: {met})")
        line = f"{self.subject.what}: " + "; ".join(parts)
        if self.uncounted:
            line += "; not counted: " + ", ".join(f"{u.key} ({u.reason})" for u in self.uncounted)
        return line

    def check(self) -> "Verdict":
        if not self.ok:
            raise SignatureError(self.reason())
        return self


# ---- subjects ----

def schedule_kinds(schedule) -> tuple[str, ...]:
    """`schedule` for normal/priority items (and for an empty revocation), `emergency` for
    emergency items; a schedule holding both needs both."""
    priorities = {item.priority for item in schedule.items}
    kinds = []
    if priorities - {"emergency"} or not priorities:
        kinds.append("schedule")
    if "emergency" in priorities:
        kinds.append("emergency")
    return tuple(kinds)


def schedule_subject(schedule, topic: str | None) -> Subject:
    return Subject(f"schedule {schedule.id} version {schedule.version}", schedule_kinds(schedule),
                   tuple(schedule.targets), topic, schedule.id)


def command_kinds(command, emergency_playing: bool = False) -> tuple[str, ...]:
    action = command.action
    if action == "play":
        play = command.play
        kinds = ["announce"] if play.source in ("url", "stream") else []
        if play.priority == "emergency":
            kinds.append("emergency")
        elif play.source == "media":
            kinds.append("play")
        return tuple(kinds)
    if action == "stop":
        return ("emergency",) if emergency_playing else ("stop",)
    return (action,)


def command_subject(command, topic: str | None, *, emergency_playing: bool = False) -> Subject:
    return Subject(f"command {command.id} ({command.action})", command_kinds(command, emergency_playing),
                   (command.target,), topic)


def release_subject(release_id: str, targets, topic: str | None) -> Subject:
    return Subject(f"release {release_id}", ("release",), tuple(targets), topic)


# ---- scope ----

def id_group_path(doc_id: str) -> str | None:
    """`dak-lak/lak/2026-w48` -> `dak-lak/lak`; None when the id has no group path."""
    head, sep, _ = doc_id.rpartition("/")
    return head if sep and is_group_path(head) else None


def _group_inside(path: str, scope_path: str) -> bool:
    return path == scope_path or path.startswith(scope_path + "/")


def is_inside(place: str, scope_entry: str, groups_of) -> bool:
    """Is a target (`group:P` or `unit:U`) inside one scope entry, by whole segments?

    `groups_of(unit_id)` gives a unit's own groups (None when unknown): a unit lies
    inside `group:S` when one of its groups does."""
    kind, name = parse_target(place)
    scope_kind, scope_name = parse_target(scope_entry)
    if scope_kind == "unit":
        return kind == "unit" and name == scope_name
    if kind == "group":
        return _group_inside(name, scope_name)
    groups = groups_of(name) or ()
    return any(_group_inside(group, scope_name) for group in groups)


def _places(subject: Subject, context: UnitContext) -> list[tuple[str, str | None]]:
    """(label, target) of everything that must lie in scope; target None: in no scope at all."""
    places = []
    if subject.topic is not None:
        parts = topic_parts(context.prefix, subject.topic)
        target, label = (parts[0] if parts else None), f"topic {subject.topic}"
        if (context.unit_id is None and target and target.startswith("unit:")
                and context.groups_of(target[len("unit:"):]) is None):  # an operator tool's blind spot
            label += " (its unit is not in the fleet database)"
        places.append((label, target))
    for target in subject.targets:
        kind, name = parse_target(target)
        if kind == "group":
            places.append((target, target))
        elif context.groups_of(name) is not None:
            places.append((target, target))
        elif context.unit_id is None:  # an operator tool that does not know this unit
            places.append((f"{target} (not in the fleet database)", None))
    if subject.id_path is not None:
        group = id_group_path(subject.id_path)
        places.append((f"id {subject.id_path}" + ("" if group else " (no group path)"),
                       f"group:{group}" if group else None))
    return places


def _crossed(key: TrustKey, places, context: UnitContext) -> str | None:
    for label, target in places:
        if target is None or not any(is_inside(target, entry, context.groups_of) for entry in key.scope):
            return label
    return None


def _slot_refusal(key: TrustKey, subject: Subject, context: UnitContext) -> str | None:
    if subject.topic is None:
        return None
    parts = topic_parts(context.prefix, subject.topic)
    slot = parts[2] if parts else None
    if key.slots is None:
        return f"slot {slot!r} is not the plain topic this key signs for" if slot is not None else None
    if slot not in key.slots:
        return f"may sign only for slots {', '.join(key.slots)}, not the " + (
            f"slot {slot!r}" if slot is not None else "plain topic")
    return None


# ---- roles ----

def assign_roles(roles, holders) -> dict[int, str]:
    """A maximum matching of role slots to distinct keys: {role index: key name}.

    `holders` is [(key name, set of roles)], one entry per distinct public key."""
    owner: dict[str, int] = {}  # key name -> role index it serves

    def place(i: int, tried: set) -> bool:
        for name, held in holders:
            if roles[i] in held and name not in tried:
                tried.add(name)
                if name not in owner or place(owner[name], tried):
                    owner[name] = i
                    return True
        return False

    for i in range(len(roles)):
        place(i, set())
    return {i: name for name, i in owner.items()}


def _requirement(kind: str, roles: tuple[str, ...], holders) -> Requirement:
    matched = assign_roles(roles, holders)
    assignment = tuple((roles[i], matched[i]) for i in sorted(matched))
    missing = tuple(roles[i] for i in range(len(roles)) if i not in matched)
    return Requirement(kind, roles, assignment, missing)


# ---- the judgement ----

def _count(envelope: Envelope, subject: Subject, authority: Authority, now: datetime,
           context: UnitContext, checks=None) -> tuple[list[TrustKey], list[Uncounted]]:
    counted, uncounted, seen = [], [], {}
    places = _places(subject, context)
    for check in checks if checks is not None else check_signatures(envelope, authority.ring()):
        if check.status == "unknown":
            why = "no trust document in force" if authority.lost else "unknown key"
            uncounted.append(Uncounted(check.key, why))
            continue
        if check.status == "bad":
            uncounted.append(Uncounted(check.key, "bad signature"))
            continue
        key = authority.keys[check.key]
        if key.pub in seen:
            uncounted.append(Uncounted(check.key, f"the same public key as {seen[key.pub]}; counted once"))
            continue
        seen[key.pub] = key.name
        refusal = None if authority.legacy else _refusal(key, subject, places, now, context)
        if refusal is not None:
            uncounted.append(refusal)
        else:
            counted.append(key)
    return counted, uncounted


def _refusal(key: TrustKey, subject: Subject, places, now: datetime, context: UnitContext) -> Uncounted | None:
    if context.clock_trusted and key.expires_at is not None and now >= key.expires_at:
        return Uncounted(key.name, f"expired at {key.expires_at.isoformat()}")
    slot = _slot_refusal(key, subject, context)
    if slot is not None:
        return Uncounted(key.name, slot)
    crossed = _crossed(key, places, context)
    if crossed is not None:
        return Uncounted(key.name, f"outside its scope: {crossed} is not inside {', '.join(key.scope)}", crossed)
    return None


def judge(envelope, subject: Subject, authority: Authority, *, now: datetime, context: UnitContext,
          checks=None) -> Verdict:
    """Which requirements of `subject` the envelope's signatures meet under `authority`.

    `envelope` is an Envelope or its raw bytes; malformed bytes raise the envelope's
    own DocumentError/SignatureError. `checks`: `check_signatures(envelope,
    authority.ring())` already made by the caller (each signature is verified once)."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be an aware datetime")
    if not isinstance(envelope, Envelope):
        envelope = read_envelope(envelope)
    counted, uncounted = _count(envelope, subject, authority, now, context, checks)
    holders = [(key.name, key.roles) for key in counted]
    requirements = tuple(_requirement(kind, authority.roles_for(kind), holders) for kind in subject.kinds)
    return Verdict(subject, requirements, tuple(k.name for k in counted), tuple(uncounted))


# ---- rotation ----

def schedules_out_of_force(held, authority: Authority, *, now: datetime, context: UnitContext) -> list:
    """Of `held` [(topic, envelope bytes or Envelope, Schedule)], those that no longer meet
    their requirement under `authority` at `now`: [(topic, schedule, verdict)]."""
    leaving = []
    for topic, envelope, schedule in held:
        verdict = judge(envelope, schedule_subject(schedule, topic), authority, now=now, context=context)
        if not verdict.ok:
            leaving.append((topic, schedule, verdict))
    return leaving


def high_water(schedules) -> dict[str, tuple[int, str]]:
    """The highest (version, digest) per schedule id among the documents still valid."""
    marks: dict[str, tuple[int, str]] = {}
    for schedule in schedules:
        mark = marks.get(schedule.id)
        if mark is None or schedule.version > mark[0]:
            marks[schedule.id] = (schedule.version, schedule.digest)
    return marks
