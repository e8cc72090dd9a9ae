"""The command gate under a trust document: roles per kind, scope, a stop during an
emergency, and the trust asked afresh for each command (a revocation applies to the next)."""

import json
from datetime import datetime, timedelta, timezone

import pytest

from device.commands import CommandGate
from loaxa.errors import SignatureError
from scheduler import build_command
from scheduler.judge import Authority
from scheduler.trust import parse_trust
from tests.support.trustkit import GROUPS, UNIT, Key, envelope, key_entry, trust_doc

ICT = timezone(timedelta(hours=7))
NOW = datetime(2026, 11, 30, 9, 0, 0, tzinfo=ICT)
TOPIC = f"loaxa/unit/{UNIT}/cmd"
OPERATOR, EMERGENCY, APPROVER, OUTSIDER = Key("so-operator"), Key("so-emergency"), Key("so-approver"), Key("ana-op")


def authority(*, operator=True) -> Authority:
    keys = {EMERGENCY.name: key_entry(EMERGENCY, ["emergency"], ["group:dak-lak"]),
            APPROVER.name: key_entry(APPROVER, ["approver"], ["group:dak-lak"]),
            OUTSIDER.name: key_entry(OUTSIDER, ["operator"], ["group:dak-lak/krong-ana"])}
    if operator:
        keys[OPERATOR.name] = key_entry(OPERATOR, ["operator"], ["group:dak-lak"])
    return Authority.from_trust(parse_trust(trust_doc(keys)))


class Holder:
    def __init__(self):
        self.authority = authority()
        self.emergency = False


@pytest.fixture
def rig(tmp_path):
    holder = Holder()
    gate = CommandGate(tmp_path / "commands", trusted=lambda: holder.authority, unit_id=UNIT, groups=GROUPS,
                       emergency_playing=lambda: holder.emergency)
    return gate, holder


def signed(action, args, *signers):
    text = build_command(action, args, f"unit:{UNIT}", now=NOW, ttl_s=60)
    return envelope(text, *signers), json.loads(text)["id"]


def refusal(gate, raw) -> str:
    with pytest.raises(SignatureError) as caught:
        gate.admit(TOPIC, raw, NOW)
    return str(caught.value)


def test_roles_per_kind_and_scope(rig):
    gate, _ = rig
    assert gate.admit(TOPIC, signed("set_volume", {"volume": 30}, OPERATOR)[0], NOW).signed_by == OPERATOR.name
    assert "announce needs approver: missing role approver" in refusal(
        gate, signed("play", {"stream": "http://radio.example/live", "duration_s": 60}, OPERATOR)[0])
    assert gate.admit(TOPIC, signed("play", {"stream": "http://radio.example/live", "duration_s": 60}, APPROVER)[0],
                      NOW)
    assert "emergency needs emergency: missing role emergency" in refusal(
        gate, signed("play", {"media": ["chime"], "priority": "emergency"}, OPERATOR, APPROVER)[0])
    assert gate.admit(TOPIC, signed("play", {"media": ["chime"], "priority": "emergency"}, EMERGENCY)[0], NOW)
    outside = refusal(gate, signed("ping", {}, OUTSIDER)[0])
    assert "ana-op (outside its scope" in outside and "technician" in outside


def test_a_stop_during_an_emergency_needs_the_emergency_role(rig):
    gate, holder = rig
    assert gate.admit(TOPIC, signed("stop", {}, OPERATOR)[0], NOW)
    holder.emergency = True
    assert "emergency needs emergency: missing role emergency" in refusal(gate, signed("stop", {}, OPERATOR)[0])
    assert gate.admit(TOPIC, signed("stop", {}, EMERGENCY)[0], NOW)


def test_the_trust_in_force_when_a_command_arrives_judges_it(rig):
    gate, holder = rig
    assert gate.admit(TOPIC, signed("set_volume", {"volume": 30}, OPERATOR)[0], NOW)
    holder.authority = authority(operator=False)  # a new trust version dropped the operator's key
    assert "so-operator" in refusal(gate, signed("set_volume", {"volume": 30}, OPERATOR)[0])
