"""`loaxa provision --non-interactive`: the files it writes, and that the unit runs with them.

Through the real program in a subprocess, as a scripted install runs it.
"""

import base64
import json
import os
import re
import stat
import tomllib

import pytest

from loaxa.errors import ConfigError
from provisioning import load_config, read_password
from provisioning.config import PI_STATE_DIR
from provisioning.mosquitto import check_password_line, password_line
from provisioning.writer import UnitPlan, check_plan, config_tables, gpio_roles, write_unit
from tests.support.broker import Broker, Collector, free_port
from tests.support.unit import UnitProcess, run_loaxa

UNIT = "dl-lak-bongkrang-01"
GROUP = "dak-lak/lak/bong-krang"
PUB = base64.b64encode(bytes(range(32))).decode()


def loaxa(*args, lang="en"):
    return run_loaxa(*args, env={**os.environ, "LOAXA_LANG": lang})


def provision_args(out, *extra, unit=UNIT, broker="mqtt://127.0.0.1:1883", mode="mock"):
    return ["provision", "--non-interactive", "--unit-id", unit, "--group", GROUP, "--group",
            "dak-lak/doi-tin-1", "--broker", broker, "--trust-key", f"dak-lak-2026={PUB}",
            "--mode", mode, "--out", str(out), "--no-selftest", *extra]


def test_writes_every_file(tmp_path):
    out = tmp_path / "etc" / "loaxa"
    result = loaxa(*provision_args(out))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    config = out / "config.toml"
    data = tomllib.loads(config.read_text())
    assert data["unit"]["id"] == UNIT and data["unit"]["groups"] == [GROUP, "dak-lak/doi-tin-1"]
    assert data["broker"]["password_file"] == str(out / "broker.pass")
    assert data["unit"]["state_dir"] == str(out / "state")
    assert data["trust"]["keys"] == {"dak-lak-2026": PUB}
    assert all(os.path.isabs(data[t][k]) for t, k in (("broker", "password_file"), ("unit", "state_dir")))
    assert (out / "state").is_dir()
    password = (out / "broker.pass").read_text()
    assert password.endswith("\n") and len(password.strip()) >= 32
    assert stat.S_IMODE((out / "broker.pass").stat().st_mode) == 0o600
    assert stat.S_IMODE((out / "mosquitto.passwd").stat().st_mode) == 0o600
    assert check_password_line((out / "mosquitto.passwd").read_text(), UNIT, password.strip())
    assert f"user {UNIT}" in (out / "mosquitto.acl").read_text().splitlines()
    assert not list(out.glob(".*.tmp"))  # atomic writes leave no temporaries
    for path in (config, out / "broker.pass", out / "mosquitto.passwd", out / "mosquitto.acl", out / "state"):
        assert str(path) in result.stdout
    assert "Self-test" in result.stdout and "Next steps" in result.stdout


def test_config_is_accepted_by_check_and_load_config(tmp_path):
    out = tmp_path / "unit"
    assert loaxa(*provision_args(out)).returncode == 0
    check = loaxa("config", "check", "--config", str(out / "config.toml"))
    assert check.returncode == 0, check.stderr
    assert check.stdout.startswith(f"config OK: {out / 'config.toml'}")
    cfg = load_config(out / "config.toml")
    assert cfg.unit.id == UNIT and cfg.broker.username == UNIT and cfg.hardware.mode == "mock"
    assert read_password(cfg) == (out / "broker.pass").read_text().strip()
    shown = loaxa("config", "show", "--config", str(out / "config.toml"))
    assert shown.returncode == 0 and read_password(cfg) not in shown.stdout


def test_rerun_keeps_the_password(tmp_path):
    out = tmp_path / "unit"
    assert loaxa(*provision_args(out)).returncode == 0
    first = (out / "broker.pass").read_text()
    result = loaxa(*provision_args(out), "--json")
    assert result.returncode == 0
    assert json.loads(result.stdout)["password"] == "kept"
    assert (out / "broker.pass").read_text() == first


def test_password_file_is_used_as_given(tmp_path):
    given = tmp_path / "given.pass"
    given.write_text("from-the-admin\n")
    out = tmp_path / "unit"
    result = loaxa(*provision_args(out, "--password-file", str(given), "--json"))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["password"] == "file" and report["password_file"] == str(given)
    assert not (out / "broker.pass").exists()
    assert load_config(out / "config.toml").broker.password_file == given
    assert check_password_line((out / "mosquitto.passwd").read_text(), UNIT, "from-the-admin")


