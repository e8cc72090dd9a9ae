"""`loaxa trust init|build|sign`: a province's key ceremony through the real command line."""

import json
from datetime import datetime, timezone

import pytest

from loaxa.cli import main
from scheduler.envelope import read_envelope
from scheduler.keys import write_keypair
from scheduler.trust import parse_trust, verify_trust
from tests.support.trustkit import GROUPS, UNIT

SOURCE = """\
id = "dak-lak"
version = 1
targets = ["group:dak-lak"]
expires_in_days = 365
root = "roots/root.json"

[keys.lak-editor]
pub = "ops/lak-editor.pub"
roles = ["editor"]
scope = ["group:dak-lak/lak"]

[keys.so-approver]
pub = "ops/so-approver.pub"
roles = ["approver", "operator"]
scope = ["group:dak-lak"]

[require]
schedule = ["editor", "approver"]
"""


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def ceremony(tmp_path, capsys):
    passfile = tmp_path / "pass"
    passfile.write_text("mật khẩu tỉnh\n", encoding="utf-8")
    code, out, err = run(capsys, "trust", "init", "--roots", "3", "--threshold", "2", "--out",
                         str(tmp_path / "roots"), "--name", "dak-lak", "--passphrase-file", str(passfile))
    assert code == 0, err
    assert "root_threshold = 2" in out and '"dak-lak-root-1" = "' in out
    for name in ("lak-editor", "so-approver"):
        write_keypair(tmp_path / "ops", name)
    (tmp_path / "trust.toml").write_text(SOURCE)
    return tmp_path, passfile


def test_init_build_sign_makes_a_document_a_unit_takes(ceremony, capsys):
    tmp, passfile = ceremony
    assert (tmp / "roots" / "dak-lak-root-1.key").read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY")
    code, _, err = run(capsys, "trust", "build", str(tmp / "trust.toml"), "--out", str(tmp / "trust.json"))
    assert code == 0 and "trust dak-lak version 1: 2 keys" in err and "threshold 2" in err
    doc = json.loads((tmp / "trust.json").read_text())
    assert doc["root"]["threshold"] == 2 and set(doc["root"]["keys"]) == {f"dak-lak-root-{i}" for i in (1, 2, 3)}
    # two holders sign in turn, each on their own machine, passing the file along
    code, _, err = run(capsys, "trust", "sign", str(tmp / "trust.json"), "--key", str(tmp / "roots/dak-lak-root-1.key"),
                       "--passphrase-file", str(passfile), "--out", str(tmp / "s1.json"),
                       "--roots", str(tmp / "roots/root.json"))
    assert code == 0 and "1 of the 2 root signatures needed" in err
    code, _, err = run(capsys, "trust", "sign", str(tmp / "s1.json"), "--key", str(tmp / "roots/dak-lak-root-3.key"),
                       "--passphrase-file", str(passfile), "--out", str(tmp / "s2.json"),
                       "--roots", str(tmp / "roots/root.json"))
    assert code == 0 and "2 of the 2 root signatures needed (enough)" in err
    # bootstrap of a legacy unit: one legacy key signs too
    legacy_key, legacy_pub = write_keypair(tmp / "legacy", "dak-lak-2026")
    code, out, _ = run(capsys, "trust", "sign", str(tmp / "s2.json"), "--key", str(legacy_key), "--no-passphrase")
    assert code == 0
    assert [s.key for s in read_envelope(out.encode()).signatures] == ["dak-lak-root-1", "dak-lak-root-3",
                                                                       "dak-lak-2026"]
    from scheduler.keys import parse_public_key
    verified = verify_trust(out.encode(), roots=None, legacy={"dak-lak-2026": parse_public_key(legacy_pub.read_text())},
                            current_version=None, now=datetime.now(timezone.utc), clock_trusted=True,
                            unit_id=UNIT, groups=GROUPS, topic="loaxa/group/dak-lak/trust")
    assert verified.roots.threshold == 2


def test_an_encrypted_key_with_no_passphrase_and_no_terminal_is_one_line(ceremony, capsys):
    tmp, _ = ceremony
    run(capsys, "trust", "build", str(tmp / "trust.toml"), "--out", str(tmp / "trust.json"))
    code, _, err = run(capsys, "trust", "sign", str(tmp / "trust.json"), "--key", str(tmp / "roots/dak-lak-root-1.key"))
    assert code == 1 and "give --passphrase-file FILE" in err and err.count("\n") == 1
    code, _, err = run(capsys, "trust", "sign", str(tmp / "trust.json"), "--key", str(tmp / "roots/dak-lak-root-1.key"),
                       "--no-passphrase")
    assert code == 1 and "encrypted, and --no-passphrase was given" in err


