"""The judge: roles per kind with a true assignment of distinct keys, scope by segments,
expiry, slots, legacy keys; and which schedules leave force under a new trust."""

import itertools
import json
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings, strategies as st

from loaxa.errors import SignatureError
from scheduler import parse_command, parse_schedule
from scheduler.judge import (Authority, UnitContext, assign_roles, command_subject, high_water, id_group_path,
                             is_inside, judge, release_subject, schedule_subject, schedules_out_of_force)
from scheduler.trust import ROLES, parse_trust
from tests.support.trustkit import (GROUPS, UNIT, Key, command_doc, envelope, key_entry, schedule_doc,
                                    trust_doc)

NOW = datetime(2026, 12, 1, 8, 0, tzinfo=timezone(timedelta(hours=7)))
CTX = UnitContext(UNIT, GROUPS)
LAK_TOPIC = "loaxa/group/dak-lak/lak/schedule"

EDITOR = Key("lak-editor")  # editor for dak-lak/lak
KRONG = Key("krong-editor")  # editor for dak-lak/krong-ana
APPROVER = Key("so-approver")  # approver + operator, whole province
EMERGENCY = Key("so-emergency")
BOTH = Key("so-both")  # editor + approver, whole province
EDITOR2 = Key("so-editor")  # editor, whole province
TECH = Key("lak-tech")
OLD = Key("old-editor")


def authority(require=None, extra=None) -> Authority:
    keys = {
        EDITOR.name: key_entry(EDITOR, ["editor"], ["group:dak-lak/lak"]),
        KRONG.name: key_entry(KRONG, ["editor"], ["group:dak-lak/krong-ana"]),
        APPROVER.name: key_entry(APPROVER, ["approver", "operator"], ["group:dak-lak"]),
        EMERGENCY.name: key_entry(EMERGENCY, ["emergency"], ["group:dak-lak"]),
        BOTH.name: key_entry(BOTH, ["editor", "approver"], ["group:dak-lak"]),
        EDITOR2.name: key_entry(EDITOR2, ["editor"], ["group:dak-lak"]),
        TECH.name: key_entry(TECH, ["technician"], ["group:dak-lak/lak"]),
        OLD.name: key_entry(OLD, ["editor"], ["group:dak-lak"], expires_at="2026-11-30T00:00:00+07:00"),
        **(extra or {}),
    }
    return Authority.from_trust(parse_trust(trust_doc(keys, require=require)))


TWO_PERSON = {"schedule": ["editor", "approver"]}


def judge_schedule(raw, auth, topic=LAK_TOPIC, now=NOW, context=CTX):
    from scheduler.envelope import read_envelope
    schedule = parse_schedule(read_envelope(raw).payload)
    return judge(raw, schedule_subject(schedule, topic), auth, now=now, context=context)


def judge_command(raw, auth, topic="loaxa/group/dak-lak/lak/cmd", emergency_playing=False):
    from scheduler.envelope import read_envelope
    command = parse_command(read_envelope(raw).payload, NOW)
    return judge(raw, command_subject(command, topic, emergency_playing=emergency_playing), auth, now=NOW,
                 context=CTX)


# ---- roles ----

def test_an_editor_schedule_in_its_district_passes_with_the_default_requirement():
    verdict = judge_schedule(envelope(schedule_doc(), EDITOR), authority())
    assert verdict.ok and verdict.counted == (EDITOR.name,)
    assert verdict.requirements[0].assignment == (("editor", EDITOR.name),)


def test_an_editor_schedule_without_the_approver_is_refused_naming_the_role():
    verdict = judge_schedule(envelope(schedule_doc(), EDITOR), authority(TWO_PERSON))
    assert not verdict.ok and verdict.missing == (("schedule", "approver"),)
    with pytest.raises(SignatureError, match="missing role approver"):
        verdict.check()


def test_editor_plus_approver_pass():
    assert judge_schedule(envelope(schedule_doc(), EDITOR, APPROVER), authority(TWO_PERSON)).ok


