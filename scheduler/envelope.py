"""Signed envelopes: `{"payload", "alg": "ed25519", "key", "sig"}` around a document.

`sig` is Ed25519 over `payload.encode("utf-8")` exactly, so the document needs no
canonical form: the unit verifies the very text the operator wrote, then parses it.
"""

import base64
import binascii
import json
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature

from loaxa.errors import DocumentError, SignatureError
from scheduler._json import check_size, decode_utf8, describe, encode_utf8, strict_loads

__all__ = ["ALG", "Envelope", "is_envelope", "open_envelope", "read_envelope", "sign_document"]

ALG = "ed25519"
FIELDS = ("payload", "alg", "key", "sig")
SIGNATURE_BYTES = 64


@dataclass(frozen=True)
class Envelope:
    payload: str
    alg: str
    key: str
    sig: bytes


def sign_document(payload_text: str, key, key_name: str) -> bytes:
    """The envelope JSON (UTF-8) holding `payload_text` signed by `key` under `key_name`."""
    data = encode_utf8(payload_text, "document")
    sig = base64.b64encode(key.sign(data)).decode("ascii")
    envelope = {"payload": payload_text, "alg": ALG, "key": key_name, "sig": sig}
    raw = json.dumps(envelope, ensure_ascii=False).encode("utf-8")
    check_size(len(raw), "the signed envelope")
    return raw


def is_envelope(obj) -> bool:
    """Does a parsed JSON value look like an envelope rather than a bare document?"""
    return isinstance(obj, dict) and "payload" in obj and "sig" in obj and "type" not in obj


def _string_field(obj: dict, name: str) -> str:
    value = obj[name]
    if not isinstance(value, str):
        raise DocumentError(f"envelope.{name}: expected a string, got {describe(value)}")
    return value


def _check_shape(obj) -> dict:
    if not isinstance(obj, dict):
        raise DocumentError(f"envelope: expected a JSON object, got {describe(obj)}")
    # A missing signature first: a bare document sent without an envelope is "not signed".
    for name, what in (("sig", "no signature"), ("key", "no key name"), ("alg", "no alg")):
        if name not in obj:
            raise SignatureError(f"envelope: {what} (missing {name!r}); the document is not signed")
    for name in obj:
        if name not in FIELDS:
            raise DocumentError(f"envelope: unknown field {describe(name)}")
    if "payload" not in obj:
        raise DocumentError("envelope: no payload")
    return obj


def _signature_bytes(text: str) -> bytes:
    try:
        sig = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SignatureError("envelope.sig: not base64") from exc
    if len(sig) != SIGNATURE_BYTES:
        raise SignatureError(f"envelope.sig: expected a {SIGNATURE_BYTES}-byte Ed25519 signature, "
                             f"got {len(sig)} bytes")
    return sig


def read_envelope(raw: bytes) -> Envelope:
    """Parse an envelope's shape without checking the signature (for tools, not units)."""
    if isinstance(raw, str):
        raw = encode_utf8(raw, "envelope")
    check_size(len(raw), "envelope")
    obj = _check_shape(strict_loads(decode_utf8(raw, "envelope"), "envelope"))
    payload, alg, key, sig = (_string_field(obj, name) for name in FIELDS)
    if alg != ALG:
        raise SignatureError(f"envelope.alg: {describe(alg)} is not supported (only {ALG!r})")
    return Envelope(payload, alg, key, _signature_bytes(sig))


def open_envelope(raw: bytes, trusted) -> tuple[str, str]:
    """Verify an envelope against the trusted keys; return (payload_text, key_name)."""
    envelope = read_envelope(raw)
    public_key = trusted.get(envelope.key)
    if public_key is None:
        raise SignatureError(f"key {describe(envelope.key)} is not trusted by this unit")
    data = encode_utf8(envelope.payload, "envelope.payload")
    try:
        public_key.verify(envelope.sig, data)
    except InvalidSignature as exc:
        raise SignatureError(f"bad signature: it does not match the payload under key "
                             f"{describe(envelope.key)}") from exc
    return envelope.payload, envelope.key
