"""Trust documents: SPEC's format parses; every refusal names its field; roots verify them."""

import json
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings, strategies as st

from loaxa.errors import DocumentError, TargetError, TrustError, VersionError
from scheduler.trust import parse_trust, topic_parts, verify_trust, RootSet
from tests.support.trustkit import GROUPS, UNIT, Key, envelope, key_entry, root_set, trust_doc

NOW = datetime(2026, 12, 1, 8, 0, tzinfo=timezone(timedelta(hours=7)))
EDITOR, APPROVER, EMERGENCY = Key("lak-editor"), Key("so-approver"), Key("so-emergency")
R1, R2, R3 = Key("dak-lak-root-1"), Key("dak-lak-root-2"), Key("dak-lak-root-3")
LEGACY = Key("dak-lak-2026")
TOPIC = "loaxa/group/dak-lak/trust"


def spec_keys() -> dict:
    return {"lak-editor": key_entry(EDITOR, ["editor"], ["group:dak-lak/lak"],
                                    expires_at="2027-06-30T00:00:00+07:00"),
            "so-approver": key_entry(APPROVER, ["approver", "operator"], ["group:dak-lak"]),
            "so-emergency": key_entry(EMERGENCY, ["emergency"], ["group:dak-lak"])}


def spec_doc(**kw) -> dict:
    kw.setdefault("require", {"schedule": ["editor", "approver"]})
    return json.loads(trust_doc(spec_keys(), **kw))


def refusal(doc) -> str:
    with pytest.raises(DocumentError) as info:
        parse_trust(json.dumps(doc))
    assert "\n" not in str(info.value)
    return str(info.value)


def test_spec_example_parses():
    doc = parse_trust(json.dumps(spec_doc()))
    assert (doc.id, doc.version, doc.targets, doc.root) == ("dak-lak", 7, ("group:dak-lak",), None)
    assert doc.keys["so-approver"].roles == {"approver", "operator"}
    assert doc.keys["lak-editor"].scope == ("group:dak-lak/lak",)
    assert doc.keys["lak-editor"].expires_at == datetime.fromisoformat("2027-06-30T00:00:00+07:00")
    assert doc.keys["so-emergency"].slots is None and doc.keys["so-emergency"].pub == EMERGENCY.pub
    assert doc.require == {"schedule": ("editor", "approver")}


def test_root_and_slots_parse():
    doc = spec_doc(root=root_set(R1, R2, threshold=2))
    doc["keys"]["national"] = key_entry(Key("vn"), ["emergency"], ["group:dak-lak"], slots=["national"])
    parsed = parse_trust(json.dumps(doc))
    assert parsed.root.threshold == 2 and set(parsed.root.keys) == {R1.name, R2.name}
    assert parsed.keys["national"].slots == ("national",)


def _set(path, value):
    def change(doc):
        *head, last = path
        for part in head:
            doc = doc[part]
        doc[last] = value
    return change


def _drop(path):
    def change(doc):
        *head, last = path
        for part in head:
            doc = doc[part]
        del doc[last]
    return change


