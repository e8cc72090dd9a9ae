"""The documents in force: accept, ignore, refuse (keeping what is in force), persist, reload."""

import copy
import json
import logging
import shutil
import tempfile
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loaxa.errors import (DocumentError, QuietHoursError, Rejected, SignatureError, TargetError,
                          VersionError)
from scheduler import (MAX_DOCUMENT_BYTES, ScheduleStore, generate_key, load_trusted_keys, public_key_b64,
                       sign_document)
from scheduler.store import topic_file_name
from tests.test_scheduler_document import dump, example_doc

UNIT = "dl-lak-bongkrang-01"
UNIT_TOPIC = f"loaxa/unit/{UNIT}/schedule"
GROUP_TOPIC = "loaxa/group/dak-lak/lak/schedule"
PROVINCE_TOPIC = "loaxa/group/dak-lak/schedule"
KEY_NAME = "dak-lak-2026"
OPERATOR_KEY = generate_key()


def context(trusted=None, **changes) -> dict:
    ctx = {"trusted": trusted if trusted is not None else load_trusted_keys({KEY_NAME: public_key_b64(OPERATOR_KEY)}),
           "unit_id": UNIT, "groups": ["dak-lak/lak/bong-krang"], "prefix": "loaxa",
           "quiet_hours": "22:00-05:00", "unit_tz": ZoneInfo("Asia/Ho_Chi_Minh")}
    ctx.update(changes)
    return ctx


def doc(version=3, doc_id="dak-lak/2026-w48", targets=("group:dak-lak/lak", "group:dak-lak", f"unit:{UNIT}"),
        **changes) -> dict:
    d = example_doc()
    d.update(version=version, id=doc_id, targets=list(targets), **changes)
    return d


def signed(d, key=OPERATOR_KEY, name=KEY_NAME) -> bytes:
    return sign_document(dump(d), key, name)


@pytest.fixture
def folder(tmp_path) -> Path:
    return tmp_path / "schedules"


@pytest.fixture
def store(folder) -> ScheduleStore:
    return ScheduleStore(folder, **context())


def offer(store, topic, raw, **changes):
    return store.offer(topic, raw, **context(**changes))


def snapshot(folder: Path) -> dict:
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def in_force(store):
    return [(s.id, s.version) for s in store.in_force()]


# ---- accepting and ignoring ----

def test_accepted_then_unchanged_then_empty(store):
    raw = signed(doc())
    first = offer(store, GROUP_TOPIC, raw)
    assert first.status == "accepted" and first.schedule.version == 3
    assert offer(store, GROUP_TOPIC, raw).status == "unchanged"
    empty = offer(store, GROUP_TOPIC, b"")
    assert (empty.status, empty.schedule) == ("empty", None)
    assert in_force(store) == [("dak-lak/2026-w48", 3)]
    assert store.topics_in_force()[GROUP_TOPIC].digest == first.schedule.digest


def test_newer_version_replaces_the_one_on_the_topic(store):
    offer(store, GROUP_TOPIC, signed(doc(3)))
    assert offer(store, GROUP_TOPIC, signed(doc(4))).status == "accepted"
    assert in_force(store) == [("dak-lak/2026-w48", 4)]
    assert store.versions() == {"dak-lak/2026-w48": 4}


def test_another_document_replaces_the_one_on_the_topic(store):
    offer(store, GROUP_TOPIC, signed(doc(3)))
    offer(store, GROUP_TOPIC, signed(doc(1, doc_id="dak-lak/bao-so-9")))
    assert in_force(store) == [("dak-lak/bao-so-9", 1)]


def test_the_union_of_topics_with_one_version_per_id(store):
    offer(store, PROVINCE_TOPIC, signed(doc(1, doc_id="dak-lak/thuong-xuyen")))
    offer(store, GROUP_TOPIC, signed(doc(3)))
    offer(store, UNIT_TOPIC, signed(doc(4)))
    assert in_force(store) == [("dak-lak/2026-w48", 4), ("dak-lak/thuong-xuyen", 1)]
    assert len(store.topics_in_force()) == 3


