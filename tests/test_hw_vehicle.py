"""A loudspeaker vehicle's power in the hardware layer (SPEC "Mobile units"): the ignition
input and the vehicle battery's ADC, each with its simulator; `[vehicle]` in the config;
health `power`."""

import pytest

from hw import MockHardware, UnitHardware
from hw.mock import parse_fault_plan
from loaxa.errors import ConfigError
from tests.test_hw_gpio import config

VEHICLE = {"ignition": 5, "battery_adc": "mcp3008", "battery_channel": 1, "battery_divider": 6.0}


def test_vehicle_table_defaults_and_checks(tmp_path):
    cfg = config(tmp_path)
    assert cfg.vehicle.ignition is None and cfg.vehicle.play_with_ignition_off is False
    assert cfg.vehicle.battery_adc == "none"
    cfg = config(tmp_path, vehicle=dict(VEHICLE, play_with_ignition_off=True))
    assert (cfg.vehicle.ignition, cfg.vehicle.battery_channel, cfg.vehicle.play_with_ignition_off) == (5, 1, True)
    with pytest.raises(ConfigError, match="vehicle.ignition.*already used by gpio.amp_power"):
        config(tmp_path, vehicle={"ignition": 17})
    with pytest.raises(ConfigError, match="vehicle.play_with_ignition_off: must be one of true, false"):
        config(tmp_path, vehicle={"play_with_ignition_off": "yes"})
    with pytest.raises(ConfigError, match="vehicle.battery_adc"):
        config(tmp_path, vehicle={"battery_adc": "ads9999"})


def test_ignition_and_battery_in_mock_mode(tmp_path):
    events = []
    factory = MockHardware(tmp_path / "out")
    with UnitHardware(config(tmp_path, vehicle=VEHICLE), factory,
                      on_event=lambda kind, detail, **extra: events.append((kind, extra))) as unit_hw:
        assert unit_hw.ignition_on() is True  # the demo vehicle's engine runs
        assert unit_hw.power() == {"mains": None, "ignition": True, "battery_v": 12.6}
        factory.drive("ignition", False)
        assert unit_hw.ignition_on() is False
        factory.battery.set_volts(11.8)
        assert unit_hw.power()["battery_v"] == 11.8
        factory.battery.set_volts(None)  # the ADC does not answer: unknown, not a crash
        assert unit_hw.power() == {"mains": None, "ignition": False, "battery_v": None}
    assert ("vehicle.ignition", {"ignition": False}) in events
    kinds = [(e["kind"], e.get("role"), e.get("active"), e.get("volts")) for e in factory.timeline.events()]
    assert ("input", "ignition", False, None) in kinds and ("battery", None, None, 11.8) in kinds
    factory.close()


def test_a_fixed_unit_has_no_vehicle_parts(tmp_path):
    factory = MockHardware(tmp_path / "out")
    with UnitHardware(config(tmp_path), factory) as unit_hw:
        assert unit_hw.ignition_on() is None and unit_hw.power() is None
    factory.close()


def test_the_fault_plan_turns_the_ignition_off(tmp_path):
    assert parse_fault_plan("ignition:off@30") == [{"part": "ignition", "action": "off", "cause": None,
                                                    "after_s": 30.0}]
    factory = MockHardware(tmp_path / "out", faults="ignition:off@0.05")
    with UnitHardware(config(tmp_path, vehicle={"ignition": 5}), factory) as unit_hw:
        factory.timeline.wait_for("mock.fault", 5)
        assert unit_hw.ignition_on() is False
    factory.close()
