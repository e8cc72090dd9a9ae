"""GPS receivers through both factories, against the NMEA simulator on a pty: fix and
position, talkers, loss and recovery events, an unplugged receiver, GPS as a clock."""

import time
from datetime import datetime, timezone

import pytest

from hw import GpsClockSource, GpsReceiver, UnitClock
from hw.sim import GpsSimulator
from tests.support.hw import hw, make  # noqa: F401 (hw: the fixture)
from tests.support.waiting import wait_for


@pytest.fixture
def sim(tmp_path):
    with GpsSimulator(link_path=tmp_path / "ttyGPS", interval_s=0.05, talker="GN") as simulator:
        yield simulator


class Events:
    def __init__(self):
        self.seen = []

    def __call__(self, kind, detail, **extra):
        self.seen.append((kind, detail))

    def kinds(self):
        return [kind for kind, _ in self.seen]


def test_fix_position_and_health(hw, sim):
    gps = hw.gps(sim.port, lost_after_s=0.5)
    assert isinstance(gps, GpsReceiver)
    fix = gps.wait_for_fix(5)
    assert fix is not None and (fix.fix, fix.satellites) == ("gps", 9)
    assert gps.position() == {"lat": pytest.approx(12.6797, abs=1e-6),
                              "lon": pytest.approx(108.0446, abs=1e-6)}
    assert gps.health()["fix"] == "gps" and gps.health()["lat"] == pytest.approx(12.6797, abs=1e-6)
    assert "fix (gps, 9 satellites)" in gps.describe()
    assert gps.decoder.dropped == 0  # GSA and GSV are valid, just not used


@pytest.mark.parametrize("talker, lat, lon", [("GP", -33.8568, 151.2153), ("BD", 21.0278, 105.8342),
                                              ("GA", 10.7769, 106.7009), ("GL", 48.8584, -2.2945)])
def test_talkers_and_hemispheres(hw, tmp_path, talker, lat, lon):
    with GpsSimulator(interval_s=0.05, talker=talker, lat=lat, lon=lon) as sim:
        fix = hw.gps(sim.port).wait_for_fix(5)
        assert (fix.lat, fix.lon) == (pytest.approx(lat, abs=1e-5), pytest.approx(lon, abs=1e-5))


def test_losing_the_fix_and_getting_it_back(hw, sim):
    events = Events()
    gps = hw.gps(sim.port, lost_after_s=0.3)
    gps.on_event = events
    assert gps.wait_for_fix(5)
    sim.fail("lost")  # sentences keep coming, without a fix
    assert wait_for(lambda: "gps.lost" in events.kinds())
    assert gps.fix is None and gps.position() is None and gps.receiving
    assert "reports no fix" in events.seen[-1][1]
    assert gps.health() == {"lat": None, "lon": None, "fix": "none", "satellites": 0}
    sim.clear()
    assert wait_for(lambda: "gps.recovered" in events.kinds())
    assert events.kinds() == ["gps.lost", "gps.recovered"]


def test_an_unplugged_receiver_is_lost_then_read_again(hw, sim):
    events = Events()
    gps = hw.gps(sim.port, lost_after_s=0.3)
    gps.on_event = events
    gps.link.reopen_s = 0.05
    assert gps.wait_for_fix(5)
    sim.unplug()
    assert wait_for(lambda: "gps.lost" in events.kinds())
    assert "silent or unplugged" in events.seen[-1][1] and not gps.receiving
    assert "no receiver" in gps.describe() or "no NMEA" in gps.describe()
    sim.replug()
    assert wait_for(lambda: gps.fix is not None)
    assert gps.link.generation >= 2
    assert events.kinds() == ["gps.lost", "gps.recovered"]


def test_garbage_between_epochs_is_survived(hw, sim):
    gps = hw.gps(sim.port)
    assert gps.wait_for_fix(5)
    before = gps.sentences
    sim.fail("garbage")
    assert wait_for(lambda: gps.sentences > before + 5)
    assert gps.decoder.dropped >= 1 and gps.fix is not None


def test_no_lost_event_before_a_first_fix(hw, sim):
    events = Events()
    sim.fail("lost")
    gps = hw.gps(sim.port, lost_after_s=0.1)
    gps.on_event = events
    time.sleep(0.4)
    assert events.seen == [] and "no fix yet" in gps.describe()


def test_without_a_port_the_mock_simulates_and_the_pi_has_none(tmp_path):
    with make("mock", tmp_path, gps_interval_s=0.05) as mock:
        gps = mock.gps(None)
        assert gps is not None and "gps" in mock.simulators
        assert gps.wait_for_fix(5) is not None
        mock.simulators["gps"].fail("silent")
    with make("pi", tmp_path) as pi:
        assert pi.gps(None) is None


def test_gps_time_as_a_clock_source(hw, sim):
    gps = hw.gps(sim.port, lost_after_s=0.3)
    source = GpsClockSource(gps)
    assert gps.wait_for_fix(5)
    assert wait_for(lambda: source.valid)
    assert abs(source.time() - time.time()) < 0.5  # the simulator sends the system's UTC
    sim.fail("lost")
    assert wait_for(lambda: not source.valid)
    assert source.time() is None


def test_a_rolled_over_receiver_is_no_clock(hw, tmp_path):
    rollover = 1024 * 7 * 86400
    with GpsSimulator(interval_s=0.05, utc=lambda: time.time() - rollover) as sim:
        gps = hw.gps(sim.port)
        assert gps.wait_for_fix(5) is not None  # its position is fine
        time.sleep(0.2)
        assert GpsClockSource(gps).time() is None  # its date (2007) is not


class FixedTime:
    def __init__(self, value):
        self.value = value

    def time(self):
        return self.value


def test_unit_clock_sources(tmp_path):
    rtc = tmp_path / "hctosys"
    ntp = {"synced": True}
    clock = UnitClock(ntp_check=lambda: ntp["synced"], rtc_path=str(rtc))
    assert clock.source() == "ntp"
    clock = UnitClock(ntp_check=lambda: False, rtc_path=str(rtc))
    assert clock.source() == "system"
    rtc.write_text("1\n")
    assert clock.source() == "rtc"
    clock.attach_gps(FixedTime(time.time() + 0.2))
    assert clock.source() == "gps"  # GPS agrees with the system clock: better than the RTC
    clock.attach_gps(FixedTime(time.time() + 3600))
    assert clock.source() == "rtc"  # disagrees, and this clock may not step the system's
    clock.attach_gps(FixedTime(None))
    assert clock.source() == "rtc"
    assert clock.now().tzinfo is timezone.utc
    assert abs(clock.now() - datetime.now(timezone.utc)).total_seconds() < 1


def test_unit_clock_asks_ntp_once_a_minute():
    calls = []
    clock = UnitClock(ntp_check=lambda: calls.append(1) or True, rtc_path="/nonexistent")
    for _ in range(5):
        assert clock.source() == "ntp"
    assert len(calls) == 1