def test_the_same_document_on_another_topic_is_accepted(store):
    raw = signed(doc(4))
    offer(store, GROUP_TOPIC, raw)
    assert offer(store, UNIT_TOPIC, raw).status == "accepted"
    assert in_force(store) == [("dak-lak/2026-w48", 4)]


# ---- versions: no replay, no rollback ----

def test_an_older_version_is_refused(store):
    offer(store, GROUP_TOPIC, signed(doc(4)))
    with pytest.raises(VersionError, match="version 3 is not newer than version 4 already accepted"):
        offer(store, GROUP_TOPIC, signed(doc(3)))
    assert in_force(store) == [("dak-lak/2026-w48", 4)]


def test_a_different_document_under_the_same_version_is_refused(store):
    offer(store, GROUP_TOPIC, signed(doc(4)))
    changed = doc(4)
    changed["items"][0]["volume"] = 30
    with pytest.raises(VersionError, match="version 4 is not newer than version 4"):
        offer(store, UNIT_TOPIC, signed(changed))


def test_an_older_version_is_refused_on_another_topic_too(store):
    offer(store, UNIT_TOPIC, signed(doc(4)))
    with pytest.raises(VersionError):
        offer(store, GROUP_TOPIC, signed(doc(3)))


def test_a_superseded_copy_elsewhere_stops_playing(store):
    offer(store, GROUP_TOPIC, signed(doc(3)))
    offer(store, UNIT_TOPIC, signed(doc(4)))
    offer(store, UNIT_TOPIC, signed(doc(1, doc_id="other")))  # v4 leaves the unit topic
    assert in_force(store) == [("other", 1)]  # v3 on the group topic would be a rollback
    assert offer(store, GROUP_TOPIC, signed(doc(3))).status == "unchanged"


# ---- refusals keep everything in force ----

def _bad_signature():
    raw = json.loads(signed(doc(5)))
    raw["payload"] = raw["payload"].replace('"volume": 80', '"volume": 81')
    return json.dumps(raw).encode()


def _deep():
    return sign_document('{"type": "schedule", "items": ' + "[" * 50_000 + "]" * 50_000 + "}", OPERATOR_KEY, KEY_NAME)


def _oversize():
    d = doc(5)
    d["media"]["canh-bao-bao"]["title"] = "x" * (MAX_DOCUMENT_BYTES - 3000)
    return json.dumps({"payload": dump(d), "alg": "ed25519", "key": KEY_NAME, "sig": "x" * 4000}).encode()


def _with_item(**item):
    d = doc(5)
    d["items"].append({"id": "extra", "play": ["chime"], "at": "12:00", **item})
    return signed(d)


REFUSED = [
    pytest.param(lambda: _bad_signature(), SignatureError, "bad signature", id="bad-signature"),
    pytest.param(lambda: signed(doc(5), key=generate_key()), SignatureError, "bad signature", id="another-key"),
    pytest.param(lambda: signed(doc(5), name="ha-noi"), SignatureError, 'key "ha-noi" is not trusted', id="unknown-key"),
    pytest.param(lambda: dump(doc(5)).encode(), SignatureError, "not signed", id="unsigned"),
    pytest.param(lambda: b'{"payload": ', DocumentError, "not valid JSON", id="malformed-json"),
    pytest.param(lambda: b"\xc3\x28", DocumentError, "not UTF-8", id="non-utf8"),
    pytest.param(_deep, DocumentError, "nested too deeply", id="deep-nesting"),
    pytest.param(_oversize, DocumentError, "over the 256 KiB", id="oversize"),
    pytest.param(lambda: signed(doc(5, colour="red")), DocumentError, "colour: unknown field", id="unknown-field"),
    pytest.param(lambda: _with_item(volume=True), DocumentError, "items[2].volume: expected an integer, got true",
                 id="bool-for-int"),
    pytest.param(lambda: _with_item(repeat=99), DocumentError, "items[2].repeat: must be 1-10, got 99", id="range"),
    pytest.param(lambda: _with_item(play=["../x"]), DocumentError, "items[2].play[0]: media id must match",
                 id="path-like-media-id"),
    pytest.param(lambda: _with_item(play=["nope"]), DocumentError, "unknown media id 'nope'", id="unknown-media"),
    pytest.param(lambda: signed(doc(5, targets=["unit:dl-other-unit-01"])), TargetError,
                 "name neither unit dl-lak-bongkrang-01", id="wrong-target"),
    pytest.param(lambda: signed(doc(5, targets=["group:dak-lak", f"unit:{UNIT}"])), TargetError,
                 "arrived on loaxa/group/dak-lak/lak/schedule, which is not the topic of any of its targets",
                 id="wrong-topic"),
    pytest.param(lambda: _with_item(at="23:15"), QuietHoursError, "items[2].at: 23:15 (extra) is inside the quiet hours",
                 id="quiet-hours"),
    pytest.param(lambda: signed(doc(3, valid_until="2026-12-07")), VersionError, "version 3 is not newer than version 4",
                 id="replayed-version"),
]


