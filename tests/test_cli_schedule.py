"""`loaxa keys` and `loaxa schedule`, run as the real command line against a real mosquitto."""

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from scheduler import load_trusted_keys, open_envelope, parse_schedule, read_envelope, write_keypair
from tests.support.broker import free_port
from tests.test_scheduler_document import dump, example_doc

REPO = Path(__file__).resolve().parents[1]
DOC_ID = "dak-lak/2026-w48"
GROUP_TOPIC = "loaxa/group/dak-lak/lak/schedule"
UNIT_TOPIC = "loaxa/unit/dl-easup-iarve-02/schedule"


def loaxa(*args, cwd, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUTF8="1")
    env.pop("LOAXA_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "loaxa", *map(str, args)], cwd=cwd, env=env, input=stdin,
                          capture_output=True, timeout=60)


def out(result) -> str:
    return result.stdout.decode("utf-8")


def assert_one_line_failure(result, *fragments) -> str:
    err = result.stderr.decode("utf-8")
    assert result.returncode == 1, (result.returncode, err)
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("loaxa: error: "), err
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


@pytest.fixture
def keys(tmp_path):
    """An operator key pair (made in-process: `loaxa keys new` has its own tests)."""
    key, pub = write_keypair(tmp_path / "keys", "dak-lak-2026")
    return key, pub, load_trusted_keys({"dak-lak-2026": pub.read_text()})


@pytest.fixture
def doc_file(tmp_path) -> Path:
    d = example_doc()
    d["items"].append({"id": "vov1", "stream": "http://radio.example.vn/vov1", "duration_s": 1800,
                       "fallback": "bt-giam-ngheo", "at": "05:45"})
    path = tmp_path / "w48.json"
    path.write_text(dump(d) + "\n", encoding="utf-8")
    return path


def write_doc(tmp_path, d, name="doc.json") -> Path:
    path = tmp_path / name
    path.write_text(dump(d), encoding="utf-8")
    return path


# ---- help ----

@pytest.mark.parametrize("command", [["keys"], ["keys", "new"], ["schedule"], ["schedule", "check"],
                                     ["schedule", "sign"], ["schedule", "push"], ["schedule", "revoke"]])
def test_every_command_has_help(tmp_path, command):
    result = loaxa(*command, "--help", cwd=tmp_path)
    assert result.returncode == 0
    assert out(result).startswith("usage: loaxa " + " ".join(command))


# ---- keys ----

