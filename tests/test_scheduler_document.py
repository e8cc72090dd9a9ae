"""Schedule documents: SPEC's example parses; every refusal names its field and reason."""

import copy
import hashlib
import json
from datetime import date, datetime, timedelta, timezone

import pytest

from loaxa.errors import DocumentError, Rejected
from scheduler import BUILTIN_MEDIA, MAX_DOCUMENT_BYTES, parse_schedule

SHA_A = "a" * 64
SHA_B = "0123456789abcdef" * 4


def example_doc() -> dict:
    """SPEC's example document (with real-looking digests)."""
    return {
        "type": "schedule",
        "id": "dak-lak/2026-w48",
        "version": 3,
        "targets": ["group:dak-lak/lak", "unit:dl-easup-iarve-02"],
        "issued_at": "2026-11-26T08:00:00+07:00",
        "valid_from": "2026-11-30", "valid_until": "2026-12-06",
        "timezone": "Asia/Ho_Chi_Minh",
        "media": {
            "bt-giam-ngheo": {"url": "https://media.example.vn/bt.mp3", "sha256": SHA_A, "size": 618414,
                              "title": "Giảm nghèo về thông tin"},
            "canh-bao-bao": {"url": "https://media.example.vn/bao9.mp3", "sha256": SHA_B, "size": 201734},
        },
        "items": [
            {"id": "sang", "play": ["chime", "bt-giam-ngheo"], "at": "06:00",
             "days": ["mon", "tue", "wed", "thu", "fri"], "priority": "normal", "volume": 80},
            {"id": "bao-so-9", "play": ["canh-bao-bao"], "at": "2026-12-01T17:30:00+07:00",
             "priority": "emergency", "repeat": 3, "zones": [1, 2]},
        ],
    }


def dump(doc) -> str:
    return json.dumps(doc, ensure_ascii=False, indent=2)


def refusal(doc_or_text) -> str:
    text = doc_or_text if isinstance(doc_or_text, str) else dump(doc_or_text)
    with pytest.raises(DocumentError) as info:
        parse_schedule(text)
    assert isinstance(info.value, Rejected)
    message = str(info.value)
    assert "\n" not in message
    return message


# ---- what parses ----

def test_spec_example_parses_into_typed_fields():
    text = dump(example_doc())
    schedule = parse_schedule(text)
    assert schedule.id == "dak-lak/2026-w48"
    assert schedule.version == 3
    assert schedule.targets == ("group:dak-lak/lak", "unit:dl-easup-iarve-02")
    assert schedule.issued_at == datetime(2026, 11, 26, 1, 0, tzinfo=timezone.utc)
    assert (schedule.valid_from, schedule.valid_until) == (date(2026, 11, 30), date(2026, 12, 6))
    assert schedule.timezone.key == "Asia/Ho_Chi_Minh"
    assert schedule.media["bt-giam-ngheo"].title == "Giảm nghèo về thông tin"
    assert schedule.media["canh-bao-bao"].size == 201734
    sang, bao = schedule.items
    assert sang.play == ("chime", "bt-giam-ngheo")
    assert sang.days == frozenset({0, 1, 2, 3, 4})
    assert sang.volume == 80 and sang.repeat == 1 and sang.zones is None
    assert sang.is_recurring and sang.time_of_day.hour == 6
    assert not bao.is_recurring
    assert bao.once_at == datetime(2026, 12, 1, 10, 30, tzinfo=timezone.utc)
    assert (bao.priority, bao.repeat, bao.zones, bao.volume) == ("emergency", 3, (1, 2), None)


def test_payload_and_digest_are_the_exact_text():
    text = dump(example_doc()) + "\n"
    schedule = parse_schedule(text)
    assert schedule.payload == text
    assert schedule.digest == hashlib.sha256(text.encode("utf-8")).hexdigest()


def test_schedule_and_items_are_frozen():
    schedule = parse_schedule(dump(example_doc()))
    with pytest.raises(AttributeError):
        schedule.version = 4
    with pytest.raises(AttributeError):
        schedule.items[0].volume = 100


def test_defaults_for_optional_fields():
    doc = example_doc()
    del doc["media"]
    doc["items"] = [{"id": "tone", "play": ["test-tone"], "at": "07:15:30"}]
    item = parse_schedule(dump(doc)).items[0]
    assert item.days == frozenset(range(7))
    assert (item.priority, item.volume, item.repeat, item.zones) == ("normal", None, 1, None)
    assert item.except_dates == frozenset()
    assert item.time_of_day.second == 30
    assert BUILTIN_MEDIA == {"chime", "test-tone"}


