"""Amplifier sequencing on mock hardware with the LXA1 simulator: warm-up, zones before
audio, no relay while audio plays (proved on the timeline), volume over serial, and the
fault paths: protect or the fault line during playback, the hold, recovery, a lost link."""

import threading
import time

import pytest

from audio import play_files
from device.amp import AmpControl, AmpFault
from hw import MockHardware, RelayOnlyAmplifier, SystemClock
from loaxa.errors import HardwareError
from tests.support.media import write_wav
from tests.support.waiting import wait_for


class Events(list):
    def __call__(self, kind, detail, **extra):
        self.append((kind, detail, extra))

    def kinds(self):
        return [kind for kind, _, _ in self]


class HoldClock(SystemClock):
    """The system clock, whose monotonic time a test can move on: a fault's hold passes
    at once, however loaded the machine is."""

    def __init__(self):
        self.offset = 0.0

    def monotonic(self):
        return super().monotonic() + self.offset

    def pass_hold(self):
        self.offset += 60.0


class Rig:
    """Mock parts wired as a unit: relays, fault line, LED, the simulated LXA1 amplifier."""

    def __init__(self, tmp_path, *, serial=True, speed=20.0):
        self.clock = HoldClock()
        self.hw = MockHardware(tmp_path / "out", speed=speed, amp_boot_s=0.05, clock=self.clock)
        hw = self.hw
        self.power, self.mute = hw.relay("amp_power", 17), hw.relay("mute", 27)
        self.zones = [hw.relay("zone1", 22), hw.relay("zone2", 23)]
        self.fault = hw.input("fault", 24)
        self.led = hw.status_led(25)
        self.driver = hw.amplifier(None, timeout_s=0.15) if serial else RelayOnlyAmplifier()
        if serial:
            self.driver.link.reopen_s = 0.05
        self.sim = hw.simulators.get("amplifier")
        self.speaker = hw.speaker()
        self.events = Events()
        self.stop = threading.Event()
        self.faults_seen = []
        self.wav = write_wav(tmp_path / "bulletin.wav", 4.0)

    def amp(self, **options) -> AmpControl:
        defaults = dict(power=self.power, mute=self.mute, zones=self.zones, clock=self.hw.clock,
                        warmup_s=0.2, cooldown_s=0.3, driver=self.driver, fault_input=self.fault,
                        led=self.led, on_fault=self._on_fault, on_event=self.events, poll_s=0.05,
                        fault_hold_s=30.0)
        defaults.update(options)
        return AmpControl(**defaults)

    def _on_fault(self, reason):
        self.faults_seen.append(reason)
        self.stop.set()  # what the integrator's hook does: stop the player

    def play(self, amp, zones=None, wav=None) -> float:
        """One playback as device/playout.py drives it."""
        amp.power_on()
        amp.select_zones(zones)
        amp.unmute()
        try:
            return play_files(self.speaker, "item", [wav or self.wav], self.stop)
        finally:
            amp.mute()

    def play_in_background(self, amp):
        result = {}

        def run():
            try:
                result["played"] = self.play(amp)
            except Exception as exc:  # noqa: BLE001
                result["error"] = exc
        thread = threading.Thread(target=run)
        thread.start()
        self.hw.timeline.wait_for("speaker.first_sample", timeout=10)
        return thread, result

    def events_of(self, kind):
        return self.hw.timeline.events(kind)

    def close(self):
        self.hw.close()


@pytest.fixture
def rig(tmp_path):
    r = Rig(tmp_path)
    yield r
    r.close()


def relay_changes_during_audio(timeline):
    """Relay events between each speaker.first_sample and the speaker.close after it."""
    inside, found = False, []
    for event in timeline.events():
        if event["kind"] == "speaker.first_sample":
            inside = True
        elif event["kind"] == "speaker.close":
            inside = False
        elif event["kind"] == "relay" and inside:
            found.append(event)
    return found


# --- the sequence -------------------------------------------------------------------

def test_the_original_api_still_works_relay_only(tmp_path):
    with MockHardware(tmp_path) as hw:
        power, mute = hw.relay("amp_power", 17), hw.relay("mute", 27)
        amp = AmpControl(power=power, mute=mute, clock=hw.clock, warmup_s=0.1, cooldown_s=0.1)
        assert mute.is_on and not amp.powered
        before = hw.clock.monotonic()
        ready = amp.power_on()
        assert power.is_on and amp.powered and before + 0.1 <= ready <= hw.clock.monotonic() + 0.1
        assert amp.power_on() == ready  # already on: same ready time
        assert amp.seconds_until_cooldown() is None
        amp.unmute()
        assert not mute.is_on and hw.clock.monotonic() >= ready
        amp.mute()
        assert mute.is_on and 0 < amp.seconds_until_cooldown() <= 0.1
        time.sleep(0.12)
        assert amp.seconds_until_cooldown() == 0.0
        amp.power_off()
        assert not power.is_on and not amp.powered and mute.is_on


