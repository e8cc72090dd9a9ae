"""The LXA1 amplifier driver against the simulator on a pty, through both factories:
handshake, volume scale, status, garbage, stale replies, timeouts, refusals, protect
notices, and a USB-serial adapter that vanishes and comes back (reopen and resync)."""

import time

import pytest

from hw import AmpError, DeviceTimeout, Lxa1Amplifier, RelayOnlyAmplifier, SerialLinkError
from hw.amplifier import frame, parse_frame
from hw.sim import AmplifierSimulator
from loaxa.errors import HardwareError
from tests.support.hw import hw, make  # noqa: F401 (hw: the fixture)


@pytest.fixture
def sim(tmp_path):
    with AmplifierSimulator(link_path=tmp_path / "ttyAMP") as simulator:
        assert simulator.booted.wait(5)  # its !BOOT is out before a driver opens the port
        yield simulator


@pytest.fixture
def amp(hw, sim):
    driver = hw.amplifier(sim.port, timeout_s=0.2)
    driver.link.reopen_s = 0.05
    return driver


def sent(sim, command):
    return [args for name, args in sim.commands if name == command]


def test_handshake(amp, sim):
    assert isinstance(amp, Lxa1Amplifier) and amp.has_link
    info = amp.hello()
    assert (info.protocol, info.model, info.firmware, info.vol_max, info.inputs) == (
        "LXA1", "LXA-PA350", "1.4", 63, 2)
    assert "LXA-PA350" in amp.describe()


@pytest.mark.parametrize("volume, steps", [(0, 0), (1, 1), (50, 32), (80, 50), (100, 63)])
def test_volume_maps_onto_the_amplifier_scale(amp, sim, volume, steps):
    amp.set_volume(volume)
    assert sim.volume == steps
    assert amp.status().volume == round(steps * 100 / 63)


def test_volume_follows_the_vol_max_the_amplifier_announces(hw, tmp_path):
    with AmplifierSimulator(vol_max=31) as small:
        driver = hw.amplifier(small.port)
        driver.set_volume(50)
        assert small.volume == 16
        with pytest.raises(ValueError):
            driver.set_volume(101)


def test_power_mute_input_and_status(amp, sim):
    amp.set_power(True)
    amp.set_input(2)
    amp.set_mute(False)
    status = amp.status()
    assert (status.power, status.mute, status.input) == (True, False, 2)
    assert status.temp_c == 44.0 and not status.protect and status.fault is None
    assert (status.line_current_a, status.line_impedance_ohm) == (0.85, 8.2)
    with pytest.raises(AmpError, match="RANGE"):
        amp.set_input(3)  # a 2-input amplifier


def test_garbage_on_the_line_costs_nothing(amp, sim):
    amp.status()  # in step: what arrives from now on is read, not discarded
    sim.fail("garbage")
    sim.send(b"=99 STATUS pwr=1*00\r\n")  # a reply-shaped line with a bad checksum
    sim.send(b"\x00\x13" + frame("=", "7F STATUS pwr=1 prot=1 fault=short"))  # noise, then a foreign tag
    assert amp.status().protect is False
    assert amp.garbage_lines >= 2


def test_a_late_reply_is_never_taken_for_the_next_one(amp, sim):
    amp.set_volume(40)
    amp.timeout_s = 0.1
    sim.reply_delay_s = 0.15  # later than the driver waits
    with pytest.raises(DeviceTimeout):
        amp.set_volume(60)
    sim.reply_delay_s = 0.0
    time.sleep(0.2)  # the three late replies to VOL are now in the buffer
    status = amp.status()  # the answer to STATUS, not one of the late answers to VOL
    assert status.volume == 60 and status.temp_c is not None
    assert amp.garbage_lines >= 1


def test_a_silent_amplifier_times_out_after_its_attempts(amp, sim):
    amp.hello()
    amp.timeout_s = 0.1
    sim.fail("silent")
    before = len(sim.commands)
    started = time.monotonic()
    with pytest.raises(DeviceTimeout, match="no answer to STATUS"):
        amp.status()
    assert time.monotonic() - started >= 0.3  # 3 attempts of 0.1 s
    assert len(sim.commands) == before


