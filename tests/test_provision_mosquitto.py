"""The broker admin's files from `loaxa provision`, loaded into a real mosquitto.

The unit logs in with its id and the generated password, may publish only on its own
report topics (a publish elsewhere is answered with PUBACK 0x87), and receives only its
own and its groups' schedule and command messages. mosquitto 2.0's acl_file grants every
SUBSCRIBE and filters at delivery, so a subscription to another unit's topics is
granted but never delivers; the tests check the delivery, which is what protects.
"""

import base64
import hashlib
import os
import shutil
import subprocess
import threading
import time

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from provisioning.mosquitto import (
    acl_lines,
    check_password_line,
    generate_password,
    hash_password,
    listen_topics,
    password_line,
    report_topics,
)
from tests.support.unit import run_loaxa

UNIT = "dl-lak-bongkrang-01"
OTHER = "dl-lak-yentao-02"
GROUP = "dak-lak/lak/bong-krang"
PUB = base64.b64encode(bytes(range(32))).decode()
NOT_AUTHORIZED = 0x87


# ---------------------------------------------------------------- the hash, as mosquitto_passwd writes it

def test_hash_has_mosquitto_2_form():
    hashed = hash_password("secret", salt=b"0123456789ab")
    kind, iterations, salt, digest = hashed.split("$")[1:]
    assert (kind, iterations) == ("7", "101")
    assert base64.b64decode(salt) == b"0123456789ab"
    assert base64.b64decode(digest) == hashlib.pbkdf2_hmac("sha512", b"secret", b"0123456789ab", 101)
    assert len(base64.b64decode(hash_password("x").split("$")[3])) == 12  # a fresh 12-byte salt


@pytest.mark.skipif(shutil.which("mosquitto_passwd") is None, reason="mosquitto_passwd not installed")
def test_reads_what_mosquitto_passwd_writes(tmp_path):
    path = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(path), UNIT, "Mật khẩu-1"], check=True)
    line = path.read_text().strip()
    assert line.startswith(f"{UNIT}:$7$101$")
    assert check_password_line(line, UNIT, "Mật khẩu-1")
    assert not check_password_line(line, UNIT, "wrong")
    assert not check_password_line(line, OTHER, "Mật khẩu-1")
    ours = password_line(UNIT, "Mật khẩu-1")
    assert len(ours) == len(line) and check_password_line(ours, UNIT, "Mật khẩu-1")


def test_generated_passwords_are_strong_and_plain():
    passwords = {generate_password() for _ in range(50)}
    assert len(passwords) == 50
    assert all(len(p) >= 32 and p.replace("-", "").replace("_", "").isalnum() for p in passwords)


def test_username_with_colon_is_refused():
    with pytest.raises(ValueError):
        password_line("a:b", "x")


# ---------------------------------------------------------------- the ACL lines

def test_acl_lines_follow_spec():
    lines = acl_lines(UNIT, [GROUP, "dak-lak/doi-tin-1"])
    assert lines[:2] == [f"# loaxa unit {UNIT}", f"user {UNIT}"]
    writes = [line.split()[2] for line in lines if line.startswith("topic write ")]
    reads = [line.split()[2] for line in lines if line.startswith("topic read ")]
    assert writes == [f"loaxa/unit/{UNIT}/{kind}" for kind in ("state", "health", "playlog", "event", "reply", "track")]
    owners = [f"unit/{UNIT}", f"group/{GROUP}", "group/dak-lak/lak", "group/dak-lak", "group/dak-lak/doi-tin-1"]
    assert reads == [f"loaxa/{owner}/{kind}" for owner in owners for kind in ("schedule", "cmd", "trust", "release")]
    assert len(lines) == 2 + len(writes) + len(reads)
    assert not any("+" in line or "#" in line.split(" ", 1)[-1] for line in lines[1:])


def test_acl_honours_the_topic_prefix():
    assert report_topics("prov/daklak", UNIT)[0] == f"prov/daklak/unit/{UNIT}/state"
    assert listen_topics("prov/daklak", UNIT, ["a/b"])[-1] == "prov/daklak/group/a/release"
    assert all(" prov/daklak/" in line for line in acl_lines(UNIT, ["a/b"], "prov/daklak")[2:])


# ---------------------------------------------------------------- in a real mosquitto

class Client:
    """A paho MQTT 5 client that records the reason codes of its acks and what it receives."""

    def __init__(self, broker, username, password, client_id):
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        self.client.username_pw_set(username, password)
        self.connack, self.pubacks, self.subacks, self.received = None, {}, {}, []
        self.cond = threading.Condition()
        self.client.on_connect = self._on_connect
        self.client.on_publish = lambda c, u, mid, rc, p: self._store(self.pubacks, mid, rc)
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self._store(self.subacks, mid, rcs)
        self.client.on_message = lambda c, u, m: self._store(None, None, (m.topic, m.payload))
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        self.wait(lambda: self.connack is not None, "CONNACK")

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        with self.cond:
            self.connack = reason_code
            self.cond.notify_all()

    def _store(self, table, key, value):
        with self.cond:
            if table is None:
                self.received.append(value)
            else:
                table[key] = value
            self.cond.notify_all()

    def wait(self, predicate, what, timeout=10):
        with self.cond:
            if not self.cond.wait_for(predicate, timeout):
                raise AssertionError(f"no {what} within {timeout}s")

    def publish(self, topic, payload=b"x", retain=False):
        mid = self.client.publish(topic, payload, qos=1, retain=retain).mid
        self.wait(lambda: mid in self.pubacks, f"PUBACK for {topic}")
        return self.pubacks[mid].value

    def subscribe(self, topic):
        mid = self.client.subscribe(topic, 1)[1]
        self.wait(lambda: mid in self.subacks, f"SUBACK for {topic}")
        return self.subacks[mid][0].value

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


