"""The schedule store under a trust document: judged offers, revocation, re-signed copies."""

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from loaxa.errors import SignatureError, VersionError
from scheduler.judge import Authority
from scheduler.store import ScheduleStore, StillRevoked
from scheduler.trust import parse_trust
from tests.support.trustkit import GROUPS, UNIT, Key, envelope, key_entry, schedule_doc, trust_doc

NOW = datetime(2026, 12, 1, 8, 0, tzinfo=timezone(timedelta(hours=7)))
LAK = "loaxa/group/dak-lak/lak/schedule"
EDITOR, APPROVER, KRONG, OLD = Key("lak-editor"), Key("so-approver"), Key("krong-editor"), Key("old-editor")


def authority(version=1, require=None, drop=()) -> Authority:
    keys = {EDITOR.name: key_entry(EDITOR, ["editor"], ["group:dak-lak/lak"]),
            APPROVER.name: key_entry(APPROVER, ["approver"], ["group:dak-lak"]),
            KRONG.name: key_entry(KRONG, ["editor"], ["group:dak-lak/krong-ana"]),
            OLD.name: key_entry(OLD, ["editor"], ["group:dak-lak"], expires_at="2026-12-02T00:00:00+07:00")}
    for name in drop:
        del keys[name]
    return Authority.from_trust(parse_trust(trust_doc(keys, version=version, require=require)))


def unit_ctx(now=NOW) -> dict:
    return {"unit_id": UNIT, "groups": GROUPS, "prefix": "loaxa", "quiet_hours": None,
            "unit_tz": ZoneInfo("Asia/Ho_Chi_Minh"), "now": now, "clock_trusted": True}


def ctx(trusted, now=NOW) -> dict:
    return {"trusted": trusted, **unit_ctx(now)}


@pytest.fixture
def store(tmp_path):
    return ScheduleStore(tmp_path / "schedules")


DOC = schedule_doc(doc_id="dak-lak/lak/w48", version=3)


def test_judged_offers_name_what_is_missing(store):
    two_person = authority(require={"schedule": ["editor", "approver"]})
    with pytest.raises(SignatureError, match="missing role approver"):
        store.offer(LAK, envelope(DOC, EDITOR), **ctx(two_person))
    assert store.offer(LAK, envelope(DOC, EDITOR, APPROVER), **ctx(two_person)).status == "accepted"


def test_an_unknown_key_is_refused_before_the_document_is_read(store):
    with pytest.raises(SignatureError, match="'ha-noi' is not trusted by this unit"):
        store.offer(LAK, envelope("not even json", Key("ha-noi")), **ctx(authority()))


def test_a_district_editor_outside_its_scope_is_refused_naming_it(store):
    doc = schedule_doc(doc_id="dak-lak/lak/w48")
    with pytest.raises(SignatureError, match="krong-editor .outside its scope: topic"):
        store.offer(LAK, envelope(doc, KRONG), **ctx(authority()))


def test_a_stricter_trust_takes_schedules_out_of_force_and_their_copies_stay_out_quietly(store):
    first = authority(1)
    editor_only = envelope(DOC, EDITOR)
    store.offer(LAK, editor_only, **ctx(first))
    stricter = authority(2, require={"schedule": ["editor", "approver"]})
    left = store.revoke(stricter, **unit_ctx())
    assert [(topic, s.id) for topic, s, _ in left] == [(LAK, "dak-lak/lak/w48")]
    assert "missing role approver" in left[0][2] and store.in_force() == []
    with pytest.raises(StillRevoked, match="still out of force"):
        store.offer(LAK, editor_only, **ctx(stricter))
    # the same payload with the approver's signature now meets it: back in force
    assert store.offer(LAK, envelope(DOC, EDITOR, APPROVER), **ctx(stricter)).status == "accepted"


def test_the_same_payload_with_more_signatures_replaces_the_held_envelope(store, tmp_path):
    first = authority(1)
    store.offer(LAK, envelope(DOC, EDITOR), **ctx(first))
    assert store.offer(LAK, envelope(DOC, EDITOR, APPROVER), **ctx(first)).status == "unchanged"
    stricter = authority(2, require={"schedule": ["editor", "approver"]})
    assert store.revoke(stricter, **unit_ctx()) == []
    assert [s.id for s in ScheduleStore(tmp_path / "schedules", **ctx(stricter)).in_force()] == ["dak-lak/lak/w48"]


def test_a_squatted_id_leaves_force_and_its_high_water_mark_is_recomputed(store):
    legacy = Authority.from_legacy({EDITOR.name: EDITOR.public, KRONG.name: KRONG.public})
    store.offer(LAK, envelope(schedule_doc(doc_id="dak-lak/lak/w48", version=99), KRONG), **ctx(legacy))
    with pytest.raises(VersionError):
        store.offer(LAK, envelope(schedule_doc(doc_id="dak-lak/lak/w48", version=4), EDITOR), **ctx(legacy))
    trust = authority(1)
    left = store.revoke(trust, **unit_ctx())
    assert [s.version for _, s, _ in left] == [99] and store.versions() == {}
    assert store.offer(LAK, envelope(schedule_doc(doc_id="dak-lak/lak/w48", version=4), EDITOR),
                       **ctx(trust)).status == "accepted"


def test_a_key_past_its_expiry_takes_its_schedules_out(store):
    trust = authority(1)
    doc = schedule_doc(doc_id="dak-lak/lak/old", version=1)
    store.offer(LAK, envelope(doc, OLD), **ctx(trust))
    assert store.revoke(trust, **unit_ctx()) == []
    later = unit_ctx(NOW + timedelta(days=2))
    assert [s.id for _, s, _ in store.revoke(trust, **later)] == ["dak-lak/lak/old"]


def test_a_dropped_key_is_out_after_a_restart_too(store, tmp_path):
    store.offer(LAK, envelope(schedule_doc(doc_id="dak-lak/lak/k", version=1), EDITOR), **ctx(authority(1)))
    again = ScheduleStore(tmp_path / "schedules", **ctx(authority(2, drop=[EDITOR.name])))
    assert again.in_force() == []


def test_lost_trust_accepts_nothing(store):
    with pytest.raises(SignatureError, match="no trust document in force"):
        store.offer(LAK, envelope(DOC, EDITOR), **ctx(Authority.nothing()))


def test_loading_under_lost_trust_keeps_the_stored_documents(store, tmp_path):
    store.offer(LAK, envelope(DOC, EDITOR), **ctx(authority()))
    again = ScheduleStore(tmp_path / "schedules", **ctx(Authority.nothing()))
    assert [s.id for s in again.in_force()] == ["dak-lak/lak/w48"]
    assert again.revoke(Authority.nothing(), **unit_ctx()) == [] and len(again.in_force()) == 1
