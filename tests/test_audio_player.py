"""The block player through the mock speaker: blocks, volume, fades, and starting on time.

The aplay sink has its own file, test_audio_alsa.py."""

import threading
import time
import tracemalloc
import warnings
import wave

import pytest

from audio import OUTPUT_FORMAT, PcmFormat, builtin_wav, play_files, volume_gain, wait_until
from audio.player import FADE_S, scale, scale_array
from hw.mock import MockSpeaker, Timeline
from loaxa.errors import HardwareError, MediaError
from tests.support.media import dbfs, make_tone, wav_duration, wav_peak, wav_rms, write_wav

FAST = 1000.0  # mock speaker speed: audio seconds per wall second


@pytest.fixture
def timeline():
    return Timeline()


@pytest.fixture
def speaker(tmp_path, timeline):
    return MockSpeaker(tmp_path / "played", timeline, speed=FAST)


class StopAfter(MockSpeaker):
    """A mock speaker that asks the player to stop once `after_s` of audio has been written."""

    def __init__(self, output_dir, timeline, stop_event, after_s):
        super().__init__(output_dir, timeline, speed=FAST)
        self.stop_event, self.after_s = stop_event, after_s

    def write(self, pcm):
        super().write(pcm)
        if self.audio_s >= self.after_s:
            self.stop_event.set()


class FailAfter(MockSpeaker):
    """A mock speaker whose output dies (as a crashed aplay would) after `after_s` of audio."""

    def __init__(self, output_dir, timeline, after_s):
        super().__init__(output_dir, timeline, speed=FAST)
        self.after_s = after_s

    def write(self, pcm):
        if self.audio_s >= self.after_s:
            raise HardwareError("mock output died")
        super().write(pcm)


# --- the PCM format ----------------------------------------------------------

def test_pcm_format_helpers():
    fmt = OUTPUT_FORMAT
    assert fmt == PcmFormat(48000, 1, 2)
    assert fmt.bytes_per_frame == 2 and fmt.bytes_per_second == 96000
    assert fmt.seconds(96000) == 1.0 and fmt.seconds(3) == pytest.approx(1 / 48000)
    assert fmt.nbytes(0.5) == 48000
    assert PcmFormat(44100, 2, 2).seconds(44100 * 4) == 1.0
    with pytest.raises(AttributeError):
        fmt.rate = 44100  # frozen


# --- playing -----------------------------------------------------------------

def test_plays_a_file_bit_exact_and_reports_its_seconds(tmp_path, speaker, timeline):
    src = write_wav(tmp_path / "bulletin.wav", 1.5)
    played = play_files(speaker, "20261130T060000.000+0700_sang", [src], threading.Event())

    assert played == pytest.approx(1.5, abs=1e-9)
    out = speaker.path
    assert out.name == "20261130T060000.000+0700_sang.wav"
    assert wav_duration(out) == pytest.approx(1.5, abs=1e-9)
    assert read_pcm(out) == read_pcm(src)  # unity volume passes samples untouched
    close = timeline.events("speaker.close")[-1]
    assert close["audio_s"] == pytest.approx(1.5) and close["aborted"] is False


def test_files_play_in_order_and_repeat(tmp_path, speaker):
    chime = builtin_wav("chime", tmp_path)
    body = write_wav(tmp_path / "body.wav", 1.0, freq=300)
    played = play_files(speaker, "x", [chime, body], threading.Event(), repeat=3)

    assert played == pytest.approx(3 * 3.5, abs=1e-9)
    assert wav_duration(speaker.path) == pytest.approx(10.5, abs=1e-9)
    # The chime's ring-out ends each pass, the tone's full level follows it.
    assert wav_rms(speaker.path, 2.6, 3.4) > 5 * wav_rms(speaker.path, 2.45, 2.5)
    assert wav_rms(speaker.path, 3.5 + 0.1, 3.5 + 0.5) < 1.5 * wav_rms(speaker.path, 0.8, 1.0)


def test_volume_zero_is_silence_and_fifty_is_quieter(tmp_path, timeline):
    src = write_wav(tmp_path / "tone.wav", 1.0, level_dbfs=-6)
    levels = {}
    for volume in (None, 100, 50, 0):
        sink = MockSpeaker(tmp_path / f"v{volume}", timeline, speed=FAST)
        assert play_files(sink, "tone", [src], threading.Event(), volume=volume) == 1.0
        levels[volume] = wav_rms(sink.path)

    assert levels[0] == 0.0
    assert levels[100] == levels[None] == pytest.approx(wav_rms(src))
    assert dbfs(levels[50]) - dbfs(levels[100]) == pytest.approx(-20.0, abs=0.2)


