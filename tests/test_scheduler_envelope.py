"""Keys and signed envelopes: what verifies, and every way an envelope is refused."""

import base64
import json
import stat

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from loaxa.errors import ConfigError, DocumentError, KeyFileError, SignatureError
from scheduler import (MAX_DOCUMENT_BYTES, generate_key, load_private_key, load_trusted_keys, open_envelope,
                       public_key_b64, read_envelope, sign_document, write_keypair)
from tests.test_scheduler_document import dump, example_doc

PAYLOAD = dump(example_doc())


@pytest.fixture
def keypair(tmp_path):
    key_path, pub_path = write_keypair(tmp_path / "keys", "dak-lak-2026")
    name, key = load_private_key(key_path)
    return name, key, pub_path


@pytest.fixture
def trusted(keypair):
    name, _, pub_path = keypair
    return load_trusted_keys({name: pub_path.read_text()})


def envelope_dict(raw: bytes) -> dict:
    return json.loads(raw.decode("utf-8"))


def encode(obj) -> bytes:
    return json.dumps(obj).encode("utf-8")


# ---- keys ----

def test_write_keypair_files(tmp_path):
    key_path, pub_path = write_keypair(tmp_path / "new" / "keys", "operator")
    assert key_path == tmp_path / "new" / "keys" / "operator.key"
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert key_path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    line = pub_path.read_text()
    assert line.endswith("\n") and line.count("\n") == 1
    assert len(base64.b64decode(line.strip(), validate=True)) == 32
    name, key = load_private_key(key_path)
    assert name == "operator"
    assert public_key_b64(key) == line.strip() == public_key_b64(key.public_key())


def test_write_keypair_never_overwrites(tmp_path):
    key_path, _ = write_keypair(tmp_path, "operator")
    before = key_path.read_bytes()
    with pytest.raises(KeyFileError, match="already exists"):
        write_keypair(tmp_path, "operator")
    assert key_path.read_bytes() == before


def test_write_keypair_refuses_a_pub_left_alone(tmp_path):
    (tmp_path / "operator.pub").write_text("x\n")
    with pytest.raises(KeyFileError, match="operator.pub already exists"):
        write_keypair(tmp_path, "operator")
    assert not (tmp_path / "operator.key").exists()


@pytest.mark.parametrize("name", ["../evil", "a/b", "", "-x", "x" * 65, "tên"])
def test_write_keypair_refuses_bad_names(tmp_path, name):
    with pytest.raises(KeyFileError, match="key name"):
        write_keypair(tmp_path, name)
    assert list(tmp_path.iterdir()) == []


def _rsa_pem() -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _encrypted_pem() -> bytes:
    return generate_key().private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.BestAvailableEncryption(b"secret"))


@pytest.mark.parametrize("content, expected", [
    (None, "cannot read key file"),
    (b"hello", "not a PEM private key"),
    (b"", "not a PEM private key"),
    ("rsa", "not an Ed25519 key"),
    ("encrypted", "password-protected"),
    ("pub", "this is a public key; sign with the .key file"),
])
def test_load_private_key_refusals(tmp_path, content, expected):
    path = tmp_path / "k.key"
    if content == "rsa":
        content = _rsa_pem()
    elif content == "encrypted":
        content = _encrypted_pem()
    elif content == "pub":
        content = (public_key_b64(generate_key()) + "\n").encode()
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(KeyFileError) as info:
        load_private_key(path)
    assert expected in str(info.value) and str(path) in str(info.value)


def test_load_trusted_keys_reports_every_bad_entry():
    good = public_key_b64(generate_key())
    with pytest.raises(ConfigError) as info:
        load_trusted_keys({"good": good, "short": base64.b64encode(b"x" * 31).decode(), "junk": "%%%", "num": 5})
    errors = info.value.errors
    assert len(errors) == 3
    assert any(e.startswith("trust.keys.short: expected 32 bytes") for e in errors)
    assert any(e.startswith("trust.keys.junk: not valid base64") for e in errors)
    assert any(e.startswith("trust.keys.num: expected a base64 string") for e in errors)


def test_load_trusted_keys_accepts_a_pub_line_with_newline():
    key = generate_key()
    trusted = load_trusted_keys({"op": public_key_b64(key) + "\n"})
    assert public_key_b64(trusted["op"]) == public_key_b64(key)


# ---- signing ----

def test_sign_and_open_round_trip(keypair, trusted):
    name, key, _ = keypair
    raw = sign_document(PAYLOAD, key, name)
    env = envelope_dict(raw)
    assert set(env) == {"payload", "alg", "key", "sig"}
    assert (env["payload"], env["alg"], env["key"]) == (PAYLOAD, "ed25519", "dak-lak-2026")
    # the signature is over the payload's UTF-8 bytes exactly, checkable by anyone
    key.public_key().verify(base64.b64decode(env["sig"]), PAYLOAD.encode("utf-8"))
    assert open_envelope(raw, trusted) == (PAYLOAD, "dak-lak-2026")