def provision(tmp_path, *extra, unit=UNIT, groups=(GROUP,)):
    out = tmp_path / unit
    args = ["provision", "--non-interactive", "--unit-id", unit, "--broker", "mqtt://127.0.0.1:1883",
            "--trust-key", f"op={PUB}", "--mode", "mock", "--out", str(out), "--no-selftest", *extra]
    for group in groups:
        args += ["--group", group]
    result = run_loaxa(*args, env={**os.environ, "LOAXA_LANG": "en"})
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture
def secured(tmp_path, broker_factory):
    """A mosquitto loaded with two provisioned units' files plus an admin allowed everything."""
    def start(prefix="loaxa"):
        extra = () if prefix == "loaxa" else ("--topic-prefix", prefix)
        unit = provision(tmp_path, *extra)
        other = provision(tmp_path, *extra, unit=OTHER, groups=("dak-lak/ea-sup/ia-rve",))
        passwd, acl = tmp_path / "passwd", tmp_path / "acl"
        passwd.write_text((unit / "mosquitto.passwd").read_text() + (other / "mosquitto.passwd").read_text()
                          + password_line("admin", "admin-pw") + "\n")
        acl.write_text((unit / "mosquitto.acl").read_text() + (other / "mosquitto.acl").read_text()
                       + "user admin\ntopic readwrite #\n")
        broker = broker_factory(f"password_file {passwd}\nacl_file {acl}")
        password = (unit / "broker.pass").read_text().strip()
        return broker, password
    return start


def test_unit_publishes_on_its_own_topics_only(secured):
    broker, password = secured()
    unit = Client(broker, UNIT, password, "u1")
    try:
        assert unit.connack.value == 0
        for kind in ("state", "health", "playlog", "event", "reply"):
            assert unit.publish(f"loaxa/unit/{UNIT}/{kind}") < 0x80, kind
        assert unit.publish(f"loaxa/unit/{OTHER}/state") == NOT_AUTHORIZED
        assert unit.publish(f"loaxa/unit/{OTHER}/playlog") == NOT_AUTHORIZED
        assert unit.publish(f"loaxa/unit/{UNIT}/schedule") == NOT_AUTHORIZED   # operators' topic
        assert unit.publish(f"loaxa/group/{GROUP}/schedule") == NOT_AUTHORIZED
        assert unit.publish("elsewhere/x") == NOT_AUTHORIZED
    finally:
        unit.close()


def test_unit_reads_its_own_and_its_groups_topics_only(secured):
    broker, password = secured()
    admin = Client(broker, "admin", "admin-pw", "admin")
    mine = [f"loaxa/unit/{UNIT}/schedule", f"loaxa/unit/{UNIT}/cmd", f"loaxa/group/{GROUP}/schedule",
            "loaxa/group/dak-lak/lak/cmd", "loaxa/group/dak-lak/schedule"]
    foreign = [f"loaxa/unit/{OTHER}/schedule", f"loaxa/unit/{OTHER}/cmd",
               "loaxa/group/dak-lak/ea-sup/schedule", f"loaxa/unit/{OTHER}/state"]
    for topic in mine + foreign:
        assert admin.publish(topic, topic.encode(), retain=True) < 0x80
    unit = Client(broker, UNIT, password, "u1")
    try:
        assert unit.subscribe(f"loaxa/group/{GROUP}/schedule") == 1   # granted, QoS 1
        unit.wait(lambda: len(unit.received) == 1, "the group's retained schedule")
        assert unit.received == [(f"loaxa/group/{GROUP}/schedule", f"loaxa/group/{GROUP}/schedule".encode())]
        unit.subscribe("loaxa/#")   # granted by mosquitto 2.0; the ACL filters what arrives
        unit.wait(lambda: {t for t, _ in unit.received} >= set(mine), "every topic of the unit")
        time.sleep(0.5)
        assert {topic for topic, _ in unit.received} == set(mine)
    finally:
        unit.close()
        admin.close()


def test_wrong_password_or_other_units_name_is_refused(secured):
    broker, password = secured()
    wrong = Client(broker, UNIT, password + "x", "u1")
    borrowed = Client(broker, OTHER, password, "u2")
    assert wrong.connack.is_failure and borrowed.connack.is_failure
    wrong.close()
    borrowed.close()


def test_non_default_prefix(secured):
    broker, password = secured("prov/daklak")
    unit = Client(broker, UNIT, password, "u1")
    try:
        assert unit.publish(f"prov/daklak/unit/{UNIT}/state") < 0x80
        assert unit.publish(f"loaxa/unit/{UNIT}/state") == NOT_AUTHORIZED
        assert unit.publish(f"prov/daklak/unit/{OTHER}/state") == NOT_AUTHORIZED
    finally:
        unit.close()
