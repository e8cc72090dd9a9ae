"""Passphrases for operator keys, shared by every command that writes or signs with one.

A key is encrypted unless the operator says `--no-passphrase`; the passphrase comes from
`--passphrase-file` (its first line) or, on a terminal, from a prompt. With neither, the
command stops with one line saying what to give: it never writes a key in the clear by
default and never hangs waiting on a pipe.
"""

import getpass
import sys
from pathlib import Path

from loaxa.errors import KeyFileError


def add_passphrase_arguments(parser, *, new_key: bool) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--passphrase-file", type=Path, metavar="FILE",
                       help="read the key's passphrase from the first line of FILE "
                            "(default: ask on the terminal)")
    group.add_argument("--no-passphrase", action="store_true",
                       help="write the private key unencrypted (tests, demos)" if new_key
                       else "the key is stored unencrypted: do not ask for a passphrase")


def _interactive() -> bool:
    return sys.stdin.isatty() and sys.stderr.isatty()


def new_key_passphrase(args, what: str, *, ask=getpass.getpass, interactive=None) -> bytes | None:
    """The passphrase to encrypt a new key with, or None for --no-passphrase."""
    from scheduler.keys import read_passphrase_file
    if args.passphrase_file is not None:
        return read_passphrase_file(args.passphrase_file)
    if args.no_passphrase:
        return None
    if not (interactive if interactive is not None else _interactive()):
        raise KeyFileError("no terminal to ask for a passphrase on: give --passphrase-file FILE, or "
                           "--no-passphrase to store the key unencrypted")
    first = ask(f"new passphrase for {what}: ").encode("utf-8")
    if not first:
        raise KeyFileError("an empty passphrase protects nothing; give one, or --no-passphrase")
    if ask(f"the same passphrase again for {what}: ").encode("utf-8") != first:
        raise KeyFileError("the two passphrases differ; nothing was written")
    return first


def load_signing_key(path, args, *, ask=getpass.getpass, interactive=None):
    """(name, private key) from KEY.key, unlocked as the arguments say."""
    from scheduler.keys import is_encrypted_key_file, load_private_key, read_passphrase_file
    path = Path(path)
    try:
        encrypted = is_encrypted_key_file(path.read_bytes())
    except OSError:
        encrypted = False  # load_private_key says why it cannot read the file
    passphrase = None
    if encrypted:
        if getattr(args, "passphrase_file", None) is not None:
            passphrase = read_passphrase_file(args.passphrase_file)
        elif getattr(args, "no_passphrase", False):
            raise KeyFileError(f"{path}: the key is encrypted, and --no-passphrase was given")
        elif interactive if interactive is not None else _interactive():
            passphrase = ask(f"passphrase for {path.name}: ").encode("utf-8")
        else:
            raise KeyFileError(f"{path}: the key is encrypted; give --passphrase-file FILE "
                               "(no terminal to ask on)")
    return load_private_key(path, passphrase)