def test_stream_item_with_fallback():
    doc = example_doc()
    doc["items"] = [{"id": "vov1", "stream": "http://radio.example.vn/vov1", "duration_s": 1800.5,
                     "fallback": "bt-giam-ngheo", "at": "06:00", "except": ["2026-12-02"]}]
    item = parse_schedule(dump(doc)).items[0]
    assert (item.stream, item.duration_s, item.fallback, item.play) == (
        "http://radio.example.vn/vov1", 1800.5, "bt-giam-ngheo", ())
    assert item.except_dates == {date(2026, 12, 2)}
    assert item.media_ids == ("bt-giam-ngheo",)


def test_a_document_with_no_items_is_valid():
    doc = example_doc()
    doc["media"], doc["items"] = {}, []
    assert parse_schedule(dump(doc)).items == ()


def test_an_ancient_one_off_and_far_validity_are_accepted():
    doc = example_doc()
    doc["valid_until"] = "9999-12-31"
    assert parse_schedule(dump(doc)).valid_until == date(9999, 12, 31)


# ---- refusals: (change to SPEC's example, what the message must say) ----

def _set(path, value):
    def change(doc):
        target = doc
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return change


def _delete(path):
    def change(doc):
        target = doc
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]
    return change


def _both(*changes):
    def change(doc):
        for c in changes:
            c(doc)
    return change