def test_one_key_holding_both_roles_does_not_count_twice():
    verdict = judge_schedule(envelope(schedule_doc(), BOTH), authority(TWO_PERSON))
    assert not verdict.ok and len(verdict.missing) == 1


def test_a_editor_approver_plus_b_editor_pass_in_either_order():
    for signers in ((BOTH, EDITOR2), (EDITOR2, BOTH)):
        verdict = judge_schedule(envelope(schedule_doc(), *signers), authority(TWO_PERSON))
        assert verdict.ok
        assert dict(verdict.requirements[0].assignment) == {"editor": EDITOR2.name, "approver": BOTH.name}


def test_two_names_for_one_public_key_count_once():
    twin = Key("twin", APPROVER.private)
    auth = Authority.from_legacy({APPROVER.name: APPROVER.public, twin.name: twin.public})
    auth = Authority(auth.keys, {"schedule": ("editor", "editor")}, legacy=True)
    verdict = judge_schedule(envelope(schedule_doc(), APPROVER, twin), auth)
    assert not verdict.ok and "same public key as so-approver; counted once" in verdict.reason()


def test_an_emergency_signed_by_an_editor_is_refused():
    verdict = judge_schedule(envelope(schedule_doc(priorities=("emergency",)), EDITOR), authority())
    assert verdict.missing == (("emergency", "emergency"),)
    assert judge_schedule(envelope(schedule_doc(priorities=("emergency",)), EMERGENCY), authority()).ok


def test_a_mixed_schedule_needs_both_requirements():
    doc = schedule_doc(priorities=("normal", "emergency"))
    assert judge_schedule(envelope(doc, EDITOR), authority()).missing == (("emergency", "emergency"),)
    assert judge_schedule(envelope(doc, EMERGENCY), authority()).missing == (("schedule", "editor"),)
    assert judge_schedule(envelope(doc, EDITOR, EMERGENCY), authority()).ok


def test_an_empty_revocation_needs_the_schedule_requirement():
    assert judge_schedule(envelope(schedule_doc(priorities=()), EDITOR), authority()).ok
    assert not judge_schedule(envelope(schedule_doc(priorities=()), TECH), authority()).ok


@pytest.mark.parametrize("action, args, emergency_playing, passes, fails", [
    ("play", {"stream": "http://icecast.example.vn/xa", "duration_s": 60}, False, [APPROVER], [TECH]),
    ("play", {"url": "https://m.example.vn/a.mp3", "sha256": "a" * 64}, False, [APPROVER], [EDITOR]),
    ("play", {"media": ["chime"]}, False, [APPROVER], [EMERGENCY, EDITOR]),
    ("play", {"media": ["chime"], "priority": "emergency"}, False, [EMERGENCY], [APPROVER]),
    ("play", {"stream": "http://icecast.example.vn/xa", "duration_s": 60, "priority": "emergency"}, False,
     [APPROVER, EMERGENCY], [EMERGENCY]),
    ("stop", {}, False, [APPROVER], [TECH]),
    ("stop", {}, True, [EMERGENCY], [APPROVER]),
    ("set_volume", {"volume": 0}, False, [APPROVER], [EDITOR, EMERGENCY]),
    ("ping", {}, False, [TECH], [APPROVER]),
    ("selftest", {}, False, [TECH], [EDITOR]),
    ("sync", {}, False, [TECH], [EMERGENCY]),
])
def test_command_roles(action, args, emergency_playing, passes, fails):
    auth = authority()
    assert judge_command(envelope(command_doc(action, args), *passes), auth, emergency_playing=emergency_playing).ok
    verdict = judge_command(envelope(command_doc(action, args), *fails), auth, emergency_playing=emergency_playing)
    assert not verdict.ok and "missing role" in verdict.reason()


def test_a_stream_play_by_an_operator_key_alone_is_refused_naming_approver():
    operator = Key("op")
    auth = authority(extra={"op": key_entry(operator, ["operator"], ["group:dak-lak"])})
    raw = envelope(command_doc("play", {"stream": "http://icecast.example.vn/xa", "duration_s": 60}), operator)
    assert judge_command(raw, auth).missing == (("announce", "approver"),)


