"""Mock hardware as a real backend: relays on gpiozero's MockFactory, the WAV speaker,
the timeline and its JSON-lines file, and the factory choice."""

import json
import threading
import time
import wave
from datetime import timezone
from types import SimpleNamespace

import pytest

from audio import AlsaSink, AudioSink, builtin_wav, play_files
from hw import (HardwareFactory, MockHardware, PiHardware, SystemClock, Timeline, detect_mode,
                make_factory, safe_label)
from hw.mock import MockSpeaker
from loaxa.errors import HardwareError
from tests.support.media import wav_duration, write_wav


class ShiftedClock(SystemClock):
    """The system clock a million seconds ahead: shows which clock stamped an event."""

    SHIFT = 1_000_000.0

    def time(self):
        return super().time() + self.SHIFT


@pytest.fixture
def hw(tmp_path):
    with MockHardware(tmp_path / "mock-output", speed=100) as factory:
        yield factory


# --- the timeline --------------------------------------------------------------

def test_timeline_keeps_events_in_memory_and_in_the_file(tmp_path):
    timeline = Timeline(tmp_path / "t.jsonl", clock=ShiftedClock())
    before = time.time() + ShiftedClock.SHIFT
    timeline.record("relay", role="mute", pin=27, on=True)
    timeline.record("speaker.open", file="a.wav", label="a")

    assert [e["kind"] for e in timeline.events()] == ["relay", "speaker.open"]
    assert timeline.events("relay") == [{"t": timeline.events()[0]["t"], "kind": "relay",
                                         "role": "mute", "pin": 27, "on": True}]
    assert before <= timeline.events()[0]["t"] <= time.time() + ShiftedClock.SHIFT
    # Flushed line by line: readable by another process before close.
    assert Timeline.read(tmp_path / "t.jsonl") == timeline.events()
    timeline.close()
    timeline.close()


