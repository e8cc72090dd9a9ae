"""Trust on running units, over a real mosquitto (SPEC "Trust: roots, roles, scopes, rotation").

Every trust document, schedule and command here is built and signed straight from SPEC's
formats with `cryptography` (tests/support/trustkit.py), never with loaxa's own signing
code, so the unit is checked as any other tool following SPEC would talk to it. Several
cases share one running unit to keep the suite fast.
"""

import json
import shutil
import time
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import paho.mqtt.publish as publish
import pytest

from scheduler import build_command
from tests.support.trustkit import GROUPS, UNIT, Key, envelope, key_entry, root_set
from tests.support.unit import UnitProcess, hardware_log, run_loaxa, write_unit_config

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
GROUP = GROUPS[0]  # dak-lak/lak/bong-krang
UNIT_TRUST = f"loaxa/unit/{UNIT}/trust"
PROVINCE_TRUST = "loaxa/group/dak-lak/trust"
LAK_SCHEDULE = "loaxa/group/dak-lak/lak/schedule"
PROVINCE_SCHEDULE = "loaxa/group/dak-lak/schedule"
CMD = f"loaxa/unit/{UNIT}/cmd"


def iso(moment: datetime) -> str:
    return moment.astimezone(TZ).isoformat(timespec="seconds")


def now() -> datetime:
    return datetime.now(TZ)


def trust_payload(keys: dict, *, version: int, require=None, root=None, expires_in=timedelta(days=365),
                  targets=("group:dak-lak",)) -> str:
    doc = {"type": "trust", "id": "dak-lak", "version": version, "targets": list(targets),
           "issued_at": iso(now() - timedelta(hours=1)), "expires_at": iso(now() + expires_in),
           "keys": keys, "require": require or {}, "root": root}
    return json.dumps(doc, ensure_ascii=False)


def schedule_payload(doc_id: str, *, version=1, targets=("group:dak-lak/lak",), items=None) -> str:
    today = now().date()
    items = items or [{"id": "sang", "play": ["chime"], "at": iso(now() + timedelta(hours=2)),
                       "priority": "normal"}]
    return json.dumps({"type": "schedule", "id": doc_id, "version": version, "targets": list(targets),
                       "issued_at": iso(now()), "valid_from": (today - timedelta(days=1)).isoformat(),
                       "valid_until": (today + timedelta(days=7)).isoformat(), "timezone": "Asia/Ho_Chi_Minh",
                       "items": items})


def command_payload(action: str, args: dict) -> tuple[str, str]:
    text = build_command(action, args, f"unit:{UNIT}", now=now(), ttl_s=120)
    return text, json.loads(text)["id"]


