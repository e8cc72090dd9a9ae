"""`loaxa status` as the real command line: no daemon, a daemon answering, a daemon failing."""

import json
import os
import socket
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from device.control import ControlServer
from provisioning import demo_unit_id
from device.outbox import Outbox
from scheduler import ScheduleStore, load_private_key, load_trusted_keys, sign_document, write_keypair

REPO = Path(__file__).resolve().parents[1]
UNIT = "dl-lak-bongkrang-01"
TZ = ZoneInfo("Asia/Ho_Chi_Minh")


def loaxa(*args, home: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUTF8="1", XDG_STATE_HOME=str(home / "xdg"),
               HOME=str(home), LOAXA_LANG="en")
    for name in ("LOAXA_DEBUG", "LOAXA_CONFIG"):
        env.pop(name, None)
    return subprocess.run([sys.executable, "-m", "loaxa", "status", *map(str, args)], env=env,
                          capture_output=True, timeout=60, text=True)


@pytest.fixture
def unit(tmp_path):
    """A provisioned unit's config, its state folder and its operator's key."""
    key_path, pub_path = write_keypair(tmp_path / "keys", "dak-lak-2026")
    state = tmp_path / "state"
    config = tmp_path / "config.toml"
    config.write_text(f'''
[unit]
id = "{UNIT}"
groups = ["dak-lak/lak/bong-krang"]
state_dir = "{state}"
[broker]
url = "mqtt://127.0.0.1:1"
[trust]
keys = {{ "dak-lak-2026" = "{pub_path.read_text().strip()}" }}
[hardware]
mode = "mock"
''')
    return {"config": config, "state": state, "key": load_private_key(key_path),
            "trusted": load_trusted_keys({"dak-lak-2026": pub_path.read_text()})}


def store_schedule(unit) -> None:
    today = datetime.now(TZ).date()
    doc = {"type": "schedule", "id": "dak-lak/test", "version": 2, "targets": ["group:dak-lak/lak"],
           "issued_at": "2026-01-01T08:00:00+07:00", "valid_from": str(today - timedelta(days=1)),
           "valid_until": str(today + timedelta(days=30)), "timezone": "Asia/Ho_Chi_Minh",
           "items": [{"id": "sang", "play": ["chime"], "at": "06:00"},
                     {"id": "chieu", "play": ["chime"], "at": "17:00"}]}
    name, key = unit["key"]
    store = ScheduleStore(unit["state"] / "schedules")
    offer = store.offer("loaxa/group/dak-lak/lak/schedule", sign_document(json.dumps(doc), key, name),
                        trusted=unit["trusted"], unit_id=UNIT, groups=["dak-lak/lak/bong-krang"], prefix="loaxa",
                        quiet_hours="22:00-05:00", unit_tz=TZ)
    assert offer.status == "accepted"