def test_timeline_is_thread_safe(tmp_path):
    timeline = Timeline(tmp_path / "t.jsonl")

    def burst(n):
        for i in range(200):
            timeline.record("tick", thread=n, i=i)

    threads = [threading.Thread(target=burst, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    lines = (tmp_path / "t.jsonl").read_text().splitlines()
    assert len(lines) == len(timeline.events("tick")) == 1600
    assert {(e["thread"], e["i"]) for e in map(json.loads, lines)} == {
        (n, i) for n in range(8) for i in range(200)}


def test_timeline_read_skips_a_half_written_line(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text('{"t": 1.0, "kind": "relay"}\n{"t": 2.0, "ki')
    assert Timeline.read(path) == [{"t": 1.0, "kind": "relay"}]


def test_timeline_wait_for(tmp_path):
    timeline = Timeline()
    threading.Timer(0.05, timeline.record, args=("speaker.close",)).start()
    assert timeline.wait_for("speaker.close", timeout=5)[0]["kind"] == "speaker.close"
    with pytest.raises(HardwareError, match="speaker.open"):
        timeline.wait_for("speaker.open", timeout=0.05)


# --- relays --------------------------------------------------------------------

def test_relay_drives_the_mock_pin_and_records_changes_only(hw):
    relay = hw.relay("amp_power", 17)
    pin = hw.pin_factory.pin(17)
    assert not relay.is_on and not pin.state
    relay.on()
    relay.on()  # no-op: not recorded
    assert relay.is_on and pin.state
    relay.off()
    relay.off()
    assert not relay.is_on and not pin.state

    events = hw.timeline.events("relay")
    assert [(e["role"], e["pin"], e["on"]) for e in events] == [
        ("amp_power", 17, True), ("amp_power", 17, False)]
    assert events[0]["t"] <= events[1]["t"]
    assert (relay.role, relay.pin) == ("amp_power", 17)


def test_active_low_relay_drives_the_pin_low_when_on(hw):
    relay = hw.relay("mute", 27, active_high=False)
    pin = hw.pin_factory.pin(27)
    assert not relay.is_on and pin.state  # off = line high
    relay.on()
    assert relay.is_on and not pin.state


def test_closing_a_relay_switches_it_off_once(hw):
    relay = hw.relay("zone1", 22)
    relay.on()
    relay.close()
    relay.close()
    assert not relay.is_on
    assert [e["on"] for e in hw.timeline.events("relay")] == [True, False]
    with pytest.raises(HardwareError, match="zone1"):
        relay.on()


def test_a_pin_cannot_serve_two_relays(hw):
    hw.relay("zone1", 22)
    with pytest.raises(HardwareError) as caught:
        hw.relay("zone2", 22)
    assert "GPIO22" in str(caught.value) and "\n" not in str(caught.value)


def test_relay_and_first_sample_share_one_clock(tmp_path):
    clock = ShiftedClock()
    with MockHardware(tmp_path, speed=50, clock=clock) as hw:
        amp = hw.relay("amp_power", 17)
        amp.on()
        time.sleep(0.2)  # the amplifier's warm-up, shortened
        play_files(hw.speaker(), "after-warmup", [builtin_wav("test-tone", tmp_path)],
                   threading.Event())

    relay_on = hw.timeline.events("relay")[0]
    first_sample = hw.timeline.events("speaker.first_sample")[0]
    assert relay_on["t"] > ShiftedClock.SHIFT and first_sample["t"] > ShiftedClock.SHIFT
    assert 0.2 <= first_sample["t"] - relay_on["t"] < 1.0


# --- the speaker ---------------------------------------------------------------

def test_speaker_writes_one_wav_per_playback_and_records_it(hw):
    speaker = hw.speaker()
    assert hw.speaker() is speaker and isinstance(speaker, AudioSink)
    speaker.open("20261130T060000.000+0700_sang")
    speaker.write(b"\x10\x00" * 4800)
    speaker.write(b"\x20\x00" * 4800)
    speaker.close()
    speaker.close()

    path = hw.output_dir / "20261130T060000.000+0700_sang.wav"
    with wave.open(str(path), "rb") as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (48000, 1, 2)
        assert w.getnframes() == 9600
        assert w.readframes(1) == b"\x10\x00"
    kinds = [e["kind"] for e in hw.timeline.events()]
    assert kinds == ["speaker.open", "speaker.first_sample", "speaker.close"]
    opened, first, closed = hw.timeline.events()
    assert opened["file"] == first["file"] == closed["file"] == path.name
    assert opened["label"] == "20261130T060000.000+0700_sang"
    assert closed["audio_s"] == 0.2 and closed["aborted"] is False


def test_speaker_abort_is_recorded(hw):
    speaker = hw.speaker()
    speaker.open("cut")
    speaker.write(b"\0\0" * 480)
    speaker.abort()
    speaker.abort()
    assert hw.timeline.events("speaker.close")[-1]["aborted"] is True
    assert wav_duration(hw.output_dir / "cut.wav") == 0.01


def test_speaker_never_overwrites_a_playback(hw):
    speaker = hw.speaker()
    for _ in range(3):
        speaker.open("same")
        speaker.close()
    names = sorted(p.name for p in hw.output_dir.glob("same*.wav"))
    assert names == ["same-2.wav", "same-3.wav", "same.wav"]


@pytest.mark.parametrize("label, stem", [
    ("2026-11-30T06:00:00+07:00_sang", "2026-11-30T06_00_00+07_00_sang"),
    ("../../etc/passwd", "_.._etc_passwd"),
    ("Bản tin sáng", "B_n_tin_s_ng"),
    ("", "playback"),
    ("...", "playback"),
])
def test_labels_become_safe_file_names(label, stem):
    assert safe_label(label) == stem


def test_speaker_paces_at_its_speed(tmp_path):
    timeline = Timeline()
    for speed, audio_s in ((1.0, 0.5), (10.0, 2.0)):
        speaker = MockSpeaker(tmp_path / str(speed), timeline, speed=speed)
        speaker.open("paced")
        started = time.monotonic()
        for _ in range(round(audio_s / 0.05)):
            speaker.write(b"\0\0" * 2400)
        elapsed = time.monotonic() - started
        speaker.close()
        assert audio_s / speed * 0.9 <= elapsed < audio_s / speed + 0.3


def test_speaker_misuse(hw):
    speaker = hw.speaker()
    with pytest.raises(HardwareError):
        speaker.write(b"\0\0")
    speaker.open("a")
    with pytest.raises(HardwareError):
        speaker.open("b")
    with pytest.raises(ValueError):
        speaker.write(b"\0")  # half a frame
    speaker.close()


def test_factory_close_during_playback_stops_it(tmp_path):
    hw = MockHardware(tmp_path, speed=1.0)
    src = write_wav(tmp_path / "long.wav", 10.0)
    errors = []

    def play():
        try:
            play_files(hw.speaker(), "long", [src], threading.Event())
        except HardwareError as exc:
            errors.append(exc)

    player = threading.Thread(target=play)
    player.start()
    hw.timeline.wait_for("speaker.first_sample", timeout=5)
    hw.close()
    player.join(timeout=5)
    assert not player.is_alive()
    assert len(errors) == 1 and errors[0].played_s < 2.0
    assert hw.timeline.events("speaker.close")[-1]["aborted"] is True


# --- the factory and its file ----------------------------------------------------

def test_hardware_jsonl_matches_the_timeline(tmp_path):
    with MockHardware(tmp_path, speed=100) as hw:
        amp = hw.relay("amp_power", 17)
        amp.on()
        play_files(hw.speaker(), "x", [write_wav(tmp_path / "a.wav", 0.2)], threading.Event())
        amp.off()
        lines = (tmp_path / "hardware.jsonl").read_text().splitlines()
        parsed = [json.loads(line) for line in lines]
        assert parsed == hw.timeline.events()
    assert [e["kind"] for e in parsed] == ["relay", "speaker.open", "speaker.first_sample",
                                           "speaker.close", "relay"]
    assert all(isinstance(e["t"], float) for e in parsed)


def test_factory_close_releases_everything_once(tmp_path):
    hw = MockHardware(tmp_path)
    assert hw.mock is True and isinstance(hw, HardwareFactory)
    amp = hw.relay("amp_power", 17)
    amp.on()
    speaker = hw.speaker()
    speaker.open("left-open")
    hw.close()
    hw.close()
    assert not amp.is_on
    assert not speaker.is_open
    events = Timeline.read(tmp_path / "hardware.jsonl")
    assert events[-1]["kind"] == "relay" and events[-1]["on"] is False  # newest part first
    assert events[-2]["kind"] == "speaker.close" and events[-2]["aborted"] is True
    with pytest.raises(HardwareError):
        hw.relay("mute", 27)


def test_make_factory_mock(tmp_path, monkeypatch):
    monkeypatch.delenv("LOAXA_HARDWARE", raising=False)
    with make_factory("mock", output_dir=tmp_path, speed=20.0) as hw:
        assert isinstance(hw, MockHardware) and hw.speed == 20.0 and hw.mock
        assert isinstance(hw.clock, SystemClock)


def test_make_factory_from_a_config(tmp_path, monkeypatch):
    monkeypatch.delenv("LOAXA_HARDWARE", raising=False)
    cfg = SimpleNamespace(
        hardware=SimpleNamespace(mode="mock", mock_output_dir=tmp_path / "out", mock_speed=5.0),
        audio=SimpleNamespace(device="default"))
    with make_factory(cfg) as hw:
        assert isinstance(hw, MockHardware) and hw.speed == 5.0
        assert hw.output_dir == tmp_path / "out"


def test_environment_overrides_the_mode(tmp_path, monkeypatch):
    monkeypatch.setenv("LOAXA_HARDWARE", "pi")
    hw = make_factory("mock", output_dir=tmp_path, audio_device="plughw:1")
    assert isinstance(hw, PiHardware) and hw.mock is False
    assert isinstance(hw.speaker(), AlsaSink) and hw.speaker().device == "plughw:1"
    hw.close()
    monkeypatch.setenv("LOAXA_HARDWARE", "mock")
    with make_factory("pi", output_dir=tmp_path) as hw:
        assert isinstance(hw, MockHardware)


def test_bad_modes(tmp_path, monkeypatch):
    monkeypatch.delenv("LOAXA_HARDWARE", raising=False)
    with pytest.raises(HardwareError, match="'sim'"):
        make_factory("sim", output_dir=tmp_path)
    with pytest.raises(HardwareError, match="output folder"):
        make_factory("mock")
    monkeypatch.setenv("LOAXA_HARDWARE", "gpio")
    with pytest.raises(HardwareError, match=r"\$LOAXA_HARDWARE"):
        make_factory("mock", output_dir=tmp_path)


def test_detect_mode_reads_the_device_tree():
    try:
        model = open("/proc/device-tree/model", "rb").read().decode("ascii", "replace")
    except OSError:
        model = ""
    assert detect_mode() == ("pi" if "Raspberry Pi" in model else "mock")


@pytest.mark.skipif(detect_mode() == "pi", reason="real GPIO present")
def test_pi_hardware_off_a_pi_fails_in_one_line():
    with PiHardware() as hw:
        with pytest.raises(HardwareError) as caught:
            hw.relay("amp_power", 17)
    message = str(caught.value)
    assert message.startswith("cannot open GPIO17 for relay amp_power:") and "\n" not in message


# --- the clock -----------------------------------------------------------------

def test_system_clock():
    clock = SystemClock()
    assert clock.source() == "system"
    now = clock.now()
    assert now.tzinfo is timezone.utc and abs(now.timestamp() - time.time()) < 1
    started = clock.monotonic()
    clock.sleep(-1)
    clock.sleep(0.02)
    assert 0.015 < clock.monotonic() - started < 0.5


def test_a_serial_device_not_fitted_is_absent_as_on_a_pi(tmp_path):
    with MockHardware(tmp_path, fitted=("amplifier",)) as mock:
        assert mock.gps(None) is None and mock.modem(None) is None
        assert mock.amplifier(None).hello().model == "LXA-PA350"
        assert sorted(mock.simulators) == ["amplifier"]
    with MockHardware(tmp_path, fitted=()) as mock:
        assert mock.amplifier(None).hello().protocol == "relay"
    with pytest.raises(ValueError, match="unknown serial device"):
        MockHardware(tmp_path, fitted=("gps", "radio"))


def test_idle_simulators_do_not_poll(tmp_path):
    """A fleet simulation runs thousands of them: idle, they must sleep until spoken to."""
    with MockHardware(tmp_path, amp_boot_s=0.05) as mock:
        power = mock.relay("amp_power", 17)
        amp, modem = mock.amplifier(None, timeout_s=0.2), mock.modem(None)
        ticks = {}
        for name, sim in mock.simulators.items():
            original = sim.tick
            ticks[name] = 0

            def counted(original=original, name=name):
                ticks[name] += 1
                original()
            sim.tick = counted
        time.sleep(1.0)
        assert ticks["amplifier"] <= 2 and ticks["modem"] <= 2, ticks  # mains off, nothing asked
        power.on()  # the mains relay wakes the amplifier: it boots and answers at once
        assert amp.hello().model == "LXA-PA350"
        assert modem.poll().operator == "Viettel"  # a modem that sleeps still answers at once
        assert mock.simulators["amplifier"].booted.wait(1.0)
