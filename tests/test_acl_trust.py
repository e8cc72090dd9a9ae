"""Broker ACL by trust role, in a real mosquitto: units read their trust and release topics;
operators publish only the kinds and scopes their roles allow; a deployed ACL is regenerated."""

import signal
import time

import pytest

from provisioning.mosquitto import (acl_lines, fleet_acl, operator_acl_lines, password_line, scope_members)
from tests.test_provision_mosquitto import NOT_AUTHORIZED, Client

LAK_UNIT, KRONG_UNIT = "dl-lak-bongkrang-01", "dl-krong-a-01"
FLEET = {LAK_UNIT: ["dak-lak/lak/bong-krang"], KRONG_UNIT: ["dak-lak/krong-ana/a"]}
OPERATORS = [
    {"username": "lak-editor", "roles": ["editor"], "scope": ["group:dak-lak/lak"]},
    {"username": "so-operator", "roles": ["operator", "technician"], "scope": ["group:dak-lak"]},
    {"username": "so-admin", "roles": ["admin"], "scope": ["group:dak-lak"]},
]
ACCOUNTS = [LAK_UNIT, KRONG_UNIT, "lak-editor", "so-operator", "so-admin", "admin"]


def test_scope_members_by_whole_segments():
    fleet = {**FLEET, "dl-lak2-01": ["dak-lak-2/x"]}
    groups, units = scope_members(["group:dak-lak"], fleet)
    assert "dak-lak-2" not in groups and "dak-lak-2/x" not in groups and "dl-lak2-01" not in units
    assert groups == ["dak-lak", "dak-lak/krong-ana", "dak-lak/krong-ana/a", "dak-lak/lak", "dak-lak/lak/bong-krang"]
    assert scope_members([f"unit:{LAK_UNIT}", "unit:dl-unknown-01"], fleet) == ([], [LAK_UNIT])


def test_operator_lines_follow_the_roles():
    lines = operator_acl_lines("lak-editor", ["editor"], ["group:dak-lak/lak"], FLEET, slots=["national"])
    writes = {line.split()[2] for line in lines if line.startswith("topic readwrite")}
    assert writes == {"loaxa/group/dak-lak/lak/schedule", "loaxa/group/dak-lak/lak/bong-krang/schedule",
                      f"loaxa/unit/{LAK_UNIT}/schedule", "loaxa/group/dak-lak/lak/schedule/national",
                      "loaxa/group/dak-lak/lak/bong-krang/schedule/national", f"loaxa/unit/{LAK_UNIT}/schedule/national"}
    with pytest.raises(ValueError, match="unknown role"):
        operator_acl_lines("x", ["boss"], ["group:dak-lak"], FLEET)


@pytest.fixture
def deployed(tmp_path, broker_factory):
    """A broker whose acl_file is the old one (units read schedule and cmd only)."""
    passwd, acl = tmp_path / "passwd", tmp_path / "acl"
    passwd.write_text("".join(password_line(name, f"{name}-pw") + "\n" for name in ACCOUNTS))
    old = []
    for unit, groups in FLEET.items():
        old += [line for line in acl_lines(unit, groups) if not line.endswith(("/trust", "/release"))]
    acl.write_text("\n".join(old) + "\nuser admin\ntopic readwrite #\n")
    return broker_factory(f"password_file {passwd}\nacl_file {acl}"), acl


def test_operators_publish_only_their_kinds_and_scopes_and_units_gain_trust_reads(deployed):
    broker, acl = deployed
    admin = Client(broker, "admin", "admin-pw", "admin")
    unit = Client(broker, LAK_UNIT, f"{LAK_UNIT}-pw", "u1")
    clients = [admin, unit]
    try:
        admin.publish("loaxa/group/dak-lak/trust", b"trust-v1", retain=True)
        unit.subscribe("loaxa/group/dak-lak/trust")
        time.sleep(0.5)
        assert unit.received == []  # the old ACL: a unit in the field cannot read its trust topic
        # regenerate the deployed ACL from the fleet database and reload mosquitto
        acl.write_text(fleet_acl(FLEET, OPERATORS) + "user admin\ntopic readwrite #\n")
        broker.process.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        unit.client.unsubscribe("loaxa/group/dak-lak/trust")
        unit.subscribe("loaxa/group/dak-lak/trust")
        unit.wait(lambda: unit.received, "the retained trust document after the ACL reload")
        assert unit.received == [("loaxa/group/dak-lak/trust", b"trust-v1")]

        editor = Client(broker, "lak-editor", "lak-editor-pw", "ed")
        operator = Client(broker, "so-operator", "so-operator-pw", "op")
        trustee = Client(broker, "so-admin", "so-admin-pw", "tr")
        clients += [editor, operator, trustee]
        assert editor.publish("loaxa/group/dak-lak/lak/schedule") < 0x80
        assert editor.publish(f"loaxa/unit/{LAK_UNIT}/schedule") < 0x80
        assert editor.publish("loaxa/group/dak-lak/schedule") == NOT_AUTHORIZED  # the province's
        assert editor.publish("loaxa/group/dak-lak/krong-ana/schedule") == NOT_AUTHORIZED
        assert editor.publish("loaxa/group/dak-lak-2/schedule") == NOT_AUTHORIZED
        assert editor.publish("loaxa/group/dak-lak/lak/cmd") == NOT_AUTHORIZED  # not its role
        assert editor.publish("loaxa/group/dak-lak/lak/trust") == NOT_AUTHORIZED
        assert operator.publish("loaxa/group/dak-lak/krong-ana/cmd") < 0x80
        assert operator.publish(f"loaxa/unit/{KRONG_UNIT}/cmd") < 0x80
        assert operator.publish("loaxa/group/dak-lak/schedule") == NOT_AUTHORIZED
        assert trustee.publish("loaxa/group/dak-lak/trust") < 0x80
        assert trustee.publish("loaxa/group/dak-lak/cmd") == NOT_AUTHORIZED
        assert unit.publish("loaxa/group/dak-lak/trust") == NOT_AUTHORIZED
    finally:
        for client in clients:
            client.close()