def test_signing_keeps_vietnamese_text_readable(keypair):
    name, key, _ = keypair
    assert "Giảm nghèo".encode() in sign_document(PAYLOAD, key, name)


def test_read_envelope_does_not_need_trust(keypair):
    name, key, _ = keypair
    envelope = read_envelope(sign_document(PAYLOAD, key, name))
    assert (envelope.key, envelope.payload, len(envelope.sig)) == (name, PAYLOAD, 64)


def test_sign_refuses_an_envelope_over_the_limit(keypair):
    name, key, _ = keypair
    with pytest.raises(DocumentError, match="over the 256 KiB"):
        sign_document('{"x": "' + "\\" * MAX_DOCUMENT_BYTES + '"}', key, name)


# ---- refusals ----

def _signed(keypair, payload=PAYLOAD) -> dict:
    name, key, _ = keypair
    return envelope_dict(sign_document(payload, key, name))


def test_tampered_payload_is_a_bad_signature(keypair, trusted):
    env = _signed(keypair)
    env["payload"] = env["payload"].replace('"version": 3', '"version": 4')
    with pytest.raises(SignatureError, match='bad signature: it does not match the payload under key "dak-lak-2026"'):
        open_envelope(encode(env), trusted)


def test_signature_over_another_payload_is_refused(keypair, trusted):
    other = _signed(keypair, PAYLOAD.replace("06:00", "07:00"))
    env = _signed(keypair)
    env["sig"] = other["sig"]
    with pytest.raises(SignatureError, match="bad signature"):
        open_envelope(encode(env), trusted)


def test_unknown_key_names_the_key(keypair, trusted):
    env = _signed(keypair)
    env["key"] = "ha-noi-2026"
    with pytest.raises(SignatureError, match='key "ha-noi-2026" is not trusted'):
        open_envelope(encode(env), trusted)


def test_a_stranger_signing_under_a_trusted_name_is_refused(trusted):
    raw = sign_document(PAYLOAD, generate_key(), "dak-lak-2026")
    with pytest.raises(SignatureError, match="bad signature"):
        open_envelope(raw, trusted)


def test_nothing_is_trusted_with_no_keys(keypair):
    with pytest.raises(SignatureError, match="not trusted"):
        open_envelope(encode(_signed(keypair)), {})


@pytest.mark.parametrize("change, error, expected", [
    (lambda e: e.pop("sig"), SignatureError, "no signature"),
    (lambda e: e.update(sig=""), SignatureError, "got 0 bytes"),
    (lambda e: e.update(sig="!!not base64!!"), SignatureError, "envelope.sig: not base64"),
    (lambda e: e.update(sig=base64.b64encode(b"x" * 63).decode()), SignatureError, "64-byte"),
    (lambda e: e.pop("key"), SignatureError, "no key name"),
    (lambda e: e.pop("alg"), SignatureError, "no alg"),
    (lambda e: e.update(alg="rsa"), SignatureError, 'envelope.alg: "rsa" is not supported'),
    (lambda e: e.update(alg="ED25519"), SignatureError, "is not supported"),
    (lambda e: e.pop("payload"), DocumentError, "envelope: no payload"),
    (lambda e: e.update(payload={"type": "schedule"}), DocumentError, "envelope.payload: expected a string"),
    (lambda e: e.update(sig=5), DocumentError, "envelope.sig: expected a string, got 5"),
    (lambda e: e.update(extra=1), DocumentError, 'envelope: unknown field "extra"'),
])
def test_envelope_shape_refusals(keypair, trusted, change, error, expected):
    env = _signed(keypair)
    change(env)
    with pytest.raises(error) as info:
        open_envelope(encode(env), trusted)
    assert expected in str(info.value)


@pytest.mark.parametrize("raw, expected", [
    (b"\xff\xfe{}", "envelope is not UTF-8 text"),
    ("{\"payload\": \"caf\u00e9\"}".encode("latin-1"), "envelope is not UTF-8 text"),
    (b'{"payload": "x",', "envelope is not valid JSON"),
    (b"[]", "envelope: expected a JSON object, got a list"),
    (b'"just a string"', "envelope: expected a JSON object"),
    (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    (b'{"payload": "a", "payload": "b", "alg": "ed25519", "key": "k", "sig": ""}', "appears twice"),
])
def test_malformed_envelopes_are_document_errors(trusted, raw, expected):
    with pytest.raises(DocumentError) as info:
        open_envelope(raw, trusted)
    assert expected in str(info.value)


def test_envelope_over_256_kib_is_refused_before_parsing(keypair, trusted):
    env = _signed(keypair)
    env["payload"] += " " * MAX_DOCUMENT_BYTES
    with pytest.raises(DocumentError, match="over the 256 KiB"):
        open_envelope(encode(env), trusted)


def test_payload_with_lone_surrogate_is_refused(keypair, trusted):
    env = _signed(keypair)
    raw = encode(env).replace(b'"payload": "{', b'"payload": "\\ud800{', 1)
    with pytest.raises(DocumentError, match="not valid Unicode"):
        open_envelope(raw, trusted)
