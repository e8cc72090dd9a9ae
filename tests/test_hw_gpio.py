"""GPIO roles through both factories (the Pi's need two pins joined by a wire, see
tests/support/hw.py): relays driving inputs, active-low lines, pulls, the status LED's
patterns; the role plan from the config; all of a unit's hardware in one object."""

import time
from pathlib import Path

import pytest

from hw import LED_PATTERNS, MockHardware, UnitHardware, pin_roles
from loaxa.errors import HardwareError
from provisioning import parse_config
from tests.support.hw import FACTORIES, make, wired_pins
from tests.support.waiting import wait_for as _wait_for


def wait_for(predicate):
    return _wait_for(predicate, timeout=3.0)


@pytest.fixture(params=FACTORIES)
def kind(request):
    return request.param


@pytest.fixture
def hw(kind, tmp_path):
    with make(kind, tmp_path) as factory:
        yield factory


def test_a_relay_drives_an_input(kind, hw):
    out_pin, in_pin = wired_pins(kind, hw)
    line = hw.input("fault", in_pin, active_high=True)
    changes = []
    line.when_changed = changes.append
    relay = hw.relay("amp_power", out_pin)
    assert not line.is_active
    relay.on()
    assert wait_for(lambda: line.is_active)
    relay.off()
    assert wait_for(lambda: not line.is_active)
    assert wait_for(lambda: changes == [True, False])


def test_an_active_low_input_is_active_when_pulled_to_ground(kind, hw):
    out_pin, in_pin = wired_pins(kind, hw)
    button = hw.input("button_test", in_pin, active_high=False, bounce_s=None)
    relay = hw.relay("zone1", out_pin, active_high=False)  # on = line low
    assert not button.is_active  # pulled up: an unpressed (or unwired) button
    relay.on()
    assert wait_for(lambda: button.is_active)
    relay.off()
    assert wait_for(lambda: not button.is_active)


@pytest.mark.parametrize("active_high", [True, False])
def test_an_unwired_input_reads_inactive(kind, hw, active_high):
    _, in_pin = wired_pins(kind, hw)  # nothing drives it: only the pull
    assert hw.input("door", in_pin, active_high=active_high).is_active is False


def test_the_status_led_blinks_its_pattern(kind, hw):
    out_pin, in_pin = wired_pins(kind, hw)
    seen = hw.input("door", in_pin)
    edges = []
    seen.when_changed = edges.append
    led = hw.status_led(out_pin)
    assert led.pattern == "starting"
    assert wait_for(lambda: len(edges) >= 3)  # 2 Hz: about four changes a second
    led.set_connection("online")
    time.sleep(0.1)
    assert seen.is_active  # steady on
    led.set_flag("playing", True)
    led.set_flag("fault", True)
    assert led.pattern == "fault"  # fault outranks playing
    led.set_flag("fault", False)
    assert led.pattern == "playing"
    led.set_flag("playing", False)
    assert led.pattern == "online"
    with pytest.raises(ValueError):
        led.set_connection("asleep")
    led.close()
    led.close()
    assert wait_for(lambda: not seen.is_active)


def test_patterns_are_told_apart():
    assert LED_PATTERNS["online"] == (1.0,) and LED_PATTERNS["off"] == ()
    shapes = {p: tuple(steps) for p, steps in LED_PATTERNS.items()}
    assert len(set(shapes.values())) == len(shapes)
    for steps in LED_PATTERNS.values():
        assert len(steps) <= 1 or len(steps) % 2 == 0  # on/off pairs


def test_mock_records_inputs_and_led_patterns(tmp_path):
    with MockHardware(tmp_path) as hw:
        door = hw.input("door", 16)
        led = hw.status_led(25)
        hw.pin_factory.pin(16).drive_high()
        led.set_connection("offline")
        assert door.is_active
        assert hw.timeline.events("input") == [
            {"t": hw.timeline.events("input")[0]["t"], "kind": "input", "role": "door", "pin": 16,
             "active": True}]
        assert [e["pattern"] for e in hw.timeline.events("led")] == ["starting", "offline"]


