"""`loaxa trust init|build|sign`: the root holders' and the province's trust tools.

- `init --roots N --threshold K --out DIR` makes N root key pairs (`DIR/NAME-root-i.key`
  and `.pub`, each encrypted under a passphrase unless `--no-passphrase`) and
  `DIR/root.json`, the `root` block (`{"keys": {name: pub}, "threshold": K}`) for a trust
  document and for units' `[trust].root`. Each holder then takes one `.key` away; better
  still, each holder runs `init --roots 1` on their own offline machine and the `.pub`
  files are gathered (see docs/operator.md).
- `build SOURCE --out FILE` turns a TOML (or JSON) description into the trust document:
  `.pub` file paths become public keys, `issued_at` is now, `expires_in_days` becomes
  `expires_at`; the result is checked exactly as a unit checks it.
- `sign FILE --key ROOT.key` signs a document, or adds a signature to an envelope (each
  holder on their own machine, passing the file along); `--roots root.json` reports how
  many distinct root signatures it now holds against the threshold.
- `push SIGNED [--roots root.json] [--to ...]` checks the envelope against the roots in
  force (and, for a rotation, the new root set) before it publishes it retained to the
  `trust` topic of each target (default: the document's `targets`). Without `--roots`
  the document must carry its own `root` (a bootstrap), checked at that threshold.
Heavy imports stay inside the handlers: `loaxa --help` must stay cheap.
"""

import argparse
import json
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

from loaxa.commands._signing import add_passphrase_arguments, load_signing_key, new_key_passphrase
from loaxa.errors import DocumentError, KeyFileError, LoaxaError

DEFAULT_NAME = "root"
MAX_ROOTS = 8


class TrustCommandError(LoaxaError):
    """A trust command cannot go on; the message says why."""


def _count(low: int, high: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = 0
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected a whole number from {low} to {high}, got {text!r}")
        return value
    return parse


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "trust", help="roots and trust documents (who may sign what, where)",
        description="Root keys, trust documents and their signatures. Root keys sign only trust "
                    "documents and live offline.")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)

    init = commands.add_parser("init", help="make the root key pairs and root.json",
                               description="Make N root key pairs and DIR/root.json (the root set with "
                                           "its threshold). Never overwrites a key.")
    init.add_argument("--roots", required=True, type=_count(1, MAX_ROOTS), metavar="N")
    init.add_argument("--threshold", required=True, type=_count(1, MAX_ROOTS), metavar="K")
    init.add_argument("--out", required=True, type=Path, metavar="DIR")
    init.add_argument("--name", default=DEFAULT_NAME, metavar="PREFIX",
                      help=f"root key names are PREFIX-root-1 ... (default: {DEFAULT_NAME}-1 ...)")
    add_passphrase_arguments(init, new_key=True)
    init.set_defaults(func=init_roots)

    build = commands.add_parser("build", help="write a trust document from a description",
                                description="Turn SOURCE (TOML or JSON: id, version, targets, "
                                            "expires_in_days or expires_at, keys, require, root) into "
                                            "the trust document, checked as a unit checks it.")
    build.add_argument("source", type=Path, metavar="SOURCE")
    build.add_argument("--out", type=Path, metavar="FILE", help="write here (default: stdout)")
    build.set_defaults(func=build_document)

    sign = commands.add_parser("sign", help="sign a trust document or add a signature to its envelope")
    sign.add_argument("file", metavar="FILE", help="the trust document or its envelope ('-': stdin)")
    sign.add_argument("--key", required=True, type=Path, metavar="KEY.key")
    sign.add_argument("--out", type=Path, metavar="SIGNED", help="write here (default: stdout)")
    sign.add_argument("--roots", type=Path, metavar="ROOT.json",
                      help="say how many distinct root signatures the envelope holds against this root set")
    add_passphrase_arguments(sign, new_key=False)
    sign.set_defaults(func=sign_document_cmd)

    from fleet.broker import add_broker_arguments  # light: no paho until a push runs
    from loaxa.commands._args import target_arg
    push = commands.add_parser("push", help="check a signed trust document against the roots and publish it",
                               description="Publish SIGNED retained on the trust topic of each target once "
                                           "its root signatures meet the threshold.")
    push.add_argument("file", metavar="SIGNED", help="the signed trust envelope ('-': stdin)")
    push.add_argument("--roots", type=Path, metavar="ROOT.json",
                      help="the roots in force on the units (default: the document's own root, a bootstrap)")
    push.add_argument("--to", action="append", type=target_arg, metavar="unit:ID|group:PATH",
                      help="publish to this target's trust topic (repeatable; default: the document's targets)")
    add_broker_arguments(push)
    push.set_defaults(func=push_document)


