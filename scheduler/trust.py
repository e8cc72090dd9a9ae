"""Trust documents: who may sign what, where, until when; verified against the roots.

    {"type": "trust", "id": "dak-lak", "version": 7, "targets": ["group:dak-lak"],
     "issued_at": "...", "expires_at": "...",
     "keys": {"lak-editor": {"pub": "<b64>", "roles": ["editor"], "scope": ["group:dak-lak/lak"],
                             "expires_at": "...", "slots": ["national"]}},
     "require": {"schedule": ["editor", "approver"]},
     "root": null | {"keys": {"<name>": "<b64>"}, "threshold": 2}}

`parse_trust(text)` returns a `TrustDocument` or raises one DocumentError naming the
field. `verify_trust(...)` is every check a unit makes before a trust document goes into
force: root signatures at threshold (distinct public keys), rotation (old AND new
threshold), bootstrap from legacy keys, version (newer than the one in force, not below
`min_version`), expiry on arrival with a trusted clock, targets and topic. Pure: `now`,
the roots and the document in force are arguments.

Choices beyond SPEC (docs/design.md, "Trust model"):
- `require` and `root` may be left out (meaning `{}` and `null`); `expires_at` is required.
- Two names in `keys` (or in a root set) with one public key are refused: keys are
  distinct by public key, so the second name could only mislead.
- A `keys` entry may not hold a root key's public key: root keys sign only trust documents.
- A `require` list holds 1-8 roles (a role may repeat: [editor, editor] asks for two
  editor keys); no envelope carries more than 8 signatures.
- `scope` entries are `group:PATH` or `unit:ID`; `slots` given means those slots only
  (no `slots`: the plain topic only).
"""

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime

from loaxa.errors import DocumentError, TargetError, TrustError, VersionError
from scheduler._json import describe
from scheduler.document import (ISSUED_AT_PATTERN, MAX_VERSION, _aware_datetime, _check_fields, _fail, _integer,
                                _join, _list, _load, _object, _schedule_id, _string, _targets)
from scheduler.envelope import MAX_SIGNATURES, Envelope, check_signatures, read_envelope
from scheduler.keys import is_valid_key_name, parse_public_key, public_key_b64
from scheduler.targets import parse_target, unit_targets

__all__ = ["KINDS", "ROLES", "SLOT_PATTERN", "RootSet", "TrustDocument", "TrustKey", "VerifiedTrust",
           "check_root_signatures", "parse_trust", "root_signers", "roots_from_config", "topic_parts",
           "verify_trust"]

ROLES = ("editor", "approver", "operator", "emergency", "technician", "release")
# What `require` may name: SPEC's kinds, plus `stop` (a stop while no emergency plays).
KINDS = ("schedule", "emergency", "announce", "play", "stop", "set_volume", "ping", "selftest", "sync",
         "resend", "release")
SLOT_PATTERN = re.compile(r"[a-z0-9-]{1,32}", re.ASCII)
RESERVED_WORDS = frozenset({"schedule", "cmd", "trust", "release", "track"})
TOPIC_KINDS = ("schedule", "cmd", "trust", "release")
EXAMPLE_TIME = "2027-12-31T00:00:00+07:00"

TOP_REQUIRED = ("type", "id", "version", "targets", "issued_at", "expires_at", "keys")
TOP_OPTIONAL = ("require", "root")
KEY_REQUIRED = ("pub", "roles", "scope")
KEY_OPTIONAL = ("expires_at", "slots")
ROOT_FIELDS = ("keys", "threshold")


@dataclass(frozen=True)
class TrustKey:
    name: str
    pub: str  # base64 of the raw public key, as written
    public_key: object = field(repr=False, compare=False)
    roles: frozenset
    scope: tuple[str, ...]
    expires_at: datetime | None = None
    slots: tuple[str, ...] | None = None  # None: the plain topic only


@dataclass(frozen=True)
class RootSet:
    keys: dict  # name -> Ed25519PublicKey
    threshold: int

    @classmethod
    def from_mapping(cls, keys: dict, threshold: int, path: str = "root") -> "RootSet":
        """From `{name: "<b64>"}` and a threshold; ValueError naming the entry."""
        parsed = {}
        for name, pub in keys.items():
            try:
                parsed[name] = parse_public_key(pub)
            except ValueError as exc:
                raise ValueError(f"{path}.keys.{name}: {exc}") from exc
        return cls(parsed, threshold)

    @classmethod
    def from_json(cls, block, path: str = "root") -> "RootSet":
        """From a `root` block / root.json: `{"keys": {name: pub}, "threshold": n}`; ValueError says why."""
        if not isinstance(block, dict) or set(block) != {"keys", "threshold"}:
            raise ValueError(f"{path}: expected an object with keys and threshold")
        keys, threshold = block["keys"], block["threshold"]
        if not isinstance(keys, dict) or not keys:
            raise ValueError(f"{path}.keys: expected a non-empty object of name: public key")
        if isinstance(threshold, bool) or not isinstance(threshold, int) or not 1 <= threshold <= len(keys):
            raise ValueError(f"{path}.threshold: must be 1 to the number of root keys ({len(keys)})")
        return cls.from_mapping(keys, threshold, path)

    def fingerprints(self) -> frozenset:
        return frozenset(public_key_b64(k) for k in self.keys.values())

    def to_json(self) -> dict:
        return {"keys": {name: public_key_b64(key) for name, key in sorted(self.keys.items())},
                "threshold": self.threshold}

    def same_as(self, other: "RootSet | None") -> bool:
        return other is not None and self.to_json() == other.to_json()