def test_no_config_no_daemon(tmp_path):
    result = loaxa(home=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Daemon: not running" in result.stdout and "Config: none (the built-in demo)" in result.stdout
    assert "Traceback" not in result.stderr
    doc = json.loads(loaxa("--json", home=tmp_path).stdout)
    assert doc == {"running": False, "config": None, "state_dir": str(tmp_path / "xdg" / "loaxa-demo"), "demo": True,
                   "unit": demo_unit_id(tmp_path / "xdg" / "loaxa-demo"), "outbox": 0, "schedules": [], "next": []}
    assert not (tmp_path / "xdg").exists()  # looking changes nothing


def test_state_folder_read_directly(unit, tmp_path):
    store_schedule(unit)
    outbox = Outbox(unit["state"] / "outbox.sqlite")
    outbox.add(f"loaxa/unit/{UNIT}/playlog", b"{}")
    outbox.add(f"loaxa/unit/{UNIT}/event", b"{}")
    outbox.close()
    result = loaxa("--config", unit["config"], "--json", home=tmp_path)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert (doc["running"], doc["unit"], doc["outbox"], doc["config"]) == (False, UNIT, 2, str(unit["config"]))
    assert doc["schedules"] == [{"id": "dak-lak/test", "version": 2, "topic": "loaxa/group/dak-lak/lak/schedule"}]
    assert {n["item"] for n in doc["next"]} == {"sang", "chieu"}
    ats = [datetime.fromisoformat(n["at"]) for n in doc["next"]]
    now = datetime.now(TZ)
    assert ats == sorted(ats) and len(ats) in (2, 3)  # two plays a day, looked at 26 hours ahead
    assert all(now - timedelta(minutes=1) < at < now + timedelta(hours=26) for at in ats)
    assert {(at.hour, at.minute) for at in ats} == {(6, 0), (17, 0)}
    text = loaxa("--config", unit["config"], home=tmp_path).stdout
    assert "Daemon: not running" in text and "Outbox: 2 record(s) not yet delivered" in text
    assert "Schedules in force: dak-lak/test v2" in text and "(dak-lak/test)" in text


def daemon_status():
    return {"unit": UNIT, "version": "0.1.0", "mock": True, "clock": "untrusted", "clock_trusted": False,
            "current": {"item": "sang", "schedule": "dak-lak/test", "started_at": "2026-11-30T06:00:00+07:00"},
            "next": [{"item": "chieu", "schedule": "dak-lak/test", "at": "2026-11-30T17:00:00+07:00"}],
            "queue": 1, "outbox": 7,
            "broker": {"url": "mqtts://mqtt.example.vn:8883", "connected": False,
                       "last_contact": "2026-11-30T05:58:00+07:00"},
            "schedules": [{"id": "dak-lak/test", "version": 2}], "media": {"ready": 3, "total": 4},
            "faults": ["amplifier: no answer on /dev/serial0"]}


def test_running_daemon_answers(unit, tmp_path):
    with ControlServer(unit["state"] / "control.sock", {"status": daemon_status}):
        result = loaxa("--config", unit["config"], home=tmp_path)
        doc = json.loads(loaxa("--config", unit["config"], "--json", home=tmp_path).stdout)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    for expected in ["Daemon: running (loaxa 0.1.0)", f"Unit: {UNIT} (mock hardware)",
                     "Clock: untrusted (NOT trusted: timed items are missed)",
                     "Broker: not connected (mqtts://mqtt.example.vn:8883)", "  last contact: 2026-11-30 05:58:00",
                     "Playing: 2026-11-30 06:00:00  sang (dak-lak/test)",
                     "Next: 2026-11-30 17:00:00  chieu (dak-lak/test)", "Waiting to play: 1",
                     "Outbox: 7 record(s) not yet delivered", "Schedules in force: dak-lak/test v2",
                     "Media: 3 of 4 ready", "Faults:", "  - amplifier: no answer on /dev/serial0"]:
        assert expected in lines, (expected, lines)
    assert doc["running"] is True and doc["state_dir"] == str(unit["state"])
    assert {k: v for k, v in doc.items() if k not in ("running", "config", "state_dir", "demo")} == daemon_status()


def test_daemon_answering_an_error(unit, tmp_path):
    def broken():
        raise RuntimeError("planner stopped")

    with ControlServer(unit["state"] / "control.sock", {"status": broken}):
        result = loaxa("--config", unit["config"], home=tmp_path)
    assert result.returncode == 1
    assert "Daemon: not answering (the daemon answered with an error: status failed: RuntimeError: planner " \
           "stopped); showing the state folder instead" in result.stdout
    assert "Outbox: 0 record(s) not yet delivered" in result.stdout


def test_stale_socket_is_not_a_daemon(unit, tmp_path):
    unit["state"].mkdir(parents=True)
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(unit["state"] / "control.sock"))
    dead.close()
    result = loaxa("--config", unit["config"], "--json", home=tmp_path)
    assert result.returncode == 0 and json.loads(result.stdout)["running"] is False


def test_config_errors_are_one_line(tmp_path):
    result = loaxa("--config", tmp_path / "missing.toml", home=tmp_path)
    assert result.returncode == 1 and result.stderr.startswith("loaxa: error: ")
    assert "no such file" in result.stderr and "Traceback" not in result.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text("[unit]\nid = 5\n")
    result = loaxa("--config", bad, home=tmp_path)
    assert result.returncode == 1 and "unit.id" in result.stderr and "Traceback" not in result.stderr
    assert loaxa("--bogus", home=tmp_path).returncode == 2
