"""The trust store: bootstrap, versions, rotation, persistence across restarts, lost stores."""

import errno
import json
import shutil
from datetime import datetime, timedelta, timezone

import pytest

from loaxa.errors import TrustError, VersionError
from loaxa.fsio import atomic_write
from scheduler import parse_schedule
from scheduler.envelope import read_envelope
from scheduler.judge import UnitContext, judge, schedule_subject, schedules_out_of_force
from scheduler.store import StorageError
from scheduler.trust import RootSet
from scheduler.truststore import TrustStore
from tests.support.trustkit import GROUPS, UNIT, Key, envelope, key_entry, root_set, schedule_doc, trust_doc

NOW = datetime(2026, 12, 1, 8, 0, tzinfo=timezone(timedelta(hours=7)))
TOPIC = "loaxa/group/dak-lak/trust"
LAK = "loaxa/group/dak-lak/lak/schedule"
CTX = UnitContext(UNIT, GROUPS)
R1, R2, R3 = Key("root-1"), Key("root-2"), Key("root-3")
LEGACY = Key("dak-lak-2026")
EDITOR, EDITOR_B = Key("lak-editor"), Key("lak-editor-b")
LEGACY_KEYS = {LEGACY.name: LEGACY.public}


def keys(*editors):
    return {k.name: key_entry(k, ["editor"], ["group:dak-lak/lak"]) for k in editors}


def first_trust(version=1, **kw):
    return envelope(trust_doc(keys(EDITOR, EDITOR_B), version=version, root=root_set(R1, R2, R3, threshold=2), **kw),
                    R1, R2, LEGACY)


def offer(store, raw, *, config_roots=None, legacy=LEGACY_KEYS, min_version=0, now=NOW, clock_trusted=True,
          topic=TOPIC):
    return store.offer(topic, raw, config_roots=config_roots, legacy=legacy, min_version=min_version, now=now,
                       clock_trusted=clock_trusted, unit_id=UNIT, groups=GROUPS)


def ok(store, raw, topic=LAK) -> bool:
    schedule = parse_schedule(read_envelope(raw).payload)
    return judge(raw, schedule_subject(schedule, topic), store.authority(LEGACY_KEYS), now=NOW, context=CTX).ok


@pytest.fixture
def store(tmp_path):
    return TrustStore(tmp_path / "trust")


LEGACY_SCHEDULE = envelope(schedule_doc(), LEGACY)
EDITOR_SCHEDULE = envelope(schedule_doc(), EDITOR)


def test_a_legacy_unit_takes_its_first_trust_and_then_refuses_the_legacy_key(tmp_path, store):
    assert not store.was_in_force and ok(store, LEGACY_SCHEDULE) and not ok(store, EDITOR_SCHEDULE)
    result = offer(store, first_trust())
    assert result.status == "accepted" and result.roots_changed and result.previous is None
    assert store.was_in_force and store.version == 1
    assert not ok(store, LEGACY_SCHEDULE) and ok(store, EDITOR_SCHEDULE)
    # rebooted offline: the same trust
    again = TrustStore(tmp_path / "trust")
    assert again.document.digest == result.document.digest and ok(again, EDITOR_SCHEDULE)
    # the trust store deleted: the mark beside it keeps the legacy key out, and nothing new counts
    shutil.rmtree(tmp_path / "trust")
    lost = TrustStore(tmp_path / "trust")
    assert lost.was_in_force and lost.document is None
    assert not ok(lost, LEGACY_SCHEDULE) and not ok(lost, EDITOR_SCHEDULE)
    # a legacy-signed bootstrap cannot come back in: the roots persisted in the mark rule
    with pytest.raises(TrustError):
        offer(lost, envelope(trust_doc(keys(EDITOR), version=9, root=root_set(Key("evil"), threshold=1)),
                             Key("evil"), LEGACY))
    # the retained copy of the trust in force arrives again: it is taken back
    assert offer(lost, first_trust()).status == "accepted" and ok(lost, EDITOR_SCHEDULE)


def test_an_identical_copy_is_unchanged_and_an_equal_or_older_version_refused(store):
    offer(store, first_trust(version=3))
    assert offer(store, first_trust(version=3)).status == "unchanged"
    newer = envelope(trust_doc(keys(EDITOR), version=3), R1, R2)
    with pytest.raises(VersionError, match="not newer than version 3"):
        offer(store, newer)
    with pytest.raises(VersionError):
        offer(store, envelope(trust_doc(keys(EDITOR), version=2), R1, R2))
    assert offer(store, envelope(trust_doc(keys(EDITOR), version=4), R1, R3)).status == "accepted"


def test_an_empty_retained_payload_changes_nothing(store):
    assert offer(store, b"").status == "empty" and not store.was_in_force


def test_below_min_version_and_expired_on_arrival_are_refused(store):
    with pytest.raises(VersionError, match="below this unit's min_version 5"):
        offer(store, first_trust(version=4), min_version=5)
    with pytest.raises(TrustError, match="expired"):
        offer(store, first_trust(expires_at="2026-11-30T00:00:00+07:00"))
    assert not store.was_in_force