def test_mock_led_history_stays_bounded(tmp_path):
    with MockHardware(tmp_path) as hw:
        led = hw.status_led(25)
        led.MAX_PIN_HISTORY = 4
        time.sleep(0.6)  # a "starting" cycle (0.5 s) and its trim
        assert len(hw.pin_factory.pin(25).states) <= 4 + 4


def test_a_pin_serves_one_role(hw, kind):
    if kind == "pi":
        wired_pins(kind, hw)  # skips off a Pi
    hw.relay("mute", 5)
    with pytest.raises(HardwareError, match="GPIO5"):
        hw.input("door", 5)


# --- the role plan from the config ------------------------------------------------

def config(tmp_path, **tables):
    data = {"unit": {"id": "hw-test-01", "state_dir": str(tmp_path / "state")},
            "broker": {"url": "mqtt://127.0.0.1:1"}, "hardware": {"mode": "mock",
                                                               "mock_output_dir": str(tmp_path / "out")}}
    data.update(tables)
    return parse_config(data, base_dir=tmp_path)


def test_roles_and_active_levels_from_the_config(tmp_path):
    cfg = config(tmp_path, gpio={"zones": [22, 23, 5], "active_low": ["mute", "zones", 24]})
    plan = {r.role: (r.pin, r.active_high, r.direction) for r in pin_roles(cfg.gpio)}
    assert plan == {
        "amp_power": (17, True, "output"), "mute": (27, False, "output"),
        "zone1": (22, False, "output"), "zone2": (23, False, "output"), "zone3": (5, False, "output"),
        "status_led": (25, True, "led"), "fault": (24, False, "input"), "door": (16, True, "input"),
        "button_test": (26, True, "input"), "button_stop": (13, True, "input")}
    one = config(tmp_path, gpio={"active_low": ["zone2", "button_stop"]})
    levels = {r.role: r.active_high for r in pin_roles(one.gpio)}
    assert levels["zone1"] and not levels["zone2"] and not levels["button_stop"]


@pytest.mark.parametrize("gpio, message", [
    ({"door": 17}, "gpio.door: pin 17 is already used by gpio.amp_power"),
    ({"button_test": 22}, "gpio.button_test: pin 22 is already used by gpio.zones[0]"),
    ({"active_low": ["mutee"]}, "gpio.active_low[0]: no role 'mutee' (did you mean 'mute'?)"),
    ({"active_low": ["zone3"]}, "gpio.active_low[0]: no role 'zone3'"),
    ({"active_low": [4]}, "gpio.active_low[0]: pin 4 has no role in [gpio]"),
    ({"active_low": [True]}, "gpio.active_low[0]: expected an integer"),
    ({"active_low": "mute"}, "gpio.active_low: expected a list of role names or BCM pin numbers"),
])
def test_gpio_config_errors_name_the_key(tmp_path, gpio, message):
    from loaxa.errors import ConfigError

    with pytest.raises(ConfigError) as caught:
        config(tmp_path, gpio=gpio)
    assert any(e.startswith(message) for e in caught.value.errors), caught.value.errors


# --- a whole unit --------------------------------------------------------------------

class Events(list):
    def __call__(self, kind, detail, **extra):
        self.append((kind, detail, extra))


