"""`loaxa run` with no config: the built-in demo, as a newcomer meets it."""

import hashlib
import json
import os
import socket
import sqlite3
import time
from datetime import timedelta
from pathlib import Path

import pytest

from device.demo import EVERY_S, FIRST_PLAY_AFTER_S
from loaxa.brokerurl import parse_broker_url
from tests.support.unit import UnitProcess, hardware_log, run_loaxa, wait_until

pytestmark = pytest.mark.skipif(Path("/etc/loaxa/config.toml").exists(),
                                reason="this machine has a real unit config; the demo would not run")


def demo_env(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "LOAXA_CONFIG"}
    env.update(XDG_STATE_HOME=str(tmp_path / "state"), HOME=str(tmp_path))
    return env


def test_demo_sounds_within_30_seconds_and_stops_cleanly(tmp_path):
    started = time.time()
    unit = UnitProcess(None, env=demo_env(tmp_path), log_path=tmp_path / "console.log")
    output = tmp_path / "state" / "loaxa-demo" / "mock-output"
    try:
        first = wait_until(lambda: [e for e in hardware_log(output) if e["kind"] == "speaker.first_sample"],
                           35, what="the demo's first sample")[0]
        assert 10.0 <= first["t"] - started <= 30.0  # the demo's first item, not one played late
        unit.wait_console("playing")
        time.sleep(1.0)
    finally:
        code = unit.stop()
    assert code == 0, unit.console()
    console = unit.console()
    assert "demo" in console and "amplifier on" in console and "Traceback" not in console
    wavs = list(output.glob("*_demo-*.wav"))
    assert len(wavs) == 1 and wavs[0].stat().st_size > 48000 * 2  # over a second of sound
    # Stopped mid-bulletin: the proof of play says so, kept for the broker.
    outbox = sqlite3.connect(tmp_path / "state" / "loaxa-demo" / "outbox.sqlite")
    payloads = [row[0] for row in outbox.execute("SELECT payload FROM outbox WHERE kind='playlog'")]
    assert len(payloads) == 1 and b'"outcome":"interrupted"' in payloads[0]
    relays = [e for e in hardware_log(output) if e["kind"] == "relay" and e["role"] == "amp_power"]
    assert relays[-1]["on"] is False  # the amplifier is left off


def test_missing_config_is_an_error_not_the_demo(tmp_path):
    result = run_loaxa("run", "--config", str(tmp_path / "nope.toml"), env=demo_env(tmp_path))
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "nope.toml" in result.stderr
    assert not (tmp_path / "state" / "loaxa-demo").exists()


def test_a_bad_LOAXA_DEMO_BROKER_is_one_line_naming_it(tmp_path):
    result = run_loaxa("run", env=dict(demo_env(tmp_path), LOAXA_DEMO_BROKER="http://127.0.0.1:1883"))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("loaxa: error: LOAXA_DEMO_BROKER: ")
    assert not (tmp_path / "state" / "loaxa-demo").exists()


def test_unparsable_config_is_an_error_not_the_demo(tmp_path):
    bad = tmp_path / "unit.toml"
    bad.write_text("[unit\nid = 3\n")
    result = run_loaxa("run", "--config", str(bad), env=demo_env(tmp_path))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert not (tmp_path / "state" / "loaxa-demo").exists()


def test_the_demo_schedule_has_nothing_the_unit_would_play_late():
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from device.demo import demo_schedule
    tz = ZoneInfo("Asia/Ho_Chi_Minh")
    now = datetime(2026, 11, 26, 16, 4, 46, tzinfo=tz)
    doc = json.loads(demo_schedule("demo-unit", tz, now, "0" * 64, 1, lateness_s=600.0))
    ages = []
    for item in doc["items"]:
        today = datetime.combine(now.date(), datetime.strptime(item["at"], "%H:%M:%S").time(), tz)
        ages.append((now - today).total_seconds() % 86400)  # how long ago it last fell due
    assert min(86400 - a for a in ages) == FIRST_PLAY_AFTER_S  # the first play, 20 s from now
    assert all(age > 600 for age in ages)  # none fell due within the lateness window
    assert len(doc["items"]) == 86400 // EVERY_S - 2  # the two inside the lateness window left out
    assert (now + timedelta(seconds=FIRST_PLAY_AFTER_S)).strftime("%H:%M:%S") in {i["at"] for i in doc["items"]}


