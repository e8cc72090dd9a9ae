"""`loaxa release build|push` through the real command line: a bundle and its unsigned
release document (offline), a push judged under --trust (the release role) before it is
published retained to the release topics, and a built bundle installed by the unit's
installer and started by the launcher."""

import json
import tarfile
from pathlib import Path

import pytest

from fleet.broker import BrokerOptions, read_retained
from loaxa.brokerurl import parse_broker_url
from loaxa.cli import main
from scheduler.envelope import read_envelope
from scheduler.keys import write_keypair
from tests.support.http_media import MediaHttpServer
from tests.support.updates import fake_wheel, launcher_process, log_lines, stop, wait_for
from updater.bundle import file_sha256
from updater.install import Installer, install_launcher
from updater.release import parse_release

REPO = Path(__file__).resolve().parents[1]


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def dependency_wheel(folder: Path, name: str) -> Path:
    path = folder / f"{name}-1.0-py3-none-any.whl"
    import zipfile
    with zipfile.ZipFile(path, "w") as wheel:
        wheel.writestr(f"{name}/__init__.py", "")
    return path


def build(capsys, tmp_path, *extra):
    return run(capsys, "release", "build", "--out", str(tmp_path / "out"), "--url-base", "https://rel.example.vn/b/",
               "--seq", "7", "--to", "group:dak-lak", "--arch", "x86_64", *extra)


def test_build_writes_the_bundle_and_an_unsigned_release_naming_it(tmp_path, capsys):
    wheel = fake_wheel(tmp_path / "w", "2.0.0", "healthy")
    house = tmp_path / "house"
    house.mkdir()
    dependency_wheel(house, "paho_mqtt")
    code, out, err = build(capsys, tmp_path, "--wheel", str(wheel), "--wheels", str(house), "--health-s", "120")
    assert code == 0, err
    bundle = tmp_path / "out" / "loaxa-2.0.0-x86_64.tar"
    with tarfile.open(bundle) as tar:
        assert sorted(tar.getnames()) == ["wheels/loaxa-2.0.0-py3-none-any.whl", "wheels/paho_mqtt-1.0-py3-none-any.whl"]
    release = parse_release((tmp_path / "out" / "release.json").read_text())
    artifact = release.artifact("x86_64")
    assert (release.seq, release.version, release.health_s, release.allow_downgrade) == (7, "2.0.0", 120, False)
    assert artifact.url == "https://rel.example.vn/b/loaxa-2.0.0-x86_64.tar"
    assert (artifact.sha256, artifact.size) == (file_sha256(bundle), bundle.stat().st_size)


def test_build_from_the_source_tree_offline_names_the_missing_dependencies(tmp_path, capsys):
    code, out, err = build(capsys, tmp_path, "--source", str(REPO))
    assert code == 0, err
    from loaxa import __version__
    assert (tmp_path / "out" / f"loaxa-{__version__}-x86_64.tar").exists()
    assert "holds no wheel of paho-mqtt" in err


def test_build_of_something_that_is_not_a_loaxa_wheel_is_one_line(tmp_path, capsys):
    other = dependency_wheel(tmp_path, "numpy")
    code, _, err = build(capsys, tmp_path, "--wheel", str(other))
    assert code == 1 and err.startswith("loaxa: error:") and "not a loaxa wheel" in err and len(err.splitlines()) == 1


@pytest.fixture
def keys(tmp_path):
    releaser, releaser_pub = write_keypair(tmp_path / "k", "so-release")
    editor, editor_pub = write_keypair(tmp_path / "k", "so-editor")
    trust = tmp_path / "trust.json"
    trust.write_text(json.dumps({
        "type": "trust", "id": "dak-lak", "version": 3, "targets": ["group:dak-lak"],
        "issued_at": "2026-11-26T08:00:00+07:00", "expires_at": "2099-12-31T00:00:00+07:00",
        "keys": {"so-release": {"pub": releaser_pub.read_text().strip(), "roles": ["release"],
                                "scope": ["group:dak-lak"]},
                 "so-editor": {"pub": editor_pub.read_text().strip(), "roles": ["editor", "operator"],
                               "scope": ["group:dak-lak"]}}}))
    return releaser, editor, trust