@pytest.mark.parametrize("make_raw, error, expected", REFUSED)
def test_refusals_keep_what_is_in_force(store, folder, make_raw, error, expected):
    offer(store, GROUP_TOPIC, signed(doc(4)))
    before_files, before_force = snapshot(folder), store.in_force()
    with pytest.raises(error) as info:
        offer(store, GROUP_TOPIC, make_raw())
    assert isinstance(info.value, Rejected)
    assert expected in str(info.value)
    assert store.in_force() == before_force
    assert snapshot(folder) == before_files


def test_a_document_for_the_unit_on_a_foreign_topic_is_refused(store):
    d = doc(5, targets=["group:quang-nam", f"unit:{UNIT}"])
    with pytest.raises(TargetError, match="not one of this unit's topics"):
        offer(store, "loaxa/group/quang-nam/schedule", signed(d))


# ---- persistence ----

def test_a_new_store_on_the_same_folder_has_the_same_documents(store, folder):
    offer(store, GROUP_TOPIC, signed(doc(3)))
    offer(store, UNIT_TOPIC, signed(doc(1, doc_id="dak-lak/bao-so-9")))
    again = ScheduleStore(folder, **context())
    assert in_force(again) == in_force(store)
    assert again.topics_in_force().keys() == {GROUP_TOPIC, UNIT_TOPIC}
    # and the retained copies arriving after a reconnect are quietly ignored
    assert offer(again, GROUP_TOPIC, signed(doc(3))).status == "unchanged"


def test_files_on_disk(store, folder):
    raw = signed(doc(3))
    offer(store, GROUP_TOPIC, raw)
    stored = json.loads((folder / "topics" / topic_file_name(GROUP_TOPIC)).read_text())
    assert stored == {"topic": GROUP_TOPIC, "envelope": raw.decode()}
    versions = json.loads((folder / "versions.json").read_text())
    assert versions["versions"]["dak-lak/2026-w48"]["version"] == 3
    assert versions["versions"]["dak-lak/2026-w48"]["digest"] == store.in_force()[0].digest
    assert not [p for p in folder.rglob("*.tmp")]


def test_versions_survive_a_restart(store, folder):
    offer(store, GROUP_TOPIC, signed(doc(4)))
    offer(store, GROUP_TOPIC, signed(doc(1, doc_id="other")))  # v4 is no longer on any topic
    again = ScheduleStore(folder, **context())
    with pytest.raises(VersionError, match="version 3 is not newer than version 4"):
        offer(again, UNIT_TOPIC, signed(doc(3)))


def test_a_key_removed_from_trust_drops_its_documents_at_load(store, folder, caplog):
    offer(store, GROUP_TOPIC, signed(doc(3)))
    other = generate_key()
    offer(store, UNIT_TOPIC, signed(doc(1, doc_id="ha-noi/x"), key=other, name="ha-noi"),
          trusted=load_trusted_keys({KEY_NAME: public_key_b64(OPERATOR_KEY), "ha-noi": public_key_b64(other)}))
    assert len(store.in_force()) == 2
    with caplog.at_level(logging.WARNING, logger="loaxa.scheduler.store"):
        again = ScheduleStore(folder, **context())
    assert in_force(again) == [("dak-lak/2026-w48", 3)]
    assert 'key "ha-noi" is not trusted' in caplog.text


