"""Release documents (SPEC "Software updates"): the format, field-naming errors, the
judgement under the trust model's `release` requirement, and which release a unit follows."""

import json
from datetime import datetime, timedelta, timezone

import pytest

from loaxa.errors import DocumentError, SignatureError, TargetError
from scheduler.judge import Authority, UnitContext
from scheduler.trust import parse_trust
from tests.support.trustkit import GROUPS, UNIT, Key, envelope, key_entry, trust_doc
from updater.release import choose_release, judge_release, parse_release, release_text, version_key

NOW = datetime(2026, 12, 1, 8, 0, tzinfo=timezone(timedelta(hours=7)))
CTX = UnitContext(UNIT, GROUPS)
TOPIC = "loaxa/group/dak-lak/release"
SHA = "ab" * 32


def doc(**changes) -> dict:
    base = {"type": "release", "id": "loaxa", "seq": 12, "version": "0.3.0",
            "issued_at": "2026-12-01T08:00:00+07:00", "targets": ["group:dak-lak"], "allow_downgrade": False,
            "artifacts": {"aarch64": {"url": "https://rel.example.vn/loaxa-0.3.0-aarch64.tar", "sha256": SHA,
                                      "size": 1000},
                          "x86_64": {"url": "https://rel.example.vn/loaxa-0.3.0-x86_64.tar", "sha256": SHA,
                                     "size": 1000}},
            "health_s": 300}
    base.update(changes)
    return base


def text(**changes) -> str:
    return json.dumps(doc(**changes))


def test_spec_example_parses():
    release = parse_release(text())
    assert (release.id, release.seq, release.version, release.health_s) == ("loaxa", 12, "0.3.0", 300)
    assert release.artifact("aarch64").size == 1000 and release.artifact("armv7l") is None
    assert release.targets == ("group:dak-lak",) and release.allow_downgrade is False


@pytest.mark.parametrize("changes, field", [
    ({"type": "schedule"}, "type"),
    ({"seq": 0}, "seq"),
    ({"seq": True}, "seq"),
    ({"version": "latest"}, "version"),
    ({"version": "0.3.0+local"}, "version"),
    ({"allow_downgrade": "no"}, "allow_downgrade"),
    ({"health_s": 1}, "health_s"),
    ({"targets": []}, "targets"),
    ({"artifacts": {}}, "artifacts"),
    ({"artifacts": {"aarch64": {"url": "ftp://x/y", "sha256": SHA, "size": 1}}}, "artifacts.aarch64.url"),
    ({"artifacts": {"aarch64": {"url": "https://x/y", "sha256": "AB", "size": 1}}}, "artifacts.aarch64.sha256"),
    ({"artifacts": {"aarch64": {"url": "https://x/y", "sha256": SHA, "size": 0}}}, "artifacts.aarch64.size"),
    ({"artifacts": {"Arm 64": {"url": "https://x/y", "sha256": SHA, "size": 1}}}, "artifacts"),
    ({"healt_s": 3}, "healt_s"),
    ({"issued_at": "yesterday"}, "issued_at"),
])
def test_a_bad_field_is_named(changes, field):
    with pytest.raises(DocumentError) as err:
        parse_release(text(**changes))
    assert str(err.value).startswith(field)


@pytest.mark.parametrize("name", ["allow_downgrade", "health_s", "artifacts", "seq"])
def test_every_field_is_required(name):
    bare = doc()
    del bare[name]
    with pytest.raises(DocumentError, match=f"^{name}: required"):
        parse_release(json.dumps(bare))


def test_versions_order_as_pep440():
    ordered = ["0.2.9", "0.3.0.dev1", "0.3.0a1", "0.3.0b2", "0.3.0rc1", "0.3", "0.3.0.post1", "0.3.1", "1.0"]
    keys = [version_key(v) for v in ordered]
    assert keys == sorted(keys)
    assert version_key("0.3") == version_key("0.3.0")


def rel(seq, version, allow_downgrade=False, arch="x86_64"):
    artifacts = {arch: {"url": "https://r.example.vn/b.tar", "sha256": SHA, "size": 10}}
    return parse_release(text(seq=seq, version=version, allow_downgrade=allow_downgrade, artifacts=artifacts))


def test_the_highest_seq_across_topics_is_followed():
    choice = choose_release([rel(3, "0.4.0"), rel(5, "0.3.0"), rel(4, "0.5.0")], "0.2.0", "x86_64")
    assert (choice.action, choice.release.seq) == ("install", 5)


