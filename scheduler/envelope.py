"""Signed envelopes around a document, with one signature or several.

    {"payload": "<text>", "alg": "ed25519", "key": "<name>", "sig": "<base64>"}
    {"payload": "<text>", "alg": "ed25519", "sigs": [{"key": "<name>", "sig": "<base64>"}, ...]}

Every `sig` is Ed25519 over `payload.encode("utf-8")` exactly, so the document needs no
canonical form: the unit verifies the very text the operator wrote, then parses it.
The single `key`/`sig` form means one signature; an envelope with both forms is refused;
`sigs` holds 1 to 8 signatures, one per key name.

Which signatures *count* (trusted key, role, scope, expiry) is `scheduler.judge`'s
business; this module only reads envelopes, checks one signature against one public
key (`check_signatures`), and writes envelopes (`sign_document`, `add_signature`).
`open_envelope` is the legacy check: any one key of a flat `{name: public key}` map.
"""

import base64
import binascii
import json
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature

from loaxa.errors import DocumentError, SignatureError
from scheduler._json import check_size, decode_utf8, describe, encode_utf8, strict_loads

__all__ = ["ALG", "MAX_SIGNATURES", "Envelope", "Signature", "SignatureCheck", "add_signature",
           "check_signatures", "is_envelope", "open_envelope", "read_envelope", "sign_document", "sign_or_add"]

ALG = "ed25519"
SINGLE_FIELDS = ("payload", "alg", "key", "sig")
MULTI_FIELDS = ("payload", "alg", "sigs")
SIGNATURE_FIELDS = ("key", "sig")
SIGNATURE_BYTES = 64
MAX_SIGNATURES = 8
MAX_KEY_NAME_LENGTH = 128  # names are checked for sense by whoever trusts them; this bounds messages


@dataclass(frozen=True)
class Signature:
    key: str  # the key's name, as the signer wrote it
    sig: bytes


@dataclass(frozen=True)
class Envelope:
    payload: str
    alg: str
    signatures: tuple[Signature, ...]
    multi: bool = False  # written in the `sigs` form

    @property
    def key(self) -> str:
        """The first signature's key name (the only one in the single form)."""
        return self.signatures[0].key

    @property
    def sig(self) -> bytes:
        return self.signatures[0].sig

    def data(self) -> bytes:
        """The exact bytes every signature is over."""
        return encode_utf8(self.payload, "envelope.payload")


@dataclass(frozen=True)
class SignatureCheck:
    """One signature checked against a key ring: `valid`, `unknown` (name not in it) or `bad`."""
    key: str
    status: str
    public_key: object = None  # the ring's public key for `key`, when known


def _sig_text(sig: bytes) -> str:
    return base64.b64encode(sig).decode("ascii")


def _dump(envelope: dict) -> bytes:
    raw = json.dumps(envelope, ensure_ascii=False).encode("utf-8")
    check_size(len(raw), "the signed envelope")
    return raw


def sign_document(payload_text: str, key, key_name: str) -> bytes:
    """The envelope JSON (UTF-8, single form) holding `payload_text` signed by `key` as `key_name`."""
    data = encode_utf8(payload_text, "document")
    return _dump({"payload": payload_text, "alg": ALG, "key": key_name, "sig": _sig_text(key.sign(data))})


def add_signature(envelope_raw, key, key_name: str) -> bytes:
    """The envelope with one more signature, by `key` as `key_name`, always in the `sigs` form.

    Signing again under a name already there with the same key changes nothing (Ed25519
    is deterministic); a different signature under that name, or a ninth signature, is
    refused. The signatures already there are kept as they are, unchecked."""
    envelope = read_envelope(envelope_raw)
    new = Signature(key_name, key.sign(envelope.data()))
    held = list(envelope.signatures)
    same_name = next((s for s in held if s.key == key_name), None)
    if same_name is not None and same_name.sig != new.sig:
        raise SignatureError(f"the envelope already holds a signature under the name {describe(key_name)} "
                             "made by another key")
    if same_name is None:
        if len(held) >= MAX_SIGNATURES:
            raise SignatureError(f"the envelope already holds {MAX_SIGNATURES} signatures, the most allowed")
        held.append(new)
    return _dump({"payload": envelope.payload, "alg": ALG,
                  "sigs": [{"key": s.key, "sig": _sig_text(s.sig)} for s in held]})


def sign_or_add(data, key, key_name: str) -> bytes:
    """`schedule sign` / `trust sign`: a bare document is signed (single form); an
    envelope gets one more signature (`sigs` form)."""
    raw = encode_utf8(data, "the file") if isinstance(data, str) else bytes(data)
    text = decode_utf8(raw, "the file")
    if is_envelope(strict_loads(text, "the file")):
        return add_signature(raw, key, key_name)
    return sign_document(text, key, key_name)


def is_envelope(obj) -> bool:
    """Does a parsed JSON value look like an envelope rather than a bare document?"""
    return (isinstance(obj, dict) and "payload" in obj and ("sig" in obj or "sigs" in obj)
            and "type" not in obj)


def _string_field(obj: dict, name: str, path: str = "envelope") -> str:
    value = obj[name]
    if not isinstance(value, str):
        raise DocumentError(f"{path}.{name}: expected a string, got {describe(value)}")
    return value