def test_require_overrides_the_defaults():
    auth = authority({"set_volume": ["operator", "technician"]})
    raw = command_doc("set_volume", {"volume": 10})
    assert not judge_command(envelope(raw, APPROVER), auth).ok
    assert judge_command(envelope(raw, APPROVER, TECH), auth).ok


def test_release_needs_the_release_role():
    releaser = Key("rel")
    auth = authority(extra={"rel": key_entry(releaser, ["release"], ["group:dak-lak"])})
    subject = release_subject("loaxa", ["group:dak-lak"], "loaxa/group/dak-lak/release")
    assert judge(envelope("{}", releaser), subject, auth, now=NOW, context=CTX).ok
    assert not judge(envelope("{}", APPROVER), subject, auth, now=NOW, context=CTX).ok


# ---- scope ----

def test_a_district_editor_schedule_for_another_district_is_refused_naming_the_crossed_scope():
    doc = schedule_doc(doc_id="dak-lak/krong-ana/2026-w48", targets=["group:dak-lak/krong-ana"])
    verdict = judge_schedule(envelope(doc, EDITOR), authority(), topic="loaxa/group/dak-lak/krong-ana/schedule")
    (note,) = verdict.uncounted
    assert note.key == EDITOR.name and "outside its scope" in note.reason
    assert "is not inside group:dak-lak/lak" in verdict.reason()


def test_a_district_key_schedule_under_a_province_id_is_refused():
    doc = schedule_doc(doc_id="dak-lak/2026-w48")
    verdict = judge_schedule(envelope(doc, EDITOR), authority())
    assert not verdict.ok and verdict.uncounted[0].crossed == "id dak-lak/2026-w48"


def test_an_id_without_a_group_path_is_in_no_scope_under_trust():
    verdict = judge_schedule(envelope(schedule_doc(doc_id="weekly"), EDITOR2), authority())
    assert not verdict.ok and "id weekly (no group path)" in verdict.reason()


def test_the_topic_must_be_in_scope():
    verdict = judge_schedule(envelope(schedule_doc(), EDITOR), authority(), topic="loaxa/group/dak-lak/schedule")
    assert verdict.uncounted[0].crossed == "topic loaxa/group/dak-lak/schedule"


def test_a_unit_target_naming_this_unit_is_judged_by_its_groups():
    doc = schedule_doc(targets=[f"unit:{UNIT}"])
    topic = f"loaxa/unit/{UNIT}/schedule"
    assert judge_schedule(envelope(doc, EDITOR), authority(), topic=topic).ok
    elsewhere = UnitContext(UNIT, ("dak-lak/krong-ana/x",))
    verdict = judge_schedule(envelope(doc, EDITOR), authority(), topic=topic, context=elsewhere)
    assert verdict.uncounted[0].crossed == f"topic {topic}"


def test_unit_targets_naming_other_units_are_not_the_units_business():
    doc = schedule_doc(targets=["group:dak-lak/lak", "unit:dl-elsewhere-01"])
    assert judge_schedule(envelope(doc, EDITOR), authority()).ok


def test_operator_tools_judge_foreign_units_by_the_fleet_database():
    doc = schedule_doc(targets=["unit:dl-lak-x-01"])
    topic = "loaxa/unit/dl-lak-x-01/schedule"
    fleet = UnitContext(None, fleet={"dl-lak-x-01": ["dak-lak/lak/x"], "dl-krong-01": ["dak-lak/krong-ana"]})
    assert judge_schedule(envelope(doc, EDITOR), authority(), topic=topic, context=fleet).ok
    other = schedule_doc(targets=["unit:dl-krong-01"])
    assert not judge_schedule(envelope(other, EDITOR), authority(), topic="loaxa/unit/dl-krong-01/schedule",
                              context=fleet).ok
    unknown = schedule_doc(targets=["unit:dl-nobody-01"])
    verdict = judge_schedule(envelope(unknown, EDITOR), authority(), topic=None, context=fleet)
    assert "not in the fleet database" in verdict.reason()