def test_warm_up_then_zones_then_unmute_then_audio(rig):
    amp = rig.amp(warmup_s=0.3)
    played = rig.play(amp, zones=[2])
    assert played == pytest.approx(4.0, abs=0.05)
    assert rig.zones[1].is_on and not rig.zones[0].is_on  # only zone 2 for this item
    relays = [(e["role"], e["on"], e["t"]) for e in rig.events_of("relay")]
    order = [(role, on) for role, on, _ in relays]
    assert order[:4] == [("mute", True), ("amp_power", True), ("zone2", True), ("mute", False)]
    assert order[-1] == ("mute", True)
    power_on = relays[1][2]
    unmuted = relays[3][2]
    first = rig.events_of("speaker.first_sample")[0]["t"]
    assert unmuted - power_on >= 0.3 - 0.01  # muted through the warm-up
    assert first >= unmuted  # no sound before the mute is released
    assert relay_changes_during_audio(rig.hw.timeline) == []
    # The next playback chose no zones: it gets every zone (switched while still muted).
    amp.power_on()
    amp.unmute()
    assert all(z.is_on for z in rig.zones)
    amp.mute()


def test_no_relay_switches_while_audio_plays(rig):
    amp = rig.amp()
    thread, result = rig.play_in_background(amp)
    refusals = []
    for attempt in (lambda: amp.select_zones([1]), amp.power_off,
                    lambda: amp.select_zones(None)):  # same zones: nothing to switch, allowed
        try:
            attempt()
        except HardwareError as exc:
            refusals.append(str(exc))
    assert len(refusals) == 2 and "while audio plays" in refusals[0]
    # A change that may wait gets its turn once the audio ends.
    assert amp.select_zones([1], wait_s=10) == (1,)
    thread.join(10)
    assert result["played"] == pytest.approx(4.0, abs=0.05)
    assert relay_changes_during_audio(rig.hw.timeline) == []
    assert [(e["role"], e["on"]) for e in rig.events_of("relay")][-2:] == [("mute", True), ("zone2", False)]


def test_zones_are_numbered_from_one(rig):
    amp = rig.amp()
    with pytest.raises(ValueError, match="zone 3"):
        amp.select_zones([3])
    with pytest.raises(ValueError, match="zone 0"):
        amp.select_zones([0, 1])
    assert amp.select_zones([2, 1, 2]) == (1, 2)


def test_off_after_cooldown_mute_first_zones_last(rig):
    amp = rig.amp(cooldown_s=0.2)
    rig.play(amp)
    assert wait_for(lambda: amp.seconds_until_cooldown() == 0.0)
    amp.power_off()
    tail = [(e["role"], e["on"]) for e in rig.events_of("relay")][-3:]
    assert tail == [("amp_power", False), ("zone1", False), ("zone2", False)]
    assert rig.mute.is_on


def test_volume_and_input_go_to_the_amplifier(rig):
    amp = rig.amp(volume=50, input_number=2)
    rig.play(amp, wav=write_wav(rig.hw.output_dir / "short.wav", 0.2))
    assert (rig.sim.volume, rig.sim.input, rig.sim.power) == (32, 2, True)
    assert rig.sim.mute is False
    amp.power_on()
    amp.set_volume(80)  # while on: at once
    assert rig.sim.volume == 50
    assert amp.health() == {"power": True, "fault": None, "temp_c": pytest.approx(44.0),
                            "volume": 80, "link": "ok"}
    with pytest.raises(ValueError):
        amp.set_volume(120)


# --- faults ---------------------------------------------------------------------------

def test_protect_during_playback_stops_audio_then_switches_off(tmp_path):
    rig = Rig(tmp_path, speed=2.0)  # 4 s of audio in 2 s: time for the fault to strike
    try:
        _protect_during_playback(rig)
    finally:
        rig.close()


def _protect_during_playback(rig):
    amp = rig.amp().start()
    thread, result = rig.play_in_background(amp)
    time.sleep(0.2)
    rig.sim.fail("protect", cause="short")
    thread.join(10)
    assert rig.faults_seen == ["amplifier in protect (short)"]
    assert result["played"] < 3.0  # cut short, faded
    assert wait_for(lambda: "amp.fault" in rig.events.kinds())
    kind, detail, extra = rig.events[rig.events.kinds().index("amp.fault")]
    assert "short" in detail and extra == {"reason": "amplifier in protect (short)"}
    assert not rig.power.is_on and rig.mute.is_on and not any(z.is_on for z in rig.zones)
    assert rig.led.pattern == "fault" and amp.fault and amp.faults() == ["amp.fault"]
    assert amp.health()["fault"] == "amplifier in protect (short)" and amp.health()["power"] is False
    # The audio stopped before any relay moved.
    assert relay_changes_during_audio(rig.hw.timeline) == []
    close = rig.events_of("speaker.close")[-1]["t"]
    power_off = [e for e in rig.events_of("relay") if e["role"] == "amp_power" and not e["on"]][-1]["t"]
    assert power_off >= close
    with pytest.raises(AmpFault, match="protect"):
        amp.power_on()  # held off
    amp.close()