# ---- init ----

def init_roots(args) -> int:
    from loaxa.commands.keys import _key_name
    from scheduler.keys import write_keypair
    if args.threshold > args.roots:
        raise TrustCommandError(f"--threshold {args.threshold} is more than --roots {args.roots}")
    names = [f"{args.name}-root-{i}" for i in range(1, args.roots + 1)]
    for name in names:
        _key_name(name)
    for name in names:
        for suffix in (".key", ".pub"):
            if (args.out / f"{name}{suffix}").exists():
                raise KeyFileError(f"{args.out / (name + suffix)} already exists; not overwriting a key")
    roots = {}
    for name in names:
        passphrase = new_key_passphrase(args, name)
        key_path, pub_path = write_keypair(args.out, name, passphrase)
        roots[name] = pub_path.read_text(encoding="ascii").strip()
    block = {"keys": roots, "threshold": args.threshold}
    from loaxa.fsio import atomic_write
    atomic_write(args.out / "root.json", (json.dumps(block, indent=2) + "\n").encode("utf-8"))
    print(f"{args.roots} root keys in {args.out.resolve()}; each holder takes one .key away, offline")
    print("for each unit's config.toml:")
    print("[trust]")
    print("root = { " + ", ".join(f'"{n}" = "{p}"' for n, p in roots.items()) + " }")
    print(f"root_threshold = {args.threshold}")
    return 0


# ---- build ----

def _read_source(path: Path) -> dict:
    import tomllib
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TrustCommandError(f"{path}: cannot read: {getattr(exc, 'strerror', None) or exc}") from exc
    try:
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise TrustCommandError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'TOML'}: "
                                f"{' '.join(str(exc).split())}") from exc
    if not isinstance(data, dict):
        raise TrustCommandError(f"{path}: expected a table of fields")
    return data


def _public_key_text(value, base: Path, where: str) -> str:
    """A base64 public key as written, or read from a .pub file named by path."""
    from scheduler.keys import parse_public_key
    if not isinstance(value, str):
        raise TrustCommandError(f"{where}: expected a public key or a .pub file path")
    try:
        parse_public_key(value)
        return value.strip()
    except ValueError:
        pass
    path = Path(value) if Path(value).is_absolute() else base / value
    try:
        text = path.read_text(encoding="ascii").strip()
        parse_public_key(text)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise TrustCommandError(f"{where}: {value!r} is neither a base64 public key nor a readable .pub file "
                                f"({getattr(exc, 'strerror', None) or exc})") from exc
    return text


