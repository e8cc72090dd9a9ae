"""The modem driver through both factories against a chatty simulated modem on a pty:
echo, unsolicited result codes inside answers, signal in dBm, registration, operator,
no signal, errors, a silent or unplugged modem."""

import time

import pytest

from hw import DeviceTimeout, Modem, ModemError, SerialLinkError
from hw.modem import csq_to_dbm
from hw.sim import ModemSimulator
from tests.support.hw import hw, make  # noqa: F401 (hw: the fixture)


@pytest.fixture
def sim(tmp_path):
    with ModemSimulator(link_path=tmp_path / "ttyUSB2") as simulator:
        yield simulator


@pytest.fixture
def modem(hw, sim):
    driver = hw.modem(sim.port, timeout_s=0.5)
    driver.link.reopen_s = 0.05
    return driver


def test_signal_registration_operator(modem, sim):
    assert isinstance(modem, Modem)
    status = modem.poll()
    assert status.signal_dbm == -73 and status.registered and status.registration == "home"
    assert (status.operator, status.access) == ("Viettel", "4G")
    assert modem.health() == {"signal_dbm": -73, "operator": "Viettel", "registration": "home",
                              "access": "4G"}
    assert modem.describe() == "-73 dBm, Viettel 4G, home"
    # It had to skip the echo of ATE0 and an unsolicited code after every answer line.
    assert sim.commands[0] == "ATE0" and modem.urcs_seen >= 4


def test_unsolicited_codes_do_not_become_answers(modem, sim):
    seen = []
    modem.on_urc = seen.append
    modem.poll()
    sim.urc(b'+CREG: 5,"1A2B","00C3F01",7')  # an unsolicited +CREG saying "roaming"
    time.sleep(0.05)
    status = modem.poll()
    assert status.registration == "home"  # the answer (+CREG: 0,1), not the URC
    assert '+CREG: 5,"1A2B","00C3F01",7' in seen and "RING" in seen


def test_no_signal(modem, sim):
    sim.fail("no_signal")
    status = modem.poll()
    assert status.signal_dbm is None and not status.registered
    assert status.registration == "searching" and status.operator is None
    assert modem.describe() == "no signal, searching"


def test_errors_and_silence(modem, sim):
    with pytest.raises(ModemError, match="AT\\+NOPE -> ERROR"):
        modem.command("AT+NOPE")
    assert modem.command("ATI") == []  # no prefix asked: every line is unsolicited to us
    sim.fail("silent")
    with pytest.raises(DeviceTimeout, match="AT\\+CSQ"):
        modem.poll()
    assert modem.status is None and modem.health()["signal_dbm"] is None


def test_unplugged_and_back(modem, sim):
    assert modem.poll().registered
    sim.unplug()
    with pytest.raises(SerialLinkError):
        modem.poll()
    sim.replug()
    time.sleep(0.1)
    sim.echo = True  # a modem that lost power echoes again: the driver says ATE0 once more
    assert modem.poll().signal_dbm == -73
    assert sim.commands.count("ATE0") == 2


@pytest.mark.parametrize("rssi, dbm", [(0, -113), (1, -111), (15, -83), (20, -73), (31, -51),
                                       (99, None), (32, None)])
def test_csq_scale(rssi, dbm):
    assert csq_to_dbm(rssi) == dbm


def test_numeric_operator_names():
    from hw.modem import _operator

    assert _operator(["0", "2", '"45204"', "7"]) == "Viettel"
    assert _operator(["0", "2", '"45201"', "2"]) == "MobiFone"
    assert _operator(["0", "2", '"45299"', "7"]) == "45299"
    assert _operator(["0", "0", '"Vinaphone"', "7"]) == "Vinaphone"
    assert _operator(["0"]) is None


def test_without_a_port_the_mock_simulates_and_the_pi_has_none(tmp_path):
    with make("mock", tmp_path) as mock:
        modem = mock.modem(None)
        assert modem.poll().operator == "Viettel"
        mock.simulators["modem"].fail("no_signal")
        assert modem.poll().registered is False
    with make("pi", tmp_path) as pi:
        assert pi.modem(None) is None