def test_loading_without_trust_rechecks_on_the_first_offer(store, folder):
    offer(store, GROUP_TOPIC, signed(doc(3)))
    plain = ScheduleStore(folder)  # no keys known yet: documents load on their stored word
    assert in_force(plain) == [("dak-lak/2026-w48", 3)]
    other = load_trusted_keys({"someone-else": public_key_b64(generate_key())})
    with pytest.raises(SignatureError):
        plain.offer(UNIT_TOPIC, signed(doc(1, doc_id="x")), **context(trusted=other))
    assert plain.in_force() == []  # the stored one was signed by a key no longer trusted


def test_a_unit_that_left_a_group_drops_its_documents_at_load(store, folder):
    offer(store, GROUP_TOPIC, signed(doc(3)))
    again = ScheduleStore(folder, **context(groups=["dak-lak/krong-ana"]))
    assert again.in_force() == []


def test_corrupt_files_never_crash_a_load(store, folder, caplog):
    offer(store, GROUP_TOPIC, signed(doc(3)))
    topics = folder / "topics"
    (topics / "0123.json").write_bytes(b"\x00garbage")
    (topics / "0124.json").write_text('{"topic": 5, "envelope": []}')
    (topics / "0125.json").write_text("[" * 100_000)
    moved = topics / topic_file_name(UNIT_TOPIC)
    shutil.copy(topics / topic_file_name(GROUP_TOPIC), moved)  # a file whose name is not its topic
    (folder / "versions.json").write_text("{not json")
    with caplog.at_level(logging.WARNING, logger="loaxa.scheduler.store"):
        again = ScheduleStore(folder, **context())
    assert in_force(again) == [("dak-lak/2026-w48", 3)]
    assert again.topics_in_force().keys() == {GROUP_TOPIC}
    assert again.versions() == {"dak-lak/2026-w48": 3}  # rebuilt from the documents
    assert caplog.text.count("dropped") == 4 and "unreadable" in caplog.text
    # The damaged files are kept aside for inspection, out of the way of the next load.
    assert sorted(p.name.split(".corrupt-")[0] for p in topics.glob("*.corrupt-*")) == \
        ["0123.json", "0124.json", "0125.json", topic_file_name(UNIT_TOPIC)]
    assert len(list(folder.glob("versions.json.corrupt-*"))) == 1


def test_a_crash_between_the_version_and_the_document_is_harmless(store, folder):
    offer(store, GROUP_TOPIC, signed(doc(3)))
    (folder / "topics" / topic_file_name(GROUP_TOPIC)).unlink()  # as if the crash came before this write
    again = ScheduleStore(folder, **context())
    assert again.in_force() == []
    assert offer(again, GROUP_TOPIC, signed(doc(3))).status == "accepted"  # the retained copy again


# ---- nothing but Rejected, whatever arrives ----

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-2**70, max_value=2**70)
    | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12)

MUTABLE_PATHS = [
    ("type",), ("id",), ("version",), ("targets",), ("targets", 0), ("issued_at",), ("valid_from",),
    ("valid_until",), ("timezone",), ("media",), ("media", "bt-giam-ngheo"), ("media", "bt-giam-ngheo", "url"),
    ("media", "bt-giam-ngheo", "sha256"), ("media", "bt-giam-ngheo", "size"), ("media", "bt-giam-ngheo", "title"),
    ("items",), ("items", 0), ("items", 0, "id"), ("items", 0, "play"), ("items", 0, "play", 1),
    ("items", 0, "at"), ("items", 0, "days"), ("items", 0, "priority"), ("items", 0, "volume"),
    ("items", 1, "at"), ("items", 1, "repeat"), ("items", 1, "zones"), ("items", 0, "stream"),
    ("items", 0, "duration_s"), ("items", 0, "fallback"), ("items", 0, "except"), ("extra",),
]