def _root_block(value, base: Path):
    if value is None or value == "":
        return None
    if isinstance(value, str):  # a root.json written by `trust init`
        path = Path(value) if Path(value).is_absolute() else base / value
        try:
            value = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise TrustCommandError(f"root: cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from exc
    if not isinstance(value, dict) or not isinstance(value.get("keys"), dict):
        raise TrustCommandError("root: expected a root.json path or a table with keys and threshold")
    keys = {name: _public_key_text(pub, base, f"root.keys.{name}") for name, pub in value["keys"].items()}
    return {**value, "keys": keys}


def trust_document_from(source: dict, base: Path, now: datetime) -> dict:
    """The trust document a description stands for (not yet checked)."""
    doc = {"type": "trust", **{k: v for k, v in source.items() if k not in ("expires_in_days",)}}
    doc.setdefault("issued_at", now.replace(microsecond=0).isoformat())
    if "expires_in_days" in source:
        days = source["expires_in_days"]
        if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 36500:
            raise TrustCommandError(f"expires_in_days: expected 1-36500 days, got {days!r}")
        if "expires_at" in source:
            raise TrustCommandError("give expires_in_days or expires_at, not both")
        doc["expires_at"] = (now.replace(microsecond=0) + timedelta(days=days)).isoformat()
    keys = source.get("keys", {})
    if isinstance(keys, dict):
        doc["keys"] = {name: ({**entry, "pub": _public_key_text(entry.get("pub"), base, f"keys.{name}.pub")}
                              if isinstance(entry, dict) else entry) for name, entry in keys.items()}
    doc["root"] = _root_block(source.get("root"), base)
    doc.setdefault("require", {})
    return doc


def build_document(args) -> int:
    from scheduler.trust import parse_trust
    source = _read_source(args.source)
    now = datetime.now(timezone.utc).astimezone()
    text = json.dumps(trust_document_from(source, args.source.parent, now), ensure_ascii=False, indent=2)
    try:
        doc = parse_trust(text)
    except DocumentError as exc:
        raise DocumentError(f"{args.source}: {exc}") from exc
    _write_out(args.out, text.encode("utf-8") + b"\n")
    print(f"trust {doc.id} version {doc.version}: {len(doc.keys)} keys, expires {doc.expires_at.isoformat()}"
          + (f"; root set of {len(doc.root.keys)}, threshold {doc.root.threshold}" if doc.root else ""),
          file=sys.stderr)
    return 0


# ---- sign ----

def _read_input(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise TrustCommandError(f"{path}: cannot read: {exc.strerror or exc}") from exc


def _write_out(out: Path | None, data: bytes) -> None:
    from loaxa.fsio import atomic_write
    if out is None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return
    try:
        atomic_write(out, data)
    except OSError as exc:
        raise TrustCommandError(f"{out}: cannot write: {exc.strerror or exc}") from exc


def _root_file(path: Path):
    from scheduler.trust import RootSet
    try:
        return RootSet.from_json(json.loads(path.read_text(encoding="utf-8")), str(path))
    except (OSError, ValueError) as exc:
        raise TrustCommandError(f"{path}: not a root set: {getattr(exc, 'strerror', None) or exc}") from exc


def push_document(args) -> int:
    from fleet.broker import broker_options, publish
    from scheduler.envelope import read_envelope
    from scheduler.targets import target_topic
    from scheduler.trust import check_root_signatures, parse_trust
    raw = _read_input(args.file)
    envelope = read_envelope(raw)
    doc = parse_trust(envelope.payload)
    if args.roots is not None:
        check_root_signatures(envelope, doc, _root_file(args.roots))
    elif doc.root is None:
        raise TrustCommandError("give --roots ROOT.json (the roots in force on the units): this document "
                                "carries no root of its own to be checked against")
    else:  # a bootstrap: its own root set at threshold (units also need one legacy signature)
        check_root_signatures(envelope, doc, doc.root)
    options = broker_options(args)
    targets = args.to or list(doc.targets)
    topics = [target_topic(options.topic_prefix, t, "trust") for t in targets]
    publish(options, [(topic, raw, True) for topic in topics])
    for topic in topics:
        print(f"published trust {doc.id} version {doc.version} (retained) to {topic}")
    return 0


def sign_document_cmd(args) -> int:
    from scheduler.envelope import read_envelope, sign_or_add
    from scheduler.trust import parse_trust, root_signers
    raw = _read_input(args.file)
    name, key = load_signing_key(args.key, args)
    signed = sign_or_add(raw, key, name)
    envelope = read_envelope(signed)
    doc = parse_trust(envelope.payload)
    _write_out(args.out, signed + (b"" if signed.endswith(b"\n") else b"\n"))
    line = f"trust {doc.id} version {doc.version}: signed by {', '.join(s.key for s in envelope.signatures)}"
    if args.roots is not None:
        roots = _root_file(args.roots)
        count = len(root_signers(envelope, roots))
        line += f"; {count} of the {roots.threshold} root signatures needed" + (
            " (enough)" if count >= roots.threshold else "")
    print(line, file=sys.stderr)
    return 0