@pytest.mark.parametrize("change, expected", [
    (_set(["extra"], 1), "extra: unknown field"),
    (_set(["type"], "schedule"), 'type: expected "trust"'),
    (_drop(["expires_at"]), "expires_at: required"),
    (_drop(["keys"]), "keys: required"),
    (_set(["version"], 0), "version: must be a positive integer"),
    (_set(["version"], "7"), "version: expected an integer"),
    (_set(["targets"], []), "targets: must not be empty"),
    (_set(["expires_at"], "2026-01-01T00:00:00+07:00"), "expires_at: 2026-01-01T00:00:00+07:00 is not after"),
    (_set(["keys", "lak-editor", "roles"], []), "keys.lak-editor.roles: must not be empty"),
    (_set(["keys", "lak-editor", "roles"], ["admin"]), "keys.lak-editor.roles[0]: must be one of editor"),
    (_set(["keys", "lak-editor", "roles"], ["editor", "editor"]), "keys.lak-editor.roles[1]: 'editor' given twice"),
    (_set(["keys", "lak-editor", "scope"], ["dak-lak"]), "keys.lak-editor.scope[0]: expected unit:ID"),
    (_set(["keys", "lak-editor", "scope"], []), "keys.lak-editor.scope: must not be empty"),
    (_set(["keys", "lak-editor", "scope"], "group:dak-lak"), "keys.lak-editor.scope: expected a list"),
    (_set(["keys", "lak-editor", "pub"], "AAAA"), "keys.lak-editor.pub: expected 32 bytes"),
    (_set(["keys", "lak-editor", "colour"], "red"), "keys.lak-editor.colour: unknown field"),
    (_set(["keys", "lak-editor", "expires_at"], "soon"), "keys.lak-editor.expires_at: expected a date-time"),
    (_set(["keys", "lak-editor", "slots"], ["trust"]), "keys.lak-editor.slots[0]: a slot is"),
    (_set(["keys", "lak-editor", "slots"], ["UP"]), "keys.lak-editor.slots[0]: a slot is"),
    (_set(["keys", "../x"], {}), 'keys["../x"]: a key name'),
    (_set(["require", "schedule"], []), "require.schedule: must not be empty"),
    (_set(["require", "schedule"], ["boss"]), "require.schedule[0]: must be one of"),
    (_set(["require", "party"], ["editor"]), "require.party: unknown kind"),
    (_set(["require", "schedule"], ["editor"] * 9), "require.schedule: at most 8 roles"),
    (_set(["root"], {"keys": {}, "threshold": 1}), "root.keys: must not be empty"),
    (_set(["root"], {"keys": {"r": "AAAA"}, "threshold": 1}), "root.keys.r: expected 32 bytes"),
    (_set(["root"], {"keys": {"r": Key("r").pub}, "threshold": 2}), "root.threshold: must be 1 to the number"),
    (_set(["root"], {"keys": {"r": Key("r").pub}, "threshold": 0}), "root.threshold: must be 1 to the number"),
    (_set(["root"], {"keys": {"r": Key("r").pub}}), "root.threshold: required"),
    (_set(["root"], {"keys": {"r": Key("r").pub}, "threshold": 1, "x": 1}), "root.x: unknown field"),
    (_set(["root"], {"keys": {"r": R1.pub, "s": R1.pub}, "threshold": 1}), "root.keys.s.pub: the same public key"),
    (_set(["root"], {"keys": {"r": EDITOR.pub}, "threshold": 1}), "keys.lak-editor.pub: is a root key"),
    (_set(["keys", "twin"], key_entry(EDITOR, ["editor"], ["group:dak-lak"])), "keys.twin.pub: the same public key"),
])
def test_refusals_name_the_field(change, expected):
    doc = spec_doc()
    change(doc)
    assert expected in refusal(doc)


def test_a_document_over_256_kib_is_refused():
    doc = spec_doc()
    doc["id"] = "x"
    text = json.dumps(doc).replace('"id": "x"', '"id": "x"' + " " * (256 * 1024))
    with pytest.raises(DocumentError, match="over the 256 KiB"):
        parse_trust(text)


@pytest.mark.parametrize("topic, expected", [
    ("loaxa/group/dak-lak/trust", ("group:dak-lak", "trust", None)),
    ("loaxa/unit/dl-x-01/cmd", ("unit:dl-x-01", "cmd", None)),
    ("loaxa/group/dak-lak/lak/schedule/national", ("group:dak-lak/lak", "schedule", "national")),
    ("loaxa/group/dak-lak/schedule", ("group:dak-lak", "schedule", None)),
    ("loaxa/group/dak-lak/schedule/trust", None),
    ("loaxa/group/schedule/x/trust", None),
    ("other/group/dak-lak/trust", None),
    ("loaxa/group/dak-lak/track", None),
])
def test_topic_parts(topic, expected):
    assert topic_parts("loaxa", topic) == expected


