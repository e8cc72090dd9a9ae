"""The unit's command gate: signed, targeted, unexpired, never twice; every refusal a Rejected."""

import base64
import json
import stat
import threading
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from device.commands import CommandGate, RefusalReporter, ReplayError, peek_command_id, reply_doc
from loaxa.errors import DocumentError, HardwareError, Rejected, SignatureError, TargetError
from scheduler import (ExpiredError, MAX_DOCUMENT_BYTES, StorageError, build_command, load_private_key,
                       load_trusted_keys, sign_document, write_keypair)

ICT = timezone(timedelta(hours=7))
NOW = datetime(2026, 11, 30, 9, 0, 0, tzinfo=ICT)
UNIT = "dl-lak-bongkrang-01"
GROUPS = ["dak-lak/lak/bong-krang"]
UNIT_TOPIC = f"loaxa/unit/{UNIT}/cmd"
DISTRICT_TOPIC = "loaxa/group/dak-lak/lak/cmd"


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    folder = tmp_path_factory.mktemp("keys")
    key_path, pub_path = write_keypair(folder, "dak-lak-2026")
    other_path, other_pub = write_keypair(folder, "stranger")
    name, key = load_private_key(key_path)
    _, other = load_private_key(other_path)
    return {"name": name, "key": key, "other": other,
            "trusted": load_trusted_keys({name: pub_path.read_text()})}


@pytest.fixture
def gate(tmp_path, keys):
    return make_gate(tmp_path / "commands", keys)


def make_gate(folder, keys) -> CommandGate:
    return CommandGate(folder, trusted=keys["trusted"], unit_id=UNIT, groups=GROUPS, prefix="loaxa")


def signed(keys, text: str, name=None, key=None) -> bytes:
    return sign_document(text, key or keys["key"], name or keys["name"])


def command(keys, action="ping", args=None, target=f"unit:{UNIT}", *, cid="c-1", now=NOW, ttl_s=300) -> bytes:
    return signed(keys, build_command(action, args or {}, target, now=now, ttl_s=ttl_s, command_id=cid))


def refused(gate, topic, raw, kind, now=NOW) -> Rejected:
    with pytest.raises(Rejected) as info:
        gate.admit(topic, raw, now)
    assert type(info.value) is kind, repr(info.value)
    assert str(info.value) and "\n" not in str(info.value)
    return info.value


# ---- admitted ----

def test_admits_a_signed_command_for_this_unit(gate, keys, tmp_path):
    cmd = gate.admit(UNIT_TOPIC, command(keys, "set_volume", {"volume": 60}), NOW)
    assert (cmd.id, cmd.action, cmd.volume, cmd.signed_by) == ("c-1", "set_volume", 60, "dak-lak-2026")
    seen = tmp_path / "commands" / "seen.json"
    assert "c-1" in json.loads(seen.read_text())["seen"]
    assert stat.S_IMODE(seen.stat().st_mode) == 0o600


@pytest.mark.parametrize("target,topic", [
    ("group:dak-lak/lak", DISTRICT_TOPIC),
    ("group:dak-lak", "loaxa/group/dak-lak/cmd"),
    ("group:dak-lak/lak/bong-krang", "loaxa/group/dak-lak/lak/bong-krang/cmd"),
])
def test_admits_group_and_ancestor_targets(gate, keys, target, topic):
    assert gate.admit(topic, command(keys, target=target), NOW).target == target


def test_other_prefix(tmp_path, keys):
    gate = CommandGate(tmp_path, trusted=keys["trusted"], unit_id=UNIT, groups=GROUPS, prefix="tinh/dl")
    gate.admit(f"tinh/dl/unit/{UNIT}/cmd", command(keys), NOW)
    refused(gate, UNIT_TOPIC, command(keys, cid="c-2"), TargetError)


# ---- replays ----

def test_replay_refused(gate, keys):
    raw = command(keys)
    gate.admit(UNIT_TOPIC, raw, NOW)
    exc = refused(gate, UNIT_TOPIC, raw, ReplayError, NOW + timedelta(seconds=10))
    assert exc.command_id == "c-1" and "already received" in str(exc)


def test_replay_refused_by_a_new_gate_on_the_same_folder(tmp_path, keys):
    raw = command(keys)
    make_gate(tmp_path, keys).admit(UNIT_TOPIC, raw, NOW)
    refused(make_gate(tmp_path, keys), UNIT_TOPIC, raw, ReplayError, NOW + timedelta(seconds=1))