def test_the_running_version_needs_nothing():
    assert choose_release([rel(5, "0.3.0")], "0.3", "x86_64").action == "none"
    assert choose_release([], "0.3.0", "x86_64").action == "none"


def test_a_lower_version_needs_allow_downgrade():
    refused = choose_release([rel(6, "0.2.0")], "0.3.0", "x86_64")
    assert refused.action == "refused" and "does not allow a downgrade" in refused.reason
    pinned = choose_release([rel(5, "0.3.0"), rel(6, "0.2.0", allow_downgrade=True)], "0.3.0", "x86_64")
    assert (pinned.action, pinned.release.version) == ("install", "0.2.0")


def test_a_version_rolled_back_here_is_never_tried_again():
    choice = choose_release([rel(6, "0.4.0")], "0.3.0", "x86_64", bad={"0.4.0": "crashed"})
    assert choice.action == "refused" and "never tried again" in choice.reason


def test_no_artifact_for_the_arch_is_refused_naming_it():
    choice = choose_release([rel(6, "0.4.0", arch="aarch64")], "0.3.0", "x86_64")
    assert choice.action == "refused" and "x86_64" in choice.reason


RELEASER = Key("so-release")
EDITOR = Key("so-editor")


def authority():
    keys = {RELEASER.name: key_entry(RELEASER, ["release"], ["group:dak-lak"]),
            EDITOR.name: key_entry(EDITOR, ["editor", "approver", "operator", "technician"], ["group:dak-lak"])}
    return Authority.from_trust(parse_trust(trust_doc(keys)))


def test_a_release_signed_by_a_release_key_is_accepted():
    release, verdict = judge_release(envelope(text(), RELEASER), TOPIC, authority(), now=NOW, context=CTX)
    assert verdict.ok and release.seq == 12


def test_a_release_signed_without_the_release_role_is_refused_naming_it():
    with pytest.raises(SignatureError, match="missing role release"):
        judge_release(envelope(text(), EDITOR), TOPIC, authority(), now=NOW, context=CTX)


def test_a_release_for_another_unit_or_from_a_foreign_topic_is_refused():
    with pytest.raises(TargetError, match="name neither"):
        judge_release(envelope(text(targets=["group:gia-lai"]), RELEASER), "loaxa/group/gia-lai/release",
                      authority(), now=NOW, context=CTX)
    with pytest.raises(TargetError, match="not the release topic"):
        judge_release(envelope(text(), RELEASER), "loaxa/group/dak-lak/lak/release", authority(), now=NOW,
                      context=CTX)


def test_a_release_from_a_schedule_topic_is_refused():
    with pytest.raises(TargetError):
        judge_release(envelope(text(), RELEASER), "loaxa/group/dak-lak/schedule", authority(), now=NOW,
                      context=CTX)


def test_release_text_writes_what_parse_reads():
    written = release_text(release_id="loaxa", seq=2, version="0.4.0", issued_at="2026-12-01T08:00:00+07:00",
                           targets=["group:dak-lak"], artifacts=doc()["artifacts"])
    assert parse_release(written).allow_downgrade is False
    with pytest.raises(DocumentError, match="^version"):
        release_text(release_id="loaxa", seq=2, version="x", issued_at="2026-12-01T08:00:00+07:00",
                     targets=["group:dak-lak"], artifacts=doc()["artifacts"])


def test_the_update_prefix_is_a_config_key_under_the_state_folder_by_default(tmp_path):
    from provisioning.config import parse_config
    from loaxa.errors import ConfigError
    base = {"unit": {"id": "dl-x-01", "state_dir": str(tmp_path)}, "broker": {"url": "mqtt://h"}}
    assert parse_config(base, base_dir=tmp_path).update.prefix == tmp_path / "software"
    assert parse_config({**base, "update": {"prefix": "/opt/loaxa"}}, base_dir=tmp_path).update.prefix.as_posix() \
        == "/opt/loaxa"
    with pytest.raises(ConfigError, match="update.prefx: unknown key"):
        parse_config({**base, "update": {"prefx": "/opt/loaxa"}}, base_dir=tmp_path)


def test_a_unit_reads_its_own_release_topic_and_those_of_its_groups_and_ancestors():
    from scheduler import release_topics
    assert sorted(release_topics("loaxa", UNIT, GROUPS)) == [
        "loaxa/group/dak-lak/lak/bong-krang/release", "loaxa/group/dak-lak/lak/release",
        "loaxa/group/dak-lak/release", f"loaxa/unit/{UNIT}/release"]