def test_volume_curve():
    assert volume_gain(None) == volume_gain(100) == 1.0
    assert volume_gain(0) == 0.0
    assert dbfs(volume_gain(50)) == pytest.approx(-20.0)
    assert dbfs(volume_gain(75)) == pytest.approx(-10.0)
    gains = [volume_gain(v) for v in range(0, 101)]
    assert gains == sorted(gains)
    for bad in (-1, 101):
        with pytest.raises(ValueError):
            volume_gain(bad)


def test_gain_without_audioop_matches_audioop():
    pcm = b"".join(v.to_bytes(2, "little", signed=True) for v in (0, 1, -1, 1000, -32768, 32767))
    for gain in (0.0, 0.1, 0.5, 0.999):
        ours = [int.from_bytes(scale_array(pcm, 2, gain)[i:i + 2], "little", signed=True)
                for i in range(0, len(pcm), 2)]
        theirs = [int.from_bytes(scale(pcm, 2, gain)[i:i + 2], "little", signed=True)
                  for i in range(0, len(pcm), 2)]
        assert all(abs(a - b) <= 1 for a, b in zip(ours, theirs))


def test_stop_fades_out_and_reports_what_played(tmp_path, timeline):
    src = write_wav(tmp_path / "long.wav", 10.0, level_dbfs=-6)
    stop = threading.Event()
    sink = StopAfter(tmp_path / "played", timeline, stop, after_s=2.0)

    played = play_files(sink, "stopped", [src], stop)

    assert 2.0 < played <= 2.0 + FADE_S + 0.03
    out = sink.path
    assert wav_duration(out) == pytest.approx(played, abs=1e-9)
    full = wav_rms(out, 1.5, 2.0)
    assert wav_rms(out, 2.02, 2.07) > 0.6 * full  # start of the fade: still loud
    assert wav_rms(out, played - 0.05, played) < 0.2 * full  # end of the fade: nearly silent
    assert wav_peak(out, played - 0.002, played) < 0.01
    assert timeline.events("speaker.close")[-1]["audio_s"] == pytest.approx(played)


def test_stop_from_another_thread_in_real_time(tmp_path, timeline):
    src = write_wav(tmp_path / "long.wav", 20.0)
    stop = threading.Event()
    sink = MockSpeaker(tmp_path / "played", timeline, speed=1.0)
    threading.Timer(0.4, stop.set).start()
    started = time.monotonic()

    played = play_files(sink, "live", [src], stop)

    assert time.monotonic() - started < 1.4
    assert 0.3 < played < 1.0  # stopped within a second of audio, fade included
    assert wav_duration(sink.path) == pytest.approx(played, abs=1e-9)


def test_stop_before_start_plays_nothing(tmp_path, speaker, timeline):
    stop = threading.Event()
    stop.set()
    assert play_files(speaker, "never", [write_wav(tmp_path / "a.wav", 1.0)], stop) == 0.0
    assert [e["kind"] for e in timeline.events()] == ["speaker.open", "speaker.close"]


def test_ten_minutes_stream_in_bounded_memory(tmp_path, speaker):
    src = write_wav(tmp_path / "ten-minutes.wav", 600.0)
    assert src.stat().st_size > 50_000_000
    tracemalloc.start()
    try:
        played = play_files(speaker, "long", [src], threading.Event(), volume=80)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert played == pytest.approx(600.0)
    assert peak < 1_000_000  # a few blocks, never the 57 MB file
    assert wav_duration(speaker.path) == pytest.approx(600.0)


@pytest.mark.parametrize("make", [
    lambda d: write_wav(d / "cd.wav", 1.0, rate=44100),
    lambda d: write_wav(d / "stereo.wav", 1.0, channels=2),
    lambda d: make_tone(d / "tone", 1.0, codec_ext="mp3"),
    lambda d: d / "missing.wav",
])
def test_unprepared_files_are_refused_before_the_sink_opens(tmp_path, speaker, timeline, make):
    good = write_wav(tmp_path / "good.wav", 1.0)
    with pytest.raises(MediaError) as caught:
        play_files(speaker, "x", [good, make(tmp_path)], threading.Event())
    assert "\n" not in str(caught.value)
    assert timeline.events() == []


def test_sink_failure_aborts_and_reports_seconds(tmp_path, timeline):
    sink = FailAfter(tmp_path / "played", timeline, after_s=0.5)
    with pytest.raises(HardwareError) as caught:
        play_files(sink, "dies", [write_wav(tmp_path / "a.wav", 2.0)], threading.Event())
    assert caught.value.played_s == pytest.approx(0.5, abs=0.021)
    assert timeline.events("speaker.close")[-1]["aborted"] is True