def test_push_without_the_release_role_is_refused_and_with_it_published_retained(tmp_path, capsys, keys,
                                                                                  broker_factory):
    releaser, editor, trust = keys
    assert build(capsys, tmp_path, "--wheel", str(fake_wheel(tmp_path / "w", "2.0.0", "healthy")))[0] == 0
    document = tmp_path / "out" / "release.json"
    broker = broker_factory()
    push = ["release", "push", str(document), "--trust", str(trust), "--broker", broker.url, "--no-passphrase"]
    code, out, err = run(capsys, *push, "--key", str(editor))
    assert code == 1 and "missing role release" in err and "not published" in err
    topic = "loaxa/group/dak-lak/release"
    options = BrokerOptions(parse_broker_url(broker.url))
    assert read_retained(options, topic, timeout=2) is None
    code, out, err = run(capsys, *push, "--key", str(releaser))
    assert code == 0, err
    assert f"published release loaxa seq 7 (version 2.0.0) (retained) to {topic}" in out
    envelope = read_envelope(read_retained(options, topic))
    assert envelope.key == "so-release" and parse_release(envelope.payload).seq == 7


def test_push_to_a_target_the_release_does_not_name_is_refused(tmp_path, capsys, keys):
    releaser, _, _ = keys
    assert build(capsys, tmp_path, "--wheel", str(fake_wheel(tmp_path / "w", "2.0.0", "healthy")))[0] == 0
    code, _, err = run(capsys, "release", "push", str(tmp_path / "out" / "release.json"), "--key", str(releaser),
                       "--no-passphrase", "--to", "group:gia-lai", "--broker", "mqtt://127.0.0.1:9")
    assert code == 1 and "not among the release's targets" in err


def test_a_built_bundle_is_fetched_installed_and_started(tmp_path, capsys):
    """build -> serve -> the unit's installer (real venv + pip) -> switch -> launcher."""
    assert build(capsys, tmp_path, "--wheel", str(fake_wheel(tmp_path / "w", "2.0.0", "healthy")))[0] == 0
    release = parse_release((tmp_path / "out" / "release.json").read_text())
    server = MediaHttpServer()
    try:
        bundle = tmp_path / "out" / "loaxa-2.0.0-x86_64.tar"
        url = server.add("b/loaxa-2.0.0-x86_64.tar", bundle.read_bytes())
        artifact = release.artifact("x86_64")
        installer = Installer(tmp_path / "prefix")
        from updater.release import Artifact
        path = installer.fetch(Artifact("x86_64", url, artifact.sha256, artifact.size))
    finally:
        server.close()
    installer.install(release.version, path, health_s=release.health_s)
    installer.switch(release.version)
    install_launcher(tmp_path / "prefix")
    log = tmp_path / "runs.log"
    proc = launcher_process(tmp_path / "prefix", env={"FAKE_LOG": str(log)})
    try:
        wait_for(lambda: "2.0.0 online" in log_lines(log), what="2.0.0 from the built bundle")
    finally:
        stop(proc)


def test_install_puts_a_first_version_and_the_launcher_into_the_prefix(tmp_path, capsys):
    assert build(capsys, tmp_path, "--wheel", str(fake_wheel(tmp_path / "w", "2.0.0", "healthy")))[0] == 0
    config = tmp_path / "unit.toml"
    config.write_text(f'[unit]\nid = "dl-x-01"\nstate_dir = "{tmp_path / "state"}"\n\n'
                      '[broker]\nurl = "mqtt://127.0.0.1:9"\n')
    code, out, err = run(capsys, "release", "install", str(tmp_path / "out" / "loaxa-2.0.0-x86_64.tar"),
                         "--config", str(config))
    assert code == 0, err
    prefix = tmp_path / "state" / "software"
    assert Installer(prefix).current_version() == "2.0.0" and (prefix / "launcher.py").exists()
    code, _, err = run(capsys, "release", "install", str(tmp_path / "unit.toml"), "--prefix", str(prefix))
    assert code == 1 and err.startswith("loaxa: error:") and "not a bundle" in err