@pytest.mark.parametrize("place, scope, inside", [
    ("group:dak-lak", "group:dak-lak", True),
    ("group:dak-lak/lak", "group:dak-lak", True),
    ("group:dak-lak-2", "group:dak-lak", False),
    ("group:dak-lak-2/x", "group:dak-lak", False),
    ("group:dak-lak", "group:dak-lak/lak", False),
    ("unit:dl-a-01", "unit:dl-a-01", True),
    ("unit:dl-a-01", "group:dak-lak", True),
    ("unit:dl-a-01", "group:dak-lak-2", False),
    ("group:dak-lak", "unit:dl-a-01", False),
])
def test_is_inside_by_whole_segments(place, scope, inside):
    assert is_inside(place, scope, {"dl-a-01": ["dak-lak/lak/bong-krang"]}.get) is inside


@pytest.mark.parametrize("doc_id, group", [("dak-lak/lak/2026-w48", "dak-lak/lak"), ("dak-lak/x", "dak-lak"),
                                           ("weekly", None), ("dak_lak/x", None)])
def test_id_group_path(doc_id, group):
    assert id_group_path(doc_id) == group


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["a", "b", "c", "d", "e"]), min_size=1, max_size=4),
       st.lists(st.lists(st.sampled_from(["a", "b", "c", "d"]), max_size=3), max_size=4),
       st.lists(st.sampled_from(["a", "b", "c", "d", "e"]), min_size=1, max_size=3))
def test_is_inside_agrees_with_segment_prefixes(scope, unit_groups, place):
    scope_path, place_path = "/".join(scope), "/".join(place)
    expected = place[:len(scope)] == scope
    assert is_inside(f"group:{place_path}", f"group:{scope_path}", lambda _: None) is expected
    groups = ["/".join(g) for g in unit_groups if g]
    assert is_inside("unit:dl-x-01", f"group:{scope_path}", lambda _: groups) is any(
        g.split("/")[:len(scope)] == scope for g in groups)


# ---- keys that do not count ----

def test_an_expired_key_does_not_count_with_a_trusted_clock():
    verdict = judge_schedule(envelope(schedule_doc(doc_id="dak-lak/x"), OLD), authority())
    assert not verdict.ok and "old-editor (expired at 2026-11-30T00:00:00+07:00)" in verdict.reason()
    untrusted = UnitContext(UNIT, GROUPS, clock_trusted=False)
    assert judge_schedule(envelope(schedule_doc(doc_id="dak-lak/x"), OLD), authority(), context=untrusted).ok


def test_unknown_and_forged_keys_are_named():
    stranger, forger = Key("ha-noi-2026"), Key(EDITOR.name)
    verdict = judge_schedule(envelope(schedule_doc(), stranger, forger), authority())
    assert "ha-noi-2026 (unknown key)" in verdict.reason() and "lak-editor (bad signature)" in verdict.reason()


def test_slots():
    national = Key("vn-national")
    auth = authority(extra={"vn-national": key_entry(national, ["editor"], ["group:dak-lak"], slots=["national"])})
    doc = schedule_doc(doc_id="dak-lak/national-1", targets=["group:dak-lak"])
    on_slot, plain = "loaxa/group/dak-lak/schedule/national", "loaxa/group/dak-lak/schedule"
    assert judge_schedule(envelope(doc, national), auth, topic=on_slot).ok
    assert "may sign only for slots national, not the plain topic" in judge_schedule(
        envelope(doc, national), auth, topic=plain).reason()
    assert "slot 'national' is not the plain topic" in judge_schedule(
        envelope(doc, EDITOR2), auth, topic=on_slot).reason()


# ---- legacy keys and lost trust ----