# ---- verification against the roots ----

def verify(raw, *, roots=None, legacy=None, current=None, min_version=0, now=NOW, clock_trusted=True,
           topic=TOPIC, groups=GROUPS):
    return verify_trust(raw, roots=roots, legacy=legacy, current_version=current, min_version=min_version,
                        now=now, clock_trusted=clock_trusted, unit_id=UNIT, groups=groups, topic=topic)


ROOTS_2_OF_3 = RootSet.from_mapping({k.name: k.pub for k in (R1, R2, R3)}, 2)


def test_two_of_three_roots_verify():
    text = trust_doc(spec_keys())
    verified = verify(envelope(text, R1, R3), roots=ROOTS_2_OF_3)
    assert verified.document.version == 7 and verified.roots is ROOTS_2_OF_3


def test_one_root_of_a_two_threshold_is_refused_naming_the_count():
    with pytest.raises(TrustError, match=r"signed by 1 distinct root keys in force \(needs 2"):
        verify(envelope(trust_doc(spec_keys()), R1, EDITOR), roots=ROOTS_2_OF_3)


def test_one_root_key_under_two_names_counts_once():
    twin = Key("dak-lak-root-9", R1.private)
    roots = RootSet.from_mapping({R1.name: R1.pub, twin.name: twin.pub, R2.name: R2.pub}, 2)
    with pytest.raises(TrustError, match="signed by 1 distinct"):
        verify(envelope(trust_doc(spec_keys()), R1, twin), roots=roots)


def test_a_forged_root_signature_does_not_count():
    with pytest.raises(TrustError, match="signed by 1 distinct"):
        verify(envelope(trust_doc(spec_keys()), R1, Key(R2.name)), roots=ROOTS_2_OF_3)


@pytest.mark.parametrize("version, current, min_version, expected", [
    (7, 7, 0, "not newer than version 7"),
    (6, 7, 0, "not newer than version 7"),
    (3, None, 5, "below this unit's min_version 5"),
])
def test_versions_refused(version, current, min_version, expected):
    raw = envelope(trust_doc(spec_keys(), version=version), R1, R2)
    with pytest.raises(VersionError, match=expected):
        verify(raw, roots=ROOTS_2_OF_3, current=current, min_version=min_version)


def test_min_version_itself_is_accepted():
    assert verify(envelope(trust_doc(spec_keys(), version=5), R1, R2), roots=ROOTS_2_OF_3,
                  min_version=5).document.version == 5


def test_expired_on_arrival_is_refused_only_with_a_trusted_clock():
    raw = envelope(trust_doc(spec_keys(), expires_at="2026-11-30T00:00:00+07:00"), R1, R2)
    with pytest.raises(TrustError, match="expired at 2026-11-30T00:00:00\\+07:00 before it arrived"):
        verify(raw, roots=ROOTS_2_OF_3)
    assert verify(raw, roots=ROOTS_2_OF_3, clock_trusted=False).document.version == 7


@pytest.mark.parametrize("targets, topic, expected", [
    (["group:dak-lak-2"], "loaxa/group/dak-lak-2/trust", "name neither unit"),
    (["group:dak-lak"], "loaxa/group/dak-lak/lak/trust", "not the topic of any of its targets"),
    (["group:dak-lak", "group:gia-lai"], "loaxa/group/gia-lai/trust", "not one of this unit's topics"),
    (["group:dak-lak"], "loaxa/group/dak-lak/schedule", "not a trust topic"),
])
def test_targets_and_topic(targets, topic, expected):
    raw = envelope(trust_doc(spec_keys(), targets=targets), R1, R2)
    with pytest.raises(TargetError, match=expected):
        verify(raw, roots=ROOTS_2_OF_3, topic=topic)