REFUSALS = [
    # unknown fields, anywhere
    (_set(["colour"], "red"), "colour: unknown field"),
    (_set(["items", 0, "volumn"], 80), "items[0].volumn: unknown field (did you mean 'volume'?)"),
    (_set(["media", "canh-bao-bao", "length"], 3), "media.canh-bao-bao.length: unknown field"),
    # required fields
    (_delete(["version"]), "version: required"),
    (_delete(["targets"]), "targets: required"),
    (_delete(["items", 0, "at"]), "items[0].at: required"),
    (_delete(["media", "canh-bao-bao", "sha256"]), "media.canh-bao-bao.sha256: required"),
    # type and version
    (_set(["type"], "command"), 'type: expected "schedule", got "command"'),
    (_set(["version"], 0), "version: must be a positive integer, got 0"),
    (_set(["version"], -4), "version: must be a positive integer, got -4"),
    (_set(["version"], "3"), 'version: expected an integer, got "3"'),
    (_set(["version"], True), "version: expected an integer, got true"),
    (_set(["version"], 3.0), "version: expected an integer, got 3.0"),
    (_set(["version"], 2**63), "version: must be a positive integer"),
    # schedule id
    (_set(["id"], "dak-lak/../x"), "id: must be one or more segments"),
    (_set(["id"], "dak-lak//w48"), "id: must be one or more segments"),
    (_set(["id"], "/dak-lak"), "id: must be one or more segments"),
    (_set(["id"], "Dak-Lak"), "id: must be one or more segments"),
    (_set(["id"], ""), "id: must be one or more segments"),
    (_set(["id"], 7), "id: expected a string, got 7"),
    # items: ranges and types (bool is not an int)
    (_set(["items", 0, "volume"], 140), "items[0].volume: must be 0-100, got 140"),
    (_set(["items", 0, "volume"], -1), "items[0].volume: must be 0-100, got -1"),
    (_set(["items", 0, "volume"], True), "items[0].volume: expected an integer, got true"),
    (_set(["items", 0, "volume"], "80"), 'items[0].volume: expected an integer, got "80"'),
    (_set(["items", 1, "repeat"], 0), "items[1].repeat: must be 1-10, got 0"),
    (_set(["items", 1, "repeat"], 11), "items[1].repeat: must be 1-10, got 11"),
    (_set(["items", 1, "repeat"], False), "items[1].repeat: expected an integer, got false"),
    (_set(["items", 1, "zones"], [0]), "items[1].zones[0]: must be a zone number 1 or more, got 0"),
    (_set(["items", 1, "zones"], [1, 1]), "items[1].zones[1]: zone 1 given twice"),
    (_set(["items", 1, "zones"], []), "items[1].zones: must not be empty"),
    (_set(["items", 1, "zones"], [True]), "items[1].zones[0]: expected an integer, got true"),
    (_set(["items", 0, "priority"], "urgent"), 'items[0].priority: must be one of normal, priority, emergency'),
    # ids: item and media, path-like ones too
    (_set(["items", 0, "id"], "Sang"), 'items[0].id: item id must match [a-z0-9][a-z0-9_-]{0,63}, got "Sang"'),
    (_set(["items", 0, "id"], "../x"), "items[0].id: item id must match"),
    (_set(["items", 0, "id"], "x" * 65), "items[0].id: item id must match"),
    (_set(["media", "../x"], {"url": "https://a.vn/x", "sha256": SHA_A, "size": 1}),
     'media["../x"]: media id must match'),
    (_set(["items", 0, "play"], ["chime", "../x"]), "items[0].play[1]: media id must match"),
    (_set(["items", 0, "play"], ["chime", "nope"]),
     "items[0].play[1]: unknown media id 'nope' (not in media, and not chime or test-tone)"),
    (_set(["items", 0, "play"], []), "items[0].play: must not be empty"),
    (_set(["items", 0, "play"], "chime"), 'items[0].play: expected a list, got "chime"'),
    (_set(["media", "chime"], {"url": "https://a.vn/c", "sha256": SHA_A, "size": 1}),
     "media.chime: 'chime' is built in and cannot be redefined"),
    # media fields
    (_set(["media", "canh-bao-bao", "url"], "file:///etc/passwd"),
     'media.canh-bao-bao.url: must be an http:// or https:// URL, got "file:///etc/passwd"'),
    (_set(["media", "canh-bao-bao", "url"], "ftp://media.example.vn/a.mp3"), "must be an http:// or https:// URL"),
    (_set(["media", "canh-bao-bao", "url"], "https:///no-host"), "must be an http:// or https:// URL"),
    (_set(["media", "canh-bao-bao", "url"], "https://a.vn/x y"), "must be an http:// or https:// URL"),
    (_set(["media", "canh-bao-bao", "sha256"], SHA_A.upper()), "media.canh-bao-bao.sha256: must be 64 lowercase hex"),
    (_set(["media", "canh-bao-bao", "sha256"], "abc"), "media.canh-bao-bao.sha256: must be 64 lowercase hex"),
    (_set(["media", "canh-bao-bao", "size"], 0), "media.canh-bao-bao.size: must be a positive number of bytes, got 0"),
    (_set(["media", "canh-bao-bao", "size"], True), "media.canh-bao-bao.size: expected an integer, got true"),
    (_set(["media", "canh-bao-bao", "title"], 5), "media.canh-bao-bao.title: expected a string, got 5"),
    (_set(["media"], []), "media: expected an object, got a list"),
    # at, days, except
    (_set(["items", 0, "at"], "25:00"), "items[0].at: expected HH:MM[:SS] or a date-time with offset"),
    (_set(["items", 0, "at"], "6:00"), "items[0].at: expected HH:MM[:SS]"),
    (_set(["items", 0, "at"], "\u0660\u0666:\u0660\u0660"), "items[0].at: expected HH:MM[:SS]"),
    (_set(["items", 1, "at"], "2026-12-01T17:30:00"), "items[1].at: expected HH:MM[:SS] or a date-time with offset"),
    (_set(["items", 1, "at"], "2026-02-30T17:30:00+07:00"), "items[1].at: expected a date-time with offset"),
    (_set(["items", 1, "days"], ["mon"]), "items[1].days: only for a recurring at"),
    (_set(["items", 1, "except"], ["2026-12-01"]), "items[1].except: only for a recurring at"),
    (_set(["items", 0, "days"], ["monday"]), 'items[0].days[0]: expected one of mon, tue, wed, thu, fri, sat, sun'),
    (_set(["items", 0, "days"], []), "items[0].days: must not be empty"),
    (_set(["items", 0, "days"], ["mon", "mon"]), "items[0].days[1]: 'mon' given twice"),
    (_set(["items", 0, "except"], ["2026-13-01"]), 'items[0].except[0]: expected a date YYYY-MM-DD, got "2026-13-01"'),
    # play or stream
    (_set(["items", 0, "stream"], "http://radio.vn/a"), 'items[0]: needs exactly one of "play"'),
    (_delete(["items", 0, "play"]), 'items[0]: needs exactly one of "play"'),
    (_both(_delete(["items", 0, "play"]), _set(["items", 0, "stream"], "http://radio.vn/a")),
     "items[0].duration_s: required with stream"),
    (_both(_delete(["items", 0, "play"]), _set(["items", 0, "stream"], "rtsp://radio.vn/a"),
           _set(["items", 0, "duration_s"], 60)), "items[0].stream: must be an http:// or https:// URL"),
    (_both(_delete(["items", 0, "play"]), _set(["items", 0, "stream"], "http://radio.vn/a"),
           _set(["items", 0, "duration_s"], 0)), "items[0].duration_s: must be more than 0 and at most 86400"),
    (_both(_delete(["items", 0, "play"]), _set(["items", 0, "stream"], "http://radio.vn/a"),
           _set(["items", 0, "duration_s"], 86401)), "items[0].duration_s: must be more than 0 and at most 86400"),
    (_both(_delete(["items", 0, "play"]), _set(["items", 0, "stream"], "http://radio.vn/a"),
           _set(["items", 0, "duration_s"], True)), "items[0].duration_s: expected a number, got true"),
    (_both(_delete(["items", 0, "play"]), _set(["items", 0, "stream"], "http://radio.vn/a"),
           _set(["items", 0, "duration_s"], 60), _set(["items", 0, "fallback"], "nope")),
     "items[0].fallback: unknown media id 'nope'"),
    (_both(_delete(["items", 1, "play"]), _set(["items", 1, "stream"], "http://radio.vn/a"),
           _set(["items", 1, "duration_s"], 60)), "items[1].repeat: only for a play item"),
    (_set(["items", 0, "duration_s"], 60), "items[0].duration_s: only for a stream item"),
    # duplicates, validity, timezone, targets, issued_at
    (_set(["items", 1, "id"], "sang"), "items[1].id: duplicate item id 'sang' (also items[0])"),
    (_set(["valid_until"], "2026-11-29"), "valid_until: 2026-11-29 is before valid_from 2026-11-30"),
    (_set(["valid_from"], "30/11/2026"), 'valid_from: expected a date YYYY-MM-DD, got "30/11/2026"'),
    (_set(["timezone"], "Mars/Olympus_Mons"), 'timezone: unknown time zone "Mars/Olympus_Mons"'),
    (_set(["timezone"], "../../etc/passwd"), "timezone: unknown time zone"),
    (_set(["timezone"], "localtime"), "timezone: unknown time zone"),
    (_set(["targets"], []), "targets: must not be empty"),
    (_set(["targets"], ["unit:AB"]), "targets[0]: expected unit:ID"),
    (_set(["targets"], ["group:dak-lak//lak"]), "targets[0]: expected unit:ID"),
    (_set(["targets"], ["everyone"]), "targets[0]: expected unit:ID"),
    (_set(["targets"], "group:dak-lak"), 'targets: expected a list, got "group:dak-lak"'),
    (_set(["issued_at"], "2026-11-26T08:00:00"), "issued_at: expected a date-time with offset"),
    (_set(["issued_at"], "2026-11-26"), "issued_at: expected a date-time with offset"),
    (_set(["items"], {}), "items: expected a list, got an object"),
    (_set(["items", 0], "sang"), 'items[0]: expected an object, got "sang"'),
]