def test_the_fault_line_during_playback_relay_only(tmp_path):
    rig = Rig(tmp_path, serial=False, speed=2.0)
    try:
        amp = rig.amp()
        thread, result = rig.play_in_background(amp)
        rig.hw.pin_factory.pin(24).drive_high()  # the amplifier's protect output
        thread.join(10)
        assert rig.faults_seen == ["the amplifier's fault line is active"]
        assert wait_for(lambda: "amp.fault" in rig.events.kinds())
        assert not rig.power.is_on and relay_changes_during_audio(rig.hw.timeline) == []
        assert amp.health()["link"] is None
        rig.hw.pin_factory.pin(24).drive_low()
        rig.clock.pass_hold()
        amp.power_on()
        rig.stop.clear()
        rig.play(amp, wav=write_wav(tmp_path / "again.wav", 0.2))
        assert rig.events.kinds()[-1] == "amp.recovered" and amp.fault is None
        assert rig.led.pattern != "fault"
    finally:
        rig.close()


def test_recovery_after_the_hold(rig):
    amp = rig.amp()
    amp.power_on()
    amp.unmute()
    amp.mute()
    rig.sim.fail("protect", cause="overtemp")
    amp.check()  # what the monitor does every poll_s
    assert wait_for(lambda: "amp.fault" in rig.events.kinds())
    assert not rig.power.is_on
    rig.sim.clear()  # cooled down
    with pytest.raises(AmpFault, match="another"):
        amp.power_on()
    rig.clock.pass_hold()
    rig.stop.clear()
    played = rig.play(amp, wav=write_wav(rig.hw.output_dir / "after.wav", 0.2))
    assert played == pytest.approx(0.2, abs=0.02)
    assert rig.events.kinds()[-1] == "amp.recovered" and not amp.faults()


def test_a_fault_that_persists_trips_again_on_the_retry(rig):
    amp = rig.amp()
    amp.power_on()
    rig.sim.fail("protect", cause="short")  # the loudspeaker line stays shorted
    time.sleep(0.3)
    amp.check()
    assert wait_for(lambda: amp.fault is not None and not amp.powered)
    rig.clock.pass_hold()
    amp.power_on()  # the retry
    with pytest.raises(AmpFault, match="short"):
        amp.unmute()
    assert not rig.power.is_on and rig.events.kinds().count("amp.fault") == 2
    assert rig.speaker.path is None  # no audio ever started


def test_a_lost_link_is_reported_and_playback_goes_on(rig):
    amp = rig.amp()
    rig.play(amp, wav=write_wav(rig.hw.output_dir / "a.wav", 0.1))
    rig.sim.unplug()
    played = rig.play(amp, wav=write_wav(rig.hw.output_dir / "b.wav", 0.1))
    assert played == pytest.approx(0.1, abs=0.02)  # the bulletin still goes out (relays work)
    assert rig.events.kinds() == ["amp.link_lost"] and amp.faults() == ["amp.link"]
    rig.sim.replug()
    time.sleep(0.1)
    rig.play(amp, wav=write_wav(rig.hw.output_dir / "c.wav", 0.1))
    assert rig.events.kinds() == ["amp.link_lost", "amp.link_restored"]
    assert amp.health()["link"] == "ok"


def test_for_unit_builds_from_unit_hardware(tmp_path):
    from hw import UnitHardware
    from provisioning import parse_config

    cfg = parse_config({"unit": {"id": "amp-test-01", "state_dir": str(tmp_path)},
                        "broker": {"url": "mqtt://127.0.0.1:1"},
                        "hardware": {"mode": "mock", "mock_output_dir": str(tmp_path / "out")},
                        "amplifier": {"warmup_s": 0.1, "volume": 60, "input": 2}}, base_dir=tmp_path)
    with UnitHardware(cfg) as unit_hw:
        amp = AmpControl.for_unit(unit_hw, cfg)
        assert (amp.volume, amp.input_number, amp.warmup_s) == (60, 2, 0.1)
        amp.power_on()
        amp.unmute()
        sim = unit_hw.factory.simulators["amplifier"]
        assert (sim.volume, sim.input) == (38, 2)
        amp.mute()
        amp.power_off()