class Site:
    """A running unit, the broker, and a collector on the unit's topics."""

    def __init__(self, tmp, broker, *, legacy=None, roots=None, threshold=1, min_version=0, extra=""):
        self.tmp, self.broker = tmp, broker
        trust_extra = ""
        if roots:
            trust_extra = ("root = { " + ", ".join(f'"{k.name}" = "{k.pub}"' for k in roots) + " }\n"
                           f"root_threshold = {threshold}\nmin_version = {min_version}\n")
        self.config = write_unit_config(tmp / "unit", unit_id=UNIT, groups=[GROUP], broker_url=broker.url,
                                        trust={k.name: k.pub for k in (legacy or ())}, warmup_s=0.2,
                                        cooldown_s=0.5, trust_extra=trust_extra, extra=extra,
                                        unit_extra="health_interval_s = 10")
        self.watch = broker.collector(f"loaxa/unit/{UNIT}/#")
        self.proc = None
        self.start()

    def start(self):
        self.proc = UnitProcess(self.config, log_path=self.tmp / f"unit-{time.monotonic_ns()}.log")
        self.proc.wait_console("connected to broker", 30)

    def stop(self):
        if self.proc is not None:
            self.proc.stop()
            self.proc = None

    def close(self):
        self.stop()
        self.watch.close()

    def publish(self, topic: str, payload, retain=True):
        publish.single(topic, payload, qos=1, retain=retain, hostname=self.broker.host, port=self.broker.port)

    def mark(self) -> None:
        """From now on `event` looks only at messages that arrive after this point."""
        with self.watch._cond:
            self._since = len(self.watch.messages)

    def event(self, kind: str, contains: str = "", timeout: float = 20.0) -> dict:
        """The first `kind` event since the last mark whose detail holds `contains`."""
        since = getattr(self, "_since", 0)

        def match(topic, payload):
            if not topic.endswith("/event"):
                return False
            doc = json.loads(payload)
            return doc["kind"] == kind and contains.lower() in doc["detail"].lower()
        deadline = time.monotonic() + timeout
        with self.watch._cond:
            while True:
                for topic, payload, _ in self.watch.messages[since:]:
                    if match(topic, payload):
                        return json.loads(payload)
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = [p[:300] for t, p, _ in self.watch.messages[since:] if t.endswith("/event")]
                    raise AssertionError(f"no {kind} event with {contains!r} within {timeout}s; saw {seen}")
                self.watch._cond.wait(left)

    def events(self, kind: str) -> list[dict]:
        docs = [json.loads(p) for p in self.watch.payloads(f"loaxa/unit/{UNIT}/event")]
        return [d for d in docs if d["kind"] == kind]

    def trust(self, payload: str, *signers: Key, topic=PROVINCE_TRUST, retain=True) -> None:
        self.mark()
        self.publish(topic, envelope(payload, *signers), retain=retain)

    def schedule(self, payload: str, *signers: Key, topic=LAK_SCHEDULE) -> None:
        self.mark()
        self.publish(topic, envelope(payload, *signers))

    def command(self, action: str, args: dict, *signers: Key) -> dict:
        text, command_id = command_payload(action, args)
        self.publish(CMD, envelope(text, *signers), retain=False)
        _, payload = self.watch.wait_for(
            lambda t, p: t.endswith("/reply") and json.loads(p)["command"] == command_id, 20)
        return json.loads(payload)

    def playlog(self, item: str, outcome: str, timeout: float = 30.0) -> dict:
        _, payload = self.watch.wait_for(lambda t, p: t.endswith("/playlog") and json.loads(p)["item"] == item
                                         and json.loads(p)["outcome"] == outcome, timeout)
        return json.loads(payload)

    def status(self) -> dict:
        done = run_loaxa("status", "--json", "--config", str(self.config))
        return json.loads(done.stdout)


@pytest.fixture
def site_factory(tmp_path, broker):
    sites = []

    def make(name="a", **kw):
        site = Site(tmp_path / name, broker, **kw)
        sites.append(site)
        return site

    yield make
    for site in sites:
        site.close()


# The province's keys: two offline roots, and online keys with roles and scopes.
R1, R2, R3, R4 = Key("dak-lak-root-1"), Key("dak-lak-root-2"), Key("dak-lak-root-3"), Key("dak-lak-root-4")
LAK_EDITOR, ANA_EDITOR = Key("lak-editor"), Key("ana-editor")
APPROVER = Key("so-approver")
A, B = Key("key-a"), Key("key-b")
OPERATOR, EMERGENCY = Key("so-operator"), Key("so-emergency")


def province_keys(*, with_b=True) -> dict:
    keys = {
        LAK_EDITOR.name: key_entry(LAK_EDITOR, ["editor"], ["group:dak-lak/lak"]),
        ANA_EDITOR.name: key_entry(ANA_EDITOR, ["editor"], ["group:dak-lak/krong-ana"]),
        APPROVER.name: key_entry(APPROVER, ["approver"], ["group:dak-lak"]),
        A.name: key_entry(A, ["editor", "approver"], ["group:dak-lak"]),
        OPERATOR.name: key_entry(OPERATOR, ["operator"], ["group:dak-lak"]),
        EMERGENCY.name: key_entry(EMERGENCY, ["emergency"], ["group:dak-lak"]),
    }
    if with_b:
        keys[B.name] = key_entry(B, ["editor"], ["group:dak-lak"])
    return keys


TWO_SIGNATURES = {"schedule": ["editor", "approver"]}