def store_previous_demo_run(env, started_at: float) -> dict:
    """The state a demo started at `started_at` (a Unix time) and since stopped leaves: its
    signed schedule, in force in the unit's store, as the demo's own start installed it.
    Returns that schedule."""
    from datetime import datetime, timezone
    from zoneinfo import ZoneInfo

    from audio import DEMO_BULLETIN
    from device.demo import build_demo_config, demo_key, demo_schedule
    from scheduler import ScheduleStore, load_trusted_keys, sign_document

    cfg = build_demo_config(env)
    tz = ZoneInfo(cfg.unit.timezone)
    data = DEMO_BULLETIN.read_bytes()
    then = datetime.fromtimestamp(started_at, timezone.utc)
    text = demo_schedule(cfg.unit.id, tz, then, hashlib.sha256(data).hexdigest(), len(data),
                         lateness_s=cfg.unit.lateness_s)
    name, key = demo_key(cfg.unit.state_dir)
    offer = ScheduleStore(cfg.unit.state_dir / "schedules").offer(
        f"{cfg.broker.topic_prefix}/unit/{cfg.unit.id}/schedule", sign_document(text, key, name),
        trusted=load_trusted_keys(cfg.trust.keys), unit_id=cfg.unit.id, groups=cfg.unit.groups,
        prefix=cfg.broker.topic_prefix, quiet_hours=cfg.unit.quiet_hours, unit_tz=tz)
    assert offer.status == "accepted"
    return json.loads(text)


def item_at(doc: dict, moment: float) -> str:
    """The id of the demo item whose time of day is `moment` (a Unix time), to the second."""
    from datetime import datetime, timezone
    from zoneinfo import ZoneInfo

    at = datetime.fromtimestamp(int(moment), timezone.utc).astimezone(ZoneInfo(doc["timezone"]))
    return f"demo-{at:%H%M%S}"


def speaker_starts(output: Path) -> list[dict]:
    return [e for e in hardware_log(output) if e["kind"] == "speaker.first_sample"]


def test_a_restarted_demo_starts_like_a_fresh_one(tmp_path):
    """The previous run's schedule (started 7 minutes ago: two of its plays fell due since)
    is in the state folder; the restarted demo still plays first ~20 s after start, once."""
    env = demo_env(tmp_path)
    before = time.time() - 7 * 60
    previous = store_previous_demo_run(env, started_at=before)
    # Its plays that fell due since, 400 s and 100 s ago: within the lateness limit.
    late = [item_at(previous, before + FIRST_PLAY_AFTER_S + k * EVERY_S) for k in (0, 1)]
    started = time.time()
    unit = UnitProcess(None, env=env, log_path=tmp_path / "console.log")
    output = tmp_path / "state" / "loaxa-demo" / "mock-output"
    try:
        first = wait_until(lambda: speaker_starts(output), 35, what="the demo's first sample")[0]
        assert 10.0 <= first["t"] - started <= 30.0, unit.console()  # not the last run's, at once
        unit.wait_console("playing demo-")
    finally:
        unit.stop()
    console = unit.console()
    assert "Traceback" not in console
    # Neither of the last run's late plays was handed to the player, played or skipped:
    # nothing queued behind this first bulletin.
    assert not [item for item in late if item in console], console


def test_a_demo_restarted_with_the_clock_set_back_still_replaces_its_schedule(tmp_path):
    """Two starts in one second, or a clock set back between them: this start's schedule
    still replaces the last one (a version not above it would be refused, the old kept)."""
    from datetime import datetime, timezone

    from device.demo import build_demo_config, prepare_demo
    from scheduler import ScheduleStore, next_occurrence
    from tests.support.clock import ManualClock

    cfg = build_demo_config(demo_env(tmp_path))
    start = datetime(2026, 11, 26, 9, 0, 0, tzinfo=timezone.utc)
    for clock in (ManualClock(start), ManualClock(start), ManualClock(start - timedelta(hours=2))):
        prepare_demo(cfg, clock)
        in_force = ScheduleStore(cfg.unit.state_dir / "schedules").in_force()
        assert next_occurrence(in_force, clock.now()).at == clock.now() + timedelta(seconds=FIRST_PLAY_AFTER_S)


