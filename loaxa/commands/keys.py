"""`loaxa keys new`: make an operator's Ed25519 signing key pair."""

import argparse
import json
from pathlib import Path

from loaxa.commands._signing import add_passphrase_arguments, new_key_passphrase
from scheduler import is_valid_key_name, write_keypair

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
        description="Write DIR/NAME.key (the private key, PKCS#8 PEM, mode 0600, encrypted under a "
                    "passphrase asked on the terminal or read from --passphrase-file; unencrypted only "
                    "with --no-passphrase) and DIR/NAME.pub (one line: the base64 public key, for units' "
                    "[trust].keys or a trust document). Never overwrites an existing key.")
    new.add_argument("--out", required=True, type=Path, metavar="DIR", help="folder for the two files")
    new.add_argument("--name", type=_key_name, default=DEFAULT_KEY_NAME,
                     help=f"the key's name, also its file stem and its name in [trust].keys "
                          f"(default {DEFAULT_KEY_NAME})")
    new.add_argument("--json", action="store_true", help="print the result as JSON")
    add_passphrase_arguments(new, new_key=True)
    new.set_defaults(func=new_key)


def new_key(args) -> int:
    if (args.out / f"{args.name}.key").exists():  # before asking for a passphrase in vain
        write_keypair(args.out, args.name)  # raises "already exists"
    passphrase = new_key_passphrase(args, args.name)
    key_path, pub_path = write_keypair(args.out, args.name, passphrase)
    name, public = key_path.stem, pub_path.read_text(encoding="ascii").strip()
    if args.json:
        print(json.dumps({"name": name, "key": str(key_path.resolve()), "pub": str(pub_path.resolve()),
                          "public_key": public, "encrypted": passphrase is not None}))
        return 0
    protection = "encrypted with your passphrase" if passphrase is not None else "NOT encrypted"
    print(f"private key: {key_path.resolve()}  ({protection}; keep it secret; sign with it)")
    print(f"public key:  {pub_path.resolve()}")
    print("for each unit's config.toml:")
    print("[trust]")
    print(f'keys = {{ "{name}" = "{public}" }}')
    return 0