def test_unit_hardware_in_mock_mode(tmp_path):
    cfg = config(tmp_path, gpio={"active_low": ["button_test", "button_stop"]})
    events = Events()
    factory = MockHardware(tmp_path / "out", gps_interval_s=0.05)
    with UnitHardware(cfg, factory, on_event=events, modem_poll_s=0.1) as unit_hw:
        assert unit_hw.mock and [z.role for z in unit_hw.zones] == ["zone1", "zone2"]
        assert not any(r.is_on for r in (unit_hw.amp_power, *unit_hw.zones)) and unit_hw.mute.is_on is False
        assert set(factory.simulators) == {"amplifier", "gps", "modem"}
        unit_hw.start()
        pressed = []
        unit_hw.on_press("button_stop", lambda: pressed.append("stop"))
        factory.pin_factory.pin(13).drive_low()  # pressed: active-low to ground
        factory.pin_factory.pin(13).drive_high()
        assert pressed == ["stop"]
        factory.pin_factory.pin(16).drive_high()  # the cabinet door opens
        assert events[-1][:2] == ("tamper", "cabinet door opened") and events[-1][2] == {"door": "open"}
        assert wait_for(lambda: unit_hw.gps.fix is not None and unit_hw.modem.status is not None)
        health = unit_hw.health()
        assert health["net"]["signal_dbm"] == -73 and health["net"]["operator"] == "Viettel"
        assert health["gps"]["fix"] == "gps" and unit_hw.position()["lat"] == pytest.approx(12.6797)
        assert health["cpu_temp_c"] == 47.2 and health["disk_free_mb"] > 0
        assert health["door"] == "open" and health["faults"] == ["tamper.door_open"]
        factory.pin_factory.pin(16).drive_low()
        unit_hw.probes.set(under_voltage=True)
        factory.simulators["modem"].fail("no_signal")
        assert wait_for(lambda: "modem.not_registered" in unit_hw.faults())
        assert "power.under_voltage" in unit_hw.faults()
        assert unit_hw.health()["throttling"]["under_voltage_occurred"] is True
    factory.close()
    relays = [e for e in factory.timeline.events("relay")]
    assert all(not e["on"] for e in relays)  # nothing was left on


def test_unit_hardware_makes_and_closes_its_own_factory(tmp_path):
    cfg = config(tmp_path)
    with UnitHardware(cfg) as unit_hw:
        assert isinstance(unit_hw.factory, MockHardware)
        assert unit_hw.factory.output_dir == Path(cfg.hardware.mock_output_dir)
    with pytest.raises(HardwareError, match="closed"):
        unit_hw.factory.relay("x", 4)


def test_a_missing_amplifier_port_is_reported_when_used(tmp_path):
    cfg = config(tmp_path, amplifier={"driver": "lxa1", "port": str(tmp_path / "no-such-tty")})
    factory = MockHardware(tmp_path / "out")
    with UnitHardware(cfg, factory) as unit_hw:
        # The port is opened lazily: the unit starts; the amplifier says why it cannot talk.
        with pytest.raises(HardwareError, match="no-such-tty"):
            unit_hw.amplifier.hello()
    factory.close()


def test_a_fault_plan_for_the_demo(tmp_path):
    plan = "door:on@0.05,door:off@0.2,amplifier:protect=short@0.1,gps:lost@0.1,modem:no_signal@0.1"
    with MockHardware(tmp_path, faults=plan, amp_boot_s=0.0) as hw:
        door = hw.input("door", 16, active_high=False)  # an active-low switch: on = pulled low
        hw.amplifier(None), hw.gps(None), hw.modem(None)  # their simulators take the faults
        assert wait_for(lambda: door.is_active)
        assert wait_for(lambda: not door.is_active)
        assert wait_for(lambda: hw.simulators["amplifier"].fault_cause == "short")
        assert hw.simulators["gps"].lost and hw.simulators["modem"].no_signal
        steps = [(e["part"], e["action"]) for e in hw.timeline.events("mock.fault")]
        assert sorted(steps) == sorted([("door", "on"), ("door", "off"), ("amplifier", "protect"),
                                        ("gps", "lost"), ("modem", "no_signal")])


def test_a_bad_fault_plan_names_the_step(tmp_path, monkeypatch):
    monkeypatch.setenv("LOAXA_MOCK_FAULTS", "amplifier:protect@10,door:open@5")
    with pytest.raises(HardwareError, match="'door:open@5'"):
        MockHardware(tmp_path)
