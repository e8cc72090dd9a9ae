"""`loaxa release build|push`: software releases for the units (SPEC "Software updates").

`build` writes the wheel bundle for one architecture (updater/bundle.py says where its
wheels come from) and an unsigned release document naming it; `push` signs the document
(like `loaxa schedule push`), judges it under `--trust` as the units will (the `release`
role), and publishes it retained to the release topic of each target.
"""

import argparse
import platform
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from loaxa.commands._args import positive_int, target_arg
from loaxa.commands._signing import add_passphrase_arguments, load_signing_key
from loaxa.commands._trustcheck import add_trust_arguments, check_before_publish
from loaxa.errors import DocumentError, KeyFileError, LoaxaError
from loaxa.fsio import atomic_write


class ReleaseCommandError(LoaxaError):
    """A release command cannot go on; the message says why."""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "release", help="build and publish software releases for the units",
        description="Software releases: a bundle of wheels per architecture and a signed release "
                    "document on the units' release topics (docs/operator.md, \"Releasing loaxa\").")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)

    build = commands.add_parser(
        "build", help="write a wheel bundle and its unsigned release document",
        description="Write OUT/loaxa-VERSION-ARCH.tar (loaxa's wheel and the dependency wheels of "
                    "--wheels) and OUT/release.json, the unsigned release document naming it at "
                    "URL-BASE/loaxa-VERSION-ARCH.tar. Upload the bundle there, then `loaxa release push`.")
    source = build.add_mutually_exclusive_group()
    source.add_argument("--source", type=Path, metavar="DIR",
                        help="the loaxa source tree to build the wheel from (default: the current folder)")
    source.add_argument("--wheel", type=Path, metavar="WHL", help="an already built loaxa wheel")
    deps = build.add_mutually_exclusive_group()
    deps.add_argument("--wheels", type=Path, metavar="DIR",
                      help="a wheelhouse holding the dependency wheels for ARCH (scripts/bundle-offline.sh)")
    deps.add_argument("--from-installed", action="store_true",
                      help="repack the dependencies installed here into wheels (this machine's arch only)")
    build.add_argument("--arch", default=platform.machine(),
                       help="the units' architecture, aarch64 for a Raspberry Pi (default: this machine's)")
    build.add_argument("--out", required=True, type=Path, metavar="OUT")
    build.add_argument("--url-base", required=True, metavar="URL",
                       help="where the bundle will be served (http:// or https://)")
    build.add_argument("--seq", required=True, type=positive_int,
                       help="the release's sequence number: higher than every release sent before")
    build.add_argument("--to", dest="targets", action="append", required=True, type=target_arg,
                       metavar="unit:ID|group:PATH", help="a target of the release (repeatable)")
    build.add_argument("--health-s", type=positive_int, default=300, metavar="S",
                       help="how long a new version has to come online before it is rolled back")
    build.add_argument("--allow-downgrade", action="store_true",
                       help="a pin: units running a higher version go down to this one")
    build.add_argument("--id", default="loaxa", help=argparse.SUPPRESS)
    build.set_defaults(func=build_release)

    push = commands.add_parser(
        "push", help="sign and publish a release to units and groups",
        description="Publish FILE retained (QoS 1) to the release topic of each --to, by default each "
                    "of the document's targets. An unsigned FILE is signed with --key first; a signed "
                    "envelope is sent as is. With --trust, refused unless units would accept it.")
    push.add_argument("file", metavar="FILE", help="release document or signed envelope")
    push.add_argument("--key", metavar="KEY.key", help="a key holding the release role (for an unsigned FILE)")
    push.add_argument("--to", action="append", type=target_arg, metavar="unit:ID|group:PATH",
                      help="publish to this target's topic (repeatable; one of the document's targets)")
    from fleet.broker import add_broker_arguments
    add_broker_arguments(push)
    add_passphrase_arguments(push, new_key=False)
    add_trust_arguments(push)
    push.set_defaults(func=push_release)

    install = commands.add_parser(
        "install", help="install a bundle into this unit's update prefix (a new unit's first version)",
        description="Install BUNDLE (from `loaxa release build`) into the update prefix as "
                    "versions/VERSION, point `current` at it and copy the launcher there; then "
                    "`loaxa provision --install-service` runs the unit through the launcher, and "
                    "later versions arrive as signed releases. Needs no network.")
    install.add_argument("bundle", type=Path, metavar="BUNDLE")
    where = install.add_mutually_exclusive_group()
    where.add_argument("--config", type=Path, metavar="PATH", help="the unit's config: its [update].prefix")
    where.add_argument("--prefix", type=Path, metavar="DIR", help="the update prefix itself")
    install.set_defaults(func=install_bundle)


