"""The config schema: every rule, every error at once, defaults, paths, masking, finding."""

import base64
import json
import os
import tomllib
from dataclasses import fields
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loaxa.errors import ConfigError
from provisioning import (
    MASK,
    SCHEMA,
    Config,
    config_warnings,
    demo_config,
    demo_unit_id,
    detect_hardware_mode,
    find_config,
    load_config,
    mask_secrets,
    parse_config,
    read_password,
    state_home,
)
from provisioning.config import TABLE_TYPES

PUBLIC_KEY = base64.b64encode(bytes(range(32))).decode()
UNIT_ID = "dl-lak-bongkrang-01"


def minimal(**tables) -> dict:
    """The smallest valid config (mock mode, so defaults do not depend on the machine)."""
    data = {"unit": {"id": UNIT_ID}, "broker": {"url": "mqtt://127.0.0.1:1883"},
            "hardware": {"mode": "mock"}}
    for table, keys in tables.items():
        data.setdefault(table, {}).update(keys)
    return data


def parse(data, base_dir, **environ) -> Config:
    return parse_config(data, base_dir=base_dir, environ=environ or {"XDG_STATE_HOME": str(base_dir / "xdg")})


def errors_of(data, base_dir) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse(data, base_dir)
    return caught.value.errors


# ---------------------------------------------------------------- defaults

def test_schema_keys_are_the_dataclass_fields():
    for table, keys in SCHEMA.items():
        assert list(keys) == [f.name for f in fields(TABLE_TYPES[table])]
    assert list(SCHEMA) == [f.name for f in fields(Config) if f.name != "source"]


def test_defaults_in_mock_mode(tmp_path):
    cfg = parse(minimal(), tmp_path, XDG_STATE_HOME=str(tmp_path / "xdg"))
    state = tmp_path / "xdg" / "loaxa"
    assert cfg.unit.state_dir == state
    assert cfg.unit.groups == ()
    assert cfg.unit.timezone == "Asia/Ho_Chi_Minh"
    assert cfg.unit.quiet_hours == "22:00-05:00"
    assert cfg.unit.media_dir == state / "media"
    assert cfg.clock.trust == "always"
    assert cfg.broker.username == UNIT_ID
    assert cfg.broker.password_file is None and cfg.broker.ca_file is None
    assert cfg.broker.topic_prefix == "loaxa"
    assert cfg.trust.keys == {}
    assert cfg.hardware.mock_output_dir == state / "mock-output"
    assert cfg.hardware.mock_speed == 1.0
    assert (cfg.audio.device, cfg.audio.lufs) == ("default", -16.0)
    assert cfg.amplifier.port is None and cfg.gps.port is None and cfg.modem.port is None
    assert (cfg.amplifier.baudrate, cfg.amplifier.warmup_s, cfg.amplifier.cooldown_s) == (9600, 3.0, 30.0)
    assert cfg.gpio.amp_power == 17 and cfg.gpio.mute == 27 and cfg.gpio.zones == (22, 23)
    assert cfg.gpio.fault == 24 and cfg.gpio.status_led == 25
    assert cfg.source is None


def test_defaults_in_pi_mode(tmp_path):
    cfg = parse(minimal(hardware={"mode": "pi"}), tmp_path)
    assert cfg.unit.state_dir == Path("/var/lib/loaxa")
    assert cfg.unit.media_dir == Path("/var/lib/loaxa/media")
    assert cfg.clock.trust == "auto"


def test_state_home_follows_xdg(tmp_path):
    assert state_home({"XDG_STATE_HOME": str(tmp_path)}) == tmp_path
    # XDG says a relative value is invalid and must be ignored.
    assert state_home({"XDG_STATE_HOME": "rel", "HOME": str(tmp_path)}) == tmp_path / ".local/state"
    assert state_home({"HOME": str(tmp_path)}) == tmp_path / ".local/state"