def test_legacy_keys_have_every_role_and_the_whole_scope():
    legacy = Authority.from_legacy({"dak-lak-2026": EDITOR.public})
    doc = schedule_doc(doc_id="weekly", targets=["group:gia-lai"], priorities=("normal", "emergency"))
    assert judge_schedule(envelope(doc, Key("dak-lak-2026", EDITOR.private)), legacy,
                          topic="loaxa/group/gia-lai/national/schedule/national").ok
    raw = envelope(command_doc("play", {"stream": "http://x.example.vn/a", "duration_s": 5}),
                   Key("dak-lak-2026", EDITOR.private))
    assert judge_command(raw, legacy).ok


def test_lost_trust_counts_nothing():
    verdict = judge_schedule(envelope(schedule_doc(), EDITOR), Authority.nothing())
    assert not verdict.ok and "lak-editor (no trust document in force)" in verdict.reason()


def test_a_spec_single_form_envelope_is_judged_too():
    assert judge_schedule(envelope(schedule_doc(), EDITOR, single=True), authority()).ok


# ---- the assignment itself ----

def brute_force(roles, holders) -> int:
    best = 0
    names = [n for n, _ in holders]
    for k in range(len(roles), 0, -1):
        for chosen in itertools.combinations(range(len(roles)), k):
            for keys in itertools.permutations(range(len(holders)), k):
                if all(roles[r] in holders[h][1] for r, h in zip(chosen, keys)):
                    return k
    return best if names or not roles else 0


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(ROLES[:3]), min_size=1, max_size=4),
       st.lists(st.frozensets(st.sampled_from(ROLES[:3]), max_size=3), max_size=4))
def test_assignment_is_a_maximum_matching_of_distinct_keys(roles, role_sets):
    holders = [(f"k{i}", held) for i, held in enumerate(role_sets)]
    matched = assign_roles(roles, holders)
    assert len(set(matched.values())) == len(matched)  # distinct keys
    assert all(roles[i] in dict(holders)[name] for i, name in matched.items())
    assert len(matched) == brute_force(roles, holders)


# ---- rotation ----

def test_schedules_out_of_force_under_a_new_trust_and_high_water_recomputed():
    good = envelope(schedule_doc(doc_id="dak-lak/lak/a", version=4), EDITOR)
    squat = envelope(schedule_doc(doc_id="dak-lak/lak/a", version=99), KRONG)  # held since before trust
    legacy = Authority.from_legacy({EDITOR.name: EDITOR.public, KRONG.name: KRONG.public})
    from scheduler.envelope import read_envelope
    held = [("loaxa/group/dak-lak/lak/schedule", raw, parse_schedule(read_envelope(raw).payload))
            for raw in (good, squat)]
    assert schedules_out_of_force(held, legacy, now=NOW, context=CTX) == []
    leaving = schedules_out_of_force(held, authority(), now=NOW, context=CTX)
    assert [(s.id, s.version) for _, s, _ in leaving] == [("dak-lak/lak/a", 99)]
    assert "outside its scope" in leaving[0][2].reason()
    staying = [s for _, _, s in held if all(s is not gone for _, gone, _ in leaving)]
    assert {k: v for k, (v, _) in high_water(staying).items()} == {"dak-lak/lak/a": 4}


def test_a_key_expiring_takes_its_schedules_out_of_force():
    raw = envelope(schedule_doc(doc_id="dak-lak/x", version=1), OLD)
    from scheduler.envelope import read_envelope
    held = [(LAK_TOPIC, raw, parse_schedule(read_envelope(raw).payload))]
    earlier = datetime(2026, 11, 29, tzinfo=timezone.utc)
    assert schedules_out_of_force(held, authority(), now=earlier, context=CTX) == []
    assert len(schedules_out_of_force(held, authority(), now=NOW, context=CTX)) == 1


def test_reasons_are_one_line_json_safe():
    verdict = judge_schedule(envelope(schedule_doc(), Key("x\u2028y")), authority())
    json.dumps(verdict.reason())
    assert "\n" not in verdict.reason()