def test_same_id_other_payload_is_a_replay(gate, keys):
    gate.admit(UNIT_TOPIC, command(keys, "ping"), NOW)
    refused(gate, UNIT_TOPIC, command(keys, "stop"), ReplayError)
    refused(gate, DISTRICT_TOPIC, command(keys, "ping", target="group:dak-lak/lak"), ReplayError)


def test_ids_are_forgotten_after_expiry_and_the_margin(tmp_path, keys):
    gate = make_gate(tmp_path, keys)
    gate.admit(UNIT_TOPIC, command(keys, cid="old", ttl_s=60), NOW)
    assert gate.remembered(NOW + timedelta(minutes=30)) == ["old"]  # expired, still kept (clock step back)
    assert gate.remembered(NOW + timedelta(hours=1, minutes=2)) == []
    later = NOW + timedelta(hours=2)
    gate.admit(UNIT_TOPIC, command(keys, cid="new", now=later), later)
    assert set(json.loads((tmp_path / "seen.json").read_text())["seen"]) == {"new"}
    assert make_gate(tmp_path, keys).remembered(later) == ["new"]


def test_refused_commands_are_not_remembered(gate, keys, tmp_path):
    refused(gate, UNIT_TOPIC, command(keys, target="unit:someone-else"), TargetError)
    refused(gate, UNIT_TOPIC, command(keys), ExpiredError, NOW + timedelta(hours=1))
    assert not (tmp_path / "commands" / "seen.json").exists()
    gate.admit(UNIT_TOPIC, command(keys), NOW)  # the id was not burnt by the refusals