def _check_shape(obj) -> dict:
    if not isinstance(obj, dict):
        raise DocumentError(f"envelope: expected a JSON object, got {describe(obj)}")
    single, multi = ("key" in obj or "sig" in obj), "sigs" in obj
    if single and multi:
        raise DocumentError("envelope: holds both key/sig and sigs; use one form")
    # A missing signature first: a bare document sent without an envelope is "not signed".
    needed = (("sigs", "no signatures"),) if multi else (("sig", "no signature"), ("key", "no key name"))
    for name, what in needed + (("alg", "no alg"),):
        if name not in obj:
            raise SignatureError(f"envelope: {what} (missing {name!r}); the document is not signed")
    allowed = MULTI_FIELDS if multi else SINGLE_FIELDS
    for name in obj:
        if name not in allowed:
            raise DocumentError(f"envelope: unknown field {describe(name)}")
    if "payload" not in obj:
        raise DocumentError("envelope: no payload")
    return obj


def _signature_bytes(text: str, path: str = "envelope.sig") -> bytes:
    try:
        sig = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SignatureError(f"{path}: not base64") from exc
    if len(sig) != SIGNATURE_BYTES:
        raise SignatureError(f"{path}: expected a {SIGNATURE_BYTES}-byte Ed25519 signature, got {len(sig)} bytes")
    return sig


def _key_name(value: str, path: str) -> str:
    if not value or len(value) > MAX_KEY_NAME_LENGTH:
        raise DocumentError(f"{path}: a key name of 1-{MAX_KEY_NAME_LENGTH} characters, got {describe(value)}")
    return value


def _signature_list(value) -> tuple[Signature, ...]:
    if not isinstance(value, list):
        raise DocumentError(f"envelope.sigs: expected a list, got {describe(value)}")
    if not value:
        raise SignatureError("envelope.sigs: empty; the document is not signed")
    if len(value) > MAX_SIGNATURES:
        raise DocumentError(f"envelope.sigs: at most {MAX_SIGNATURES} signatures, got {len(value)}")
    signatures, names = [], set()
    for i, entry in enumerate(value):
        path = f"envelope.sigs[{i}]"
        if not isinstance(entry, dict):
            raise DocumentError(f"{path}: expected an object, got {describe(entry)}")
        for name in entry:
            if name not in SIGNATURE_FIELDS:
                raise DocumentError(f"{path}: unknown field {describe(name)}")
        for name in SIGNATURE_FIELDS:
            if name not in entry:
                raise DocumentError(f"{path}.{name}: required")
        key = _key_name(_string_field(entry, "key", path), f"{path}.key")
        if key in names:
            raise DocumentError(f"{path}.key: {describe(key)} signs twice; one signature per key name")
        names.add(key)
        signatures.append(Signature(key, _signature_bytes(_string_field(entry, "sig", path), f"{path}.sig")))
    return tuple(signatures)


def read_envelope(raw) -> Envelope:
    """Parse an envelope's shape (either form) without checking any signature."""
    if isinstance(raw, str):
        raw = encode_utf8(raw, "envelope")
    check_size(len(raw), "envelope")
    obj = _check_shape(strict_loads(decode_utf8(raw, "envelope"), "envelope"))
    payload, alg = _string_field(obj, "payload"), _string_field(obj, "alg")
    multi = "sigs" in obj
    if multi:
        signatures = _signature_list(obj["sigs"])
    else:
        key = _key_name(_string_field(obj, "key"), "envelope.key")
        signatures = (Signature(key, _signature_bytes(_string_field(obj, "sig"))),)
    if alg != ALG:
        raise SignatureError(f"envelope.alg: {describe(alg)} is not supported (only {ALG!r})")
    encode_utf8(payload, "envelope.payload")  # lone surrogates: refused before anyone verifies
    return Envelope(payload, alg, signatures, multi)


def check_signatures(envelope: Envelope, ring) -> list[SignatureCheck]:
    """Each signature checked against `ring` ({name: Ed25519 public key}), in envelope order."""
    data = envelope.data()
    checks = []
    for signature in envelope.signatures:
        public_key = ring.get(signature.key)
        if public_key is None:
            checks.append(SignatureCheck(signature.key, "unknown"))
            continue
        try:
            public_key.verify(signature.sig, data)
        except InvalidSignature:
            checks.append(SignatureCheck(signature.key, "bad", public_key))
        else:
            checks.append(SignatureCheck(signature.key, "valid", public_key))
    return checks


def open_envelope(raw, trusted) -> tuple[str, str]:
    """Legacy check: verify against flat trusted keys; return (payload_text, key_name).

    The first valid signature by a trusted name wins; signatures by unknown names are
    ignored. Without one, the refusal names a bad signature before an unknown key."""
    envelope = read_envelope(raw)
    checks = check_signatures(envelope, trusted)
    for check in checks:
        if check.status == "valid":
            return envelope.payload, check.key
    bad = [c.key for c in checks if c.status == "bad"]
    if bad:
        raise SignatureError(f"bad signature: it does not match the payload under key {describe(bad[0])}")
    names = ", ".join(describe(c.key) for c in checks)
    raise SignatureError(f"key {names} is not trusted by this unit" if len(checks) == 1
                         else f"keys {names} are not trusted by this unit")