def test_keys_new_writes_a_pair_and_prints_the_trust_line(tmp_path):
    result = loaxa("keys", "new", "--out", "k", "--no-passphrase", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    key, pub = tmp_path / "k" / "operator.key", tmp_path / "k" / "operator.pub"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    text = out(result)
    assert str(key) in text and str(pub) in text
    assert f'keys = {{ "operator" = "{pub.read_text().strip()}" }}' in text


def test_keys_new_refuses_to_overwrite(tmp_path, keys):
    key = keys[0]
    before = key.read_bytes()
    result = loaxa("keys", "new", "--out", key.parent, "--name", "dak-lak-2026", "--no-passphrase", cwd=tmp_path)
    assert_one_line_failure(result, "already exists")
    assert key.read_bytes() == before


def test_keys_new_with_a_bad_name_is_a_usage_error(tmp_path):
    result = loaxa("keys", "new", "--out", tmp_path, "--name", "../x", cwd=tmp_path)
    assert result.returncode == 2 and b"key name" in result.stderr
    assert list(tmp_path.iterdir()) == []


# ---- check ----

def test_check_lists_next_plays_and_warns(tmp_path, doc_file):
    result = loaxa("schedule", "check", doc_file, "--from", "2026-11-29", "--quiet-hours", "05:50-05:55",
                   cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    text = out(result)
    assert f"schedule {DOC_ID} version 3 is valid" in text and "unsigned document" in text
    assert "Mon 2026-11-30 06:00:00 +0700" in text and "Tue 2026-12-01 17:30:00 +0700" in text
    assert "Sat 2026-12-05 06:00:00" not in text  # sang plays on weekdays only
    assert "warning: items vov1 and sang overlap (first at 2026-11-30T06:00:00+07:00" in text
    assert "warning: items[0].at" not in text
    quiet = loaxa("schedule", "check", doc_file, "--quiet-hours", "05:30-06:30", cwd=tmp_path)
    assert quiet.returncode == 0
    assert "warning: items[0].at: 06:00 (sang) is inside the quiet hours 05:30-06:30" in out(quiet)
    assert "warning: items[2].at: 05:45 (vov1)" in out(quiet)
    assert "bao-so-9" not in out(quiet).split("warning:", 1)[1]  # emergency items may sound


def test_check_warns_of_the_units_default_quiet_hours_unless_told_otherwise(tmp_path):
    d = example_doc()
    d["items"].append({"id": "dem", "play": ["chime"], "at": "22:30"})
    path = write_doc(tmp_path, d)
    default = loaxa("schedule", "check", path, cwd=tmp_path)
    assert default.returncode == 0, default.stderr
    assert "warning: items[2].at: 22:30 (dem) is inside the quiet hours 22:00-05:00" in out(default)
    none = loaxa("schedule", "check", path, "--quiet-hours", "", cwd=tmp_path)
    assert none.returncode == 0 and "22:30 (dem)" not in out(none)


def test_check_json(tmp_path, doc_file):
    result = loaxa("schedule", "check", doc_file, "--from", "2026-12-01T00:00:00+07:00", "--days", "1", "--json",
                   cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(out(result))
    assert (report["valid"], report["id"], report["version"], report["signature"]) == (True, DOC_ID, 3, "unsigned")
    assert [(p["item"], p["at"]) for p in report["plays"]] == [
        ("vov1", "2026-12-01T05:45:00+07:00"), ("sang", "2026-12-01T06:00:00+07:00"),
        ("bao-so-9", "2026-12-01T17:30:00+07:00")]
    assert len(report["warnings"]) == 1


def crowded_doc(count: int, at: str = "07:00") -> dict:
    """`count` daily items all at one time: the worst case for overlap warnings."""
    d = example_doc()
    d["items"] = [{"id": f"i{n}", "play": ["chime"], "at": at} for n in range(count)]
    return d


def test_check_of_a_crowded_document_warns_in_proportion_to_its_length(tmp_path):
    """Every pair of 300 simultaneous items was a warning (44,850 of them, found by comparing
    every play with every later one); a run of plays warns of each play and the one before it."""
    path = write_doc(tmp_path, crowded_doc(300))
    result = loaxa("schedule", "check", path, "--from", "2026-11-30", "--days", "1", "--quiet-hours", "",
                   "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    warnings = json.loads(out(result))["warnings"]
    assert len(warnings) == 299
    assert warnings[0].startswith("items i0 and i1 overlap (first at 2026-11-30T07:00:00+07:00)")


def test_check_warns_of_plays_inside_a_long_stream_beyond_the_one_before():
    from loaxa.commands.schedule import find_overlaps
    from scheduler import occurrences
    from datetime import datetime
    d = example_doc()
    d["items"] = [{"id": "vov1", "stream": "http://radio.example.vn/vov1", "duration_s": 1800,
                   "fallback": "bt-giam-ngheo", "at": "05:00"},
                  {"id": "a", "play": ["chime"], "at": "05:10"}, {"id": "b", "play": ["chime"], "at": "05:20"}]
    schedule = parse_schedule(dump(d))
    start = datetime.fromisoformat("2026-11-30T00:00:00+07:00")
    plays = occurrences(schedule, start, start.replace(hour=12))
    assert [w.split(" (")[0] for w in find_overlaps(plays)] == [
        "items vov1 and a overlap", "items vov1 and b overlap"]


def test_check_refuses_an_invalid_document_in_one_line(tmp_path):
    d = example_doc()
    d["items"][1]["volume"] = 140
    path = write_doc(tmp_path, d)
    assert_one_line_failure(loaxa("schedule", "check", path, cwd=tmp_path),
                            f"{path}: items[1].volume: must be 0-100, got 140")
    as_json = loaxa("schedule", "check", path, "--json", cwd=tmp_path)
    assert as_json.returncode == 1
    assert json.loads(out(as_json))["error"].endswith("items[1].volume: must be 0-100, got 140")


@pytest.mark.parametrize("content, expected", [
    (b"\xff\xfe", "not UTF-8"),
    (b'{"type": "schedule"', "not valid JSON"),
    (b'{"items": ' + b"[" * 50_000 + b"]" * 50_000 + b"}", "nested too deeply"),
])
def test_check_refuses_broken_files(tmp_path, content, expected):
    path = tmp_path / "broken.json"
    path.write_bytes(content)
    assert_one_line_failure(loaxa("schedule", "check", path, cwd=tmp_path), expected)


def test_check_of_a_missing_file(tmp_path):
    assert_one_line_failure(loaxa("schedule", "check", tmp_path / "nope.json", cwd=tmp_path), "cannot read")


def test_check_of_a_signed_envelope(tmp_path, doc_file, keys):
    key, pub, _ = keys
    signed = tmp_path / "w48.signed.json"
    assert loaxa("schedule", "sign", doc_file, "--key", key, "--out", signed, cwd=tmp_path).returncode == 0
    unchecked = loaxa("schedule", "check", signed, "--days", "1", cwd=tmp_path)
    assert unchecked.returncode == 0
    assert 'signed with key "dak-lak-2026" (signature not checked' in out(unchecked)
    checked = loaxa("schedule", "check", signed, "--pub", pub, "--json", cwd=tmp_path)
    assert json.loads(out(checked))["signature"] == "checked"
    assert json.loads(out(checked))["key"] == "dak-lak-2026"
    env = json.loads(signed.read_text())
    env["payload"] = env["payload"].replace("06:00", "07:00")
    signed.write_text(json.dumps(env))
    assert_one_line_failure(loaxa("schedule", "check", signed, "--pub", pub, cwd=tmp_path), "bad signature")


# ---- sign ----

def test_sign_to_stdout_signs_the_text_exactly(tmp_path, doc_file, keys):
    key, _, trusted = keys
    result = loaxa("schedule", "sign", doc_file, "--key", key, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    payload, name = open_envelope(result.stdout, trusted)
    assert payload == doc_file.read_text(encoding="utf-8") and name == "dak-lak-2026"


def test_sign_from_stdin(tmp_path, doc_file, keys):
    key, _, trusted = keys
    result = loaxa("schedule", "sign", "-", "--key", key, cwd=tmp_path, stdin=doc_file.read_bytes())
    assert open_envelope(result.stdout, trusted)[0] == doc_file.read_text(encoding="utf-8")


def test_sign_to_a_file(tmp_path, doc_file, keys):
    key, _, trusted = keys
    result = loaxa("schedule", "sign", doc_file, "--key", key, "--out", "out/signed.json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"signed schedule {DOC_ID} version 3 with key dak-lak-2026" in out(result)
    assert open_envelope((tmp_path / "out" / "signed.json").read_bytes(), trusted)[1] == "dak-lak-2026"


def test_sign_refuses_an_invalid_document(tmp_path, keys):
    d = example_doc()
    d["media"]["canh-bao-bao"]["url"] = "file:///etc/passwd"
    path = write_doc(tmp_path, d)
    result = loaxa("schedule", "sign", path, "--key", keys[0], "--out", tmp_path / "signed.json", cwd=tmp_path)
    assert_one_line_failure(result, "media.canh-bao-bao.url: must be an http:// or https:// URL")
    assert not (tmp_path / "signed.json").exists()


def test_sign_refuses_an_envelope_and_a_bad_key(tmp_path, doc_file, keys):
    key, pub, _ = keys
    signed = tmp_path / "signed.json"
    loaxa("schedule", "sign", doc_file, "--key", key, "--out", signed, cwd=tmp_path)
    assert_one_line_failure(loaxa("schedule", "sign", signed, "--key", key, cwd=tmp_path), "already signed by key")
    assert_one_line_failure(loaxa("schedule", "sign", doc_file, "--key", pub, cwd=tmp_path), "this is a public key")


# ---- push ----

def _retained(broker, *topics, count=None):
    """Subscribe after the fact: only retained copies can arrive."""
    collector = broker.collector(*topics)
    try:
        for topic in topics:
            collector.wait_for(lambda t, p, want=topic: t == want, timeout=10)
        assert all(retain for _, _, retain in collector.messages)
        return {t: p for t, p, _ in collector.messages}
    finally:
        collector.client.disconnect()  # first, so the network loop ends now rather than at its next tick
        collector.close()


def test_push_signs_and_publishes_retained_to_each_target(tmp_path, broker, doc_file, keys):
    key, _, trusted = keys
    result = loaxa("schedule", "push", doc_file, "--key", key, "--broker", broker.url, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert out(result).splitlines() == [
        f"published schedule {DOC_ID} version 3 (retained) to {GROUP_TOPIC}",
        f"published schedule {DOC_ID} version 3 (retained) to {UNIT_TOPIC}"]
    retained = _retained(broker, GROUP_TOPIC, UNIT_TOPIC)
    for payload in retained.values():
        text, name = open_envelope(payload, trusted)
        assert text == doc_file.read_text(encoding="utf-8") and name == "dak-lak-2026"


def test_push_sends_a_signed_envelope_as_is(tmp_path, broker, doc_file, keys):
    signed = tmp_path / "signed.json"
    loaxa("schedule", "sign", doc_file, "--key", keys[0], "--out", signed, cwd=tmp_path)
    result = loaxa("schedule", "push", signed, "--to", "unit:dl-easup-iarve-02", "--broker", broker.url,
                   cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert _retained(broker, UNIT_TOPIC)[UNIT_TOPIC] == signed.read_bytes()


def test_push_with_a_config_file(tmp_path, broker, doc_file, keys):
    config = tmp_path / "operator.toml"
    config.write_text(f'[broker]\nurl = "{broker.url}"\ntopic_prefix = "tinh"\n')
    result = loaxa("schedule", "push", doc_file, "--key", keys[0], "--to", "group:dak-lak/lak", "--config", config,
                   cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "tinh/group/dak-lak/lak/schedule" in _retained(broker, "tinh/group/dak-lak/lak/schedule")


def test_push_refuses_a_target_the_document_does_not_name(tmp_path, broker, doc_file, keys):
    result = loaxa("schedule", "push", doc_file, "--key", keys[0], "--to", "group:quang-nam",
                   "--broker", broker.url, cwd=tmp_path)
    assert_one_line_failure(result, "group:quang-nam not among the document's targets")


def test_push_of_an_unsigned_file_needs_a_key(tmp_path, broker, doc_file):
    assert_one_line_failure(loaxa("schedule", "push", doc_file, "--broker", broker.url, cwd=tmp_path),
                            "is not signed: give --key")


def test_push_to_an_unreachable_broker_fails_in_one_line(tmp_path, doc_file, keys):
    result = loaxa("schedule", "push", doc_file, "--key", keys[0], "--broker", f"mqtt://127.0.0.1:{free_port()}",
                   cwd=tmp_path)
    assert_one_line_failure(result, "cannot reach broker mqtt://127.0.0.1:", "Connection refused")


def test_push_without_a_broker_is_an_error(tmp_path, doc_file, keys):
    assert_one_line_failure(loaxa("schedule", "push", doc_file, "--key", keys[0], cwd=tmp_path), "give --broker URL")


def test_push_denied_by_the_broker_acl_fails(tmp_path, broker_factory, doc_file, keys):
    acl = tmp_path / "acl"
    acl.write_text("topic read #\n")  # anonymous clients may read, never write
    denied = broker_factory(extra=f"acl_file {acl}", name="acl-broker")
    result = loaxa("schedule", "push", doc_file, "--key", keys[0], "--broker", denied.url, cwd=tmp_path)
    assert_one_line_failure(result, "refused the publish", GROUP_TOPIC, "0x87")


# ---- revoke ----

def test_revoke_publishes_the_next_version_with_no_items(tmp_path, broker, doc_file, keys):
    key, _, trusted = keys
    assert loaxa("schedule", "push", doc_file, "--key", key, "--broker", broker.url, cwd=tmp_path).returncode == 0
    result = loaxa("schedule", "revoke", DOC_ID, "--key", key, "--to", "group:dak-lak/lak",
                   "--to", "unit:dl-easup-iarve-02", "--broker", broker.url, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"revoked schedule {DOC_ID}: version 4 with no items published (retained) to {GROUP_TOPIC}" in out(result)
    for payload in _retained(broker, GROUP_TOPIC, UNIT_TOPIC).values():
        revocation = parse_schedule(open_envelope(payload, trusted)[0])
        assert (revocation.id, revocation.version, revocation.items) == (DOC_ID, 4, ())
        assert revocation.targets == ("group:dak-lak/lak", "unit:dl-easup-iarve-02")
        assert str(revocation.timezone) == "Asia/Ho_Chi_Minh"


def test_revoke_with_an_explicit_version(tmp_path, broker, keys):
    key, _, trusted = keys
    result = loaxa("schedule", "revoke", DOC_ID, "--key", key, "--to", "group:dak-lak/lak", "--version", "9",
                   "--broker", broker.url, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    payload = _retained(broker, GROUP_TOPIC)[GROUP_TOPIC]
    assert parse_schedule(open_envelope(payload, trusted)[0]).version == 9


def test_revoke_without_a_retained_copy_needs_a_version(tmp_path, broker, keys):
    result = loaxa("schedule", "revoke", DOC_ID, "--key", keys[0], "--to", "group:dak-lak/lak",
                   "--broker", broker.url, cwd=tmp_path)
    assert_one_line_failure(result, "no target topic retains schedule", "give --version N")


def test_revoke_will_not_replace_another_document(tmp_path, broker, doc_file, keys):
    key = keys[0]
    loaxa("schedule", "push", doc_file, "--key", key, "--broker", broker.url, cwd=tmp_path)
    result = loaxa("schedule", "revoke", "dak-lak/other", "--key", key, "--to", "group:dak-lak/lak",
                   "--broker", broker.url, cwd=tmp_path)
    assert_one_line_failure(result, f"{GROUP_TOPIC} holds schedule {DOC_ID}, not dak-lak/other")
    assert read_envelope(_retained(broker, GROUP_TOPIC)[GROUP_TOPIC]).payload == doc_file.read_text(encoding="utf-8")


def test_revoke_refuses_a_bad_id_before_the_network(tmp_path, keys):
    result = loaxa("schedule", "revoke", "../etc", "--key", keys[0], "--to", "group:dak-lak",
                   "--broker", f"mqtt://127.0.0.1:{free_port()}", cwd=tmp_path)
    assert_one_line_failure(result, "cannot revoke '../etc': id: must be")


# ---- broker options (in-process: the parsing, not the network) ----

def _broker_args(*argv):
    import argparse

    from fleet import add_broker_arguments

    parser = argparse.ArgumentParser()
    add_broker_arguments(parser)
    return parser.parse_args([str(a) for a in argv])


def test_broker_options_merge_flags_over_the_config_file(tmp_path):
    from fleet import broker_options

    (tmp_path / "secret").write_text("s3cret\n")
    config = tmp_path / "ops.toml"
    config.write_text('[broker]\nurl = "mqtts://mqtt.example.vn"\nusername = "op"\npassword_file = "secret"\n'
                      'topic_prefix = "tinh"\n[unit]\nid = "ignored"\n')
    options = broker_options(_broker_args("--config", config, "--topic-prefix", "loaxa"))
    assert (options.url, options.username, options.password, options.topic_prefix) == (
        "mqtts://mqtt.example.vn:8883", "op", "s3cret", "loaxa")
    assert "s3cret" not in repr(options)


@pytest.mark.parametrize("toml, expected", [
    ('[broker]\nurll = "mqtt://x"\n', "broker.urll: unknown key (did you mean 'url'?)"),
    ('[broker]\nurl = 5\n', "broker.url: expected a string"),
    ('[unit]\nid = "x"\n', "no [broker] table"),
    ('[broker\n', "not valid TOML"),
    ('[broker]\nurl = "http://x"\n', "scheme must be mqtt:// or mqtts://"),
    ('[broker]\nurl = "mqtt://x"\npassword_file = "missing"\n', "password_file"),
    ('[broker]\nurl = "mqtt://x"\ntopic_prefix = "a/#"\n', "topic_prefix"),
])
def test_broker_options_refusals(tmp_path, toml, expected):
    from fleet import broker_options
    from loaxa.errors import ConfigError

    config = tmp_path / "ops.toml"
    config.write_text(toml)
    with pytest.raises(ConfigError) as info:
        broker_options(_broker_args("--config", config))
    assert expected in str(info.value)


# ---- push over what a topic retains (issue 11, item 14) ----

def test_push_of_an_edited_document_under_the_same_version_is_refused(tmp_path, broker, doc_file, keys):
    """Every unit refused the edit (same id and version, other content) while push said it was published."""
    key, _, trusted = keys
    assert loaxa("schedule", "push", doc_file, "--key", key, "--broker", broker.url, cwd=tmp_path).returncode == 0
    again = loaxa("schedule", "push", doc_file, "--key", key, "--broker", broker.url, cwd=tmp_path)
    assert again.returncode == 0, again.stderr  # the same document again: units say "unchanged"
    d = json.loads(doc_file.read_text(encoding="utf-8"))
    d["items"][0]["at"] = "06:30"
    edited = write_doc(tmp_path, d, "edited.json")
    refused = loaxa("schedule", "push", edited, "--key", key, "--broker", broker.url, cwd=tmp_path)
    line = assert_one_line_failure(refused, f"{GROUP_TOPIC} retains schedule {DOC_ID} version 3 with other "
                                            "content", "give it version 4", "--force")
    assert "published" not in out(refused), line
    assert parse_schedule(open_envelope(_retained(broker, GROUP_TOPIC)[GROUP_TOPIC], trusted)[0]).items[0].at == "06:00"
    forced = loaxa("schedule", "push", edited, "--key", key, "--force", "--broker", broker.url, cwd=tmp_path)
    assert forced.returncode == 0
    assert "warning: " in forced.stderr.decode() and "publishing anyway (--force)" in forced.stderr.decode()
    d["version"] = 4
    newer = write_doc(tmp_path, d, "v4.json")
    assert loaxa("schedule", "push", newer, "--key", key, "--broker", broker.url, cwd=tmp_path).returncode == 0


def test_push_of_a_lower_version_than_retained_is_refused(tmp_path, broker, doc_file, keys):
    key = keys[0]
    d = json.loads(doc_file.read_text(encoding="utf-8"))
    d["version"] = 7
    assert loaxa("schedule", "push", write_doc(tmp_path, d, "v7.json"), "--key", key, "--to", "unit:dl-easup-iarve-02",
                 "--broker", broker.url, cwd=tmp_path).returncode == 0
    refused = loaxa("schedule", "push", doc_file, "--key", key, "--broker", broker.url, cwd=tmp_path)
    assert_one_line_failure(refused, f"{UNIT_TOPIC} retains schedule {DOC_ID} version 7, newer than this version 3")