@dataclass(frozen=True)
class TrustDocument:
    id: str
    version: int
    targets: tuple[str, ...]
    issued_at: datetime
    expires_at: datetime
    keys: dict  # name -> TrustKey
    require: dict  # kind -> tuple of roles
    root: RootSet | None
    payload: str = field(repr=False)
    digest: str = ""

    def expired(self, now: datetime) -> bool:
        return now >= self.expires_at


# ---- parsing ----

def _pub(value, path: str):
    _string(value, path)
    try:
        return parse_public_key(value)
    except ValueError as exc:
        _fail(path, str(exc))


def _roles(value, path: str) -> frozenset:
    roles = set()
    for i, role in enumerate(_list(value, path, non_empty=True)):
        if role not in ROLES:
            _fail(_join(path, i), f"must be one of {', '.join(ROLES)}, got {describe(role)}")
        if role in roles:
            _fail(_join(path, i), f"{role!r} given twice")
        roles.add(role)
    return frozenset(roles)


def _slots(value, path: str) -> tuple[str, ...]:
    slots = []
    for i, slot in enumerate(_list(value, path, non_empty=True)):
        _string(slot, _join(path, i))
        if not SLOT_PATTERN.fullmatch(slot) or slot in RESERVED_WORDS:
            _fail(_join(path, i), f"a slot is [a-z0-9-]{{1,32}} and not one of {', '.join(sorted(RESERVED_WORDS))}, "
                                  f"got {describe(slot)}")
        if slot not in slots:
            slots.append(slot)
    return tuple(slots)


def _distinct_pubs(entries, path: str) -> None:
    seen = {}
    for name, pub in entries:
        if pub in seen:
            _fail(_join(_join(path, name), "pub"), f"the same public key as {seen[pub]!r}; keys are distinct "
                                                   "by public key, give each one name")
        seen[pub] = name


def _key_name(name, path: str) -> str:
    if not is_valid_key_name(name):
        _fail(path, f"a key name is letters, digits, '.', '_' or '-' (at most 64), got {describe(name)}")
    return name


def _trust_key(name: str, value, path: str) -> TrustKey:
    entry = _object(value, path)
    _check_fields(entry, path, KEY_REQUIRED, KEY_OPTIONAL)
    public_key = _pub(entry["pub"], _join(path, "pub"))
    expires_at = None
    if "expires_at" in entry:
        expires_at = _aware_datetime(entry["expires_at"], _join(path, "expires_at"), ISSUED_AT_PATTERN, EXAMPLE_TIME)
    slots = _slots(entry["slots"], _join(path, "slots")) if "slots" in entry else None
    return TrustKey(name=name, pub=public_key_b64(public_key), public_key=public_key,
                    roles=_roles(entry["roles"], _join(path, "roles")),
                    scope=_targets(entry["scope"], _join(path, "scope")), expires_at=expires_at, slots=slots)


def _keys(value, path: str) -> dict:
    keys = {}
    for name, entry in _object(value, path).items():
        entry_path = _join(path, name)
        _key_name(name, entry_path)
        keys[name] = _trust_key(name, entry, entry_path)
    _distinct_pubs(((k.name, k.pub) for k in keys.values()), path)
    return keys


def _require(value, path: str) -> dict:
    require = {}
    for kind, roles in _object(value, path).items():
        kind_path = _join(path, kind)
        if kind not in KINDS:
            _fail(kind_path, f"unknown kind; one of {', '.join(KINDS)}")
        roles = _list(roles, kind_path, non_empty=True)
        if len(roles) > MAX_SIGNATURES:
            _fail(kind_path, f"at most {MAX_SIGNATURES} roles (an envelope holds at most {MAX_SIGNATURES} "
                             f"signatures), got {len(roles)}")
        for i, role in enumerate(roles):
            if role not in ROLES:
                _fail(_join(kind_path, i), f"must be one of {', '.join(ROLES)}, got {describe(role)}")
        require[kind] = tuple(roles)
    return require