def test_mode_default_follows_the_device_tree(tmp_path):
    model = tmp_path / "model"
    model.write_bytes(b"Raspberry Pi 4 Model B Rev 1.4\x00")
    assert detect_hardware_mode(model) == "pi"
    model.write_bytes(b"Generic x86 board\x00")
    assert detect_hardware_mode(model) == "mock"
    assert detect_hardware_mode(tmp_path / "missing") == "mock"
    data = minimal()
    del data["hardware"]
    assert parse(data, tmp_path).hardware.mode == detect_hardware_mode()


def test_spec_example_is_valid(tmp_path):
    (tmp_path / "broker.pass").write_text("s3cret\n")
    (tmp_path / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\n")
    text = f"""
[unit]
id = "dl-lak-bongkrang-01"
groups = ["dak-lak/lak/bong-krang"]
timezone = "Asia/Ho_Chi_Minh"
state_dir = "{tmp_path}/state"
quiet_hours = "22:00-05:00"
[clock]
trust = "auto"
[broker]
url = "mqtts://mqtt.example.vn:8883"
username = "dl-lak-bongkrang-01"
password_file = "{tmp_path}/broker.pass"
ca_file = "{tmp_path}/ca.crt"
topic_prefix = "loaxa"
[trust]
keys = {{ "dak-lak-2026" = "{PUBLIC_KEY}" }}
[hardware]
mode = "pi"
mock_output_dir = "mock-output"
[audio]
device = "default"
lufs = -16.0
[amplifier]
port = "/dev/serial0"
baudrate = 9600
warmup_s = 3.0
cooldown_s = 30.0
[gps]
port = "/dev/ttyUSB1"
[modem]
port = "/dev/ttyUSB2"
[gpio]
amp_power = 17
mute = 27
zones = [22, 23]
fault = 24
status_led = 25
"""
    path = tmp_path / "config.toml"
    path.write_text(text)
    cfg = load_config(path)
    assert cfg.source == path
    assert cfg.trust.keys == {"dak-lak-2026": PUBLIC_KEY}
    assert cfg.amplifier.port == "/dev/serial0" and cfg.gps.port == "/dev/ttyUSB1"
    assert cfg.hardware.mock_output_dir == tmp_path / "state" / "mock-output"
    assert read_password(cfg) == "s3cret"
    assert config_warnings(cfg) == []


# ---------------------------------------------------------------- every rule

BAD_VALUES = [
    # (table, key, value, words the error must contain)
    ("unit", "id", "ab", "3-64 characters"),
    ("unit", "id", "-starts-with-dash", "got '-starts-with-dash'"),
    ("unit", "id", "Upper-Case", "got 'Upper-Case'"),
    ("unit", "id", "a" * 65, "3-64"),
    ("unit", "id", 42, "expected a string, got 42"),
    ("unit", "groups", "dak-lak", "expected a list of group paths"),
    ("unit", "timezone", "Asia/Hanoi", "unknown IANA time zone"),
    ("unit", "timezone", "/etc/passwd", "unknown IANA time zone"),
    ("unit", "quiet_hours", "22-05", "HH:MM-HH:MM"),
    ("unit", "quiet_hours", "24:00-05:00", "HH:MM-HH:MM"),
    ("unit", "quiet_hours", "22:00-22:00", "same time"),
    ("unit", "state_dir", "", "must not be empty"),
    ("unit", "media_dir", 3, "expected a string"),
    ("clock", "trust", "never", "must be one of 'auto', 'always'"),
    ("broker", "url", "http://mqtt.example.vn", "mqtt:// or mqtts://"),
    ("broker", "url", "mqtt://", "no host"),
    ("broker", "url", "mqtt://host:99999", "out of range"),
    ("broker", "username", "", "must not be empty"),
    ("broker", "topic_prefix", "", "must not be empty"),
    ("broker", "topic_prefix", "loaxa/+", "wildcards"),
    ("broker", "topic_prefix", "loaxa/#", "wildcards"),
    ("broker", "topic_prefix", "loaxa/", "start or end with '/'"),
    ("trust", "keys", "abc", "expected a table"),
    ("hardware", "mode", "pie", "did you mean 'pi'?"),
    ("hardware", "mock_speed", 0, "greater than 0"),
    ("hardware", "mock_speed", -2.5, "greater than 0"),
    ("audio", "device", "", "must not be empty"),
    ("audio", "lufs", -60, "between -40 and -5, got -60"),
    ("audio", "lufs", 0.0, "between -40 and -5"),
    ("audio", "lufs", float("nan"), "finite"),
    ("audio", "lufs", float("inf"), "finite"),
    ("audio", "lufs", "loud", "expected a number, got 'loud'"),
    ("amplifier", "port", 5, "expected a string"),
    ("amplifier", "baudrate", "fast", "expected an integer, got 'fast'"),
    ("amplifier", "baudrate", 9600.0, "expected an integer, got 9600.0"),
    ("amplifier", "baudrate", True, "expected an integer, got true (a boolean)"),
    ("amplifier", "baudrate", 0, "between 50 and"),
    ("amplifier", "warmup_s", -1, "at least 0, got -1"),
    ("amplifier", "cooldown_s", -0.5, "at least 0"),
    ("amplifier", "warmup_s", [], "expected a number, got a list"),
    ("gps", "port", {"a": 1}, "expected a string, got a table"),
    ("modem", "port", False, "expected a string, got false (a boolean)"),
    ("gpio", "amp_power", 28, "between 0 and 27, got 28"),
    ("gpio", "mute", -1, "between 0 and 27"),
    ("gpio", "fault", True, "expected an integer, got true (a boolean)"),
    ("gpio", "status_led", "25", "expected an integer, got '25'"),
    ("gpio", "zones", 22, "expected a list of BCM pin numbers"),
]


@pytest.mark.parametrize("table, key, value, words", BAD_VALUES,
                         ids=[f"{t}.{k}={v!r}"[:60] for t, k, v, _ in BAD_VALUES])
def test_bad_value_is_one_error_naming_the_key(tmp_path, table, key, value, words):
    errors = errors_of(minimal(**{table: {key: value}}), tmp_path)
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"{table}.{key}: "), errors
    assert words in errors[0]


