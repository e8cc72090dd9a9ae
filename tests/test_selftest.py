"""`loaxa selftest` and `run_selftest` on mock hardware: every check passing against a real
broker, each part failing the way it fails in the field, and SPEC's --json shape."""

import json
from pathlib import Path

import pytest

from device.selftest import CHECKS, run_selftest
from hw import MockHardware, UnitHardware
from loaxa.commands.selftest import table
from provisioning import parse_config
from tests.support.unit import run_loaxa

KEYS = {"name", "ok", "required", "detail"}


@pytest.fixture(autouse=True)
def english():
    """Details are asserted in English; the unit's default language is Vietnamese."""
    from loaxa.i18n import current_language, set_language

    before = current_language()
    set_language("en")
    yield
    set_language(before)


def unit_config(tmp_path, broker_url, **tables):
    data = {"unit": {"id": "selftest-01", "state_dir": str(tmp_path / "state")},
            "broker": {"url": broker_url},
            "hardware": {"mode": "mock", "mock_output_dir": str(tmp_path / "out"), "mock_speed": 30.0},
            "amplifier": {"warmup_s": 0.1}}
    for table_name, values in tables.items():
        data.setdefault(table_name, {}).update(values)
    return parse_config(data, base_dir=tmp_path)


def write_config(tmp_path, broker_url) -> str:
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "unit.toml"
    path.write_text(f"""
[unit]
id = "selftest-01"
state_dir = "{tmp_path / 'state'}"
[broker]
url = "{broker_url}"
[hardware]
mode = "mock"
mock_output_dir = "{tmp_path / 'out'}"
mock_speed = 30.0
[amplifier]
warmup_s = 0.1
""")
    return str(path)


@pytest.fixture
def unit_hw(tmp_path, request):
    """The unit's mock hardware with quick simulators; run_selftest leaves it open."""
    cfg = unit_config(tmp_path, "mqtt://127.0.0.1:1")
    factory = MockHardware(cfg.hardware.mock_output_dir, speed=30.0, amp_boot_s=0.05,
                           gps_interval_s=0.05)
    hardware = UnitHardware(cfg, factory, gps_lost_after_s=0.3)
    yield hardware
    hardware.close()
    factory.close()


def by_name(result):
    return {c["name"]: c for c in result["checks"]}


def assert_spec_shape(result):
    assert set(result) == {"ok", "checks"} and isinstance(result["ok"], bool)
    for check in result["checks"]:
        assert set(check) == KEYS
        assert check["name"] in CHECKS
        assert isinstance(check["ok"], bool) and isinstance(check["required"], bool)
        assert isinstance(check["detail"], str) and check["detail"] and "\n" not in check["detail"]


def test_everything_passes_on_a_healthy_mock_unit(tmp_path, broker, unit_hw):
    cfg = unit_config(tmp_path, broker.url)
    result = run_selftest(cfg, unit_hw, click_s=0.01, gps_wait_s=5)
    assert_spec_shape(result)
    assert [c["name"] for c in result["checks"]] == list(CHECKS)
    assert result["ok"], result
    checks = by_name(result)
    assert all(c["required"] for c in result["checks"])  # the mock has GPS and modem fitted
    assert "zone1, zone2" in checks["gpio"]["detail"]
    assert "LXA-PA350" in checks["amplifier"]["detail"]
    assert checks["audio"]["detail"].startswith("3.0 s test tone")
    assert "fix" in checks["gps"]["detail"] and "Viettel" in checks["modem"]["detail"]
    assert "login accepted" in checks["broker"]["detail"]
    # The tone went through the speaker with the amplifier on and unmuted, then all off.
    timeline = unit_hw.factory.timeline
    assert [e["file"] for e in timeline.events("speaker.close")] == ["selftest-test-tone.wav"]
    assert not unit_hw.amp_power.is_on and unit_hw.mute.is_on
    assert [e["role"] for e in timeline.events("relay")][:6] == [
        "mute", "mute", "mute", "zone1", "zone1", "zone2"]  # the clicks, amplifier still off


def test_each_part_failing(tmp_path, unit_hw):
    sims = unit_hw.factory.simulators
    sims["amplifier"].fail("protect", cause="short")
    sims["gps"].fail("lost")
    sims["modem"].fail("no_signal")
    unit_hw.probes.set(disk_free_mb=50.0)
    cfg = unit_config(tmp_path, "mqtt://127.0.0.1:1", clock={"trust": "auto"})
    result = run_selftest(cfg, unit_hw, click_s=0.01, gps_wait_s=0.3, broker_timeout_s=1)
    assert_spec_shape(result)
    checks = by_name(result)
    assert not result["ok"]
    assert {name for name, c in checks.items() if not c["ok"]} == {
        "amplifier", "audio", "gps", "modem", "broker", "clock", "disk"}
    assert checks["gpio"]["ok"]
    assert "in protect: short" in checks["amplifier"]["detail"]
    assert "amplifier check failed" in checks["audio"]["detail"]
    assert "no fix yet (0 satellites); move to open sky" in checks["gps"]["detail"]
    assert checks["modem"]["detail"] == "no signal, searching for a network"
    assert "cannot reach mqtt://127.0.0.1:1" in checks["broker"]["detail"]
    assert "not confirmed" in checks["clock"]["detail"]
    assert "needs at least 200 MB" in checks["disk"]["detail"]
    assert unit_hw.factory.timeline.events("speaker.open") == []  # no tone into a faulty amplifier
    assert not unit_hw.amp_power.is_on