def test_a_wrong_passphrase_is_one_line(ceremony, capsys):
    tmp, _ = ceremony
    run(capsys, "trust", "build", str(tmp / "trust.toml"), "--out", str(tmp / "trust.json"))
    wrong = tmp / "wrong"
    wrong.write_text("nope\n")
    code, _, err = run(capsys, "trust", "sign", str(tmp / "trust.json"), "--key", str(tmp / "roots/dak-lak-root-2.key"),
                       "--passphrase-file", str(wrong))
    assert code == 1 and "wrong passphrase" in err


def test_init_without_a_passphrase_source_refuses_off_a_terminal(tmp_path, capsys):
    code, _, err = run(capsys, "trust", "init", "--roots", "1", "--threshold", "1", "--out", str(tmp_path))
    assert code == 1 and "--no-passphrase" in err and not list(tmp_path.iterdir())


def test_init_refuses_a_threshold_above_the_roots(tmp_path, capsys):
    code, _, err = run(capsys, "trust", "init", "--roots", "2", "--threshold", "3", "--out", str(tmp_path),
                       "--no-passphrase")
    assert code == 1 and "--threshold 3 is more than --roots 2" in err


def test_build_names_the_bad_field(ceremony, capsys):
    tmp, _ = ceremony
    (tmp / "bad.toml").write_text(SOURCE.replace('roles = ["editor"]', 'roles = ["boss"]'))
    code, _, err = run(capsys, "trust", "build", str(tmp / "bad.toml"))
    assert code == 1 and "keys.lak-editor.roles[0]: must be one of" in err
    (tmp / "bad2.toml").write_text(SOURCE.replace("ops/lak-editor.pub", "ops/missing.pub"))
    code, _, err = run(capsys, "trust", "build", str(tmp / "bad2.toml"))
    assert code == 1 and "keys.lak-editor.pub" in err


def test_sign_refuses_what_is_not_a_trust_document(tmp_path, capsys):
    key, _ = write_keypair(tmp_path, "r", None)
    (tmp_path / "x.json").write_text('{"type": "schedule"}')
    code, _, err = run(capsys, "trust", "sign", str(tmp_path / "x.json"), "--key", str(key))
    assert code == 1 and 'type: expected "trust"' in err


# ---- push ----

def _signed(tmp, passfile, capsys, *roots):
    run(capsys, "trust", "build", str(tmp / "trust.toml"), "--out", str(tmp / "trust.json"))
    current = tmp / "trust.json"
    for i in roots:
        out = tmp / f"signed-{i}.json"
        code, _, err = run(capsys, "trust", "sign", str(current), "--key", str(tmp / f"roots/dak-lak-root-{i}.key"),
                           "--passphrase-file", str(passfile), "--out", str(out))
        assert code == 0, err
        current = out
    return current


def test_push_publishes_retained_once_the_roots_meet_the_threshold(ceremony, capsys, broker_factory):
    from fleet.broker import BrokerOptions, read_retained
    from loaxa.brokerurl import parse_broker_url
    tmp, passfile = ceremony
    broker = broker_factory()
    signed = _signed(tmp, passfile, capsys, 1, 2)
    code, out, err = run(capsys, "trust", "push", str(signed), "--roots", str(tmp / "roots/root.json"),
                         "--broker", broker.url)
    assert code == 0, err
    assert "published trust dak-lak version 1 (retained) to loaxa/group/dak-lak/trust" in out
    options = BrokerOptions(parse_broker_url(broker.url))
    assert read_retained(options, "loaxa/group/dak-lak/trust") == signed.read_bytes()


def test_push_refuses_too_few_root_signatures_and_publishes_nothing(ceremony, capsys, broker_factory):
    from fleet.broker import BrokerOptions, read_retained
    from loaxa.brokerurl import parse_broker_url
    tmp, passfile = ceremony
    broker = broker_factory()
    signed = _signed(tmp, passfile, capsys, 1)
    code, _, err = run(capsys, "trust", "push", str(signed), "--broker", broker.url)
    assert code == 1 and "signed by 1 distinct" in err and "needs 2" in err
    code, _, err = run(capsys, "trust", "push", str(signed), "--roots", str(tmp / "roots/root.json"),
                       "--broker", broker.url)
    assert code == 1 and "signed by 1 distinct" in err
    assert read_retained(BrokerOptions(parse_broker_url(broker.url)), "loaxa/group/dak-lak/trust", timeout=2) is None


# ---- keys new and schedule sign with passphrases ----