GOOD_VALUES = [
    ("unit", "id", "abc"),
    ("unit", "id", "0" + "a" * 63),
    ("unit", "groups", ["dak-lak", "dak-lak/lak/bong-krang", "a-1/b2"]),
    ("unit", "timezone", "UTC"),
    ("unit", "quiet_hours", ""),
    ("unit", "quiet_hours", "00:00-23:59"),
    ("clock", "trust", "auto"),
    ("broker", "url", "mqtts://mqtt.example.vn"),
    ("broker", "topic_prefix", "vn/dak-lak/loaxa"),
    ("trust", "keys", {"a": PUBLIC_KEY, "b": PUBLIC_KEY + "\n"}),
    ("hardware", "mock_speed", 50),
    ("audio", "lufs", -40),
    ("audio", "lufs", -5.0),
    ("amplifier", "port", "loop://"),
    ("amplifier", "warmup_s", 0),
    ("gpio", "zones", []),
    ("gpio", "zones", [0, 1, 2, 3, 4, 5]),
]


@pytest.mark.parametrize("table, key, value", GOOD_VALUES,
                         ids=[f"{t}.{k}={v!r}"[:60] for t, k, v in GOOD_VALUES])
def test_good_value_is_accepted(tmp_path, table, key, value):
    cfg = parse(minimal(**{table: {key: value}}), tmp_path)
    assert getattr(cfg, table) is not None


