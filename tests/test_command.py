"""Command documents: what parses, what build_command writes, and every refusal's reason."""

import json
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loaxa.errors import DocumentError, Rejected
from zoneinfo import ZoneInfo

from scheduler import (ACTIONS, ExpiredError, MAX_DOCUMENT_BYTES, build_command, command_play, occurrences,
                       parse_command, parse_schedule, play_media)
from tests.test_scheduler_document import SHA_A, dump, example_doc

ICT = timezone(timedelta(hours=7))
NOW = datetime(2026, 11, 30, 9, 0, 0, tzinfo=ICT)
TARGET = "unit:dl-lak-bongkrang-01"


def command_doc(action="ping", args=None, **overrides) -> dict:
    doc = {"type": "command", "id": "c-0001", "issued_at": "2026-11-30T08:59:00+07:00",
           "expires_at": "2026-11-30T09:04:00+07:00", "target": TARGET, "action": action,
           "args": {} if args is None else args}
    doc.update(overrides)
    return doc


def parse(doc, now=NOW):
    return parse_command(doc if isinstance(doc, str) else json.dumps(doc, ensure_ascii=False), now)


def refusal(doc, now=NOW, kind=DocumentError) -> str:
    with pytest.raises(Rejected) as info:
        parse(doc, now)
    assert type(info.value) is kind, info.value
    message = str(info.value)
    assert message and "\n" not in message and len(message) < 400
    return message


# ---- what parses ----

@pytest.mark.parametrize("action,args", [("stop", {}), ("ping", {}), ("sync", {}), ("selftest", {})])
def test_actions_without_args(action, args):
    command = parse(command_doc(action, args))
    assert (command.action, command.args, command.play, command.volume) == (action, {}, None, None)
    assert command.id == "c-0001" and command.target == TARGET
    assert command.issued_at == datetime(2026, 11, 30, 8, 59, tzinfo=ICT)
    assert command.expires_at == datetime(2026, 11, 30, 9, 4, tzinfo=ICT)


def test_set_volume():
    assert parse(command_doc("set_volume", {"volume": 0})).volume == 0
    assert parse(command_doc("set_volume", {"volume": 100})).volume == 100


def test_play_media_defaults_to_priority():
    command = parse(command_doc("play", {"media": ["chime", "bt-giam-ngheo"]}))
    assert command.play.source == "media"
    assert command.play.media == ("chime", "bt-giam-ngheo")
    assert command.play.priority == "priority"
    assert command.args["priority"] == "priority"
    assert command.play.volume is None and command.play.zones is None


def test_play_url_with_options():
    command = parse(command_doc("play", {"url": "https://media.example.vn/x.mp3", "sha256": SHA_A,
                                         "priority": "emergency", "volume": 90, "zones": [2, 1]}))
    play = command.play
    assert (play.source, play.url, play.sha256) == ("url", "https://media.example.vn/x.mp3", SHA_A)
    assert (play.priority, play.volume, play.zones) == ("emergency", 90, (2, 1))


def test_play_stream():
    command = parse(command_doc("play", {"stream": "http://icecast.example.vn:8000/xa", "duration_s": 1800}))
    assert (command.play.source, command.play.stream, command.play.duration_s) == (
        "stream", "http://icecast.example.vn:8000/xa", 1800)


def test_group_target_and_fractional_times():
    command = parse(command_doc(target="group:dak-lak/lak", issued_at="2026-11-30T01:59:00.250Z",
                                expires_at="2026-11-30T02:01:00Z"))
    assert command.target == "group:dak-lak/lak"
    assert command.issued_at.microsecond == 250000


def test_play_media_resolves_against_schedules_in_force():
    schedule = parse_schedule(dump(example_doc()))
    command = parse(command_doc("play", {"media": ["chime", "bt-giam-ngheo"]}))
    found = play_media(command.play, [schedule])
    assert found["chime"] is None and found["bt-giam-ngheo"].sha256 == SHA_A
    unknown = parse(command_doc("play", {"media": ["bt-giam-ngheo", "khong-co"]}))
    with pytest.raises(DocumentError, match=r"args.media\[1\]: unknown media id 'khong-co'"):
        play_media(unknown.play, [schedule])