def test_roles_scopes_and_revocation_on_a_running_unit(site_factory):
    site = site_factory(roots=(R1, R2), threshold=2, min_version=3,
                        extra='driver = "relay"')  # set_volume scales the audio: the playlog shows it

    # Trust documents the unit must refuse: below min_version, expired on arrival, too few roots.
    site.trust(trust_payload(province_keys(), version=2, require=TWO_SIGNATURES), R1, R2, retain=False)
    assert "below this unit's min_version 3" in site.event("trust.rejected")["detail"]
    site.trust(trust_payload(province_keys(), version=5, require=TWO_SIGNATURES, expires_in=-timedelta(minutes=5)),
               R1, R2, retain=False)
    assert "expired at" in site.event("trust.rejected")["detail"]
    site.trust(trust_payload(province_keys(), version=5, require=TWO_SIGNATURES), R1, retain=False)
    assert "signed by 1 distinct root keys in force" in site.event("trust.rejected")["detail"]
    assert not site.events("trust.accepted")

    site.trust(trust_payload(province_keys(), version=5, require=TWO_SIGNATURES), R1, R2)
    assert site.event("trust.accepted")["version"] == 5
    site.trust(trust_payload(province_keys(), version=4, require=TWO_SIGNATURES, targets=(f"unit:{UNIT}",)),
               R1, R2, topic=UNIT_TRUST, retain=False)
    assert "trust version 4 is not newer than version 5" in site.event("trust.rejected")["detail"]

    # Schedules: scope by whole path segments, the id's group path, two distinct keys.
    site.schedule(schedule_payload("dak-lak/lak/w49-ana"), ANA_EDITOR, APPROVER)
    other_district = site.event("schedule.rejected", "w49-ana")["detail"]
    assert "missing role editor" in other_district and "ana-editor (outside its scope" in other_district
    site.schedule(schedule_payload("dak-lak/w49"), LAK_EDITOR, APPROVER)
    squat = site.event("schedule.rejected", "dak-lak/w49 ")["detail"]
    assert "lak-editor (outside its scope: id dak-lak/w49" in squat
    site.schedule(schedule_payload("dak-lak/lak/w49-alone"), LAK_EDITOR)
    assert "missing role approver" in site.event("schedule.rejected", "w49-alone")["detail"]
    site.schedule(schedule_payload("dak-lak/lak/w49-a"), A)
    one_key = site.event("schedule.rejected", "w49-a ")["detail"]
    assert "missing role approver" in one_key and "counted: key-a as" in one_key
    site.schedule(schedule_payload("dak-lak/lak/w49-emergency", items=[
        {"id": "bao", "play": ["chime"], "at": iso(now() + timedelta(hours=3)), "priority": "emergency"}]),
        LAK_EDITOR, APPROVER)
    assert "emergency needs emergency: missing role emergency" in site.event(
        "schedule.rejected", "w49-emergency")["detail"]
    assert not site.events("schedule.accepted")

    # A{editor, approver} + B{editor}: a true assignment of distinct keys. Its item plays
    # soon, long enough for the next trust version to cut it off.
    at = now() + timedelta(seconds=4)
    site.schedule(schedule_payload("dak-lak/lak/w49", items=[
        {"id": "thoi-su", "play": ["test-tone"], "repeat": 10, "at": iso(at), "priority": "normal"}]), A, B)
    assert site.event("schedule.accepted", "dak-lak/lak/w49")["schedule"] == "dak-lak/lak/w49"

    # Commands: roles per kind.
    stream = site.command("play", {"stream": "http://127.0.0.1:9/live", "duration_s": 10}, OPERATOR)
    assert not stream["ok"] and "announce needs approver: missing role approver" in stream["detail"]
    alarm = site.command("play", {"media": ["chime"], "priority": "emergency"}, OPERATOR)
    assert not alarm["ok"] and "missing role emergency" in alarm["detail"]
    quiet = site.command("set_volume", {"volume": 0}, OPERATOR)
    assert quiet["ok"], quiet

    # Revocation: the item of A+B's schedule is playing; version 6 drops key B.
    deadline = time.monotonic() + 20
    while not any(e["kind"] == "speaker.first_sample" for e in hardware_log(site.tmp / "unit" / "mock-output")):
        assert time.monotonic() < deadline, "the scheduled item never started"
        time.sleep(0.1)
    time.sleep(1.0)
    sent = time.time()
    site.trust(trust_payload(province_keys(with_b=False), version=6, require=TWO_SIGNATURES), R1, R2)
    assert site.event("trust.accepted")["version"] == 6
    revoked = site.event("trust.revoked", "dak-lak/lak/w49")
    assert revoked["schedules"] == ["dak-lak/lak/w49"] and revoked["version"] == 6
    cut = site.playlog("thoi-su", "interrupted")
    assert "left force" in cut["reason"]
    stopped = [e for e in hardware_log(site.tmp / "unit" / "mock-output") if e["kind"] == "speaker.close"]
    assert stopped and stopped[-1]["t"] - sent < 60  # within one minute of the new trust (here: seconds)
    assert cut["played_s"] < cut["expected_s"] / 2
    refused = site.command("ping", {}, B)
    assert not refused["ok"] and "key-b" in refused["detail"]
    # A new version signed by the same pair is refused, naming the missing role.
    site.schedule(schedule_payload("dak-lak/lak/w49", items=[
        {"id": "thoi-su", "play": ["test-tone"], "at": iso(now() + timedelta(hours=1)), "priority": "normal"}],
        version=2), A, B)
    assert "missing role" in site.event("schedule.rejected", "dak-lak/lak/w49 version 2")["detail"]

    # An emergency by the emergency key plays at no less than emergency_min_volume (80),
    # whatever set_volume said; a stop while it plays needs the emergency role.
    played = site.command("play", {"media": ["test-tone"] * 6, "priority": "emergency"},
                          EMERGENCY)
    assert played["ok"], played
    deadline = time.monotonic() + 15
    while site.status().get("current") is None:
        assert time.monotonic() < deadline, "the emergency never started"
        time.sleep(0.2)
    stop = site.command("stop", {}, OPERATOR)
    assert not stop["ok"] and "emergency needs emergency" in stop["detail"]
    stop = site.command("stop", {}, EMERGENCY)
    assert stop["ok"] and stop["result"]["stopped"], stop
    emergency = site.playlog(played["result"]["item"], "interrupted")
    assert emergency["priority"] == "emergency" and emergency["volume"] == 80
    trust = site.status()["trust"]
    assert (trust["mode"], trust["id"], trust["version"]) == ("trust", "dak-lak", 6)