def test_keys_new_encrypts_with_a_passphrase_file_and_refuses_without_one_off_a_terminal(tmp_path, capsys):
    passfile = tmp_path / "pass"
    passfile.write_text("một hai ba\n", encoding="utf-8")
    code, out, _ = run(capsys, "keys", "new", "--out", str(tmp_path / "k"), "--name", "lak-editor",
                       "--passphrase-file", str(passfile), "--json")
    assert code == 0 and json.loads(out)["encrypted"] is True
    assert (tmp_path / "k" / "lak-editor.key").read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY")
    code, _, err = run(capsys, "keys", "new", "--out", str(tmp_path / "k2"))
    assert code == 1 and "--passphrase-file FILE, or --no-passphrase" in err and not (tmp_path / "k2").exists()
    code, out, _ = run(capsys, "keys", "new", "--out", str(tmp_path / "k3"), "--no-passphrase")
    assert code == 0 and "NOT encrypted" in out


def test_schedule_sign_adds_the_approvers_signature_to_the_editors_envelope(tmp_path, capsys):
    from scheduler.judge import Authority, UnitContext, judge, schedule_subject
    from scheduler import parse_schedule
    from tests.support.trustkit import schedule_doc
    passfile = tmp_path / "pass"
    passfile.write_text("pw\n")
    for name in ("lak-editor", "so-approver"):
        assert run(capsys, "keys", "new", "--out", str(tmp_path / "k"), "--name", name,
                   "--passphrase-file", str(passfile))[0] == 0
    doc = tmp_path / "doc.json"
    doc.write_text(schedule_doc(doc_id="dak-lak/lak/w48"))
    code, _, err = run(capsys, "schedule", "sign", str(doc), "--key", str(tmp_path / "k/lak-editor.key"),
                       "--out", str(tmp_path / "s1.json"))
    assert code == 1 and "give --passphrase-file FILE" in err
    assert run(capsys, "schedule", "sign", str(doc), "--key", str(tmp_path / "k/lak-editor.key"), "--passphrase-file",
               str(passfile), "--out", str(tmp_path / "s1.json"))[0] == 0
    code, _, err = run(capsys, "schedule", "sign", str(tmp_path / "s1.json"), "--key",
                       str(tmp_path / "k/so-approver.key"), "--passphrase-file", str(passfile),
                       "--out", str(tmp_path / "s2.json"))
    assert code == 0, err
    raw = (tmp_path / "s2.json").read_bytes()
    trust = parse_trust(json.dumps({
        "type": "trust", "id": "dak-lak", "version": 1, "targets": ["group:dak-lak"],
        "issued_at": "2026-11-26T08:00:00+07:00", "expires_at": "2027-12-31T00:00:00+07:00",
        "keys": {"lak-editor": {"pub": (tmp_path / "k/lak-editor.pub").read_text().strip(), "roles": ["editor"],
                                "scope": ["group:dak-lak/lak"]},
                 "so-approver": {"pub": (tmp_path / "k/so-approver.pub").read_text().strip(), "roles": ["approver"],
                                 "scope": ["group:dak-lak"]}},
        "require": {"schedule": ["editor", "approver"]}}))
    schedule = parse_schedule(read_envelope(raw).payload)
    topic = "loaxa/group/dak-lak/lak/schedule"
    verdict = judge(raw, schedule_subject(schedule, topic), Authority.from_trust(trust),
                    now=datetime(2026, 12, 1, tzinfo=timezone.utc), context=UnitContext(UNIT, GROUPS))
    assert verdict.ok, verdict.reason()
    code, _, err = run(capsys, "schedule", "sign", str(tmp_path / "s2.json"), "--key",
                       str(tmp_path / "k/so-approver.key"), "--passphrase-file", str(passfile))
    assert code == 1 and "already signed by key 'so-approver'" in err


# ---- command send --trust ----