def _root(value, path: str) -> RootSet | None:
    if value is None:
        return None
    obj = _object(value, path)
    _check_fields(obj, path, ROOT_FIELDS, ())
    names = _object(obj["keys"], _join(path, "keys"))
    if not names:
        _fail(_join(path, "keys"), "must not be empty")
    if len(names) > MAX_SIGNATURES:
        _fail(_join(path, "keys"), f"at most {MAX_SIGNATURES} root keys, got {len(names)}")
    keys = {}
    for name, pub in names.items():
        entry_path = _join(_join(path, "keys"), name)
        _key_name(name, entry_path)
        keys[name] = _pub(pub, entry_path)
    _distinct_pubs(((n, public_key_b64(k)) for n, k in keys.items()), _join(path, "keys"))
    threshold = _integer(obj["threshold"], _join(path, "threshold"), 1, len(keys),
                         f"must be 1 to the number of root keys ({len(keys)})")
    return RootSet(keys, threshold)


def parse_trust(payload_text: str) -> TrustDocument:
    """Validate a trust document (the exact signed text) and return it parsed."""
    doc, raw = _load(payload_text)
    if "type" in doc and doc["type"] != "trust":  # another kind of document: say so first
        _fail("type", f'expected "trust", got {describe(doc["type"])}')
    _check_fields(doc, "", TOP_REQUIRED, TOP_OPTIONAL)
    issued_at = _aware_datetime(doc["issued_at"], "issued_at", ISSUED_AT_PATTERN, EXAMPLE_TIME)
    expires_at = _aware_datetime(doc["expires_at"], "expires_at", ISSUED_AT_PATTERN, EXAMPLE_TIME)
    if expires_at <= issued_at:
        _fail("expires_at", f"{expires_at.isoformat()} is not after issued_at {issued_at.isoformat()}")
    root = _root(doc.get("root"), "root")
    keys = _keys(doc["keys"], "keys")
    if root is not None:
        _no_root_in_keys(keys, root)
    return TrustDocument(id=_schedule_id(doc["id"], "id"),
                         version=_integer(doc["version"], "version", 1, MAX_VERSION, "must be a positive integer"),
                         targets=_targets(doc["targets"], "targets"), issued_at=issued_at, expires_at=expires_at,
                         keys=keys, require=_require(doc.get("require", {}), "require"), root=root,
                         payload=payload_text, digest=hashlib.sha256(raw).hexdigest())


def _no_root_in_keys(keys: dict, roots: RootSet) -> None:
    fingerprints = roots.fingerprints()
    for key in keys.values():
        if key.pub in fingerprints:
            raise DocumentError(f"keys.{key.name}.pub: is a root key; root keys sign only trust documents")


# ---- topics ----

def topic_parts(prefix: str, topic: str) -> tuple[str, str, str | None] | None:
    """`loaxa/group/a/b/schedule/national` -> ("group:a/b", "schedule", "national"); None if foreign."""
    head = f"{prefix}/"
    if not isinstance(topic, str) or not topic.startswith(head):
        return None
    parts = topic[len(head):].split("/")
    if len(parts) < 3 or parts[0] not in ("unit", "group"):
        return None
    slot = None
    if len(parts) >= 4 and parts[-2] == "schedule" and parts[-1] not in RESERVED_WORDS:
        slot, parts = parts[-1], parts[:-1]
        if not SLOT_PATTERN.fullmatch(slot):
            return None
    kind = parts[-1]
    if kind not in TOPIC_KINDS:
        return None
    target = f"{parts[0]}:{'/'.join(parts[1:-1])}"
    try:
        parse_target(target)
    except ValueError:
        return None
    if parts[0] == "group" and any(s in RESERVED_WORDS for s in parts[1:-1]):
        return None
    return target, kind, slot


# ---- root signatures ----

def root_signers(envelope: Envelope, roots: RootSet) -> list[str]:
    """The names of the root keys with a valid signature, one per distinct public key."""
    signers, seen = [], set()
    for check in check_signatures(envelope, roots.keys):
        if check.status != "valid":
            continue
        fingerprint = public_key_b64(check.public_key)
        if fingerprint not in seen:
            seen.add(fingerprint)
            signers.append(check.key)
    return signers


def _require_threshold(envelope: Envelope, roots: RootSet, which: str) -> None:
    signers = root_signers(envelope, roots)
    if len(signers) < roots.threshold:
        names = ", ".join(signers) if signers else "none"
        raise TrustError(f"signed by {len(signers)} distinct {which} (needs {roots.threshold} of "
                         f"{', '.join(sorted(roots.keys))}; valid: {names})")


def _legacy_signer(envelope: Envelope, legacy: dict) -> str | None:
    return next((c.key for c in check_signatures(envelope, legacy) if c.status == "valid"), None)