def test_more_settings(tmp_path):
    out, state = tmp_path / "unit", tmp_path / "var-lib"
    ca = tmp_path / "ca.crt"
    ca.write_text("not checked here\n")
    result = loaxa(*provision_args(out, "--topic-prefix", "prov/daklak", "--timezone", "Asia/Bangkok",
                                   "--state-dir", str(state), "--username", "daklak-unit-1",
                                   "--ca-file", str(ca), "--amp-port", "loop://", "--gps-port",
                                   "socket://127.0.0.1:9", broker="mqtts://127.0.0.1:8883"))
    assert result.returncode == 0, result.stderr
    cfg = load_config(out / "config.toml")
    assert (cfg.broker.topic_prefix, cfg.unit.timezone, cfg.unit.state_dir) == ("prov/daklak", "Asia/Bangkok", state)
    assert (cfg.broker.username, cfg.broker.ca_file) == ("daklak-unit-1", ca)
    assert (cfg.amplifier.port, cfg.gps.port, cfg.modem.port) == ("loop://", "socket://127.0.0.1:9", None)
    acl = (out / "mosquitto.acl").read_text()
    assert "user daklak-unit-1\n" in acl and f"topic write prov/daklak/unit/{UNIT}/state\n" in acl
    assert (out / "mosquitto.passwd").read_text().startswith("daklak-unit-1:$7$")


def test_trust_key_from_a_pub_file(tmp_path):
    pub = tmp_path / "quang-nam-2027.pub"
    pub.write_text(PUB + "\n")
    args = provision_args(tmp_path / "unit")
    args[args.index(f"dak-lak-2026={PUB}")] = str(pub)
    assert loaxa(*args).returncode == 0
    assert load_config(tmp_path / "unit" / "config.toml").trust.keys == {"quang-nam-2027": PUB}


def test_bad_values_are_usage_errors_naming_the_flag(tmp_path):
    args = ["provision", "--non-interactive", "--unit-id", "Bad_ID", "--group", "Đắk Lắk", "--broker",
            "http://x", "--trust-key", "k=notbase64", "--mode", "pi", "--out", str(tmp_path / "u"),
            "--amp-port", "/dev/no-such-port"]
    result = loaxa(*args)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert all(line.startswith("loaxa: error: ") for line in lines), lines
    for flag in ("--unit-id (unit.id)", "--group (unit.groups[0])", "--broker (broker.url)",
                 "--trust-key (trust.keys.k)", "--amp-port"):
        assert any(flag in line for line in lines), (flag, lines)
    assert "Traceback" not in result.stderr and not (tmp_path / "u").exists()


def test_missing_flags_are_named(tmp_path):
    result = loaxa("provision", "--non-interactive", "--unit-id", UNIT)
    assert result.returncode == 2
    assert result.stderr.strip() == ("loaxa: error: --non-interactive needs --group, --broker, "
                                     "--trust-key, --mode, --out")


def test_errors_in_vietnamese_by_default(tmp_path):
    environ = {k: v for k, v in os.environ.items() if k not in ("LOAXA_LANG", "LC_ALL", "LC_MESSAGES")}
    result = run_loaxa("provision", "--non-interactive", "--unit-id", "X", env={**environ, "LANG": "C.UTF-8"})
    assert result.returncode == 2
    assert "cần có" in result.stderr  # "--non-interactive cần có --group, ..."


def test_pi_mode_defaults(tmp_path):
    plan = UnitPlan(unit_id=UNIT, groups=[GROUP], broker_url="mqtt://h", mode="pi", out_dir=tmp_path,
                    trust_keys={"k": PUB})
    tables = config_tables(plan)
    assert tables["unit"]["state_dir"] == str(PI_STATE_DIR)
    assert "amplifier" not in tables and "gps" not in tables   # no port: relay-only, absent
    expected = {"amp_power": 17, "mute": 27, "zones": [22, 23], "fault": 24, "status_led": 25}
    assert {role: tables["gpio"][role] for role in expected} == expected   # the pin map in full
    assert list(tables["gpio"]) == gpio_roles() and "active_low" not in tables["gpio"]
    assert check_plan(plan) == []


def test_write_unit_refuses_a_clash_before_writing(tmp_path):
    plan = UnitPlan(unit_id=UNIT, groups=[GROUP], broker_url="mqtt://h", mode="mock", out_dir=tmp_path / "o",
                    gpio={"mute": 17})
    assert check_plan(plan) == ["gpio.mute: pin 17 is already used by gpio.amp_power"]
    written = write_unit(UnitPlan(unit_id=UNIT, groups=[GROUP], broker_url="mqtt://h", mode="mock",
                                  out_dir=tmp_path / "ok", password="typed-pw"))
    assert written.password_origin == "given"
    assert written.password_file.read_text() == "typed-pw\n"


def test_unwritable_out_is_one_clear_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = loaxa(*provision_args(blocker / "sub"))
    assert result.returncode == 1
    assert result.stderr.startswith("loaxa: error: ") and "Traceback" not in result.stderr


# ---------------------------------------------------------------- the unit runs with it

