"""The unit's update agent with the real installer and judge: releases offered from topics,
refusals as events, download and install, a switch only between playbacks, rollbacks the
launcher recorded reported once."""

import hashlib
import json
import tarfile
from datetime import datetime, timedelta, timezone

import pytest

from scheduler.judge import Authority, UnitContext
from scheduler.trust import parse_trust
from tests.support.http_media import MediaHttpServer
from tests.support.trustkit import GROUPS, UNIT, Key, envelope, key_entry, trust_doc
from tests.support.updates import fake_version, fake_wheel, point_current
from updater.agent import UpdateAgent
from updater.install import Installer

NOW = datetime(2026, 12, 1, 8, 0, tzinfo=timezone(timedelta(hours=7)))
CTX = UnitContext(UNIT, GROUPS)
TOPIC = "loaxa/group/dak-lak/release"
RELEASER, EDITOR = Key("so-release"), Key("so-editor")
AUTHORITY = Authority.from_trust(parse_trust(trust_doc({
    RELEASER.name: key_entry(RELEASER, ["release"], ["group:dak-lak"]),
    EDITOR.name: key_entry(EDITOR, ["editor"], ["group:dak-lak"])})))


def release(seq, version, url="https://r.example.vn/b.tar", sha256="ab" * 32, size=10, **extra):
    return json.dumps({"type": "release", "id": "loaxa", "seq": seq, "version": version,
                       "issued_at": "2026-12-01T08:00:00+07:00", "targets": ["group:dak-lak"],
                       "allow_downgrade": extra.get("allow_downgrade", False),
                       "artifacts": {"x86_64": {"url": url, "sha256": sha256, "size": size}}, "health_s": 60})


class Unit:
    def __init__(self, prefix, between=True, managed=True):
        self.events, self.restarts, self.between = [], 0, between
        self.agent = UpdateAgent(Installer(prefix), running="1.0.0", arch="x86_64", emit=self.emit,
                                 between_playbacks=lambda: self.between, request_restart=self.restart,
                                 managed=managed)

    def emit(self, kind, detail, **fields):
        self.events.append((kind, detail, fields))

    def restart(self):
        self.restarts += 1

    def kinds(self):
        return [kind for kind, _, _ in self.events]

    def offer(self, text, *signers):
        return self.agent.offer(TOPIC, envelope(text, *signers), AUTHORITY, now=NOW, context=CTX)


@pytest.fixture
def prefix(tmp_path):
    root = tmp_path / "prefix"
    fake_version(root, "1.0.0", "healthy")
    point_current(root, "1.0.0")
    return root


def test_a_release_signed_without_the_release_role_is_refused_with_an_event(prefix):
    unit = Unit(prefix)
    assert not unit.offer(release(5, "2.0.0"), EDITOR)
    (kind, detail, _), = unit.events
    assert kind == "update.refused" and "missing role release" in detail
    assert unit.agent.step() == "idle"


def test_a_downgrade_without_allow_is_refused_once(prefix):
    unit = Unit(prefix)
    assert unit.offer(release(5, "0.9.0"), RELEASER)
    assert unit.agent.step() == "refused" and unit.agent.step() == "refused"
    assert unit.kinds() == ["update.refused"] and "does not allow a downgrade" in unit.events[0][1]


def test_download_install_then_switch_only_between_playbacks(prefix, tmp_path):
    wheel = fake_wheel(tmp_path / "w", "2.0.0", "healthy")
    bundle = tmp_path / "b.tar"
    with tarfile.open(bundle, "w") as tar:
        tar.add(wheel, arcname=wheel.name)
    data = bundle.read_bytes()
    server = MediaHttpServer()
    try:
        url = server.add("b.tar", data)
        unit = Unit(prefix, between=False)
        assert unit.offer(release(5, "2.0.0", url, hashlib.sha256(data).hexdigest(), len(data)), RELEASER)
        assert unit.agent.step() == "waiting"  # installed; a bulletin is on air
    finally:
        server.close()
    assert unit.kinds() == ["update.downloaded", "update.installed"]
    assert unit.events[1][2] == {"seq": 5, "version": "2.0.0"}
    assert not list((prefix / "downloads" / "sha256").iterdir())  # the venv holds it all now
    assert unit.agent.installer.current_version() == "1.0.0" and unit.restarts == 0
    unit.between = True
    assert unit.agent.step() == "switched"
    assert unit.agent.installer.current_version() == "2.0.0" and unit.restarts == 1
    assert unit.kinds() == ["update.downloaded", "update.installed"]  # each said once


def test_a_server_error_is_retried_quietly(prefix):
    server = MediaHttpServer()
    try:
        url = server.add("b.tar", b"x" * 10, status=503, statuses=5)
        unit = Unit(prefix)
        unit.offer(release(5, "2.0.0", url, hashlib.sha256(b"x" * 10).hexdigest(), 10), RELEASER)
        assert unit.agent.step() == "retry" and unit.events == []
    finally:
        server.close()


def test_a_version_rolled_back_here_is_refused_and_each_rollback_reported_once(prefix):
    (prefix / "launcher-state.json").write_text(json.dumps({
        "confirmed": "1.0.0", "bad": {"2.0.0": "exited with code 1 before coming online: ImportError"},
        "rollbacks": [{"id": "r1", "version": "2.0.0", "to": "1.0.0", "reason": "exited with code 1 before "
                       "coming online: ImportError", "ts": 0}]}))
    unit = Unit(prefix)
    assert unit.agent.report_rollbacks() == 1
    kind, detail, fields = unit.events[0]
    assert kind == "update.rolled_back" and fields["reason"].endswith("ImportError") and fields["to"] == "1.0.0"
    assert Unit(prefix).agent.report_rollbacks() == 0  # a restarted daemon does not say it again
    unit.offer(release(6, "2.0.0"), RELEASER)
    assert unit.agent.step() == "refused" and "never tried again" in unit.events[-1][1]


def test_when_idle_only_the_running_and_the_fallback_versions_are_kept(prefix):
    for version in ("0.8.0", "0.9.0", "2.0.0"):
        fake_version(prefix, version, "healthy")
    (prefix / "launcher-state.json").write_text(json.dumps({"confirmed": "1.0.0", "previous": "0.9.0"}))
    assert Unit(prefix).agent.step() == "idle"
    assert sorted(p.name for p in (prefix / "versions").iterdir()) == ["0.9.0", "1.0.0"]


def test_a_unit_not_started_by_the_launcher_never_switches(prefix):
    """It would restart into the same pip-installed loaxa, switch again, and loop."""
    from updater.agent import runs_from
    assert not runs_from(prefix)  # these tests run from the development venv
    unit = Unit(prefix, managed=False)
    unit.offer(release(5, "2.0.0"), RELEASER)
    assert unit.agent.step() == "refused" and unit.agent.step() == "refused"
    (kind, detail, _), = unit.events
    assert kind == "update.refused" and "outside the update launcher" in detail
    assert unit.agent.installer.current_version() == "1.0.0" and unit.restarts == 0
