"""Health probes: the Pi's readings from a recorded sysfs/proc tree and a recorded
`vcgencmd`, the live machine where it can tell, and the mock's settable readings."""

import os
import stat

import pytest

from hw import MockProbes, PiProbes, detect_mode
from hw.probes import decode_throttled

MEMINFO = "MemTotal:        3885428 kB\nMemFree:          712948 kB\nMemAvailable:    2654208 kB\n"


@pytest.fixture
def pi_tree(tmp_path):
    """What a Raspberry Pi 4 shows: a CPU thermal zone, meminfo, uptime."""
    (tmp_path / "sys/class/thermal/thermal_zone0").mkdir(parents=True)
    (tmp_path / "sys/class/thermal/thermal_zone0/temp").write_text("51121\n")
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/meminfo").write_text(MEMINFO)
    (tmp_path / "proc/uptime").write_text("350735.47 1379846.54\n")
    return tmp_path


def fake_vcgencmd(folder, output: str, code: int = 0):
    script = folder / "vcgencmd"
    script.write_text(f"#!/bin/sh\n[ \"$1\" = get_throttled ] || exit 2\necho '{output}'\nexit {code}\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


def test_pi_readings(pi_tree, tmp_path):
    probes = PiProbes(pi_tree, vcgencmd=fake_vcgencmd(tmp_path, "throttled=0x50005"))
    assert probes.cpu_temp_c() == pytest.approx(51.121)
    assert probes.mem_free_mb() == pytest.approx(2654208 / 1024)
    assert probes.uptime_s() == pytest.approx(350735.47)
    flags = probes.throttling()
    assert flags["under_voltage"] and flags["throttled"] and not flags["freq_capped"]
    assert flags["under_voltage_occurred"] and flags["throttled_occurred"]
    assert probes.faults() == ["power.under_voltage", "power.throttled"]
    snap = probes.snapshot(tmp_path)
    assert (snap["cpu_temp_c"], snap["mem_free_mb"], snap["uptime_s"]) == (51.1, 2592.0, 350735.0)
    assert snap["disk_free_mb"] > 0


def test_throttling_from_sysfs_then_hwmon_when_vcgencmd_is_missing(pi_tree, tmp_path):
    missing = str(tmp_path / "no-vcgencmd")
    firmware = pi_tree / "sys/devices/platform/soc/soc:firmware"
    firmware.mkdir(parents=True)
    (firmware / "get_throttled").write_text("20000\n")  # freq capped since boot, not now
    flags = PiProbes(pi_tree, vcgencmd=missing).throttling()
    assert flags["freq_capped_occurred"] and not flags["under_voltage"]
    (firmware / "get_throttled").unlink()
    hwmon = pi_tree / "sys/class/hwmon/hwmon1"
    hwmon.mkdir(parents=True)
    (hwmon / "name").write_text("rpi_volt\n")
    (hwmon / "in0_lcrit_alarm").write_text("1\n")
    assert PiProbes(pi_tree, vcgencmd=missing).throttling()["under_voltage"] is True


def test_nothing_to_read_is_none(tmp_path):
    probes = PiProbes(tmp_path, vcgencmd=fake_vcgencmd(tmp_path, "error=1", code=1))
    assert probes.cpu_temp_c() is None and probes.mem_free_mb() is None
    assert probes.uptime_s() is None and probes.throttling() is None
    assert probes.faults() == []


def test_decode_throttled():
    assert decode_throttled(0) == dict.fromkeys(decode_throttled(0), False)
    assert decode_throttled(0x1)["under_voltage"] and decode_throttled(0x80000)["soft_temp_limit_occurred"]


def test_the_cpu_zone_is_found_by_type_and_bad_files_give_none(tmp_path):
    thermal = tmp_path / "sys/class/thermal"
    for name, kind, temp in [("thermal_zone0", "acpitz", "27800"), ("thermal_zone1", "x86_pkg_temp", "48123"),
                             ("thermal_zone2", "cpu-thermal", "broken"), ("thermal_zone10", "iwlwifi", "40000")]:
        (thermal / name).mkdir(parents=True)
        (thermal / name / "type").write_text(kind + "\n")
        (thermal / name / "temp").write_text(temp + "\n")
    probes = PiProbes(tmp_path, vcgencmd=str(tmp_path / "no-vcgencmd"))
    assert probes.cpu_temp_c() == pytest.approx(48.123)  # the CPU zone by type; the unreadable Pi zone skipped
    (thermal / "thermal_zone2" / "temp").write_text("61234\n")
    assert probes.cpu_temp_c() == pytest.approx(61.234)  # the Raspberry Pi's zone first
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/uptime").write_text("garbage\n")
    (tmp_path / "proc/meminfo").write_text("MemAvailable: lots\n")
    assert (probes.uptime_s(), probes.mem_free_mb()) == (None, None)
    empty = PiProbes(tmp_path / "empty", vcgencmd=str(tmp_path / "no-vcgencmd"))
    assert (empty.cpu_temp_c(), empty.uptime_s(), empty.mem_free_mb(), empty.throttling()) == (None,) * 4


def test_readings_on_this_machine(tmp_path):
    probes = PiProbes()
    assert probes.uptime_s() > 0 and 0 < probes.mem_free_mb() < 16 * 1024 * 1024
    temp = probes.cpu_temp_c()
    assert temp is None or -40 < temp < 130


def test_disk_free_of_a_folder_not_made_yet(tmp_path):
    free = PiProbes().disk_free_mb(tmp_path / "state" / "not" / "yet")
    st = os.statvfs(tmp_path)
    assert free == pytest.approx(st.f_bavail * st.f_frsize / 2**20, rel=0.05)


@pytest.mark.skipif(detect_mode() != "pi", reason="the live Pi's own readings: not on a Raspberry Pi")
def test_live_pi_readings():
    probes = PiProbes()
    assert 0 < probes.cpu_temp_c() < 110
    assert probes.throttling() is not None
    assert probes.mem_free_mb() > 0 and probes.uptime_s() > 0


def test_mock_readings_can_be_set():
    probes = MockProbes()
    assert probes.faults() == [] and probes.cpu_temp_c() == 47.2
    probes.set(under_voltage=True, cpu_temp_c=81.0)
    assert probes.faults() == ["power.under_voltage"] and probes.cpu_temp_c() == 81.0
    probes.set(under_voltage=False)
    flags = probes.throttling()
    assert not flags["under_voltage"] and flags["under_voltage_occurred"]  # it did happen since boot
    probes.set(disk_free_mb=12.0)
    assert probes.disk_free_mb("/") == 12.0
    with pytest.raises(TypeError, match="fan_rpm"):
        probes.set(fan_rpm=3000)


def test_mock_uptime_is_the_mock_units_own():
    """It was three days from the first second; now it counts from the mock unit's start."""
    from datetime import datetime, timezone

    from hw import MockHardware
    from tests.support.clock import ManualClock
    clock = ManualClock(datetime(2026, 12, 1, tzinfo=timezone.utc))
    probes = MockProbes(clock=clock)
    assert probes.uptime_s() == 0.0
    clock.advance(90.5)
    assert probes.uptime_s() == 90.5
    probes.set(uptime_s=7.0)  # a test may still fix it
    assert probes.uptime_s() == 7.0
    probes.set(uptime_s=None)
    assert probes.uptime_s() == 90.5
    import tempfile
    with tempfile.TemporaryDirectory() as out, MockHardware(out) as factory:
        assert 0 <= factory.probes().uptime_s() < 60