def test_two_demos_on_one_broker_never_knock_each_other_off(tmp_path, broker):
    """Each reports to the broker LOAXA_DEMO_BROKER names, under a client id of its own
    (one per state folder): a test's demo beside a user's, or two users', get along."""
    units = [UnitProcess(None, env=dict(demo_env(tmp_path / name), LOAXA_DEMO_BROKER=broker.url),
                         log_path=tmp_path / f"{name}.log") for name in ("one", "two")]
    watcher = broker.collector("loaxa/unit/+/state")

    def online() -> set:
        return {topic for topic, payload, _ in list(watcher.messages) if b'"online"' in payload}

    try:
        wait_until(lambda: len(online()) == 2, 20, what="both demos online, each under its own id")
        time.sleep(2.0)  # long enough for a knocked-off client to come back and knock the other
    finally:
        for unit in units:
            unit.stop()
        watcher.close()
    assert "already connected" not in broker.log_path.read_text()
    for unit in units:
        assert f"connecting to broker {broker.url}" in unit.console()
        assert "lost the broker" not in unit.console(), unit.console()


def test_the_suite_never_points_a_demo_at_1883(tmp_path):
    """A demo started with the environment every test inherits (conftest.py) reports to a
    port the suite holds, never to 127.0.0.1:1883 (a developer's own broker and fleet).
    When 1883 is free here, a listener on it proves no connection arrives there."""
    from device.demo import build_demo_config

    assert parse_broker_url(build_demo_config(os.environ).broker.url).port != 1883
    guard = socket.socket()
    guard.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        guard.bind(("127.0.0.1", 1883))
        guard.listen(8)
        guard.setblocking(False)
    except OSError:  # a broker of the developer's own is on 1883: the console line below still tells
        guard.close()
        guard = None
    unit = UnitProcess(None, env=demo_env(tmp_path), log_path=tmp_path / "console.log")
    try:
        unit.wait_console("not reachable")  # it tried its broker, and found none
    finally:
        unit.stop()
        if guard is not None:
            try:
                connection, _ = guard.accept()
                connection.close()
                reached_1883 = True
            except BlockingIOError:
                reached_1883 = False
            guard.close()
            assert not reached_1883
    assert f"connecting to broker {os.environ['LOAXA_DEMO_BROKER']}" in unit.console()


# ---- the documented fault example (issue 11, item 14) ----

def _documented_fault_plans():
    import re
    root = Path(__file__).resolve().parents[1]
    for doc in ("README.md", "docs/hardware.md"):
        for plan in re.findall(r'LOAXA_MOCK_FAULTS="([^"]+)"', (root / doc).read_text(encoding="utf-8")):
            yield doc, plan


@pytest.mark.parametrize("doc, plan", list(_documented_fault_plans()))
def test_the_documented_amplifier_fault_lands_while_the_demo_plays(doc, plan):
    """`amplifier:protect=short@60` landed after the first bulletin, with the amplifier off,
    and was cleared at 120 before the next: the demo showed nothing."""
    from audio import DEMO_BULLETIN, duration_s
    from device.demo import EVERY_S, FIRST_PLAY_AFTER_S
    from hw.mock import parse_fault_plan
    steps = parse_fault_plan(plan)
    protect = [s["after_s"] for s in steps if s["part"] == "amplifier" and s["action"] == "protect"]
    clear = [s["after_s"] for s in steps if s["part"] == "amplifier" and s["action"] == "clear"]
    on_air = (FIRST_PLAY_AFTER_S + 3, FIRST_PLAY_AFTER_S + duration_s(DEMO_BULLETIN) - 3)  # with a margin
    assert protect and on_air[0] <= protect[0] <= on_air[1], (doc, plan, on_air)
    assert not clear or protect[0] < clear[0] < FIRST_PLAY_AFTER_S + EVERY_S, (doc, plan)
