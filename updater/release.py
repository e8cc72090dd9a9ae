"""Release documents: which loaxa a unit should run, and whether it may.

    {"type": "release", "id": "loaxa", "seq": 12, "version": "0.3.0",
     "issued_at": "2026-12-01T08:00:00+07:00", "targets": ["group:dak-lak"],
     "allow_downgrade": false,
     "artifacts": {"aarch64": {"url": "https://...", "sha256": "<64 hex>", "size": 31457280},
                   "x86_64": {...}},
     "health_s": 300}

`parse_release(text)` returns a `Release` or raises one DocumentError naming the field.
`judge_release(...)` is every check a unit makes on a signed release from a topic: the
envelope's signatures under the trust in force (SPEC's `release` requirement, through
`scheduler.judge`), its targets naming the unit, the topic being one of them.
`choose_release(held, running, arch, bad)` is the rule a unit follows: the release with
the highest `seq` across its topics; a `version` lower than the running one only with
`allow_downgrade` (that is how a rollout is stopped: a newer `seq` pinning the old
version); a version this unit has rolled back is never installed again. Pure: no clock,
no file, no network.

Choices beyond SPEC (docs/design.md, "Software updates"):
- Every field is required (`allow_downgrade: false` and `health_s` are written out by
  `loaxa release build`), so a typo in a field name is an error, not a silent default.
- `version` is a PEP 440 public version of the common shapes (`0.3.0`, `0.3.0rc1`,
  `0.3.0.post1`, `0.3.0.dev2`); local versions (`+abc`) are refused: two builds must
  never share an ordering.
- `health_s` is 10 s to 24 h; an artifact's `size` is 1 byte to 1 GiB.
- Two releases with the same `seq` (on two topics): the one with the higher version wins,
  then the one whose text sorts last, so every unit of a group picks the same one.
"""

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime

from loaxa.errors import TargetError
from scheduler._json import describe
from scheduler.document import (ISSUED_AT_PATTERN, MAX_VERSION, SHA256_PATTERN, _aware_datetime, _check_fields,
                                _fail, _http_url, _integer, _join, _load, _object, _schedule_id, _string,
                                _targets)
from scheduler.envelope import Envelope, read_envelope
from scheduler.judge import Authority, UnitContext, Verdict, judge, release_subject
from scheduler.targets import topic_target, unit_targets

__all__ = ["ARCH_PATTERN", "Artifact", "Choice", "Release", "VERSION_PATTERN", "choose_release", "judge_release",
           "parse_release", "release_text", "version_key"]

TOP_FIELDS = ("type", "id", "seq", "version", "issued_at", "targets", "allow_downgrade", "artifacts", "health_s")
ARTIFACT_FIELDS = ("url", "sha256", "size")
ARCH_PATTERN = re.compile(r"[a-z0-9_]{1,32}", re.ASCII)
VERSION_PATTERN = re.compile(r"(\d{1,9}(?:\.\d{1,9}){0,5})(?:(a|b|rc)(\d{1,9}))?(?:\.post(\d{1,9}))?"
                             r"(?:\.dev(\d{1,9}))?", re.ASCII)
MAX_ARTIFACT_BYTES = 1 << 30
MIN_HEALTH_S, MAX_HEALTH_S = 10, 86400
EXAMPLE_TIME = "2026-12-01T08:00:00+07:00"
_PRE_RANK = {"a": 0, "b": 1, "rc": 2}


@dataclass(frozen=True)
class Artifact:
    arch: str
    url: str
    sha256: str
    size: int


@dataclass(frozen=True)
class Release:
    id: str
    seq: int
    version: str
    issued_at: datetime
    targets: tuple[str, ...]
    allow_downgrade: bool
    artifacts: dict  # arch -> Artifact
    health_s: int
    payload: str = ""  # the exact signed text
    digest: str = ""  # sha256 of the payload's bytes

    def artifact(self, arch: str) -> Artifact | None:
        return self.artifacts.get(arch)


@dataclass(frozen=True)
class Choice:
    """What a unit does about the releases it holds.

    `action`: "none" (no release, or the followed one is what runs), "install" (fetch and
    install `release.artifact(arch)`), "refused" (`reason` says why: a downgrade not
    allowed, a version rolled back here, no artifact for this architecture)."""
    action: str
    release: Release | None = None
    reason: str = ""


# ---- versions ----

def version_key(version: str) -> tuple:
    """An ordering key for the PEP 440 shapes VERSION_PATTERN accepts (dev < a < b < rc <
    final < post); ValueError for anything else."""
    match = VERSION_PATTERN.fullmatch(version) if isinstance(version, str) else None
    if match is None:
        raise ValueError(f"not a version loaxa understands: {version!r}")
    release, pre, pre_n, post, dev = match.groups()
    numbers = [int(n) for n in release.split(".")]
    while len(numbers) > 1 and numbers[-1] == 0:
        numbers.pop()  # 0.3 == 0.3.0
    if pre is not None:
        pre_key = (_PRE_RANK[pre], int(pre_n))
    elif dev is not None and post is None:
        pre_key = (-1, 0)  # 0.3.0.dev1 comes before 0.3.0a1
    else:
        pre_key = (3, 0)
    post_key = -1 if post is None else int(post)
    dev_key = float("inf") if dev is None else int(dev)
    return (tuple(numbers), pre_key, post_key, dev_key)


def _version(value, path: str) -> str:
    _string(value, path)
    if VERSION_PATTERN.fullmatch(value) is None:
        _fail(path, f"must be a version like 0.3.0, 0.3.0rc1 or 0.3.0.post1, got {describe(value)}")
    return value


# ---- parsing ----