def test_config_roots_verify_and_persisted_roots_win_after_rotation(tmp_path, store):
    config_roots = RootSet.from_mapping({k.name: k.pub for k in (R1, R2, R3)}, 2)
    offer(store, envelope(trust_doc(keys(EDITOR), version=1), R1, R2), config_roots=config_roots, legacy=None)
    n1, n2 = Key("new-1"), Key("new-2")
    rotation = envelope(trust_doc(keys(EDITOR), version=2, root=root_set(n1, n2, threshold=2)), R1, R2, n1, n2)
    assert offer(store, rotation, config_roots=config_roots).roots_changed
    # the config still names the old roots: the persisted ones win, after a restart too
    for s in (store, TrustStore(tmp_path / "trust")):
        with pytest.raises(TrustError, match="root keys in force"):
            offer(s, envelope(trust_doc(keys(EDITOR), version=3), R1, R2, R3), config_roots=config_roots)
        assert s.roots(config_roots).fingerprints() == {n1.pub, n2.pub}
    assert offer(store, envelope(trust_doc(keys(EDITOR), version=3), n1, n2), config_roots=config_roots).status \
        == "accepted"


def test_a_rotation_with_too_few_old_roots_is_refused_and_changes_nothing(store):
    offer(store, first_trust())
    n1 = Key("new-1")
    with pytest.raises(TrustError, match="signed by 1 distinct root keys in force"):
        offer(store, envelope(trust_doc(keys(EDITOR), version=2, root=root_set(n1, threshold=1)), R1, n1))
    assert store.version == 1 and store.roots(None).threshold == 2


def test_a_new_version_dropping_a_key_takes_its_schedules_out_of_force(store):
    offer(store, first_trust())
    by_b = envelope(schedule_doc(doc_id="dak-lak/lak/b"), EDITOR_B)
    held = [(LAK, raw, parse_schedule(read_envelope(raw).payload)) for raw in (EDITOR_SCHEDULE, by_b)]
    assert schedules_out_of_force(held, store.authority(LEGACY_KEYS), now=NOW, context=CTX) == []
    result = offer(store, envelope(trust_doc(keys(EDITOR), version=2), R2, R3))
    assert result.previous.version == 1
    leaving = schedules_out_of_force(held, store.authority(LEGACY_KEYS), now=NOW, context=CTX)
    assert [s.id for _, s, _ in leaving] == ["dak-lak/lak/b"]
    assert "lak-editor-b (unknown key)" in leaving[0][2].reason()


def test_trust_expiring_in_force_stays_and_shows_as_a_fault(store):
    offer(store, first_trust(expires_at="2026-12-02T00:00:00+07:00"))
    later = NOW + timedelta(days=2)
    assert store.faults(NOW, True) == [] and store.faults(later, True) == ["trust.expired"]
    assert store.faults(later, False) == [] and store.document is not None


def test_a_damaged_mark_never_falls_back_to_legacy_keys(tmp_path, store):
    offer(store, first_trust())
    store.mark_path.write_text("{ not json")
    damaged = TrustStore(tmp_path / "trust")
    assert damaged.was_in_force and damaged.document is None
    assert not ok(damaged, LEGACY_SCHEDULE) and not ok(damaged, EDITOR_SCHEDULE)


def test_a_damaged_trust_file_leaves_nothing_in_force(tmp_path, store):
    offer(store, first_trust())
    (tmp_path / "trust" / "trust.json").write_bytes(b"\x00" * 10)
    damaged = TrustStore(tmp_path / "trust")
    assert damaged.was_in_force and damaged.document is None and not ok(damaged, LEGACY_SCHEDULE)


def test_a_stored_document_not_signed_by_the_persisted_roots_is_dropped(tmp_path, store):
    offer(store, first_trust())
    stored = json.loads((tmp_path / "trust" / "trust.json").read_text())
    stored["envelope"] = envelope(trust_doc(keys(Key("evil")), version=1), Key("evil")).decode()
    (tmp_path / "trust" / "trust.json").write_text(json.dumps(stored))
    assert TrustStore(tmp_path / "trust").document is None


def _failing_writer(fail_on: int):
    calls = []

    def write(path, data, mode=0o644):
        calls.append(path)
        if len(calls) == fail_on:
            raise OSError(errno.ENOSPC, "No space left on device")
        atomic_write(path, data, mode)
    return write


def test_a_full_disk_refuses_the_trust_and_changes_nothing(tmp_path):
    store = TrustStore(tmp_path / "trust", write=_failing_writer(1))
    with pytest.raises(StorageError, match="No space left"):
        offer(store, first_trust())
    assert not store.was_in_force and ok(store, LEGACY_SCHEDULE)
    assert not TrustStore(tmp_path / "trust").was_in_force


def test_a_crash_between_the_mark_and_the_document_recovers_from_the_retained_copy(tmp_path, store):
    offer(store, first_trust())
    crashing = TrustStore(tmp_path / "trust", write=_failing_writer(2))  # the mark lands, the document does not
    second = envelope(trust_doc(keys(EDITOR), version=2), R1, R2)
    with pytest.raises(StorageError):
        offer(crashing, second)
    restarted = TrustStore(tmp_path / "trust")
    assert restarted.version == 2 and restarted.document.version == 1  # the older one stays in force
    assert offer(restarted, second).status == "accepted" and restarted.document.version == 2