def test_key_expiry_expired_trust_and_a_reboot_offline(site_factory):
    site = site_factory(roots=(R1,), threshold=1)
    keys = {LAK_EDITOR.name: key_entry(LAK_EDITOR, ["editor"], ["group:dak-lak/lak"],
                                       expires_at=iso(now() + timedelta(seconds=12))),
            A.name: key_entry(A, ["editor"], ["group:dak-lak"]),
            OPERATOR.name: key_entry(OPERATOR, ["operator", "technician"], ["group:dak-lak"])}
    site.trust(trust_payload(keys, version=1, expires_in=timedelta(seconds=14)), R1)
    site.event("trust.accepted")
    site.schedule(schedule_payload("dak-lak/lak/w49"), LAK_EDITOR)
    site.event("schedule.accepted", "dak-lak/lak/w49")
    site.schedule(schedule_payload("dak-lak/w49", targets=("group:dak-lak",)), A, topic=PROVINCE_SCHEDULE)
    site.event("schedule.accepted", "dak-lak/w49")

    # The editor's key expires: its schedule leaves force within a second or so of expiry.
    revoked = site.event("trust.revoked", "dak-lak/lak/w49", timeout=25)
    assert "expired at" in revoked["detail"] and revoked["schedules"] == ["dak-lak/lak/w49"]
    # The trust document itself expires in force: it stays, and health says so.
    site.watch.wait_for(lambda t, p: t.endswith("/health") and "trust.expired" in json.loads(p)["faults"], 15)
    assert site.command("ping", {}, OPERATOR)["ok"]

    # Rebooted with no broker at all: the trust in force is still there.
    site.stop()
    offline = write_unit_config(site.tmp / "unit", unit_id=UNIT, groups=[GROUP],
                                broker_url="mqtt://127.0.0.1:9", trust={},
                                trust_extra=f'root = {{ "{R1.name}" = "{R1.pub}" }}\n', warmup_s=0.2,
                                cooldown_s=0.5)
    proc = UnitProcess(offline, log_path=site.tmp / "offline.log")
    try:
        proc.wait_console("connecting to broker", 30)
        done = run_loaxa("status", "--json", "--config", str(offline))
        status = json.loads(done.stdout)
        assert status["trust"]["mode"] == "trust" and status["trust"]["version"] == 1
        assert "trust.expired" in status["faults"]
        assert [s["id"] for s in status["schedules"]] == ["dak-lak/w49"]  # judged again at start, kept
    finally:
        proc.stop()