def test_command_send_checks_the_envelope_against_the_trust_document(tmp_path, capsys, broker_factory):
    key, pub = write_keypair(tmp_path / "k", "so-operator")
    trust = tmp_path / "trust.json"
    trust.write_text(json.dumps({
        "type": "trust", "id": "dak-lak", "version": 3, "targets": ["group:dak-lak"],
        "issued_at": "2026-11-26T08:00:00+07:00", "expires_at": "2099-12-31T00:00:00+07:00",
        "keys": {"so-operator": {"pub": pub.read_text().strip(), "roles": ["operator"], "scope": ["group:dak-lak"]}}}))
    broker = broker_factory()
    collector = broker.collector("loaxa/#")
    try:
        base = ["command", "send", "--key", str(key), "--no-passphrase", "--trust", str(trust), "--broker", broker.url]
        code, _, err = run(capsys, *base, "--to", "group:dak-lak/lak", "play",
                           'stream="http://icecast.example.vn/xa"', "duration_s=60")
        assert code == 1 and "not published" in err and "announce needs approver: missing role approver" in err
        code, _, err = run(capsys, *base, "--to", "group:dak-lak-2", "set_volume", "volume=40")
        assert code == 1 and "outside its scope" in err
        code, _, err = run(capsys, *base, "--to", "unit:dl-lak-x-01", "set_volume", "volume=40")
        assert code == 1 and "not in the fleet database" in err
        code, _, err = run(capsys, *base, "--to", "group:dak-lak/lak", "set_volume", "volume=40")
        assert code == 0, err
        collector.wait_for(lambda topic, payload: topic == "loaxa/group/dak-lak/lak/cmd")
        assert len(collector.payloads("loaxa/group/dak-lak/lak/cmd")) == 1
        assert collector.payloads("loaxa/group/dak-lak-2/cmd") == []
    finally:
        collector.close()


def test_schedule_push_says_which_signature_is_missing_before_publishing(tmp_path, capsys, broker_factory):
    from tests.support.trustkit import schedule_doc
    editor, editor_pub = write_keypair(tmp_path / "k", "lak-editor")
    approver, approver_pub = write_keypair(tmp_path / "k", "so-approver")
    trust = tmp_path / "trust.json"
    trust.write_text(json.dumps({
        "type": "trust", "id": "dak-lak", "version": 3, "targets": ["group:dak-lak"],
        "issued_at": "2026-11-26T08:00:00+07:00", "expires_at": "2099-12-31T00:00:00+07:00",
        "keys": {"lak-editor": {"pub": editor_pub.read_text().strip(), "roles": ["editor"],
                                "scope": ["group:dak-lak/lak"]},
                 "so-approver": {"pub": approver_pub.read_text().strip(), "roles": ["approver"],
                                 "scope": ["group:dak-lak"]}},
        "require": {"schedule": ["editor", "approver"]}}))
    doc = tmp_path / "doc.json"
    doc.write_text(schedule_doc(doc_id="dak-lak/lak/w48"))
    broker = broker_factory()
    push = ["schedule", "push", "--trust", str(trust), "--broker", broker.url]
    code, _, err = run(capsys, *push, str(doc), "--key", str(editor), "--no-passphrase")
    assert code == 1 and "missing role approver" in err and "not published" in err
    assert run(capsys, "schedule", "sign", str(doc), "--key", str(editor), "--out", str(tmp_path / "s1.json"))[0] == 0
    assert run(capsys, "schedule", "sign", str(tmp_path / "s1.json"), "--key", str(approver),
               "--out", str(tmp_path / "s2.json"))[0] == 0
    code, out, err = run(capsys, *push, str(tmp_path / "s2.json"))
    assert code == 0, err
    assert "published schedule dak-lak/lak/w48 version 3 (retained) to loaxa/group/dak-lak/lak/schedule" in out


# ---- provisioning a unit with its province's roots ----

def test_provision_writes_the_roots_and_their_threshold(tmp_path, capsys):
    import tomllib
    from provisioning.config import load_config
    from tests.support.trustkit import Key
    r1, r2 = Key("dak-lak-root-1"), Key("dak-lak-root-2")
    (tmp_path / "dak-lak-root-2.pub").write_text(r2.pub + "\n")
    base = ["provision", "--non-interactive", "--unit-id", UNIT, "--group", GROUPS[0], "--broker",
            "mqtt://127.0.0.1:1883", "--trust-key", f"dak-lak-2026={Key('x').pub}", "--mode", "mock", "--no-selftest"]
    code, _, err = run(capsys, *base, "--out", str(tmp_path / "u"), "--trust-root", f"{r1.name}={r1.pub}",
                       "--trust-root", str(tmp_path / "dak-lak-root-2.pub"), "--root-threshold", "2")
    assert code == 0, err
    trust = tomllib.loads((tmp_path / "u" / "config.toml").read_text())["trust"]
    assert trust["root"] == {r1.name: r1.pub, r2.name: r2.pub} and trust["root_threshold"] == 2
    assert load_config(tmp_path / "u" / "config.toml").trust.root_threshold == 2
    code, _, err = run(capsys, *base, "--out", str(tmp_path / "v"), "--trust-root", f"{r1.name}={r1.pub}",
                       "--root-threshold", "3")
    assert code == 2 and "--root-threshold (trust.root_threshold): 3 is more than the 1 root keys" in err
    code, _, err = run(capsys, *base, "--out", str(tmp_path / "w"), "--trust-root", "r=AAAA")
    assert code == 2 and "--trust-root (trust.root.r)" in err