def test_command_play_as_a_one_item_schedule():
    tz = ZoneInfo("Asia/Ho_Chi_Minh")
    schedule = parse_schedule(dump(example_doc()))
    text = build_command("play", {"media": ["chime", "bt-giam-ngheo"], "volume": 70, "zones": [2]}, TARGET,
                         now=NOW, command_id="5f0c6a8e-2b7d-4c38-9d1e-0a6f2d3b4c5e")
    command = parse_command(text, NOW)
    doc, occ = command_play(command, NOW + timedelta(seconds=2), [schedule], tz)
    item = doc.items[0]
    assert (doc.id, doc.version, occ.schedule_id, occ.version) == ("command", 1, "command", 1)
    assert item.id == "5f0c6a8e-2b7d-4c38-9d1e-0a6f2d3b4c5e" and occ.item is item
    assert (item.play, item.priority, item.volume, item.zones) == (("chime", "bt-giam-ngheo"), "priority", 70, (2,))
    assert set(doc.media) == {"bt-giam-ngheo"} and doc.media["bt-giam-ngheo"].sha256 == SHA_A
    assert occ.at == NOW + timedelta(seconds=2) and occ.at.tzinfo == tz
    assert [o.key for o in occurrences(doc, NOW, NOW + timedelta(minutes=1))] == [occ.key]
    assert doc.payload == text

    odd = parse_command(build_command("play", {"url": "https://x.vn/a.mp3", "sha256": SHA_A, "priority": "emergency"},
                                      TARGET, now=NOW, command_id="Op:42"), NOW)
    doc, occ = command_play(odd, NOW, [], tz)
    assert occ.item.id.startswith("cmd-") and occ.item.play == (occ.item.id,)
    assert doc.media[occ.item.id].url == "https://x.vn/a.mp3" and occ.item.priority == "emergency"

    live = parse_command(build_command("play", {"stream": "http://x.vn/live", "duration_s": 600}, TARGET, now=NOW), NOW)
    doc, occ = command_play(live, NOW, [], tz)
    assert (occ.item.stream, occ.item.duration_s, occ.item.play, doc.media) == ("http://x.vn/live", 600, (), {})

    with pytest.raises(DocumentError, match="unknown media id"):
        command_play(parse(command_doc("play", {"media": ["khong-co"]})), NOW, [schedule], tz)
    with pytest.raises(ValueError):
        command_play(parse(command_doc("ping")), NOW, [schedule], tz)


# ---- time ----

def test_expired_exactly_at_expires_at():
    doc = command_doc()
    assert parse(doc, NOW.replace(minute=3, second=59)).id == "c-0001"
    message = refusal(doc, NOW.replace(minute=4), ExpiredError)
    assert message.startswith("expired at 2026-11-30T09:04:00+07:00")
    refusal(doc, NOW + timedelta(days=1), ExpiredError)


def test_clock_skew_allows_five_minutes():
    doc = command_doc(issued_at="2026-11-30T09:05:00+07:00", expires_at="2026-11-30T09:10:00+07:00")
    assert parse(doc).id == "c-0001"  # 5 minutes ahead of the unit: tolerated
    doc = command_doc(issued_at="2026-11-30T09:05:01+07:00", expires_at="2026-11-30T09:10:00+07:00")
    message = refusal(doc, kind=ExpiredError)
    assert "301 s ahead of this unit's clock" in message and "clocks is wrong" in message


def test_expired_is_rejected_and_not_a_document_error():
    with pytest.raises(Rejected) as info:
        parse(command_doc(), NOW + timedelta(hours=1))
    assert isinstance(info.value, ExpiredError) and not isinstance(info.value, DocumentError)


def test_naive_now_is_a_programming_error():
    with pytest.raises(ValueError, match="aware"):
        parse(command_doc(), NOW.replace(tzinfo=None))


# ---- refusals, each naming its field ----