def test_a_pi_unit_without_gps_or_modem_does_not_require_them(tmp_path, unit_hw):
    unit_hw.gps, unit_hw.modem = None, None  # as PiHardware gives a unit without those ports
    cfg = unit_config(tmp_path, "mqtt://127.0.0.1:1")
    result = run_selftest(cfg, unit_hw, click_s=0.01,
                          broker_check=lambda: (True, "connected (daemon's link)"))
    checks = by_name(result)
    assert checks["gps"] == {"name": "gps", "ok": True, "required": False, "detail": "not fitted"}
    assert checks["modem"]["required"] is False
    assert checks["broker"]["detail"] == "connected (daemon's link)"
    assert result["ok"]
    without = run_selftest(cfg, unit_hw, click_s=0.01, broker_check=False)
    assert "broker" not in by_name(without)


def test_an_unplugged_amplifier_fails_in_one_line(tmp_path, unit_hw):
    unit_hw.factory.simulators["amplifier"].unplug()
    cfg = unit_config(tmp_path, "mqtt://127.0.0.1:1")
    checks = by_name(run_selftest(cfg, unit_hw, click_s=0.01, broker_check=False, gps_wait_s=2))
    assert not checks["amplifier"]["ok"] and "tty-amplifier" in checks["amplifier"]["detail"]
    assert not checks["audio"]["ok"]


@pytest.mark.parametrize("language", ["vi", "en"])
def test_the_table_lines_up(language):
    from loaxa.i18n import set_language

    set_language(language)
    details = ("rơ-le mute, zone1 đã đóng cắt", "chưa có định vị", "không kết nối được")
    result = {"ok": False, "checks": [
        {"name": "gpio", "ok": True, "required": True, "detail": details[0]},
        {"name": "gps", "ok": False, "required": False, "detail": details[1]},
        {"name": "broker", "ok": False, "required": True, "detail": details[2]}]}
    lines = table(result).splitlines()
    starts = {line.rindex(detail) for line, detail in zip(lines[2:5], details)}
    assert len(starts) == 1  # every detail starts in the same column
    assert len(lines) == 7 and lines[5] == ""
    if language == "en":
        assert lines[-1] == "1 required check(s) FAILED."


def test_cli_json_shape(tmp_path, broker):
    done = run_loaxa("selftest", "--config", write_config(tmp_path, broker.url), "--json", timeout=90)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)  # stdout is the JSON document and nothing else
    assert_spec_shape(result)
    assert result["ok"] is True and [c["name"] for c in result["checks"]] == list(CHECKS)


def test_cli_table_and_exit_code(tmp_path, capsys):
    from loaxa.cli import main

    assert main(["selftest", "--config", write_config(tmp_path, "mqtt://127.0.0.1:1")]) == 1
    out = capsys.readouterr().out
    assert out.startswith("Self-test of unit selftest-01 (mock hardware)")
    assert any(line.startswith("Broker") and "FAILED" in line for line in out.splitlines())
    assert out.rstrip().endswith("1 required check(s) FAILED.")


def test_cli_usage(capsys):
    from loaxa.cli import main

    assert main(["selftest", "--help"]) == 0
    assert "--json" in capsys.readouterr().out
    assert main(["selftest", "--bogus"]) == 2
    capsys.readouterr()
    assert main(["selftest", "--config", "/nonexistent/unit.toml"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("loaxa: error:") and err.count("\n") == 1


def test_hardware_held_by_someone_else_fails_the_hardware_checks_only(tmp_path):
    cfg = unit_config(tmp_path, "mqtt://127.0.0.1:1")
    with MockHardware(cfg.hardware.mock_output_dir) as factory:
        factory.relay("amp_power", 17)  # as a daemon holding its lines would
        result = run_selftest(cfg, factory, broker_check=lambda: (True, "link up"))
    assert_spec_shape(result)
    checks = by_name(result)
    assert [c["name"] for c in result["checks"]] == list(CHECKS)
    assert "cannot open the unit's hardware" in checks["gpio"]["detail"]
    assert "GPIO17" in checks["gpio"]["detail"]
    assert not checks["amplifier"]["ok"] and not checks["gps"]["required"]
    assert checks["broker"]["ok"] and checks["clock"]["ok"] and checks["disk"]["ok"]
    assert result["ok"] is False


VIETNAMESE_LETTERS = "ăâđêôơưáàảãạấầẩẫậắằẳẵặéèẻẽẹếềểễệíìỉĩịóòỏõọốồổỗộớờởỡợúùủũụứừửữựýỳỷỹỵ"


def test_the_daemon_answers_in_the_language_of_whoever_asks(tmp_path, broker):
    """`LOAXA_LANG=en loaxa selftest` beside a daemon running in Vietnamese: English details,
    not the daemon's Vietnamese ones (and the other way round)."""
    import os

    from tests.support.unit import UnitProcess

    config = write_config(tmp_path, broker.url)
    env = {k: v for k, v in os.environ.items() if k not in ("LOAXA_LANG", "LOAXA_DEBUG", "LOAXA_CONFIG")}
    unit = UnitProcess(Path(config), env=env | {"LOAXA_LANG": "vi"})
    try:
        unit.wait_console("control socket at")
        english = run_loaxa("selftest", "--config", config, timeout=90, env=env | {"LOAXA_LANG": "en"})
        vietnamese = run_loaxa("selftest", "--config", config, timeout=90, env=env | {"LOAXA_LANG": "vi"})
    finally:
        unit.stop()
    assert english.returncode == 0, english.stdout + english.stderr
    assert "clicked on and off" in english.stdout and "All required checks passed." in english.stdout
    assert not set(english.stdout.lower()) & set(VIETNAMESE_LETTERS), english.stdout
    assert vietnamese.returncode == 0
    assert "clicked on and off" not in vietnamese.stdout
    assert set(vietnamese.stdout.lower()) & set(VIETNAMESE_LETTERS)