def build_release(args) -> int:
    from updater.bundle import file_sha256, loaxa_wheel_for, repack_dependencies, write_bundle
    from updater.release import release_text
    wheelhouse = sorted(args.wheels.glob("*.whl")) if args.wheels is not None else []
    if args.wheels is not None and not args.wheels.is_dir():
        raise ReleaseCommandError(f"{args.wheels}: not a folder of wheels")
    if args.from_installed and args.arch != platform.machine():
        raise ReleaseCommandError(f"--from-installed repacks this machine's {platform.machine()} packages; "
                                  f"for {args.arch} give --wheels DIR")
    with tempfile.TemporaryDirectory() as work:
        wheel = loaxa_wheel_for(args.source or Path.cwd(), args.wheel, Path(work))
        if args.from_installed:
            wheelhouse = repack_dependencies(Path(work) / "deps")
        bundle, version, missing = write_bundle(wheel, wheelhouse, args.out, args.arch)
    for name in missing:
        print(f"warning: the bundle holds no wheel of {name}, which loaxa needs: units will refuse to "
              "install it unless they already have it (give --wheels DIR)", file=sys.stderr)
    artifact = {"url": f"{args.url_base.rstrip('/')}/{bundle.name}", "sha256": file_sha256(bundle),
                "size": bundle.stat().st_size}
    issued_at = datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")
    text = release_text(release_id=args.id, seq=args.seq, version=version, issued_at=issued_at,
                        targets=args.targets, artifacts={args.arch: artifact}, health_s=args.health_s,
                        allow_downgrade=args.allow_downgrade)
    document = args.out / "release.json"
    atomic_write(document, text.encode("utf-8"))
    print(f"built loaxa {version} for {args.arch}: {bundle} ({artifact['size']} bytes, sha256 "
          f"{artifact['sha256'][:12]}…); unsigned release seq {args.seq}: {document}")
    return 0


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ReleaseCommandError(f"{path}: cannot read: {exc.strerror or exc}") from exc


def push_release(args) -> int:
    from fleet.broker import broker_options, publish
    from scheduler._json import decode_utf8, strict_loads
    from scheduler.envelope import is_envelope, read_envelope, sign_document
    from scheduler.targets import target_topic
    from updater.release import parse_release
    raw = _read(args.file)
    text = decode_utf8(raw, args.file)
    try:
        if is_envelope(strict_loads(text, args.file)):
            envelope, payload = raw.strip(), read_envelope(raw).payload
        else:
            if not args.key:
                raise KeyFileError(f"{args.file} is not signed: give --key KEY.key (a key with the release role)")
            name, key = load_signing_key(args.key, args)
            envelope, payload = sign_document(text, key, name), text
        release = parse_release(payload)
    except DocumentError as exc:
        raise DocumentError(f"{args.file}: {exc}") from exc
    strangers = [t for t in (args.to or []) if t not in release.targets]
    if strangers:
        raise ReleaseCommandError(f"--to {', '.join(strangers)}: not among the release's targets "
                                  f"({', '.join(release.targets)}); units there would refuse it")
    options = broker_options(args)
    topics = [target_topic(options.topic_prefix, t, "release") for t in (args.to or release.targets)]
    check_before_publish(args, envelope, topics, options.topic_prefix)
    publish(options, [(topic, envelope, True) for topic in topics])
    for topic in topics:
        print(f"published release {release.id} seq {release.seq} (version {release.version}) (retained) "
              f"to {topic}")
    return 0


def install_bundle(args) -> int:
    from updater.bundle import bundle_version
    from updater.install import Installer, install_launcher
    prefix = args.prefix
    if prefix is None:
        from provisioning.config import find_config, load_config
        found = find_config(str(args.config) if args.config else None)
        if found is None:
            raise ReleaseCommandError("no unit config here: give --config PATH or --prefix DIR")
        prefix = load_config(found).update.prefix
    version = bundle_version(args.bundle)
    installer = Installer(prefix)
    installer.install(version, args.bundle)
    installer.switch(version)
    launcher = install_launcher(prefix)
    print(f"loaxa {version} installed in {prefix / 'versions' / version} and current; launcher: {launcher}")
    return 0


__all__ = ["build_release", "install_bundle", "push_release", "register"]
