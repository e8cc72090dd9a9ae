"""Ed25519 signing keys: operators sign with a private key, units trust public ones.

A key's name is its file's stem (`dak-lak-2026.key` is "dak-lak-2026"); it goes
into the envelope's `key` field and is the name under a unit's `[trust].keys`.

Private keys at rest (docs/design.md, "Trust model"): with a passphrase, the `.key`
file is a standard PKCS#8 `ENCRYPTED PRIVATE KEY` PEM, PBES2 with the scrypt KDF
(RFC 7914 section 7; N=2^14, r=8, p=8, a 16-byte salt) and AES-256-CBC. cryptography
writes PKCS#8 only with PBKDF2 at 2,048 iterations (BestAvailableEncryption), far too
few, so the DER is assembled here from cryptography's Scrypt and AES; reading goes
through cryptography's own loader, and `openssl pkey` reads the file too. N stays at
2^14 (16 MiB) because OpenSSL refuses scrypt above 32 MiB when loading; p=8 buys the
cost instead (OWASP's floor for N=2^14, r=8 is p=5). Without a passphrase the file is
the plain PKCS#8 PEM it always was (demo, tests, `--no-passphrase`).
"""

import base64
import binascii
import os
import re
from pathlib import Path

from cryptography.hazmat.primitives import padding, serialization
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
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


def _private_pem(key: Ed25519PrivateKey, passphrase: bytes | None = None, kdf=None) -> bytes:
    if passphrase is not None:
        return encrypted_private_pem(key, passphrase, kdf=kdf or SCRYPT_COST)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


# ---- PKCS#8 EncryptedPrivateKeyInfo with PBES2 + scrypt + AES-256-CBC (RFC 5958, 8018, 7914) ----

SCRYPT_COST = (2**14, 8, 8)  # (N, r, p): see the module doc
SALT_BYTES = 16
OID_PBES2 = "1.2.840.113549.1.5.13"
OID_SCRYPT = "1.3.6.1.4.1.11591.4.11"
OID_AES256_CBC = "2.16.840.1.101.3.4.1.42"


def _der(tag: int, content: bytes) -> bytes:
    size = len(content)
    if size < 0x80:
        return bytes([tag, size]) + content
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(length)]) + length + content


def _der_int(value: int) -> bytes:
    return _der(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def _der_oid(dotted: str) -> bytes:
    first, second, *rest = (int(part) for part in dotted.split("."))
    body = bytearray([40 * first + second])
    for arc in rest:
        chunk = [arc & 0x7F]
        while arc > 0x7F:
            arc >>= 7
            chunk.append(0x80 | (arc & 0x7F))
        body.extend(reversed(chunk))
    return _der(0x06, bytes(body))


def _der_seq(*parts: bytes) -> bytes:
    return _der(0x30, b"".join(parts))


def encrypted_private_pem(key: Ed25519PrivateKey, passphrase: bytes, *, kdf=SCRYPT_COST) -> bytes:
    """The key as an `ENCRYPTED PRIVATE KEY` PEM (PBES2: scrypt, AES-256-CBC)."""
    if not passphrase:
        raise KeyFileError("an empty passphrase protects nothing; give one, or choose no passphrase")
    n, r, p = kdf
    salt, iv = os.urandom(SALT_BYTES), os.urandom(16)
    secret = Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(passphrase)
    plain = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption())
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plain) + padder.finalize()
    encryptor = Cipher(algorithms.AES(secret), modes.CBC(iv)).encryptor()
    sealed = encryptor.update(padded) + encryptor.finalize()
    scheme = _der_seq(_der_oid(OID_PBES2), _der_seq(
        _der_seq(_der_oid(OID_SCRYPT), _der_seq(_der(0x04, salt), _der_int(n), _der_int(r), _der_int(p))),
        _der_seq(_der_oid(OID_AES256_CBC), _der(0x04, iv))))
    der = _der_seq(scheme, _der(0x04, sealed))
    text = base64.encodebytes(der).decode("ascii").replace("\n", "")
    lines = [text[i:i + 64] for i in range(0, len(text), 64)]
    return ("-----BEGIN ENCRYPTED PRIVATE KEY-----\n" + "\n".join(lines)
            + "\n-----END ENCRYPTED PRIVATE KEY-----\n").encode("ascii")


def is_encrypted_key_file(data: bytes) -> bool:
    return b"-----BEGIN ENCRYPTED PRIVATE KEY-----" in data


def read_passphrase_file(path) -> bytes:
    """A passphrase from a file: its first line, without the line end."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read the passphrase file: {exc.strerror or exc}") from exc
    line = data.split(b"\n", 1)[0].rstrip(b"\r")
    if not line:
        raise KeyFileError(f"{path}: the passphrase file's first line is empty")
    return line


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


def write_keypair(out_dir, name: str, passphrase: bytes | None = None, *, kdf=None) -> tuple[Path, Path]:
    """Write NAME.key (PKCS#8 PEM, 0600; encrypted under `passphrase` when given) and NAME.pub
    into out_dir; never overwrite either."""
    if not is_valid_key_name(name):
        raise KeyFileError(f"key name {name!r}: use letters, digits, '.', '_' or '-' (at most 64)")
    out_dir = Path(out_dir)
    key_path, pub_path = out_dir / f"{name}.key", out_dir / f"{name}.pub"
    _refuse_existing(key_path, pub_path)
    _make_folder(out_dir)
    key = generate_key()
    try:
        _write_new_secret(key_path, _private_pem(key, passphrase, kdf))
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


def load_private_key(path, passphrase: bytes | None = None) -> tuple[str, Ed25519PrivateKey]:
    """Read an operator's private key; its name is the file's stem.

    An encrypted key needs `passphrase`; a plain key loads whether one is given or not."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read key file: {exc.strerror or exc}") from exc
    if b"PRIVATE KEY" not in data and _looks_like_public_key(data):
        raise KeyFileError(f"{path}: this is a public key; sign with the .key file")
    encrypted = is_encrypted_key_file(data)
    if encrypted and passphrase is None:
        raise KeyFileError(f"{path}: the key is password-protected (encrypted); give its passphrase "
                           "(at the terminal prompt or with --passphrase-file)")
    try:
        key = serialization.load_pem_private_key(data, password=passphrase if encrypted else None)
    except TypeError as exc:  # cryptography says TypeError for a password-protected key
        raise KeyFileError(f"{path}: the key is password-protected (encrypted); give its passphrase "
                           "(at the terminal prompt or with --passphrase-file)") from exc
    except ValueError as exc:
        if encrypted and "password" in str(exc).lower():
            raise KeyFileError(f"{path}: wrong passphrase for this key") from exc
        raise KeyFileError(f"{path}: not a PEM private key") from exc
    except binascii.Error as exc:
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
