"""`loaxa command send`: ARGS on the command line, the signed document on the wire, replies."""

import json
import threading
from datetime import datetime, timezone

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from loaxa.commands.command import parse_args_list
from loaxa.errors import DocumentError
from scheduler import load_trusted_keys, open_envelope, parse_command
from tests.support.unit import OperatorKey, run_loaxa

UNIT = "dl-lak-bongkrang-01"


@pytest.fixture
def key(tmp_path):
    return OperatorKey(tmp_path / "keys")


def send(key, broker, *args):
    return run_loaxa("command", "send", "--key", str(key.key_path), "--broker", broker.url, *args)


def received_command(key, payload: bytes):
    text, key_name = open_envelope(payload, load_trusted_keys({key.name: key.public}))
    assert key_name == key.name
    return parse_command(text, datetime.now(timezone.utc))


# ---- ARGS ----

@pytest.mark.parametrize("words, args", [
    ([], {}),
    (["volume=80"], {"volume": 80}),
    (["media=chime,ban-tin", "volume=90", "priority=emergency"],
     {"media": ["chime", "ban-tin"], "volume": 90, "priority": "emergency"}),
    (["media=chime"], {"media": ["chime"]}),
    (["zones=1,2"], {"zones": [1, 2]}),
    (["zones=[2]", 'media=["a","b"]'], {"zones": [2], "media": ["a", "b"]}),
    (["stream=http://icecast.example.vn:8000/xa", "duration_s=1800"],
     {"stream": "http://icecast.example.vn:8000/xa", "duration_s": 1800}),
    (['{"volume": 60}'], {"volume": 60}),
    (["note=a=b"], {"note": "a=b"}),
])
def test_args_from_the_command_line(words, args):
    assert parse_args_list(words) == args


@pytest.mark.parametrize("words, reason", [
    (["volume"], "NAME=VALUE"), (["=3"], "NAME=VALUE"), (["volume=1", "volume=2"], "twice"),
    (["{not json"], "JSON object"), (["[1]"], "NAME=VALUE"),
])
def test_bad_args_say_why(words, reason):
    with pytest.raises(DocumentError, match=reason):
        parse_args_list(words)


# ---- on the wire ----

def test_a_command_to_a_unit_is_signed_checked_and_not_retained(key, broker):
    watch = broker.collector(f"loaxa/unit/{UNIT}/cmd")
    result = send(key, broker, "--to", f"unit:{UNIT}", "--ttl", "60", "set_volume", "volume=60")
    assert result.returncode == 0, result.stderr
    topic, payload = watch.wait_for(lambda t, p: True, 10)
    watch.close()
    command = received_command(key, payload)
    assert (command.action, command.volume, command.target) == ("set_volume", 60, f"unit:{UNIT}")
    assert (command.expires_at - command.issued_at).total_seconds() == 60
    assert command.id in result.stdout and topic in result.stdout
    assert all(not retained for _, _, retained in watch.messages)


def test_a_command_to_a_group_goes_to_the_group_topic(key, broker):
    watch = broker.collector("loaxa/group/dak-lak/lak/cmd")
    result = send(key, broker, "--to", "group:dak-lak/lak", "--json", "--id", "op-2026-0001",
                  "play", "media=chime", "volume=90", "priority=emergency")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["command"] == "op-2026-0001" and out["topic"] == "loaxa/group/dak-lak/lak/cmd"
    command = received_command(key, watch.wait_for(lambda t, p: True, 10)[1])
    watch.close()
    assert command.play.media == ("chime",) and command.play.priority == "emergency"
    assert command.play.volume == 90 and command.id == "op-2026-0001"


class FakeUnit:
    """Answers every command on its topic the way a unit does, on `reply`."""

    def __init__(self, broker, unit: str, ok: bool = True):
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        ready = threading.Event()
        self.client.on_connect = lambda c, *a: c.subscribe(f"loaxa/unit/{unit}/cmd", qos=1)
        self.client.on_subscribe = lambda *a: ready.set()

        def answer(client, userdata, message):
            payload = json.loads(json.loads(message.payload)["payload"])
            reply = {"command": payload["id"], "ok": ok, "detail": "pong" if ok else "expired",
                     "result": {"uptime_s": 5} if ok else {}}
            client.publish(f"loaxa/unit/{unit}/reply", json.dumps(reply), qos=1)
        self.client.on_message = answer
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        assert ready.wait(10)

    def close(self):
        self.client.loop_stop()
        self.client.disconnect()


def test_wait_prints_the_replies(key, broker):
    unit = FakeUnit(broker, UNIT)
    try:
        result = send(key, broker, "--to", f"unit:{UNIT}", "--wait", "10", "--json", "ping")
    finally:
        unit.close()
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["replies"] == [{"unit": UNIT, "ok": True, "detail": "pong",
                                                     "result": {"uptime_s": 5}}]


def test_a_refusal_or_silence_is_a_failure(key, broker):
    unit = FakeUnit(broker, UNIT, ok=False)
    try:
        refused = send(key, broker, "--to", f"unit:{UNIT}", "--wait", "10", "ping")
    finally:
        unit.close()
    assert refused.returncode == 1 and f"{UNIT}: REFUSED: expired" in refused.stdout
    silent = send(key, broker, "--to", "unit:dl-nobody-01", "--wait", "0.5", "ping")
    assert silent.returncode == 1 and "no reply within 0.5 s" in silent.stderr


@pytest.mark.parametrize("args, code, message", [
    (["--to", f"unit:{UNIT}", "reboot"], 2, "expected one of"),
    (["--to", "unit:X", "ping"], 2, "unit:ID"),
    (["--to", f"unit:{UNIT}", "set_volume", "volume=140"], 1, "args.volume: must be 0-100"),
    (["--to", f"unit:{UNIT}", "stop", "now=1"], 1, "args"),
    (["--to", f"unit:{UNIT}", "set_volume", "volume"], 1, "NAME=VALUE"),
])
def test_bad_input_is_one_line(key, broker, args, code, message):
    result = send(key, broker, *args)
    assert result.returncode == code
    assert message in result.stderr and "Traceback" not in result.stderr
    if code == 1:
        assert len(result.stderr.strip().splitlines()) == 1
