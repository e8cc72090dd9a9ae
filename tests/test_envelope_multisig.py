"""Envelopes with several signatures: SPEC's `sigs` form, read, checked and added to."""

import base64
import json

import pytest
from hypothesis import given, settings, strategies as st

from loaxa.errors import DocumentError, SignatureError
from scheduler.envelope import (MAX_SIGNATURES, add_signature, check_signatures, is_envelope, open_envelope,
                                read_envelope, sign_document)
from tests.support.trustkit import Key, envelope

PAYLOAD = json.dumps({"type": "schedule", "id": "dak-lak/lak/x", "note": "Giảm nghèo"}, ensure_ascii=False)
A, B, C = Key("a"), Key("b"), Key("c")


def test_a_sigs_envelope_built_straight_from_spec_reads_and_verifies():
    env = read_envelope(envelope(PAYLOAD, A, B))
    assert env.multi and env.payload == PAYLOAD and [s.key for s in env.signatures] == ["a", "b"]
    checks = check_signatures(env, {"a": A.public, "b": B.public})
    assert [c.status for c in checks] == ["valid", "valid"]


def test_the_single_form_still_means_one_signature():
    env = read_envelope(envelope(PAYLOAD, A, single=True))
    assert not env.multi and env.key == "a" and len(env.signatures) == 1
    assert open_envelope(envelope(PAYLOAD, A, single=True), {"a": A.public}) == (PAYLOAD, "a")


def test_both_forms_in_one_envelope_are_refused():
    obj = json.loads(envelope(PAYLOAD, A))
    obj.update(A.sign(PAYLOAD))
    with pytest.raises(DocumentError, match="both key/sig and sigs"):
        read_envelope(json.dumps(obj).encode())


def test_unknown_names_are_ignored_and_a_known_valid_one_counts():
    raw = envelope(PAYLOAD, C, A)
    assert open_envelope(raw, {"a": A.public}) == (PAYLOAD, "a")
    checks = check_signatures(read_envelope(raw), {"a": A.public})
    assert [(c.key, c.status) for c in checks] == [("c", "unknown"), ("a", "valid")]


def test_a_forged_signature_under_a_known_name_does_not_count():
    forged = Key("a")  # another private key under a trusted name
    raw = envelope(PAYLOAD, forged, B)
    checks = check_signatures(read_envelope(raw), {"a": A.public, "b": B.public})
    assert [c.status for c in checks] == ["bad", "valid"]
    with pytest.raises(SignatureError, match='bad signature: .*"a"'):
        open_envelope(envelope(PAYLOAD, forged), {"a": A.public})


def test_only_unknown_names_are_refused_naming_them():
    with pytest.raises(SignatureError, match='keys "b", "c" are not trusted'):
        open_envelope(envelope(PAYLOAD, B, C), {"a": A.public})


@pytest.mark.parametrize("change, error, expected", [
    (lambda e: e.update(sigs=[]), SignatureError, "not signed"),
    (lambda e: e.update(sigs={}), DocumentError, "envelope.sigs: expected a list"),
    (lambda e: e.update(sigs=[5]), DocumentError, "envelope.sigs[0]: expected an object"),
    (lambda e: e["sigs"][0].pop("sig"), DocumentError, "envelope.sigs[0].sig: required"),
    (lambda e: e["sigs"][0].update(extra=1), DocumentError, 'envelope.sigs[0]: unknown field "extra"'),
    (lambda e: e["sigs"][1].update(key="a"), DocumentError, 'envelope.sigs[1].key: "a" signs twice'),
    (lambda e: e["sigs"][0].update(sig="%%"), SignatureError, "envelope.sigs[0].sig: not base64"),
    (lambda e: e["sigs"][0].update(key=""), DocumentError, "envelope.sigs[0].key: a key name"),
    (lambda e: e.pop("alg"), SignatureError, "no alg"),
    (lambda e: e.update(extra=1), DocumentError, 'unknown field "extra"'),
])
def test_sigs_shape_refusals(change, error, expected):
    obj = json.loads(envelope(PAYLOAD, A, B))
    change(obj)
    with pytest.raises(error) as info:
        read_envelope(json.dumps(obj).encode())
    assert expected in str(info.value)


def test_at_most_eight_signatures():
    keys = [Key(f"k{i}") for i in range(MAX_SIGNATURES + 1)]
    assert len(read_envelope(envelope(PAYLOAD, *keys[:MAX_SIGNATURES])).signatures) == MAX_SIGNATURES
    with pytest.raises(DocumentError, match="at most 8 signatures, got 9"):
        read_envelope(envelope(PAYLOAD, *keys))


def test_is_envelope_knows_both_forms():
    assert is_envelope(json.loads(envelope(PAYLOAD, A)))
    assert is_envelope(json.loads(envelope(PAYLOAD, A, single=True)))
    assert not is_envelope(json.loads(PAYLOAD))


# ---- adding signatures ----

def test_add_signature_turns_a_single_envelope_into_sigs_and_anyone_can_verify():
    raw = add_signature(sign_document(PAYLOAD, A.private, "a"), B.private, "b")
    obj = json.loads(raw)
    assert set(obj) == {"payload", "alg", "sigs"} and [s["key"] for s in obj["sigs"]] == ["a", "b"]
    for entry, key in zip(obj["sigs"], (A, B)):  # checked with cryptography alone
        key.public.verify(base64.b64decode(entry["sig"]), PAYLOAD.encode("utf-8"))
    assert "Giảm nghèo".encode() in raw


def test_add_signature_twice_under_one_name_with_one_key_changes_nothing():
    once = add_signature(envelope(PAYLOAD, A), B.private, "b")
    assert add_signature(once, B.private, "b") == once


def test_add_signature_refuses_another_key_under_a_name_already_there():
    with pytest.raises(SignatureError, match='name "a" made by another key'):
        add_signature(envelope(PAYLOAD, A), Key("a").private, "a")


def test_add_signature_refuses_a_ninth():
    full = envelope(PAYLOAD, *[Key(f"k{i}") for i in range(MAX_SIGNATURES)])
    with pytest.raises(SignatureError, match="already holds 8 signatures"):
        add_signature(full, A.private, "a")


@settings(max_examples=25, deadline=None)
@given(st.text(max_size=200), st.lists(st.sampled_from("abcdefgh"), min_size=1, max_size=8, unique=True))
def test_adding_signatures_one_by_one_verifies_every_one(text, names):
    keys = {n: Key(n) for n in names}
    payload = json.dumps({"t": text}, ensure_ascii=False)
    raw = sign_document(payload, keys[names[0]].private, names[0])
    for name in names[1:]:
        raw = add_signature(raw, keys[name].private, name)
    env = read_envelope(raw)
    assert env.payload == payload
    checks = check_signatures(env, {n: k.public for n, k in keys.items()})
    assert [c.key for c in checks] == names and {c.status for c in checks} == {"valid"}


def test_sign_or_add_signs_a_bare_document_then_adds():
    from scheduler.envelope import sign_or_add
    first = sign_or_add(PAYLOAD, A.private, "a")
    assert set(json.loads(first)) == {"payload", "alg", "key", "sig"}
    second = sign_or_add(first, B.private, "b")
    assert [s.key for s in read_envelope(second).signatures] == ["a", "b"]
    with pytest.raises(DocumentError, match="not valid JSON"):
        sign_or_add(b"{", A.private, "a")