def test_unit_target_on_the_unit_topic():
    raw = envelope(trust_doc(spec_keys(), targets=[f"unit:{UNIT}"]), R1, R2)
    assert verify(raw, roots=ROOTS_2_OF_3, topic=f"loaxa/unit/{UNIT}/trust").document


# ---- root rotation ----

N1, N2, N3 = Key("new-root-1"), Key("new-root-2"), Key("new-root-3")


def rotation(*signers):
    return envelope(trust_doc(spec_keys(), version=8, root=root_set(N1, N2, N3, threshold=2)), *signers)


def test_rotation_needs_the_old_threshold_and_the_new_one():
    verified = verify(rotation(R1, R2, N1, N3), roots=ROOTS_2_OF_3, current=7)
    assert set(verified.roots.keys) == {N1.name, N2.name, N3.name} and verified.roots.threshold == 2


def test_rotation_with_too_few_old_roots_is_refused():
    with pytest.raises(TrustError, match="signed by 1 distinct root keys in force"):
        verify(rotation(R1, N1, N2, N3), roots=ROOTS_2_OF_3, current=7)


def test_rotation_with_too_few_new_roots_is_refused():
    with pytest.raises(TrustError, match="signed by 1 distinct keys of the new root set"):
        verify(rotation(R1, R2, N1), roots=ROOTS_2_OF_3, current=7)


def test_a_root_in_both_sets_counts_for_both():
    raw = envelope(trust_doc(spec_keys(), version=8, root=root_set(R1, N1, threshold=2)), R1, R2, N1)
    assert verify(raw, roots=ROOTS_2_OF_3, current=7).roots.threshold == 2


def test_restating_the_same_roots_is_not_a_rotation():
    raw = envelope(trust_doc(spec_keys(), version=8, root=root_set(R1, R2, R3, threshold=2)), R1, R2)
    assert verify(raw, roots=ROOTS_2_OF_3, current=7).roots.same_as(ROOTS_2_OF_3)


def test_keys_may_not_hold_a_root_key_in_force():
    keys = spec_keys()
    keys["sneaky"] = key_entry(R1, ["editor"], ["group:dak-lak"])
    with pytest.raises(DocumentError, match="keys.sneaky.pub: is a root key"):
        verify(envelope(trust_doc(keys), R1, R2), roots=ROOTS_2_OF_3)


# ---- bootstrap from legacy keys ----

def bootstrap(*signers, root=True):
    return envelope(trust_doc(spec_keys(), root=root_set(R1, R2, R3, threshold=2) if root else None), *signers)


def test_bootstrap_with_roots_at_threshold_and_a_legacy_key():
    verified = verify(bootstrap(R1, R2, LEGACY), legacy={LEGACY.name: LEGACY.public})
    assert verified.roots.threshold == 2 and set(verified.roots.keys) == {R1.name, R2.name, R3.name}


@pytest.mark.parametrize("signers, root, legacy, expected", [
    ((R1, R2), True, True, "also be signed by one of this unit's legacy"),
    ((R1, LEGACY), True, True, "signed by 1 distinct keys of its new root set"),
    ((R1, R2, LEGACY), False, True, "must carry its roots"),
    ((R1, R2, LEGACY), True, False, "neither roots nor legacy keys"),
    ((R1, R2, Key(LEGACY.name)), True, True, "legacy"),
])
def test_bootstrap_refusals(signers, root, legacy, expected):
    with pytest.raises(TrustError, match=expected):
        verify(bootstrap(*signers, root=root), legacy={LEGACY.name: LEGACY.public} if legacy else None)


# ---- roots from the config and from root.json ----

