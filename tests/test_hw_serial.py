"""SerialLink on real ttys (pseudo-terminals) and pyserial URLs: lines, garbage, a USB
adapter that vanishes and comes back, exclusive use, and the replay:// recording URL."""

import os
import time
import tty

import pytest
import serial

from hw import DeviceTimeout, GpsReceiver, SerialLink, SerialLinkError
from hw.serialurls.protocol_replay import split_epochs
from hw.sim import PtySimulator


class Echo(PtySimulator):
    """A device that answers each line with `ok <line>`."""

    def on_line(self, line):
        self.send(b"ok " + line + b"\r\n")


@pytest.fixture
def echo(tmp_path):
    with Echo(link_path=tmp_path / "ttyUSB0") as device:
        yield device


def soon():
    return time.monotonic() + 2.0


def test_lines_over_a_pty(echo):
    link = SerialLink(echo.port, name="echo")
    assert not link.is_open
    link.write(b"hello\r\n")
    assert link.read_line(soon()) == b"ok hello"
    assert link.is_open and link.generation == 1
    assert link.read_line(time.monotonic() + 0.1) is None  # nothing more: None at the deadline
    link.close()
    link.close()
    with pytest.raises(SerialLinkError):
        link.write(b"x")


def test_any_line_end_and_overlong_garbage(tmp_path):
    master, slave = os.openpty()
    tty.setraw(slave)
    try:
        link = SerialLink(os.ttyname(slave), name="raw", max_line=64)
        link.open()
        os.write(master, b"one\rtwo\nthree\r\n\r\n" + b"\x00\xff" * 100 + b"\r\nfour\r\n" + b"#" * 200)
        lines = [link.read_line(soon()) for _ in range(4)]
        assert lines == [b"one", b"two", b"three", b"four"]
        assert link.read_line(time.monotonic() + 0.2) is None
        assert link.garbage_bytes == 400  # the 200-byte line, and 200 bytes with no end in sight
        link.close()
    finally:
        os.close(master)
        os.close(slave)


def test_unplugged_adapter_is_reopened_when_it_returns(echo):
    link = SerialLink(echo.port, name="echo", reopen_s=0.1)
    link.write(b"a\r\n")
    assert link.read_line(soon()) == b"ok a"
    echo.unplug()
    with pytest.raises(SerialLinkError, match="echo"):
        link.write(b"b\r\n")
        link.read_line(soon())
    assert not link.is_open
    with pytest.raises(SerialLinkError, match="cannot open|unavailable"):
        link.open()  # still gone
    echo.replug()
    time.sleep(0.15)
    link.write(b"c\r\n")
    assert link.read_line(soon()) == b"ok c"
    assert link.generation == 2


def test_reopen_attempts_are_rate_limited(tmp_path):
    link = SerialLink(str(tmp_path / "nothing-here"), name="gone", reopen_s=30)
    with pytest.raises(SerialLinkError, match="cannot open"):
        link.open()
    with pytest.raises(SerialLinkError, match="unavailable"):
        link.open()  # not tried again for reopen_s: no busy loop on a missing device
    assert link.open_attempts == 1


def test_a_port_is_used_by_one_program_at_a_time(echo):
    first = SerialLink(echo.port, name="first")
    first.open()
    second = SerialLink(echo.port, name="second")
    with pytest.raises(SerialLinkError, match="lock"):
        second.open()
    first.close()


def test_any_pyserial_url():
    link = SerialLink("loop://", name="loop")
    link.write(b"$GPTXT,01,01,02,hello*00\r\n")
    assert link.read_line(soon()).startswith(b"$GPTXT")
    link.close()


def test_device_timeout_is_a_timeout_and_a_hardware_error():
    from loaxa.errors import HardwareError

    assert issubclass(DeviceTimeout, TimeoutError) and issubclass(DeviceTimeout, HardwareError)


RECORDING = (
    "$GPGGA,020135.00,1240.78210,N,10802.67564,E,1,08,0.9,512.3,M,-2.1,M,,*75\r\n"
    "$GPRMC,020135.00,A,1240.78210,N,10802.67564,E,0.034,,261126,,,A*74\r\n"
    "$GPGSV,1,1,01,05,41,112,38*41\r\n"
    "$GPGGA,020136.00,1240.78220,N,10802.67570,E,1,08,0.9,512.4,M,-2.1,M,,*77\r\n"
    "$GPRMC,020136.00,A,1240.78220,N,10802.67570,E,0.040,,261126,,,A*72\r\n"
)


def test_recordings_are_cut_into_epochs():
    epochs = split_epochs(RECORDING.encode())
    assert len(epochs) == 2
    assert epochs[0].count(b"\r\n") == 3 and epochs[1].startswith(b"$GPGGA,020136.00")


def test_replay_url_paces_epochs(tmp_path):
    path = tmp_path / "drive.nmea"
    path.write_text(RECORDING)
    port = serial.serial_for_url(f"replay://{path}?interval=0.2&loop=0", timeout=1.0)
    started = time.monotonic()
    first = port.read(4096)
    assert first.count(b"\r\n") == 3  # one epoch: GGA, RMC and GSV of 02:01:35
    second = port.read(4096)
    assert second.startswith(b"$GPGGA,020136.00") and time.monotonic() - started >= 0.18
    port.timeout = 0.2
    assert port.read(10) == b""  # loop=0: the end of the drive
    port.close()


def test_replay_url_errors(tmp_path):
    with pytest.raises(serial.SerialException, match="cannot read"):
        serial.serial_for_url(f"replay://{tmp_path}/missing.nmea")
    (tmp_path / "x.nmea").write_text(RECORDING)
    with pytest.raises(serial.SerialException, match="options"):
        serial.serial_for_url(f"replay://{tmp_path}/x.nmea?speed=2")


def test_a_recorded_drive_feeds_a_gps_receiver(tmp_path):
    path = tmp_path / "drive.nmea"
    path.write_text(RECORDING)
    gps = GpsReceiver(SerialLink(f"replay://{path}?interval=0.05", name="gps")).start()
    try:
        fix = gps.wait_for_fix(3.0)
        assert fix is not None and fix.lat == pytest.approx(12.679702, abs=1e-5)
        assert gps.utc_reference().utc.date().isoformat() == "2026-11-26"
    finally:
        gps.close()