def test_typed_values(tmp_path):
    cfg = parse(minimal(audio={"lufs": -20}, amplifier={"port": ""},
                        trust={"keys": {"k": f" {PUBLIC_KEY}\n"}}, gpio={"zones": [5, 6]}), tmp_path)
    assert cfg.audio.lufs == -20.0 and isinstance(cfg.audio.lufs, float)
    assert cfg.amplifier.port is None  # "" is TOML's way to say "no port"
    assert cfg.trust.keys == {"k": PUBLIC_KEY}
    assert cfg.gpio.zones == (5, 6)


def test_list_items_are_each_reported(tmp_path):
    errors = errors_of(minimal(unit={"groups": ["ok/fine", "Dak-Lak", "a//b", 7]},
                               gpio={"zones": [22, "x", 99]}), tmp_path)
    assert sorted(e.split(":")[0] for e in errors) == sorted(
        ["unit.groups[1]", "unit.groups[2]", "unit.groups[3]", "gpio.zones[1]", "gpio.zones[2]"])
    assert any("got 'Dak-Lak'" in e for e in errors)


def test_trust_keys_are_each_reported(tmp_path):
    errors = errors_of(minimal(trust={"keys": {"good": PUBLIC_KEY, "short": "QUJD",
                                               "garbage": "not base64!", "number": 5}}), tmp_path)
    assert sorted(errors) == sorted([
        "trust.keys.short: decodes to 3 bytes; an Ed25519 public key is 32",
        "trust.keys.garbage: not base64 (the one line of the key's .pub file)",
        "trust.keys.number: expected a string, got 5",
    ])


def test_required_keys(tmp_path):
    assert sorted(errors_of({}, tmp_path)) == ["broker.url: required", "unit.id: required"]


def test_a_table_that_is_not_a_table(tmp_path):
    errors = errors_of(minimal() | {"gpio": [1, 2]}, tmp_path)
    assert errors == ["gpio: expected a table, got a list"]


def test_unknown_keys_suggest_the_close_one(tmp_path):
    data = minimal(unit={"idd": "x"}, broker={"urll": "mqtt://x"}, gpio={"zone": [1]})
    data["brokr"] = {}
    errors = errors_of(data, tmp_path)
    assert "unit.idd: unknown key (did you mean 'id'?)" in errors
    assert "broker.urll: unknown key (did you mean 'url'?)" in errors
    assert "gpio.zone: unknown key (did you mean 'zones'?)" in errors
    assert "brokr: unknown table (did you mean 'broker'?)" in errors
    assert len(errors) == 4


def test_unknown_key_without_a_close_one_lists_the_known(tmp_path):
    errors = errors_of(minimal(gps={"xyzzy": 1}), tmp_path)
    assert errors == ["gps.xyzzy: unknown key (known: port)"]


def test_every_error_is_reported_at_once(tmp_path):
    data = {"unit": {"id": "X", "timezone": "Mars/Olympus"},
            "broker": {"topic_prefix": "#"},
            "amplifier": {"baudrate": "fast", "cooldown_s": -3},
            "audio": {"lufs": 3},
            "gpio": {"mute": 17},
            "hardware": {"mode": "mock", "speed": 2}}
    errors = errors_of(data, tmp_path)
    keys = [error.split(":")[0] for error in errors]
    assert sorted(keys) == sorted(["unit.id", "unit.timezone", "broker.url", "broker.topic_prefix",
                                   "amplifier.baudrate", "amplifier.cooldown_s", "audio.lufs",
                                   "gpio.mute", "hardware.speed"])
    with pytest.raises(ConfigError) as caught:
        parse(data, tmp_path)
    assert caught.value.source == "config"


def test_one_pin_two_roles_names_both(tmp_path):
    errors = errors_of(minimal(gpio={"mute": 17}), tmp_path)
    assert errors == ["gpio.mute: pin 17 is already used by gpio.amp_power"]
    errors = errors_of(minimal(gpio={"zones": [22, 24, 22]}), tmp_path)
    assert sorted(errors) == ["gpio.fault: pin 24 is already used by gpio.zones[1]",
                              "gpio.zones[2]: pin 22 is already used by gpio.zones[0]"]