@pytest.mark.parametrize("change, expected", REFUSALS, ids=[e for _, e in REFUSALS])
def test_refusal_names_the_field_and_reason(change, expected):
    doc = copy.deepcopy(example_doc())
    change(doc)
    assert expected in refusal(doc)


@pytest.mark.parametrize("text, expected", [
    ("", "document is not valid JSON"),
    ("{\"type\": \"schedule\",", "document is not valid JSON"),
    ("[1, 2]", "document: expected an object, got a list"),
    ('{"version": NaN}', "document is not valid JSON: NaN is not allowed"),
    ('{"version": 1, "version": 2}', "field 'version' appears twice"),
    ('\ufeff{"type": "schedule"}', "document is not valid JSON"),
])
def test_malformed_json_is_refused(text, expected):
    assert expected in refusal(text)


def test_deep_nesting_is_refused_not_crashed():
    # json.loads raises RecursionError (not ValueError) for this: it must still be a refusal.
    text = '{"type": "schedule", "items": ' + "[" * 100_000 + "]" * 100_000 + "}"
    assert len(text.encode()) < MAX_DOCUMENT_BYTES
    assert "nested too deeply" in refusal(text)


def test_a_document_over_256_kib_is_refused():
    doc = example_doc()
    doc["media"]["canh-bao-bao"]["title"] = "x" * MAX_DOCUMENT_BYTES
    assert "over the 256 KiB" in refusal(doc)


def test_a_document_just_under_the_limit_is_accepted():
    doc = example_doc()
    doc["media"]["canh-bao-bao"]["title"] = ""
    room = MAX_DOCUMENT_BYTES - len(dump(doc).encode())
    doc["media"]["canh-bao-bao"]["title"] = "x" * room
    assert len(dump(doc).encode()) == MAX_DOCUMENT_BYTES
    parse_schedule(dump(doc))


def test_lone_surrogates_are_refused():
    assert "not valid Unicode" in refusal(dump(example_doc()) + "\ud800")


def test_huge_integers_are_refused_as_json():
    text = dump(example_doc()).replace('"version": 3', '"version": ' + "9" * 5000)
    assert "document is not valid JSON" in refusal(text)


def test_a_field_name_too_long_to_print_is_cut_short():
    doc = example_doc()
    doc["items"][0]["z" * 10_000] = 1
    message = refusal(doc)
    assert "unknown field" in message and len(message) < 200


def test_one_off_at_in_another_offset_is_kept_as_written():
    doc = example_doc()
    doc["items"][1]["at"] = "2026-12-01T10:30:00Z"
    item = parse_schedule(dump(doc)).items[1]
    assert item.at == "2026-12-01T10:30:00Z"
    assert item.once_at - datetime(2026, 12, 1, 17, 30, tzinfo=timezone(timedelta(hours=7))) == timedelta(0)