def test_concurrent_copies_admit_once(gate, keys):
    raw = command(keys)
    results = []

    def offer():
        try:
            results.append(gate.admit(UNIT_TOPIC, raw, NOW).id)
        except ReplayError:
            results.append("replay")

    threads = [threading.Thread(target=offer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["c-1"] + ["replay"] * 7


def test_unreadable_seen_file_starts_empty(tmp_path, keys):
    (tmp_path / "seen.json").write_text("{not json")
    gate = make_gate(tmp_path, keys)
    assert gate.admit(UNIT_TOPIC, command(keys), NOW).id == "c-1"
    assert json.loads((tmp_path / "seen.json").read_text())["format"] == 1


def test_a_command_that_cannot_be_remembered_is_refused(tmp_path, keys):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    gate = make_gate(blocker, keys)
    exc = refused(gate, UNIT_TOPIC, command(keys), StorageError)
    assert "could not be stored" in str(exc) and exc.command_id == "c-1"


# ---- refused ----

def test_expired_and_future(gate, keys):
    exc = refused(gate, UNIT_TOPIC, command(keys, ttl_s=60), ExpiredError, NOW + timedelta(seconds=60))
    assert exc.command_id == "c-1"
    refused(gate, UNIT_TOPIC, command(keys, now=NOW + timedelta(minutes=6), cid="c-2"), ExpiredError)


@pytest.mark.parametrize("target,topic,reason", [
    ("unit:dl-other-unit-02", UNIT_TOPIC, "names neither unit dl-lak-bongkrang-01 nor any of its groups"),
    ("group:gia-lai", "loaxa/group/gia-lai/cmd", "not one of this unit's command topics"),
    ("group:dak-lak/lak", UNIT_TOPIC, "not the command topic of its target group:dak-lak/lak"),
    (f"unit:{UNIT}", DISTRICT_TOPIC, f"not the command topic of its target unit:{UNIT}"),
    (f"unit:{UNIT}", f"loaxa/unit/{UNIT}/schedule", "not one of this unit's command topics"),
    (f"unit:{UNIT}", "loaxa/unit/dl-other-unit-02/cmd", "not one of this unit's command topics"),
    (f"unit:{UNIT}", "loaxa/group/dak-lak/lak/bong-krang/x/cmd", "not one of this unit's command topics"),
    (f"unit:{UNIT}", "", "not one of this unit's command topics"),
])
def test_mis_targeted(gate, keys, target, topic, reason):
    assert reason in str(refused(gate, topic, command(keys, target=target), TargetError))


def test_unsigned_document(gate):
    text = build_command("ping", {}, f"unit:{UNIT}", now=NOW, command_id="bare")
    exc = refused(gate, UNIT_TOPIC, text.encode(), SignatureError)
    assert "not signed" in str(exc)


def test_signature_over_another_payload(gate, keys):
    good = json.loads(command(keys, "ping"))
    evil = json.loads(command(keys, "play", {"media": ["chime"], "priority": "emergency"}, cid="c-2"))
    evil["sig"] = good["sig"]
    exc = refused(gate, UNIT_TOPIC, json.dumps(evil).encode(), SignatureError)
    assert "bad signature" in str(exc) and exc.command_id == "c-2"


def test_untrusted_key(gate, keys):
    text = build_command("stop", {}, f"unit:{UNIT}", now=NOW, command_id="x-1")
    exc = refused(gate, UNIT_TOPIC, signed(keys, text, name="stranger", key=keys["other"]), SignatureError)
    assert "not trusted" in str(exc)
    exc = refused(gate, UNIT_TOPIC, signed(keys, text, key=keys["other"]), SignatureError)  # trusted name, wrong key
    assert "bad signature" in str(exc)


def test_non_utf8_huge_and_deep(gate, keys):
    assert "not UTF-8" in str(refused(gate, UNIT_TOPIC, b'{"payload": "\xff\xfe"}', DocumentError))
    assert "256 KiB" in str(refused(gate, UNIT_TOPIC, b" " * (MAX_DOCUMENT_BYTES + 1), DocumentError))
    deep = "[" * 50_000 + "]" * 50_000
    assert "nested too deeply" in str(refused(gate, UNIT_TOPIC, signed(keys, deep), DocumentError))
    assert "nested too deeply" in str(refused(gate, UNIT_TOPIC, deep.encode(), DocumentError))
    wide = build_command("ping", {}, f"unit:{UNIT}", now=NOW)[:-1] + ', "pad": "' + "x" * MAX_DOCUMENT_BYTES + '"}'
    assert "256 KiB" in str(refused(gate, UNIT_TOPIC, wide.encode(), DocumentError))


def test_surrogate_key_name_refused_and_reply_still_encodes(gate, keys):
    envelope = json.loads(command(keys))
    envelope["key"] = "\ud800"
    raw = json.dumps(envelope).encode()  # ASCII escapes: valid UTF-8 on the wire
    exc = refused(gate, UNIT_TOPIC, raw, SignatureError)
    json.dumps(reply_doc(exc.command_id, False, str(exc)), ensure_ascii=False).encode("utf-8")
    text = build_command("ping", {}, f"unit:{UNIT}", now=NOW).replace('"args": {}', '"args": {"\\ud800": 1}')
    assert "not valid Unicode" in str(refused(gate, UNIT_TOPIC, signed(keys, text), DocumentError))


def test_peek_command_id_only_returns_safe_ids(keys):
    assert peek_command_id(command(keys, cid="op-7")) == "op-7"
    assert peek_command_id(b"junk") is None
    bad = sign_document(json.dumps({"id": "../../x y"}), keys["key"], keys["name"])
    assert peek_command_id(bad) is None
    assert peek_command_id(sign_document("[1]", keys["key"], keys["name"])) is None


# ---- replies ----

def test_reply_doc_shape():
    assert reply_doc("c-1", True, "pong") == {"command": "c-1", "ok": True, "detail": "pong", "result": {}}
    assert reply_doc(None, False, "bad", {"x": 1}) == {"command": None, "ok": False, "detail": "bad",
                                                      "result": {"x": 1}}
    assert len(reply_doc(None, False, "x" * 5000)["detail"]) == 500


def test_respond_carries_out_and_answers(gate, keys):
    calls = []

    def execute(cmd):
        calls.append(cmd.action)
        if cmd.action == "stop":
            raise HardwareError("amplifier does not answer")
        if cmd.action == "sync":
            raise KeyError("boom")
        return "pong", {"uptime_s": 5}

    reply, cmd = gate.respond(UNIT_TOPIC, command(keys, "ping", cid="a"), NOW, execute)
    assert reply == {"command": "a", "ok": True, "detail": "pong", "result": {"uptime_s": 5}} and cmd.id == "a"
    reply, _ = gate.respond(UNIT_TOPIC, command(keys, "stop", cid="b"), NOW, execute)
    assert reply == {"command": "b", "ok": False, "detail": "amplifier does not answer", "result": {}}
    reply, _ = gate.respond(UNIT_TOPIC, command(keys, "sync", cid="c"), NOW, execute)
    assert reply["ok"] is False and reply["detail"].startswith("internal error: KeyError")
    reply, cmd = gate.respond(UNIT_TOPIC, command(keys, "ping", cid="a"), NOW, execute)
    assert (reply["command"], reply["ok"], cmd) == ("a", False, None) and "already received" in reply["detail"]
    assert calls == ["ping", "stop", "sync"]


# ---- hostile corpus: nothing but Rejected ----

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=12)
topics = st.sampled_from([UNIT_TOPIC, DISTRICT_TOPIC, "loaxa/group/dak-lak/cmd", "loaxa/unit/x/cmd", "junk", ""])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(topic=topics, raw=st.binary(max_size=300))
def test_random_bytes(gate, topic, raw):
    with pytest.raises(Rejected):
        gate.admit(topic, raw, NOW)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(topic=topics, envelope=st.dictionaries(st.sampled_from(["payload", "alg", "key", "sig", "type"]),
                                              json_values, max_size=5))
def test_random_envelopes(gate, topic, envelope):
    with pytest.raises(Rejected):
        gate.admit(topic, json.dumps(envelope).encode(), NOW)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(topic=topics, changes=st.dictionaries(
    st.sampled_from(["type", "id", "issued_at", "expires_at", "target", "action", "args", "extra"]),
    json_values | st.sampled_from(["play", "group:dak-lak", f"unit:{UNIT}", "2026-11-30T09:01:00+07:00"]),
    max_size=3))
def test_validly_signed_hostile_documents(gate, keys, topic, changes):
    doc = json.loads(build_command("ping", {}, f"unit:{UNIT}", now=NOW))
    doc.update(changes)
    raw = signed(keys, json.dumps(doc))
    try:
        cmd = gate.admit(topic, raw, NOW)
    except Rejected as exc:
        assert str(exc)
        json.dumps(reply_doc(exc.command_id, False, str(exc)), ensure_ascii=False).encode("utf-8")
        return
    assert cmd.action in ("play", "stop", "set_volume", "ping", "sync", "selftest")
    assert topic in (UNIT_TOPIC, DISTRICT_TOPIC, "loaxa/group/dak-lak/cmd")


def test_truncated_and_flipped_envelopes(gate, keys):
    raw = command(keys, "play", {"media": ["chime"]})
    for cut in range(0, len(raw), 7):
        with pytest.raises(Rejected):
            gate.admit(UNIT_TOPIC, raw[:cut], NOW)
    sig = json.loads(raw)["sig"]
    flipped = base64.b64encode(bytes([base64.b64decode(sig)[0] ^ 1]) + base64.b64decode(sig)[1:]).decode()
    with pytest.raises(SignatureError):
        gate.admit(UNIT_TOPIC, raw.replace(sig.encode(), flipped.encode()), NOW)
    assert gate.admit(UNIT_TOPIC, raw, NOW).play.media == ("chime",)


# --- screening on the network thread, and refusals coalesced -------------------------------

def test_screen_checks_everything_but_writes_nothing(tmp_path, gate, keys):
    cmd = gate.screen(UNIT_TOPIC, command(keys, cid="s-1"), NOW)
    assert cmd.id == "s-1" and not (tmp_path / "commands" / "seen.json").exists()
    with pytest.raises(SignatureError):
        text = build_command("ping", {}, f"unit:{UNIT}", now=NOW, command_id="s-2")
        gate.screen(UNIT_TOPIC, signed(keys, text, key=keys["other"]), NOW)
    gate.remember(cmd, NOW)
    with pytest.raises(ReplayError):  # a replay is caught before any queue, without the disk
        gate.screen(UNIT_TOPIC, command(keys, cid="s-1"), NOW)


class FakeMonotonic:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def test_refusals_are_reported_a_few_at_a_time_and_the_rest_counted_once_per_interval():
    clock = FakeMonotonic()
    reporter = RefusalReporter(clock, interval_s=60, burst=5)
    answered = [reporter.admit("t", f"bad {n}") for n in range(14_000)]
    assert sum(answered) == 5 and answered[:5] == [True] * 5
    assert reporter.summary() is None and reporter.due_in() == 60  # not before the window closes
    clock.t += 60
    assert reporter.summary() == {"count": 13_995, "topic": "t", "reason": "bad 13999", "interval_s": 60}
    assert reporter.summary() is None
    # A flood that goes on: only counted (one summary a minute), no new burst of replies.
    assert not any(reporter.admit("t", "bad") for _ in range(100))
    clock.t += 60
    assert reporter.summary()["count"] == 100
    # Once it is quiet for a whole window, a refusal is answered in full again.
    clock.t += 61
    assert reporter.admit("t", "bad") and reporter.summary() is None
