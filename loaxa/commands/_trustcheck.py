"""`--trust FILE`: judge a signed document as the units will, before it is published.

Every push checks the envelope against the trust document it is given: for each topic it
is about to be published to, the requirement of its kind, the roles met by distinct keys,
scope (the topic, its targets, a schedule id's group path; `unit:` targets by their
groups in the fleet database, `--db`) and key expiry. One that falls short stops the
command before anything is published, with the verdict's line: the missing role, the key
outside its scope, the unknown key.
"""

from datetime import datetime, timezone
from pathlib import Path

from loaxa.errors import DocumentError, SignatureError


def add_trust_arguments(parser) -> None:
    group = parser.add_argument_group("trust check", "judge the envelope before publishing it")
    group.add_argument("--trust", type=Path, metavar="FILE",
                       help="the trust document in force on the units (or its signed envelope): refuse to "
                            "publish what they would refuse, naming the missing signature")
    group.add_argument("--db", metavar="URL",
                       help="fleet database, to judge unit: targets by the units' groups (with --trust)")


def read_trust_file(path: Path):
    from scheduler._json import strict_loads
    from scheduler.envelope import is_envelope, read_envelope
    from scheduler.trust import parse_trust
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DocumentError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    try:
        text = raw.decode("utf-8")
        payload = read_envelope(raw).payload if is_envelope(strict_loads(text, "the trust file")) else text
        return parse_trust(payload)
    except UnicodeDecodeError as exc:
        raise DocumentError(f"{path}: not UTF-8 text") from exc
    except DocumentError as exc:
        raise DocumentError(f"{path}: {exc}") from exc


def fleet_groups(url: str | None) -> dict:
    """{unit id: groups} from the fleet database (empty without --db)."""
    if not url:
        return {}
    from fleet.db import open_database
    from fleet.store import FleetStore
    return {row.unit: tuple(row.groups) for row in FleetStore(open_database(url, create=False)).units()}


def check_before_publish(args, envelope: bytes, topics, prefix: str, *, now: datetime | None = None) -> None:
    """Raise SignatureError naming what is missing on the first topic whose units would refuse."""
    if getattr(args, "trust", None) is None:
        return
    from scheduler.trustkeeper import operator_verdicts
    trust = read_trust_file(args.trust)
    now = now or datetime.now(timezone.utc)
    verdicts = operator_verdicts(envelope, trust, topics, now=now, fleet=fleet_groups(getattr(args, "db", None)),
                                 prefix=prefix)
    refused = [(topic, verdict) for topic, verdict in verdicts if not verdict.ok]
    if refused:
        topic, verdict = refused[0]
        more = f" (and {len(refused) - 1} more topics)" if len(refused) > 1 else ""
        raise SignatureError(f"not published: under trust {trust.id} version {trust.version}, units on {topic}"
                             f"{more} would refuse it: {verdict.reason()}")
