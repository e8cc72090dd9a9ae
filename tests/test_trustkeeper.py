"""The unit's trust flow end to end in one process: bootstrap, revocation, expiry, commands;
and the operator tools' verdict per topic before a push."""

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from scheduler import parse_command
from scheduler.envelope import read_envelope
from scheduler.store import ScheduleStore, StillRevoked
from scheduler.trust import parse_trust
from scheduler.truststore import TrustStore
from scheduler.trustkeeper import TrustKeeper, UnitIdentity, operator_verdicts
from tests.support.trustkit import GROUPS, UNIT, Key, command_doc, envelope, key_entry, root_set, schedule_doc, trust_doc

NOW = datetime(2026, 12, 1, 8, 0, tzinfo=timezone(timedelta(hours=7)))
TRUST_TOPIC, LAK = "loaxa/group/dak-lak/trust", "loaxa/group/dak-lak/lak/schedule"
R1, R2 = Key("root-1"), Key("root-2")
LEGACY, EDITOR, OPERATOR = Key("dak-lak-2026"), Key("lak-editor"), Key("so-operator")


def keys(*, operator=True, editor_expires=None):
    entry = key_entry(EDITOR, ["editor"], ["group:dak-lak/lak"])
    if editor_expires:
        entry["expires_at"] = editor_expires
    out = {EDITOR.name: entry}
    if operator:
        out[OPERATOR.name] = key_entry(OPERATOR, ["operator"], ["group:dak-lak"])
    return out


def trust(version, signers, **kw):
    return envelope(trust_doc(kw.pop("keys", None) or keys(), version=version, **kw), *signers)


@pytest.fixture
def keeper(tmp_path):
    identity = UnitIdentity(UNIT, GROUPS, quiet_hours=None, unit_tz=ZoneInfo("Asia/Ho_Chi_Minh"))
    return TrustKeeper(TrustStore(tmp_path / "trust"), ScheduleStore(tmp_path / "schedules"), identity=identity,
                       legacy={LEGACY.name: LEGACY.public})


def command_verdict(keeper, signer, now=NOW):
    raw = envelope(command_doc("set_volume", {"volume": 40}), signer)
    command = parse_command(read_envelope(raw).payload, now)
    return keeper.judge_command(raw, command, "loaxa/group/dak-lak/lak/cmd", now=now, clock_trusted=True)


def test_bootstrap_revokes_what_legacy_keys_signed_and_refuses_them_from_then_on(keeper):
    legacy_schedule = envelope(schedule_doc(doc_id="dak-lak/lak/old"), LEGACY)
    assert keeper.offer_schedule(LAK, legacy_schedule, now=NOW, clock_trusted=True).status == "accepted"
    assert command_verdict(keeper, LEGACY).ok
    events = keeper.on_trust(TRUST_TOPIC, trust(1, (R1, R2, LEGACY), root=root_set(R1, R2, threshold=2)),
                             now=NOW, clock_trusted=True)
    assert [e.kind for e in events] == ["trust.accepted", "trust.revoked"]
    assert events[0].fields == {"version": 1} and events[1].fields["schedules"] == ["dak-lak/lak/old"]
    assert keeper.schedules.in_force() == []
    with pytest.raises(StillRevoked):
        keeper.offer_schedule(LAK, legacy_schedule, now=NOW, clock_trusted=True)
    assert not command_verdict(keeper, LEGACY).ok and command_verdict(keeper, OPERATOR).ok
    assert keeper.offer_schedule(LAK, envelope(schedule_doc(), EDITOR), now=NOW, clock_trusted=True).status \
        == "accepted"


def test_rotation_drops_a_key_and_its_schedules_and_commands_at_once(keeper):
    keeper.on_trust(TRUST_TOPIC, trust(1, (R1, R2, LEGACY), root=root_set(R1, R2, threshold=2)), now=NOW,
                    clock_trusted=True)
    keeper.offer_schedule(LAK, envelope(schedule_doc(), EDITOR), now=NOW, clock_trusted=True)
    assert command_verdict(keeper, OPERATOR).ok
    events = keeper.on_trust(TRUST_TOPIC, trust(2, (R1, R2), keys={"other": key_entry(
        Key("other"), ["editor"], ["group:dak-lak"])}), now=NOW, clock_trusted=True)
    assert [e.kind for e in events] == ["trust.accepted", "trust.revoked"]
    assert "key 'lak-editor' is not trusted by this unit (unknown key)" in events[1].detail
    verdict = command_verdict(keeper, OPERATOR)
    assert not verdict.ok and "so-operator (unknown key)" in verdict.reason()