def _boolean(value, path: str) -> bool:
    if not isinstance(value, bool):
        _fail(path, f"expected true or false, got {describe(value)}")
    return value


def _artifact(arch: str, value, path: str) -> Artifact:
    entry = _object(value, path)
    _check_fields(entry, path, ARTIFACT_FIELDS, ())
    url = _http_url(entry["url"], _join(path, "url"))
    sha256 = _string(entry["sha256"], _join(path, "sha256"))
    if not SHA256_PATTERN.fullmatch(sha256):
        _fail(_join(path, "sha256"), f"must be 64 lowercase hex digits (a SHA-256), got {describe(sha256)}")
    size = _integer(entry["size"], _join(path, "size"), 1, MAX_ARTIFACT_BYTES,
                    f"must be 1 to {MAX_ARTIFACT_BYTES} bytes")
    return Artifact(arch, url, sha256, size)


def _artifacts(value, path: str) -> dict:
    table = _object(value, path)
    if not table:
        _fail(path, "must name at least one architecture (aarch64 for a Raspberry Pi)")
    artifacts = {}
    for arch, entry in table.items():
        entry_path = _join(path, arch)
        if not ARCH_PATTERN.fullmatch(arch):
            _fail(entry_path, f"an architecture name like aarch64 or x86_64, got {describe(arch)}")
        artifacts[arch] = _artifact(arch, entry, entry_path)
    return artifacts


def parse_release(payload_text: str) -> Release:
    """Validate a release document (the exact signed text) and return it parsed."""
    doc, raw = _load(payload_text)
    if "type" in doc and doc["type"] != "release":  # another kind of document: say so first
        _fail("type", f'expected "release", got {describe(doc["type"])}')
    _check_fields(doc, "", TOP_FIELDS, ())
    return Release(
        id=_schedule_id(doc["id"], "id"),
        seq=_integer(doc["seq"], "seq", 1, MAX_VERSION, "must be a positive integer"),
        version=_version(doc["version"], "version"),
        issued_at=_aware_datetime(doc["issued_at"], "issued_at", ISSUED_AT_PATTERN, EXAMPLE_TIME),
        targets=_targets(doc["targets"], "targets"),
        allow_downgrade=_boolean(doc["allow_downgrade"], "allow_downgrade"),
        artifacts=_artifacts(doc["artifacts"], "artifacts"),
        health_s=_integer(doc["health_s"], "health_s", MIN_HEALTH_S, MAX_HEALTH_S,
                          f"must be {MIN_HEALTH_S} to {MAX_HEALTH_S} seconds"),
        payload=payload_text, digest=hashlib.sha256(raw).hexdigest())


def release_text(*, release_id: str, seq: int, version: str, issued_at: str, targets, artifacts: dict,
                 health_s: int = 300, allow_downgrade: bool = False) -> str:
    """An unsigned release document's text (what `loaxa release build` writes), checked."""
    import json
    text = json.dumps({"type": "release", "id": release_id, "seq": seq, "version": version,
                       "issued_at": issued_at, "targets": list(targets), "allow_downgrade": allow_downgrade,
                       "artifacts": artifacts, "health_s": health_s}, indent=2, ensure_ascii=False) + "\n"
    parse_release(text)
    return text


# ---- a unit's checks ----

def _check_targets(release: Release, context: UnitContext, topic: str) -> None:
    mine = unit_targets(context.unit_id, context.groups)
    if not set(release.targets) & mine:
        raise TargetError(f"release {release.id} seq {release.seq}: targets {', '.join(release.targets)} name "
                          f"neither unit {context.unit_id} nor any of its groups")
    arrived = topic_target(context.prefix, topic, "release")
    if arrived not in release.targets:
        raise TargetError(f"release {release.id} seq {release.seq}: arrived on {topic}, which is not the "
                          f"release topic of any of its targets ({', '.join(release.targets)})")


def judge_release(raw, topic: str, authority: Authority, *, now: datetime,
                  context: UnitContext) -> tuple[Release, Verdict]:
    """Parse, target-check and judge a signed release from `topic`; raises Rejected
    (DocumentError, SignatureError, TargetError) with one line, else (release, verdict ok)."""
    envelope = raw if isinstance(raw, Envelope) else read_envelope(raw)
    release = parse_release(envelope.payload)
    _check_targets(release, context, topic)
    subject = release_subject(f"{release.id} seq {release.seq} ({release.version})", release.targets, topic)
    verdict = judge(envelope, subject, authority, now=now, context=context).check()
    return release, verdict


def _rank(release: Release) -> tuple:
    return (release.seq, version_key(release.version), release.payload)


def choose_release(held, running: str, arch: str, bad=()) -> Choice:
    """The release a unit follows among `held` (releases already judged, from all its
    topics) and what to do about it, given the `running` version, the unit's `arch` and
    the versions this unit has rolled back (`bad`)."""
    held = list(held)
    if not held:
        return Choice("none")
    release = max(held, key=_rank)
    if version_key(release.version) == version_key(running):
        return Choice("none", release, f"version {running} runs already")
    what = f"release {release.id} seq {release.seq} (version {release.version})"
    if release.version in set(bad):
        return Choice("refused", release, f"{what}: version {release.version} was rolled back on this unit "
                                          "and is never tried again")
    if version_key(release.version) < version_key(running) and not release.allow_downgrade:
        return Choice("refused", release, f"{what}: lower than the running version {running}, and the "
                                          "release does not allow a downgrade")
    if release.artifact(arch) is None:
        return Choice("refused", release, f"{what}: no artifact for this unit's architecture {arch} "
                                          f"(it has {', '.join(sorted(release.artifacts))})")
    return Choice("install", release)

