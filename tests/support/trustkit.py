"""Keys, trust documents and envelopes built straight from SPEC's formats with `cryptography`.

Nothing here goes through loaxa's own signing code, so tests that use it check that a
unit reads what any other tool following SPEC would write.
"""

import base64
import json
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

UNIT = "dl-lak-bongkrang-01"
GROUPS = ("dak-lak/lak/bong-krang",)
PREFIX = "loaxa"


@dataclass(frozen=True)
class Key:
    name: str
    private: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate, repr=False)

    @property
    def pub(self) -> str:
        raw = self.private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return base64.b64encode(raw).decode("ascii")

    @property
    def public(self):
        return self.private.public_key()

    def sign(self, payload: str) -> dict:
        return {"key": self.name, "sig": base64.b64encode(self.private.sign(payload.encode("utf-8"))).decode()}


def envelope(payload: str, *signers: Key, single: bool = False) -> bytes:
    """SPEC's envelope: the single key/sig form for one signer when `single`, else `sigs`."""
    if single:
        (signer,) = signers
        return json.dumps({"payload": payload, "alg": "ed25519", **signer.sign(payload)}).encode()
    return json.dumps({"payload": payload, "alg": "ed25519", "sigs": [s.sign(payload) for s in signers]}).encode()


def key_entry(key: Key, roles, scope, **extra) -> dict:
    return {"pub": key.pub, "roles": list(roles), "scope": list(scope), **extra}


def trust_doc(keys: dict, *, version=7, targets=("group:dak-lak",), require=None, root=None,
              expires_at="2027-12-31T00:00:00+07:00", issued_at="2026-11-26T08:00:00+07:00", doc_id="dak-lak") -> str:
    doc = {"type": "trust", "id": doc_id, "version": version, "targets": list(targets), "issued_at": issued_at,
           "expires_at": expires_at, "keys": keys, "require": require or {}, "root": root}
    return json.dumps(doc, ensure_ascii=False)


def root_set(*keys: Key, threshold: int) -> dict:
    return {"keys": {k.name: k.pub for k in keys}, "threshold": threshold}


def schedule_doc(*, doc_id="dak-lak/lak/2026-w48", version=3, targets=("group:dak-lak/lak",),
                 priorities=("normal",)) -> str:
    items = [{"id": f"i{n}", "play": ["chime"], "at": f"0{6 + n}:00", "priority": p}
             for n, p in enumerate(priorities)]
    return json.dumps({"type": "schedule", "id": doc_id, "version": version, "targets": list(targets),
                       "issued_at": "2026-11-26T08:00:00+07:00", "valid_from": "2026-11-30",
                       "valid_until": "2026-12-06", "timezone": "Asia/Ho_Chi_Minh", "items": items})


def command_doc(action: str, args: dict, *, target="group:dak-lak/lak", command_id="c-1") -> str:
    return json.dumps({"type": "command", "id": command_id, "issued_at": "2026-12-01T08:00:00+07:00",
                       "expires_at": "2026-12-01T08:05:00+07:00", "target": target, "action": action,
                       "args": args})