def test_roots_from_config():
    from loaxa.errors import ConfigError
    from scheduler.trust import roots_from_config
    assert roots_from_config({}, 1) is None and roots_from_config(None) is None
    roots = roots_from_config({R1.name: R1.pub, R2.name: R2.pub}, 2)
    assert roots.threshold == 2 and roots.fingerprints() == {R1.pub, R2.pub}
    with pytest.raises(ConfigError) as info:
        roots_from_config({R1.name: R1.pub, "bad": "AAAA", "twin": R1.pub}, 5)
    errors = info.value.errors
    assert any(e.startswith("trust.root.bad: expected 32 bytes") for e in errors)
    assert any("same public key" in e for e in errors)
    assert any(e.startswith("trust.root_threshold: must be 1 to the number of root keys (3)") for e in errors)


@pytest.mark.parametrize("block, expected", [
    ({"keys": {}, "threshold": 1}, "root.keys: expected a non-empty"),
    ({"keys": {"r": R1.pub}, "threshold": 2}, "root.threshold: must be 1 to"),
    ({"keys": {"r": R1.pub}}, "expected an object with keys and threshold"),
    ({"keys": {"r": "xx"}, "threshold": 1}, "root.keys.r: not valid base64"),
])
def test_root_set_from_json_refusals(block, expected):
    with pytest.raises(ValueError, match=expected):
        RootSet.from_json(block)


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                    max_leaves=8)
FIELD_PATHS = [["id"], ["version"], ["targets"], ["issued_at"], ["expires_at"], ["keys"], ["require"], ["root"],
               ["keys", "lak-editor"], ["keys", "lak-editor", "pub"], ["keys", "lak-editor", "roles"],
               ["keys", "lak-editor", "scope"], ["keys", "lak-editor", "expires_at"], ["keys", "lak-editor", "slots"],
               ["require", "schedule"], ["type"]]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(FIELD_PATHS), JSON)
def test_any_value_anywhere_is_parsed_or_refused_naming_a_field(path, value):
    doc = spec_doc()
    _set(path, value)(doc)
    try:
        parse_trust(json.dumps(doc))
    except DocumentError as exc:
        message = str(exc)
        assert "\n" not in message and ":" in message


# ---- [trust] root, root_threshold, min_version in the unit's config ----

def _config(tmp_path, trust):
    from provisioning.config import parse_config
    data = {"unit": {"id": "dl-lak-bongkrang-01", "state_dir": str(tmp_path)},
            "broker": {"url": "mqtt://127.0.0.1:1"}, "hardware": {"mode": "mock"}, "trust": trust}
    return parse_config(data, base_dir=tmp_path)


def test_config_reads_roots_threshold_and_min_version(tmp_path):
    from scheduler.trust import roots_from_config
    cfg = _config(tmp_path, {"root": {R1.name: R1.pub, R2.name: R2.pub}, "root_threshold": 2, "min_version": 4})
    assert (cfg.trust.root_threshold, cfg.trust.min_version) == (2, 4)
    assert roots_from_config(cfg.trust.root, cfg.trust.root_threshold).fingerprints() == {R1.pub, R2.pub}
    plain = _config(tmp_path, {})
    assert (plain.trust.root, plain.trust.root_threshold, plain.trust.min_version) == ({}, 1, 0)


@pytest.mark.parametrize("trust, expected", [
    ({"root": {"r": R1.pub}, "root_threshold": 2}, "trust.root_threshold: 2 is more than the 1 root keys"),
    ({"root_threshold": 2}, "trust.root_threshold: given without trust.root"),
    ({"root": {"r": R1.pub, "s": R1.pub}}, "trust.root: two names hold the same public key"),
    ({"root": {"r": "AAAA"}}, "trust.root.r: decodes to 3 bytes"),
    ({"min_version": -1}, "trust.min_version"),
    ({"root_threshold": 0}, "trust.root_threshold"),
])
def test_config_refuses_bad_roots_naming_the_key(tmp_path, trust, expected):
    from loaxa.errors import ConfigError
    with pytest.raises(ConfigError) as info:
        _config(tmp_path, trust)
    assert any(expected in e for e in info.value.errors), info.value.errors