def _check_signatures(envelope: Envelope, doc: TrustDocument, roots: RootSet | None, legacy: dict) -> RootSet:
    """The roots in force once `doc` is accepted; TrustError when its signatures fall short."""
    if roots is None:  # bootstrap: a unit with legacy keys only
        if doc.root is None:
            raise TrustError("this unit has no roots yet: its first trust document must carry its roots "
                             "(root is null)")
        if not legacy:
            raise TrustError("this unit has neither roots nor legacy keys; it cannot take a first trust document")
        _require_threshold(envelope, doc.root, "keys of its new root set")
        if _legacy_signer(envelope, legacy) is None:
            raise TrustError("a first trust document must also be signed by one of this unit's legacy "
                             "[trust].keys; none of its signatures is")
        return doc.root
    _require_threshold(envelope, roots, "root keys in force")
    if doc.root is None or doc.root.same_as(roots):
        return roots
    _require_threshold(envelope, doc.root, "keys of the new root set")
    return doc.root


def check_root_signatures(envelope: Envelope, doc: TrustDocument, roots: RootSet | None,
                          legacy: dict | None = None) -> RootSet:
    """The root-signature rules alone (for operator tools before a push): the roots in
    force once `doc` is, or TrustError saying which threshold is not met."""
    return _check_signatures(envelope, doc, roots, dict(legacy or {}))


def _check_targets(doc: TrustDocument, unit_id: str, groups, topic: str, prefix: str) -> None:
    mine = unit_targets(unit_id, groups)
    if not set(doc.targets) & mine:
        raise TargetError(f"targets {', '.join(doc.targets)} name neither unit {unit_id} nor any of its groups")
    parts = topic_parts(prefix, topic)
    if parts is None or parts[1] != "trust" or parts[2] is not None:
        raise TargetError(f"arrived on {topic}, which is not a trust topic")
    if parts[0] not in doc.targets:
        raise TargetError(f"arrived on {topic}, which is not the topic of any of its targets "
                          f"({', '.join(doc.targets)})")
    if parts[0] not in mine:
        raise TargetError(f"arrived on {topic}, which is not one of this unit's topics")


def _check_version(doc: TrustDocument, current_version: int | None, min_version: int) -> None:
    if doc.version < min_version:
        raise VersionError(f"trust version {doc.version} is below this unit's min_version {min_version}")
    if current_version is not None and doc.version <= current_version:
        raise VersionError(f"trust version {doc.version} is not newer than version {current_version} in force")


@dataclass(frozen=True)
class VerifiedTrust:
    document: TrustDocument
    envelope: Envelope
    roots: RootSet  # the roots in force once this document is


def verify_trust(raw, *, roots: RootSet | None, legacy: dict | None, current_version: int | None,
                 min_version: int = 0, now: datetime, clock_trusted: bool, unit_id: str, groups,
                 topic: str, prefix: str = "loaxa") -> VerifiedTrust:
    """Every check before a trust document goes into force; raises a Rejected saying why.

    `roots` is the root set in force (persisted, else the config's; None: bootstrap from
    `legacy`, the `{name: public key}` of `[trust].keys`); `current_version` the version
    of the trust document in force (or of the highest ever accepted)."""
    envelope = read_envelope(raw)
    doc = parse_trust(envelope.payload)
    _check_targets(doc, unit_id, groups, topic, prefix)
    _check_version(doc, current_version, min_version)
    if clock_trusted and doc.expired(now):
        raise TrustError(f"trust version {doc.version} expired at {doc.expires_at.isoformat()} before it arrived")
    roots_after = _check_signatures(envelope, doc, roots, dict(legacy or {}))
    _no_root_in_keys(doc.keys, roots_after)
    return VerifiedTrust(doc, envelope, roots_after)


def roots_from_config(root: dict | None, threshold: int = 1) -> RootSet | None:
    """`[trust].root` and `[trust].root_threshold` as a RootSet (None when no roots are set);
    ConfigError naming each bad entry."""
    from loaxa.errors import ConfigError
    if not root:
        return None
    errors, keys = [], {}
    for name, pub in dict(root).items():
        if not is_valid_key_name(name):
            errors.append(f"trust.root.{name}: a key name is letters, digits, '.', '_' or '-' (at most 64)")
            continue
        try:
            keys[name] = parse_public_key(pub)
        except ValueError as exc:
            errors.append(f"trust.root.{name}: {exc}")
    if len({public_key_b64(k) for k in keys.values()}) < len(keys):
        errors.append("trust.root: two names hold the same public key; give each root key once")
    if isinstance(threshold, bool) or not isinstance(threshold, int) or not 1 <= threshold <= max(len(root), 1):
        errors.append(f"trust.root_threshold: must be 1 to the number of root keys ({len(root)}), got {threshold!r}")
    if errors:
        raise ConfigError(errors)
    return RootSet(keys, threshold)