def test_protect_is_reported_as_a_notice_and_in_status(amp, sim):
    notices = []
    amp.on_notice = lambda name, fields: notices.append((name, fields))
    amp.set_power(True)
    sim.fail("protect", cause="short")
    time.sleep(0.1)
    status = amp.status()
    assert status.protect and status.fault == "short" and status.power is False
    assert ("PROTECT", {"state": "1", "fault": "short"}) in notices
    with pytest.raises(AmpError, match="PROTECT"):
        amp.set_power(True)  # refused while the cause persists
    sim.clear()
    amp.poll_notices()
    assert ("PROTECT", {"state": "0"}) in notices
    assert amp.status().protect is False


def test_unplugged_adapter_reopens_and_resyncs(amp, sim):
    amp.set_power(True)
    amp.set_input(2)
    amp.set_volume(80)
    amp.set_mute(False)
    sim.unplug()
    with pytest.raises(SerialLinkError):
        amp.status()
    assert not amp.connected
    sim.replug()
    # The amplifier behind the adapter kept power; pretend it forgot its settings anyway.
    sim.input, sim.volume, sim.mute = 1, 0, True
    time.sleep(0.1)
    sim.commands.clear()
    status = amp.status()
    assert [c for c, _ in sim.commands] == ["HELLO", "PWR", "INPUT", "VOL", "MUTE", "STATUS"]
    assert (status.input, status.volume, status.mute) == (2, 79, False)
    assert amp.connected


def test_a_rebooted_amplifier_gets_its_settings_again(hw, tmp_path):
    mains = {"on": True}
    with AmplifierSimulator(mains=lambda: mains["on"], boot_s=0.05) as sim:
        amp = hw.amplifier(sim.port, timeout_s=0.2)
        time.sleep(0.15)
        amp.set_volume(100)
        amp.set_mute(False)
        mains["on"] = False  # a power cut: the amplifier restarts muted, at its default volume
        time.sleep(0.1)
        mains["on"] = True
        time.sleep(0.2)  # booted; its !BOOT notice waits in the buffer
        amp.poll_notices()
        status = amp.status()
        assert (status.volume, status.mute) == (100, False)
        assert sent(sim, "HELLO") and sent(sim, "VOL")[-1] == ("63",)


def test_frames():
    line = frame("=", "0A HELLO LXA1 model=X")
    assert line.endswith(b"\r\n") and parse_frame(line) == ("=", ["0A", "HELLO", "LXA1", "model=X"])
    assert parse_frame(b"junk\x00\xff" + line) == ("=", ["0A", "HELLO", "LXA1", "model=X"])
    assert parse_frame(line.replace(b"model=X", b"model=Y")) is None  # checksum
    assert parse_frame(b"=0A HELLO") is None and parse_frame(b"") is None
    assert parse_frame(b"=0A HELLO*ZZ") is None


def test_without_a_port_the_mock_simulates_and_the_pi_is_relay_only(tmp_path):
    with make("mock", tmp_path) as mock:
        driver = mock.amplifier(None)
        assert isinstance(driver, Lxa1Amplifier) and "amplifier" in mock.simulators
        assert driver.hello().model == "LXA-PA350"  # no amp_power relay made: mains on
    with make("pi", tmp_path) as pi:
        assert isinstance(pi.amplifier(None), RelayOnlyAmplifier)
        with pytest.raises(HardwareError, match="needs amplifier.port"):
            pi.amplifier(None, driver="lxa1")


def test_relay_driver_never_opens_the_port(hw, sim):
    driver = hw.amplifier(sim.port, driver="relay")
    assert isinstance(driver, RelayOnlyAmplifier) and not driver.has_link
    driver.set_volume(50)
    assert driver.status().protect is False and driver.hello().protocol == "relay"
    assert sim.commands == []
    with pytest.raises(HardwareError, match="driver"):
        hw.amplifier(sim.port, driver="serial")


def test_mock_amplifier_is_dead_without_mains(tmp_path):
    with make("mock", tmp_path, amp_boot_s=0.05) as hw:
        power = hw.relay("amp_power", 17)
        driver = hw.amplifier(None, timeout_s=0.1)
        with pytest.raises(DeviceTimeout):
            driver.hello()
        power.on()
        time.sleep(0.2)
        assert driver.hello().protocol == "LXA1"
        assert [e["command"] for e in hw.timeline.events("amp")][-1] == "HELLO"