def test_bad_repeat_is_refused(tmp_path, speaker):
    with pytest.raises(ValueError):
        play_files(speaker, "x", [write_wav(tmp_path / "a.wav", 0.1)], threading.Event(), repeat=0)


def test_player_imports_audioop_quietly():
    import importlib

    import audio.player

    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        importlib.reload(audio.player)


# --- starting at the scheduled time -------------------------------------------------

class FakeClock:
    """Wall and monotonic time that advance only when somebody sleeps: no real waiting."""

    def __init__(self, start=1_800_000_000.0):
        self.now = start
        self.sleeps = []

    def time(self):
        return self.now

    def monotonic(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += max(0.0, seconds)

    def source(self):
        return "system"


def test_first_sample_at_start_at_with_a_real_clock(tmp_path, timeline):
    speaker = MockSpeaker(tmp_path / "played", timeline, speed=FAST)
    src = write_wav(tmp_path / "a.wav", 0.5)
    start_at = time.time() + 0.3

    played = play_files(speaker, "on-time", [src], threading.Event(), start_at=start_at)

    assert played == pytest.approx(0.5)
    opened = timeline.events("speaker.open")[0]["t"]
    first = timeline.events("speaker.first_sample")[0]["t"]
    assert opened < start_at - 0.2  # everything slow happened before the wait
    # Loose here (a loaded test machine); bench_start_accuracy.py holds the 20 ms goal.
    assert first - start_at == pytest.approx(0.0, abs=0.1)


def test_start_at_on_an_injected_clock(tmp_path):
    clock = FakeClock()
    timeline = Timeline(clock=clock)
    speaker = MockSpeaker(tmp_path / "played", timeline, clock, speed=FAST)
    start_at = clock.now + 42.0

    play_files(speaker, "x", [write_wav(tmp_path / "a.wav", 0.2)], threading.Event(),
               start_at=start_at, clock=clock)

    first = timeline.events("speaker.first_sample")[0]["t"]
    assert start_at <= first < start_at + 0.002
    assert max(clock.sleeps[:-1]) <= 0.05  # coarse steps: a stop is noticed within one


def test_a_stop_while_waiting_plays_nothing(tmp_path, timeline):
    speaker = MockSpeaker(tmp_path / "played", timeline, speed=FAST)
    stop = threading.Event()
    threading.Timer(0.1, stop.set).start()
    started = time.monotonic()

    played = play_files(speaker, "x", [write_wav(tmp_path / "a.wav", 0.5)], stop,
                        start_at=time.time() + 30)

    assert played == 0.0 and time.monotonic() - started < 1.0
    assert timeline.events("speaker.first_sample") == []
    assert timeline.events("speaker.close")[-1]["aborted"] is True
    assert not speaker.is_open


def test_a_start_time_already_past_plays_at_once(tmp_path, speaker, timeline):
    started = time.monotonic()
    play_files(speaker, "late", [write_wav(tmp_path / "a.wav", 0.2)], threading.Event(),
               start_at=time.time() - 5)
    assert time.monotonic() - started < 1.0
    assert len(timeline.events("speaker.first_sample")) == 1


def test_bad_files_are_refused_before_any_wait(tmp_path, speaker):
    started = time.monotonic()
    with pytest.raises(MediaError):
        play_files(speaker, "x", [tmp_path / "missing.wav"], threading.Event(), start_at=time.time() + 30)
    assert time.monotonic() - started < 1.0


def test_offset_resumes_inside_the_second_file_and_its_repeat(tmp_path, speaker):
    a = write_wav(tmp_path / "a.wav", 1.0, freq=440)
    b = write_wav(tmp_path / "b.wav", 0.5, freq=880)
    played = play_files(speaker, "resumed", [a, b], threading.Event(), repeat=2, offset_s=1.25)
    assert played == pytest.approx(3.0 - 1.25)
    # What plays first is b from 0.25 s on: its samples, bit for bit.
    assert read_pcm(speaker.path)[:2 * 4800] == read_pcm(b)[2 * 12000:2 * 16800]


def test_offset_past_the_end_plays_nothing(tmp_path, speaker):
    a = write_wav(tmp_path / "a.wav", 0.5)
    assert play_files(speaker, "x", [a], threading.Event(), offset_s=9.0) == 0.0


def test_wait_until_lands_on_time():
    target = time.time() + 0.15
    assert wait_until(target, threading.Event()) is True
    assert time.time() - target == pytest.approx(0.0, abs=0.1)
    stopped = threading.Event()
    stopped.set()
    assert wait_until(time.time() + 10, stopped) is False


def read_pcm(path):
    with wave.open(str(path), "rb") as w:
        return w.readframes(w.getnframes())
