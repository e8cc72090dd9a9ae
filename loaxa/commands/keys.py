"""`loaxa keys new`: make an operator's Ed25519 signing key pair."""

import argparse
import json
from pathlib import Path

from scheduler import is_valid_key_name, load_private_key, public_key_b64, write_keypair

DEFAULT_KEY_NAME = "operator"


def _key_name(text: str) -> str:
    if not is_valid_key_name(text):
        raise argparse.ArgumentTypeError(
            f"{text!r}: a key name is letters, digits, '.', '_' or '-' (at most 64), e.g. dak-lak-2026")
    return text


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "keys", help="operator signing keys",
        description="Operator signing keys (Ed25519). Units act only on documents signed by a "
                    "key in their [trust].keys.")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    new = commands.add_parser(
        "new", help="make a new key pair",
        description="Write DIR/NAME.key (the private key, PKCS#8 PEM, mode 0600: keep it secret) and "
                    "DIR/NAME.pub (one line: the base64 public key, for units' [trust].keys). "
                    "Never overwrites an existing key.")
    new.add_argument("--out", required=True, type=Path, metavar="DIR", help="folder for the two files")
    new.add_argument("--name", type=_key_name, default=DEFAULT_KEY_NAME,
                     help=f"the key's name, also its file stem and its name in [trust].keys "
                          f"(default {DEFAULT_KEY_NAME})")
    new.add_argument("--json", action="store_true", help="print the result as JSON")
    new.set_defaults(func=new_key)


def new_key(args) -> int:
    key_path, pub_path = write_keypair(args.out, args.name)
    name, key = load_private_key(key_path)
    public = public_key_b64(key)
    if args.json:
        print(json.dumps({"name": name, "key": str(key_path.resolve()), "pub": str(pub_path.resolve()),
                          "public_key": public}))
        return 0
    print(f"private key: {key_path.resolve()}  (keep it secret; sign with it)")
    print(f"public key:  {pub_path.resolve()}")
    print("for each unit's config.toml:")
    print("[trust]")
    print(f'keys = {{ "{name}" = "{public}" }}')
    return 0