def test_a_bad_pin_does_not_add_a_false_clash(tmp_path):
    # mute is wrong; its default 27 must not then "clash" with zone 27.
    errors = errors_of(minimal(gpio={"mute": "x", "zones": [27]}), tmp_path)
    assert errors == ["gpio.mute: expected an integer, got 'x'"]


def test_not_a_dict_at_all(tmp_path):
    with pytest.raises(ConfigError) as caught:
        parse(["unit"], tmp_path)
    assert "expected a table of tables" in caught.value.errors[0]


# ---------------------------------------------------------------- files and paths

def write_config(folder: Path, text: str, name="config.toml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


GOOD_TOML = f'[unit]\nid = "{UNIT_ID}"\n[broker]\nurl = "mqtt://127.0.0.1"\n[hardware]\nmode = "mock"\n'


def test_toml_syntax_error_names_file_and_line(tmp_path):
    path = write_config(tmp_path, '[unit]\nid = "abc"\nbaudrate = fast\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.source == str(path)
    assert len(caught.value.errors) == 1
    assert caught.value.errors[0].startswith("TOML syntax error: ")
    assert "line 3, column" in caught.value.errors[0]
    assert str(path) in str(caught.value)


def test_unreadable_or_not_text(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path)
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'[unit]\nid = "caf\xe9"\n')
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(path)


def test_byte_order_mark_is_accepted(tmp_path):
    path = tmp_path / "bom.toml"
    path.write_bytes(b"\xef\xbb\xbf" + GOOD_TOML.encode())
    assert load_config(path).unit.id == UNIT_ID


def test_relative_paths(tmp_path):
    (tmp_path / "etc" / "state").mkdir(parents=True)
    (tmp_path / "etc" / "state" / "broker.pass").write_text("pw\n")
    path = write_config(tmp_path / "etc", GOOD_TOML.replace(
        "[broker]", '[broker]\npassword_file = "broker.pass"').replace(
        "[unit]", '[unit]\nstate_dir = "state"\nmedia_dir = "../cache"').replace(
        '[hardware]\nmode = "mock"', '[hardware]\nmode = "mock"\nmock_output_dir = "/abs/out"'))
    cfg = load_config(path)
    assert cfg.unit.state_dir == tmp_path / "etc" / "state"       # against the config's folder
    assert cfg.broker.password_file == tmp_path / "etc" / "state" / "broker.pass"  # against state_dir
    assert cfg.unit.media_dir == tmp_path / "etc" / "cache"
    assert cfg.hardware.mock_output_dir == Path("/abs/out")
    assert read_password(cfg) == "pw"


def test_relative_state_dir_with_a_relative_config_path(tmp_path):
    write_config(tmp_path / "etc", GOOD_TOML.replace("[unit]", '[unit]\nstate_dir = "state"'))
    here = os.getcwd()
    os.chdir(tmp_path)
    try:
        cfg = load_config("etc/config.toml")
    finally:
        os.chdir(here)
    assert cfg.unit.state_dir == tmp_path / "etc" / "state"
    assert cfg.unit.state_dir.is_absolute() and cfg.source.is_absolute()


def test_home_is_expanded(tmp_path):
    cfg = parse(minimal(unit={"state_dir": "~/loaxa"}), tmp_path)
    assert cfg.unit.state_dir == Path.home() / "loaxa"


def test_secret_files_must_exist_and_be_files(tmp_path):
    errors = errors_of(minimal(broker={"password_file": str(tmp_path / "nope.pass"),
                                       "ca_file": str(tmp_path)}), tmp_path)
    assert sorted(errors) == sorted([
        f"broker.password_file: {tmp_path / 'nope.pass'}: no such file",
        f"broker.ca_file: {tmp_path}: not a regular file",
    ])


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file")
def test_secret_files_must_be_readable(tmp_path):
    secret = tmp_path / "broker.pass"
    secret.write_text("pw")
    secret.chmod(0)
    errors = errors_of(minimal(broker={"password_file": str(secret)}), tmp_path)
    assert len(errors) == 1 and errors[0].startswith("broker.password_file: ")
    assert "cannot read" in errors[0]


def test_read_password(tmp_path):
    assert read_password(parse(minimal(), tmp_path)) is None
    secret = tmp_path / "broker.pass"
    secret.write_text("correct horse\r\n")
    cfg = parse(minimal(broker={"password_file": str(secret)}), tmp_path)
    assert read_password(cfg) == "correct horse"
    secret.write_text("\n")
    with pytest.raises(ConfigError, match="broker.password_file: .* is empty"):
        read_password(cfg)
    secret.unlink()
    with pytest.raises(ConfigError, match="broker.password_file: cannot read"):
        read_password(cfg)


# ---------------------------------------------------------------- display

def test_masked_shows_the_password_path_never_the_password(tmp_path):
    secret = tmp_path / "broker.pass"
    secret.write_text("hunter2-do-not-show\n")
    cfg = parse(minimal(broker={"password_file": str(secret)}), tmp_path)
    shown = cfg.masked()
    assert shown["broker"]["password_file"] == str(secret)
    assert "hunter2" not in json.dumps(shown)


def test_mask_secrets_masks_names_like_secrets():
    masked = mask_secrets({"broker": {"password": "p", "api_token": "t", "client_secret": "s",
                                      "password_file": "/etc/loaxa/broker.pass", "url": "mqtt://x"},
                           "trust": {"keys": {"token-2026": PUBLIC_KEY}}})
    assert masked["broker"] == {"password": MASK, "api_token": MASK, "client_secret": MASK,
                                "password_file": "/etc/loaxa/broker.pass", "url": "mqtt://x"}
    assert masked["trust"]["keys"] == {"token-2026": PUBLIC_KEY}  # public keys are public


def test_masked_is_toml_shaped_and_parses_back(tmp_path):
    secret = tmp_path / "broker.pass"
    secret.write_text("pw")
    cfg = parse(minimal(unit={"groups": ["a/b"]}, broker={"password_file": str(secret)},
                        amplifier={"port": "/dev/ttyAMA0"}, trust={"keys": {"k": PUBLIC_KEY}}), tmp_path)
    shown = cfg.masked()
    assert "port" not in shown["gps"]  # no null in TOML: an unset key is left out
    assert json.loads(json.dumps(shown)) == shown
    assert parse(shown, tmp_path / "elsewhere") == cfg


# ---------------------------------------------------------------- finding the config

def test_find_config_explicit(tmp_path):
    path = write_config(tmp_path, GOOD_TOML)
    assert find_config(str(path), {}, tmp_path / "system.toml") == path
    env = {"LOAXA_CONFIG": str(tmp_path / "other.toml")}
    assert find_config(str(path), env, tmp_path / "system.toml") == path  # --config wins
    with pytest.raises(ConfigError, match="no such file .given with --config"):
        find_config(str(tmp_path / "missing.toml"), {}, path)  # never falls back
    with pytest.raises(ConfigError, match="is a folder"):
        find_config(str(tmp_path), {}, path)


def test_find_config_environment(tmp_path):
    path = write_config(tmp_path, GOOD_TOML)
    system = write_config(tmp_path / "etc", GOOD_TOML)
    assert find_config(None, {"LOAXA_CONFIG": str(path)}, system) == path
    with pytest.raises(ConfigError, match=r"no such file \(named by \$LOAXA_CONFIG\)"):
        find_config(None, {"LOAXA_CONFIG": str(tmp_path / "missing.toml")}, system)
    assert find_config(None, {"LOAXA_CONFIG": ""}, system) == system  # empty is unset


def test_find_config_system_file_or_demo(tmp_path):
    system = tmp_path / "etc" / "config.toml"
    assert find_config(None, {}, system) is None  # the caller runs the demo
    write_config(system.parent, GOOD_TOML)
    assert find_config(None, {}, system) == system


def test_broken_system_link_is_not_the_demo(tmp_path):
    system = tmp_path / "config.toml"
    system.symlink_to(tmp_path / "gone.toml")
    assert find_config(None, {}, system) == system
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(system)


# ---------------------------------------------------------------- demo and warnings

def test_demo_config(tmp_path):
    cfg = demo_config(tmp_path / "demo", trust_keys={"demo": PUBLIC_KEY})
    assert cfg.unit.id == demo_unit_id(tmp_path / "demo") and cfg.unit.groups
    assert cfg.unit.quiet_hours == ""
    assert cfg.hardware.mode == "mock" and cfg.clock.trust == "always"
    assert cfg.unit.state_dir == tmp_path / "demo"
    assert cfg.hardware.mock_output_dir == tmp_path / "demo" / "mock-output"
    assert cfg.broker.url == "mqtt://127.0.0.1:1883" and cfg.broker.password_file is None
    assert cfg.trust.keys == {"demo": PUBLIC_KEY}
    assert (cfg.amplifier.warmup_s, cfg.amplifier.cooldown_s) == (3.0, 10.0)
    assert demo_config(tmp_path, broker_url="mqtt://10.0.0.1:1884").broker.url == "mqtt://10.0.0.1:1884"
    with pytest.raises(ConfigError, match="trust.keys.demo"):
        demo_config(tmp_path, trust_keys={"demo": "short"})


def test_warnings(tmp_path):
    secret = tmp_path / "pw"
    secret.write_text("pw")
    cfg = parse(minimal(broker={"password_file": str(secret), "ca_file": str(secret)}), tmp_path)
    warnings = config_warnings(cfg)
    assert [w.split(":")[0] for w in warnings] == ["trust.keys", "broker.url", "broker.ca_file"]
    tls = parse(minimal(broker={"url": "mqtts://h", "password_file": str(secret)},
                        trust={"keys": {"k": PUBLIC_KEY}}), tmp_path)
    assert config_warnings(tls) == []


# ---------------------------------------------------------------- anything in, ConfigError or Config out

toml_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6)
known_key = st.sampled_from([(t, k) for t, keys in SCHEMA.items() for k in keys])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(known_key, toml_values), max_size=6))
def test_any_values_give_a_config_or_errors_naming_keys(assignments):
    data = minimal()
    for (table, key), value in assignments:
        data.setdefault(table, {})[key] = value
    base = Path("/nonexistent-loaxa-base")
    try:
        cfg = parse_config(data, base_dir=base, environ={"XDG_STATE_HOME": "/nonexistent-xdg"})
    except ConfigError as exc:
        assert exc.errors
        tables = tuple(f"{table}." for table in SCHEMA) + tuple(f"{table}:" for table in SCHEMA)
        assert all(error.startswith(tables) for error in exc.errors), exc.errors
    else:
        assert cfg.unit.state_dir.is_absolute()
        assert parse_config(cfg.masked(), base_dir=base, environ={}) == cfg


def test_show_round_trip_through_real_toml(tmp_path):
    """masked() is TOML-shaped: the CLI's TOML text of it reads back identically."""
    from loaxa.commands.config import toml_text

    odd_dir = tmp_path / 'we"ird\\ d\x7fir\tthị xã'
    cfg = parse(minimal(unit={"groups": ["a/b", "c"], "state_dir": str(odd_dir)},
                        trust={"keys": {"weird name\u00e9": PUBLIC_KEY}}), tmp_path)
    shown = cfg.masked()
    assert shown["unit"]["state_dir"] == str(odd_dir)
    assert tomllib.loads(toml_text(shown, cfg.source)) == shown