def test_unit_runs_and_connects_with_its_credentials(tmp_path):
    """The whole chain: provision, load the admin's files into mosquitto, run the unit."""
    out, port = tmp_path / "unit", free_port()
    result = loaxa(*provision_args(out, broker=f"mqtt://127.0.0.1:{port}"))
    assert result.returncode == 0, result.stderr
    passwd, acl = tmp_path / "passwd", tmp_path / "acl"
    passwd.write_text((out / "mosquitto.passwd").read_text() + password_line("admin", "admin-pw") + "\n")
    acl.write_text((out / "mosquitto.acl").read_text() + "user admin\ntopic readwrite #\n")
    broker = Broker(tmp_path / "broker", f"password_file {passwd}\nacl_file {acl}", port=port).start()
    watcher = Collector(broker, [f"loaxa/unit/{UNIT}/state"], "admin", "admin-pw")
    unit = UnitProcess(out / "config.toml", env={**os.environ, "LOAXA_LANG": "en"}, log_path=tmp_path / "unit.log")
    try:
        unit.wait_console("connected to broker", timeout=30)
        watcher.wait_for(lambda t, p: json.loads(p)["state"] == "online", timeout=20)
        assert unit.stop() == 0
        watcher.wait_for(lambda t, p: json.loads(p)["state"] == "offline", timeout=20)
        assert "refused" not in unit.console()
    finally:
        unit.stop()
        watcher.close()
        broker.stop()


def test_config_errors_name_key_and_line(tmp_path):
    out = tmp_path / "unit"
    assert loaxa(*provision_args(out)).returncode == 0
    config = out / "config.toml"
    text = config.read_text().replace('mode = "mock"', 'mode = "mok"\nspeed = 3')
    config.write_text(text)
    lines = text.splitlines()
    mode_line = lines.index('mode = "mok"') + 1
    with pytest.raises(ConfigError) as caught:
        load_config(config)
    assert f"hardware.mode (line {mode_line}): must be one of 'pi', 'mock', got 'mok' (did you mean 'mock'?)" \
        in caught.value.errors
    assert f"hardware.speed (line {mode_line + 1}): unknown key" in " ".join(caught.value.errors)
    result = loaxa("config", "check", "--config", str(config), lang="vi")
    assert result.returncode == 1
    assert f"hardware.mode (dòng {mode_line}): " in result.stderr
    assert "có phải ý bạn là 'mock'?" in result.stderr
    (out / "broker.pass").unlink()
    password_line = [n for n, line in enumerate(lines, 1) if line.startswith("password_file = ")][0]
    with pytest.raises(ConfigError) as caught:
        load_config(config)
    assert f"broker.password_file (line {password_line}): {out / 'broker.pass'}: no such file" in caught.value.errors


def test_ends_with_the_self_test(tmp_path, broker):
    """With device/selftest.py installed its result is part of the report; without, it says so."""
    args = [a for a in provision_args(tmp_path / "unit", broker=broker.url) if a != "--no-selftest"]
    result = loaxa(*args, "--check-broker", lang="vi")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Kiểm tra máy chủ MQTT: đã kết nối, đăng nhập thành công" in out   # any login: an anonymous broker
    if "chưa có chức năng tự kiểm tra" in out:
        pytest.skip("device/selftest.py not in this tree")
    assert "Tự kiểm tra: mọi mục bắt buộc đều đạt." in out, out
    assert re.search(r"^  \[ĐẠT\] máy chủ MQTT: ", out, re.M) and re.search(r"^  \[ĐẠT\] rơ-le GPIO: ", out, re.M)
    assert out.index("Tự kiểm tra") < out.index("Các bước tiếp theo:")


# ---------------------------------------------------------------- where keys are written

TRICKY_TOML = """# a comment with [brackets] and key = "value"
[unit]
id = "X"  # trailing [comment]
groups = [
  "a/b",  # ] not the end
  "c",
]
note = '''multi
[fake]
fake = 1'''
"quoted key" = 1
site.name = "dotted"

[trust]
keys = { "dak-lak" = "k1", other = "k2" }

[trust.more]
k = 1
"""


def test_key_lines_in_tricky_toml():
    from provisioning.locate import key_lines
    tomllib.loads(TRICKY_TOML)   # valid TOML, as load_config guarantees first
    lines = key_lines(TRICKY_TOML)
    assert lines[("unit",)] == 2 and lines[("unit", "id")] == 3 and lines[("unit", "groups")] == 4
    assert lines[("unit", "note")] == 8 and ("fake",) not in lines and ("unit", "fake") not in lines
    assert lines[("unit", "quoted key")] == 11 and lines[("unit", "site", "name")] == 12
    assert lines[("trust", "keys", "dak-lak")] == 15 == lines[("trust", "keys", "other")]
    assert lines[("trust", "more", "k")] == 18


def test_add_line_numbers():
    from provisioning.locate import add_line_numbers
    errors = ["unit.id: bad", "unit.groups[1]: bad", "trust.keys.dak-lak: not base64", "unit.timezone: bad",
              "gpio.mute: pin 17 is already used by gpio.amp_power", "brokr: unknown table"]
    assert add_line_numbers(errors, TRICKY_TOML + "[brokr]\n") == [
        "unit.id (line 3): bad", "unit.groups[1] (line 4): bad", "trust.keys.dak-lak (line 15): not base64",
        "unit.timezone (line 2): bad",            # not written: its table's header
        "gpio.mute: pin 17 is already used by gpio.amp_power",   # no [gpio] at all: no line
        "brokr (line 19): unknown table"]
