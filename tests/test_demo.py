"""`loaxa run` with no config: the built-in demo, as a newcomer meets it."""

import os
import sqlite3
import time
from pathlib import Path

import pytest

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


def test_unparsable_config_is_an_error_not_the_demo(tmp_path):
    bad = tmp_path / "unit.toml"
    bad.write_text("[unit\nid = 3\n")
    result = run_loaxa("run", "--config", str(bad), env=demo_env(tmp_path))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert not (tmp_path / "state" / "loaxa-demo").exists()


def test_the_demo_schedule_has_nothing_the_unit_would_play_late():
    import json
    from datetime import datetime, timedelta
    from zoneinfo import ZoneInfo

    from device.demo import EVERY_S, FIRST_PLAY_AFTER_S, demo_schedule
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