GOOD_VALUES = st.sampled_from([
    "06:00", "23:30", "2026-12-01T17:30:00+07:00", "2026-12-01T01:00:00Z", ["mon"], 1, 0, 100, 10, [1, 2],
    "emergency", "priority", "http://radio.vn/a", 1800, "chime", "test-tone", "../x", "group:dak-lak",
    f"unit:{UNIT}", "Europe/Berlin", "2026-12-31", True, "", [], {},
])


@st.composite
def mutated_documents(draw) -> str:
    d = copy.deepcopy(doc(draw(st.integers(min_value=1, max_value=6))))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        path = draw(st.sampled_from(MUTABLE_PATHS))
        target = d
        try:
            for key in path[:-1]:
                target = target[key]
            if draw(st.booleans()) and isinstance(target, (dict, list)):
                target.pop(path[-1]) if isinstance(target, dict) else target.pop(path[-1])
            else:
                target[path[-1]] = draw(GOOD_VALUES | JSON_VALUES)
        except (KeyError, IndexError, TypeError):
            pass
    return json.dumps(d, ensure_ascii=draw(st.booleans()))


ARRIVALS = st.one_of(
    mutated_documents().map(lambda text: sign_document(text, OPERATOR_KEY, KEY_NAME)),
    JSON_VALUES.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries({"payload": mutated_documents() | st.text(), "alg": st.sampled_from(["ed25519", "x"]),
                           "key": st.sampled_from([KEY_NAME, "x"]), "sig": st.text(max_size=100)},
                          optional={"extra": JSON_VALUES}).map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=300),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(topic=st.sampled_from([GROUP_TOPIC, UNIT_TOPIC, PROVINCE_TOPIC, "loaxa/group/x/schedule", "junk"]),
       raw=ARRIVALS)
def test_offer_raises_nothing_but_rejected(topic, raw):
    with tempfile.TemporaryDirectory() as tmp:
        store = ScheduleStore(tmp, **context())
        store.offer(GROUP_TOPIC, signed(doc(3)), **context())
        try:
            result = store.offer(topic, raw, **context())
        except Rejected as exc:
            assert str(exc) and "\n" not in str(exc)
            assert [s.version for s in store.in_force()] == [3]
        else:
            assert result.status in ("accepted", "unchanged", "empty")
            if result.status == "accepted":
                assert result.schedule in store.topics_in_force().values()


# ---- targets and topics ----

def test_groups_expand_to_their_ancestors():
    from scheduler import command_topics, expand_groups, schedule_topics, unit_targets

    groups = ["dak-lak/lak/bong-krang", "dak-lak/krong-ana"]
    assert expand_groups(groups) == ["dak-lak/lak/bong-krang", "dak-lak/lak", "dak-lak", "dak-lak/krong-ana"]
    assert unit_targets(UNIT, ["dak-lak/lak"]) == {f"unit:{UNIT}", "group:dak-lak/lak", "group:dak-lak"}
    assert schedule_topics("loaxa", UNIT, ["dak-lak/lak"]) == [UNIT_TOPIC, GROUP_TOPIC, PROVINCE_TOPIC]
    assert command_topics("tinh", UNIT, ["dak-lak"]) == [f"tinh/unit/{UNIT}/cmd", "tinh/group/dak-lak/cmd"]


@pytest.mark.parametrize("topic, kind, expected", [
    (UNIT_TOPIC, "schedule", f"unit:{UNIT}"),
    (GROUP_TOPIC, "schedule", "group:dak-lak/lak"),
    ("loaxa/group/dak-lak/cmd", "cmd", "group:dak-lak"),
    ("loaxa/group/dak-lak/cmd", "schedule", None),
    ("loaxa/unit/AB/schedule", "schedule", None),
    ("loaxa/group//schedule", "schedule", None),
    ("loaxa/other/x/schedule", "schedule", None),
    ("tinh/group/dak-lak/schedule", "schedule", None),
])
def test_topic_target(topic, kind, expected):
    from scheduler import target_topic, topic_target

    assert topic_target("loaxa", topic, kind) == expected
    if expected:
        assert target_topic("loaxa", expected, kind) == topic