@pytest.mark.parametrize("doc,expected", [
    (command_doc(type="schedule"), 'type: expected "command", got "schedule"'),
    (command_doc(action="reboot"), 'action: must be one of play, stop, set_volume, ping, sync, selftest, got "reboot"'),
    (command_doc(action=["ping"]), "action: must be one of"),
    (command_doc(id=""), 'id: must be 1-128 characters'),
    (command_doc(id="../../etc/passwd"), 'id: must be 1-128 characters'),
    (command_doc(id="x" * 129), 'id: must be 1-128 characters'),
    (command_doc(id=7), "id: expected a string, got 7"),
    (command_doc(target="unit:X"), "target: expected unit:ID"),
    (command_doc(target=["unit:dl-lak-bongkrang-01"]), "target: expected a string, got a list"),
    (command_doc(issued_at="2026-11-30T08:59:00"), "issued_at: expected a date-time with offset"),
    (command_doc(expires_at=1764468000), "expires_at: expected a string, got 1764468000"),
    (command_doc(expires_at="2026-11-30T08:59:00+07:00"), "expires_at: 2026-11-30T08:59:00+07:00 is not after"),
    (command_doc(expires_at="2026-12-01T09:00:00+07:00"), "expires_at: at most 24 hours after issued_at"),
    (command_doc(args=[]), "args: expected an object, got a list"),
    ({**command_doc(), "args": None}, "args: expected an object, got null"),
    (command_doc("ping", {"now": True}), "args.now: unknown field"),
    (command_doc("stop", {"fade": 1}), "args.fade: unknown field"),
    (command_doc("set_volume", {}), "args.volume: required"),
    (command_doc("set_volume", {"volume": 101}), "args.volume: must be 0-100, got 101"),
    (command_doc("set_volume", {"volume": -1}), "args.volume: must be 0-100, got -1"),
    (command_doc("set_volume", {"volume": True}), "args.volume: expected an integer, got true"),
    (command_doc("set_volume", {"volume": 50.5}), "args.volume: expected an integer, got 50.5"),
    (command_doc("set_volume", {"volume": "80"}), 'args.volume: expected an integer, got "80"'),
    (command_doc("set_volume", {"volume": 80, "zones": [1]}), "args.zones: unknown field"),
    (command_doc("play", {}), 'args: needs exactly one of "media"'),
    (command_doc("play", {"media": ["chime"], "stream": "http://x.vn/a"}), 'args: needs exactly one of'),
    (command_doc("play", {"media": []}), "args.media: must not be empty"),
    (command_doc("play", {"media": "chime"}), 'args.media: expected a list, got "chime"'),
    (command_doc("play", {"media": ["../etc/passwd"]}), "args.media[0]: media id must match"),
    (command_doc("play", {"media": ["a"] * 33}), "args.media: at most 32 media ids, got 33"),
    (command_doc("play", {"media": ["chime"], "priority": "urgent"}), 'args.priority: must be one of normal, '
                                                                       'priority, emergency, got "urgent"'),
    (command_doc("play", {"media": ["chime"], "volume": 140}), "args.volume: must be 0-100, got 140"),
    (command_doc("play", {"media": ["chime"], "zones": [0]}), "args.zones[0]: must be a zone number 1 or more"),
    (command_doc("play", {"media": ["chime"], "zones": [1, 1]}), "args.zones[1]: zone 1 given twice"),
    (command_doc("play", {"media": ["chime"], "repeat": 2}), "args.repeat: unknown field"),
    (command_doc("play", {"url": "file:///etc/passwd", "sha256": SHA_A}), "args.url: must be an http:// or https://"),
    (command_doc("play", {"url": "https://x.vn/a.mp3"}), "args.sha256: required"),
    (command_doc("play", {"url": "https://x.vn/a.mp3", "sha256": "ABC"}), "args.sha256: must be 64 lowercase hex"),
    (command_doc("play", {"stream": "http://x.vn/live"}), "args.duration_s: required"),
    (command_doc("play", {"stream": "rtsp://x.vn/live", "duration_s": 60}), "args.stream: must be an http:// or"),
    (command_doc("play", {"stream": "http://x.vn/live", "duration_s": 0}), "args.duration_s: must be more than 0"),
    (command_doc("play", {"stream": "http://x.vn/live", "duration_s": 86401}), "args.duration_s: must be more"),
    (command_doc("play", {"stream": "http://x.vn/live", "duration_s": 60, "sha256": SHA_A}),
     "args.sha256: unknown field"),
    ({k: v for k, v in command_doc().items() if k != "args"}, "args: required"),
    ({**command_doc(), "sig": "x"}, "sig: unknown field"),
    ({**command_doc(), "targets": [TARGET]}, "targets: unknown field (did you mean 'target'?)"),
])
def test_refusals_name_the_field(doc, expected):
    assert expected in refusal(doc)


