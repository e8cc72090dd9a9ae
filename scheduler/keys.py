"""Ed25519 signing keys: operators sign with a private key, units trust public ones.

A key's name is its file's stem (`dak-lak-2026.key` is "dak-lak-2026"); it goes
into the envelope's `key` field and is the name under a unit's `[trust].keys`.
"""

import base64
import binascii
import os
import re
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from loaxa.errors import ConfigError, KeyFileError
from loaxa.fsio import atomic_write, fsync_dir

# Letters, digits, '.', '_' and '-': safe as a file stem, a TOML key and a JSON string.
KEY_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
PUBLIC_KEY_BYTES = 32


def is_valid_key_name(name: str) -> bool:
    return isinstance(name, str) and KEY_NAME_PATTERN.fullmatch(name) is not None


def generate_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def public_key_b64(key) -> str:
    """Base64 of the raw 32-byte public key (of a private or a public key)."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")


def _private_pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _write_new_secret(path: Path, data: bytes) -> None:
    """Create `path` with mode 0600 from the first byte; refuse if it exists."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)  # the umask may only have narrowed it; make it exact
        os.write(fd, data)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    os.close(fd)
    fsync_dir(path.parent)


def _refuse_existing(*paths: Path) -> None:
    for path in paths:
        if path.exists():
            raise KeyFileError(f"{path} already exists; not overwriting a key")


def _make_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise KeyFileError(f"cannot make the folder {folder}: {exc.strerror or exc}") from exc


def write_keypair(out_dir, name: str) -> tuple[Path, Path]:
    """Write NAME.key (PKCS#8 PEM, 0600) and NAME.pub into out_dir; never overwrite either."""
    if not is_valid_key_name(name):
        raise KeyFileError(f"key name {name!r}: use letters, digits, '.', '_' or '-' (at most 64)")
    out_dir = Path(out_dir)
    key_path, pub_path = out_dir / f"{name}.key", out_dir / f"{name}.pub"
    _refuse_existing(key_path, pub_path)
    _make_folder(out_dir)
    key = generate_key()
    try:
        _write_new_secret(key_path, _private_pem(key))
    except FileExistsError as exc:  # made by someone else since the check above
        raise KeyFileError(f"{key_path} already exists; not overwriting a key") from exc
    except OSError as exc:
        raise KeyFileError(f"cannot write {key_path}: {exc.strerror or exc}") from exc
    try:
        atomic_write(pub_path, (public_key_b64(key) + "\n").encode("ascii"), mode=0o644)
    except OSError as exc:
        key_path.unlink(missing_ok=True)  # half a pair is worse than none: the next try starts clean
        raise KeyFileError(f"cannot write {pub_path}: {exc.strerror or exc}") from exc
    return key_path, pub_path


def load_private_key(path) -> tuple[str, Ed25519PrivateKey]:
    """Read an operator's private key; its name is the file's stem."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read key file: {exc.strerror or exc}") from exc
    if b"PRIVATE KEY" not in data and _looks_like_public_key(data):
        raise KeyFileError(f"{path}: this is a public key; sign with the .key file")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError as exc:  # cryptography says TypeError for a password-protected key
        raise KeyFileError(f"{path}: the key is password-protected; loaxa needs an unencrypted key") from exc
    except (ValueError, binascii.Error) as exc:
        raise KeyFileError(f"{path}: not a PEM private key") from exc
    except Exception as exc:  # noqa: BLE001 - cryptography raises backend-specific errors too
        raise KeyFileError(f"{path}: not a usable private key") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path}: not an Ed25519 key")
    return path.stem, key


def _looks_like_public_key(data: bytes) -> bool:
    try:
        return len(base64.b64decode(data.strip(), validate=True)) == PUBLIC_KEY_BYTES
    except (binascii.Error, ValueError):
        return False


def parse_public_key(value) -> Ed25519PublicKey:
    """One `[trust].keys` value: base64 of a raw 32-byte Ed25519 public key."""
    if not isinstance(value, str):
        raise ValueError(f"expected a base64 string, got {type(value).__name__}")
    try:
        raw = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("not valid base64") from exc
    if len(raw) != PUBLIC_KEY_BYTES:
        raise ValueError(f"expected {PUBLIC_KEY_BYTES} bytes of Ed25519 public key, got {len(raw)}")
    return Ed25519PublicKey.from_public_bytes(raw)


def load_trusted_keys(mapping) -> dict[str, Ed25519PublicKey]:
    """Turn `[trust].keys` into public keys; every bad entry is reported at once."""
    trusted, errors = {}, []
    for name, value in dict(mapping or {}).items():
        try:
            trusted[name] = parse_public_key(value)
        except ValueError as exc:
            errors.append(f"trust.keys.{name}: {exc}")
    if errors:
        raise ConfigError(errors)
    return trusted