def test_refused_trust_is_an_event_and_changes_nothing(keeper):
    events = keeper.on_trust(TRUST_TOPIC, trust(1, (R1, LEGACY), root=root_set(R1, R2, threshold=2)), now=NOW,
                             clock_trusted=True)
    assert [e.kind for e in events] == ["trust.rejected"] and "signed by 1 distinct" in events[0].detail
    assert events[0].to_json()["detail"].startswith(TRUST_TOPIC)
    assert not keeper.trust.was_in_force and command_verdict(keeper, LEGACY).ok
    assert keeper.on_trust(TRUST_TOPIC, b"", now=NOW, clock_trusted=True) == []


def test_sweep_takes_out_schedules_of_an_expired_key(keeper):
    keeper.on_trust(TRUST_TOPIC, trust(1, (R1, R2, LEGACY), root=root_set(R1, R2, threshold=2),
                                       keys=keys(editor_expires="2026-12-01T12:00:00+07:00")),
                    now=NOW, clock_trusted=True)
    keeper.offer_schedule(LAK, envelope(schedule_doc(), EDITOR), now=NOW, clock_trusted=True)
    assert keeper.sweep(now=NOW, clock_trusted=True) == []
    later = NOW + timedelta(hours=5)
    assert keeper.sweep(now=later, clock_trusted=False) == []  # an untrusted clock judges no expiry
    (event,) = keeper.sweep(now=later, clock_trusted=True)
    assert event.kind == "trust.revoked" and "expired at" in event.detail


def test_an_expired_trust_stays_in_force_and_shows_as_a_fault(keeper):
    keeper.on_trust(TRUST_TOPIC, trust(1, (R1, R2, LEGACY), root=root_set(R1, R2, threshold=2),
                                       expires_at="2026-12-02T00:00:00+07:00"), now=NOW, clock_trusted=True)
    later = NOW + timedelta(days=3)
    assert keeper.faults(later, True) == ["trust.expired"]
    assert keeper.offer_schedule(LAK, envelope(schedule_doc(), EDITOR), now=later, clock_trusted=True).status \
        == "accepted"


def test_operator_verdicts_per_topic():
    doc = parse_trust(trust_doc(keys(), require={"schedule": ["editor"]}))
    raw = envelope(schedule_doc(targets=["group:dak-lak/lak", "unit:dl-lak-x-01"]), EDITOR)
    fleet = {"dl-lak-x-01": ["dak-lak/lak/x"]}
    verdicts = operator_verdicts(raw, doc, [LAK, "loaxa/unit/dl-lak-x-01/schedule", "loaxa/group/dak-lak/schedule"],
                                 now=NOW, fleet=fleet)
    assert [v.ok for _, v in verdicts] == [True, True, False]
    cmd = envelope(command_doc("set_volume", {"volume": 5}), EDITOR)
    ((_, verdict),) = operator_verdicts(cmd, doc, ["loaxa/group/dak-lak/lak/cmd"], now=NOW)
    assert verdict.missing == (("set_volume", "operator"),)


def test_the_collector_leaves_trust_and_release_documents_alone():
    from fleet.ingest import Batch, Received
    batch = Batch()
    for topic in ("loaxa/group/dak-lak/trust", f"loaxa/unit/{UNIT}/trust", "loaxa/group/dak-lak/release"):
        batch.add(Received(topic, envelope(trust_doc(keys()), R1), True, 1.0))
    assert batch.bad == [] and batch.messages == 3


def test_a_lost_trust_store_keeps_playing_what_it_has_and_takes_nothing_new(tmp_path, keeper):
    import shutil
    keeper.on_trust(TRUST_TOPIC, trust(1, (R1, R2, LEGACY), root=root_set(R1, R2, threshold=2)), now=NOW,
                    clock_trusted=True)
    keeper.offer_schedule(LAK, envelope(schedule_doc(), EDITOR), now=NOW, clock_trusted=True)
    shutil.rmtree(tmp_path / "trust")
    identity = keeper.identity
    lost = TrustKeeper(TrustStore(tmp_path / "trust"), ScheduleStore(tmp_path / "schedules"), identity=identity,
                       legacy={LEGACY.name: LEGACY.public})
    assert [s.id for s in lost.schedules.in_force()] == ["dak-lak/lak/2026-w48"]
    assert lost.sweep(now=NOW, clock_trusted=True) == []
    with pytest.raises(Exception, match="no trust document in force"):
        lost.offer_schedule(LAK, envelope(schedule_doc(doc_id="dak-lak/lak/new"), EDITOR), now=NOW, clock_trusted=True)
    assert [s.id for s in lost.schedules.in_force()] == ["dak-lak/lak/2026-w48"]
    assert not command_verdict(lost, LEGACY).ok and not command_verdict(lost, OPERATOR).ok
    # the retained trust arrives again: judged once more, and what passes stays
    events = lost.on_trust(TRUST_TOPIC, trust(1, (R1, R2, LEGACY), root=root_set(R1, R2, threshold=2)), now=NOW,
                           clock_trusted=True)
    assert [e.kind for e in events] == ["trust.accepted"]
    assert [s.id for s in lost.schedules.in_force()] == ["dak-lak/lak/2026-w48"]