@pytest.mark.parametrize("text,expected", [
    ("", "document is not valid JSON"),
    ("[]", "document: expected an object, got a list"),
    ('{"type": "command", "type": "command"}', "field 'type' appears twice"),
    ('{"type": NaN}', "NaN is not allowed"),
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ('{"id": "\\ud800"}', "not valid Unicode"),
])
def test_malformed_text(text, expected):
    assert expected in refusal(text)


def test_huge_document_refused_by_size():
    doc = command_doc("ping", {})
    doc["padding"] = "x" * MAX_DOCUMENT_BYTES
    assert "over the 256 KiB" in refusal(doc)


def test_non_text_payload():
    with pytest.raises(DocumentError, match="expected JSON text"):
        parse_command(b'{"type": "command"}', NOW)


# ---- build_command ----

def test_build_command_round_trips():
    text = build_command("set_volume", {"volume": 70}, TARGET, now=NOW + timedelta(microseconds=500), ttl_s=90,
                         command_id="op-42")
    doc = json.loads(text)
    assert doc == {"type": "command", "id": "op-42", "issued_at": "2026-11-30T09:00:00+07:00",
                   "expires_at": "2026-11-30T09:01:30+07:00", "target": TARGET, "action": "set_volume",
                   "args": {"volume": 70}}
    command = parse_command(text, NOW + timedelta(seconds=89))
    assert command.volume == 70 and command.payload == text
    with pytest.raises(ExpiredError):
        parse_command(text, NOW + timedelta(seconds=90))


def test_build_command_makes_unique_ids():
    ids = {json.loads(build_command("ping", {}, TARGET, now=NOW))["id"] for _ in range(50)}
    assert len(ids) == 50


def test_build_command_rounds_ttl_up():
    doc = json.loads(build_command("ping", {}, TARGET, now=NOW, ttl_s=0.2))
    assert doc["expires_at"] == "2026-11-30T09:00:01+07:00"


@pytest.mark.parametrize("action,args,target,ttl,expected", [
    ("reboot", {}, TARGET, 300, "action: must be one of"),
    ("set_volume", {"volume": 140}, TARGET, 300, "args.volume: must be 0-100, got 140"),
    ("play", {"media": ["chime"], "url": "https://x.vn/a"}, TARGET, 300, "args: needs exactly one of"),
    ("ping", {}, "unit:X", 300, "target: expected unit:ID"),
    ("ping", {}, TARGET, 0, "ttl: must be a positive number"),
    ("ping", {}, TARGET, float("nan"), "ttl: must be a positive number"),
    ("ping", {}, TARGET, 86401, "expires_at: at most 24 hours"),
    ("ping", {"x": float("nan")}, TARGET, 300, "NaN is not allowed"),
])
def test_build_command_refuses_what_a_unit_would(action, args, target, ttl, expected):
    with pytest.raises(DocumentError) as info:
        build_command(action, args, target, now=NOW, ttl_s=ttl)
    assert expected in str(info.value)


def test_every_action_builds_and_parses():
    args = {"play": {"media": ["chime"]}, "set_volume": {"volume": 10}}
    for action in ACTIONS:
        text = build_command(action, args.get(action, {}), "group:dak-lak", now=NOW)
        assert parse_command(text, NOW).action == action


# ---- hostile corpus: nothing but Rejected, whatever the text ----

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20)
field_names = st.sampled_from(list(command_doc()) + ["media", "volume", "url", "sha256", "stream", "duration_s",
                                                     "priority", "zones", "x"])


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(action=st.sampled_from(ACTIONS + ("reboot",)), top=st.dictionaries(field_names, json_values, max_size=3),
       args=st.dictionaries(field_names, json_values, max_size=4))
def test_mutated_commands_parse_or_are_rejected(action, top, args):
    doc = {**command_doc(action, args), **top}
    try:
        command = parse(doc)
    except Rejected as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    assert command.action in ACTIONS and command.expires_at > NOW


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=200) | st.builds(json.dumps, json_values))
def test_arbitrary_text_is_rejected(text):
    with pytest.raises(Rejected):
        parse_command(text, NOW)