def test_legacy_unit_bootstraps_rotates_roots_and_never_falls_back(site_factory):
    legacy = Key("dak-lak-2026")
    site = site_factory(legacy=(legacy,))
    site.schedule(schedule_payload("dak-lak/lak/legacy"), legacy)
    site.event("schedule.accepted", "dak-lak/lak/legacy")
    assert site.command("ping", {}, legacy)["ok"]

    keys = {OPERATOR.name: key_entry(OPERATOR, ["operator", "technician"], ["group:dak-lak"]),
            EMERGENCY.name: key_entry(EMERGENCY, ["emergency"], ["group:dak-lak"]),
            LAK_EDITOR.name: key_entry(LAK_EDITOR, ["editor"], ["group:dak-lak/lak"])}
    first = trust_payload(keys, version=1, root=root_set(R1, R2, threshold=2))
    site.trust(first, R1, R2, retain=False)  # the roots alone cannot bootstrap a legacy unit
    assert "legacy [trust].keys" in site.event("trust.rejected")["detail"]
    site.trust(first, R1, R2, legacy)
    assert site.event("trust.accepted")["version"] == 1
    assert site.event("trust.revoked", "dak-lak/lak/legacy")["schedules"] == ["dak-lak/lak/legacy"]
    refused = site.command("ping", {}, legacy)
    assert not refused["ok"] and "dak-lak-2026" in refused["detail"]
    assert site.command("ping", {}, OPERATOR)["ok"]

    # The amplifier turned down to 0 over its serial link: an emergency raises it to
    # emergency_min_volume (80 -> step 50 of 63) for its duration, then back to 0.
    warm = site.command("play", {"media": ["chime"]}, OPERATOR)  # the link is known once the amp was on
    site.playlog(warm["result"]["item"], "completed")
    turned_down = time.time()
    assert site.command("set_volume", {"volume": 0}, OPERATOR)["ok"]
    alarm = site.command("play", {"media": ["chime"], "priority": "emergency"}, EMERGENCY)
    assert alarm["ok"], alarm
    site.playlog(alarm["result"]["item"], "completed")
    time.sleep(0.5)
    steps = [int(e["args"][0]) for e in hardware_log(site.tmp / "unit" / "mock-output")
             if e["kind"] == "amp" and e["command"] == "VOL" and e["t"] >= turned_down]
    assert 50 in steps and steps[-1] == 0, steps

    site.schedule(schedule_payload("dak-lak/lak/w50"), LAK_EDITOR)
    site.event("schedule.accepted", "dak-lak/lak/w50")

    # The trust store deleted: the legacy key still does not count; nothing new is
    # accepted until the roots' document arrives again (its retained copy here), and
    # what is in force keeps playing.
    site.stop()
    site.publish(PROVINCE_TRUST, b"", retain=True)  # cleared: the unit starts with no trust document
    shutil.rmtree(site.tmp / "unit" / "state" / "trust")
    site.start()
    lost = site.status()
    assert lost["trust"]["mode"] == "lost" and "trust.missing" in lost["faults"]
    assert [s["id"] for s in lost["schedules"]] == ["dak-lak/lak/w50"]
    site.schedule(schedule_payload("dak-lak/lak/legacy-2", version=1), legacy)
    assert "no trust document in force" in site.event("schedule.rejected")["detail"]
    refused = site.command("ping", {}, legacy)
    assert not refused["ok"]
    site.trust(first, R1, R2, legacy)
    assert site.event("trust.accepted")["version"] == 1
    assert site.status()["trust"]["mode"] == "trust"
    assert not site.command("ping", {}, legacy)["ok"]

    # Root rotation: the new roots need the old threshold (2 of R1, R2) and their own.
    rotation = trust_payload(keys, version=2, root=root_set(R3, R4, threshold=2))
    site.trust(rotation, R1, R3, R4, retain=False)
    assert "root keys in force" in site.event("trust.rejected")["detail"]
    site.trust(rotation, R1, R2, R3, R4)
    assert site.event("trust.accepted")["version"] == 2
    # From now on only the new roots sign trust.
    site.trust(trust_payload(keys, version=3), R1, R2, retain=False)
    site.event("trust.rejected", "root keys in force")
    site.trust(trust_payload(keys, version=3), R3, R4)
    assert site.event("trust.accepted")["version"] == 3

    # Persisted roots win over the config: restarted with a stale config naming the old
    # roots, the unit still wants the new ones.
    site.stop()
    write_unit_config(site.tmp / "unit", unit_id=UNIT, groups=[GROUP], broker_url=site.broker.url,
                      trust={legacy.name: legacy.pub}, warmup_s=0.2, cooldown_s=0.5,
                      trust_extra=f'root = {{ "{R1.name}" = "{R1.pub}", "{R2.name}" = "{R2.pub}" }}\n'
                                  "root_threshold = 2\n")
    site.start()
    assert site.status()["trust"]["version"] == 3
    site.trust(trust_payload(keys, version=4), R1, R2, legacy, retain=False)
    assert "root keys in force" in site.event("trust.rejected")["detail"]
    site.trust(trust_payload(keys, version=4), R3, R4)
    assert site.event("trust.accepted")["version"] == 4
