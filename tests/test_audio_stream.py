"""Live relay: an MP3 'radio' served over local HTTP, relayed through the mock speaker,
dropping, stalling or never answering; and the fallback that plays instead."""

import socket
import threading
import time

import pytest

from audio import ItemResult, play_item, play_stream
from hw.mock import MockSpeaker, Timeline
from loaxa.errors import HardwareError
from tests.support.http_media import MediaHttpServer
from tests.support.media import make_tone, wav_duration, wav_peak, wav_rms, write_wav

FAST = 1000.0
BITRATE = 64000  # what make_tone's MP3s come out at (lame's default for this input)


@pytest.fixture(scope="module")
def radio(tmp_path_factory):
    """8 s of MP3 at a constant bitrate, as an Icecast mount would send it."""
    folder = tmp_path_factory.mktemp("radio")
    path = make_tone(folder / "radio", 8.0, freq=440, codec_ext="mp3", rate=48000)
    return path.read_bytes()


@pytest.fixture
def server():
    with MediaHttpServer() as s:
        yield s


@pytest.fixture
def timeline():
    return Timeline()


@pytest.fixture
def speaker(tmp_path, timeline):
    return MockSpeaker(tmp_path / "played", timeline, speed=FAST)


def seconds_of(data: bytes, seconds: float) -> int:
    """Bytes of the test MP3 that hold about `seconds` of audio."""
    return int(len(data) * seconds / 8.0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_relays_for_its_duration_and_fades_at_the_end(server, speaker, radio):
    url = server.add("live.mp3", radio, stream=True, rate=len(radio) / 8.0 * 4)
    result = play_stream(speaker, "vov1", url, 2.0, threading.Event())

    assert result.error is None
    assert result.played_s == pytest.approx(2.0, abs=0.001)
    assert wav_duration(speaker.path) == pytest.approx(2.0, abs=0.001)
    assert wav_rms(speaker.path, 1.0, 1.5) > 0.1  # the tone, at -6 dBFS
    assert wav_peak(speaker.path, 1.998, 2.0) < 0.01  # faded: no click when the relay ends


def test_a_dropped_stream_says_why_and_how_much_played(server, speaker, radio, timeline):
    url = server.add("live.mp3", radio, stream=True, drop_after=seconds_of(radio, 1.5),
                     rate=len(radio) / 8.0 * 4)
    result = play_stream(speaker, "vov1", url, 30.0, threading.Event())

    assert result.error is not None and "dropped after" in result.error
    assert result.played_s == pytest.approx(1.5, abs=0.3)
    assert timeline.events("speaker.close")[-1]["audio_s"] == pytest.approx(result.played_s)


def test_a_stalled_stream_is_given_up_after_the_stall_timeout(server, speaker, radio):
    url = server.add("live.mp3", radio, stream=True, stall_after=seconds_of(radio, 1.0), stall_s=5,
                     rate=len(radio) / 8.0 * 4)
    started = time.monotonic()
    result = play_stream(speaker, "vov1", url, 30.0, threading.Event(), stall_timeout_s=0.5)

    assert "no audio for 0.5 s" in result.error
    assert result.played_s == pytest.approx(1.0, abs=0.3)
    assert time.monotonic() - started < 4


def test_a_stream_that_cannot_be_opened_sounds_nothing(speaker, timeline):
    url = f"http://127.0.0.1:{free_port()}/live.mp3"
    result = play_stream(speaker, "vov1", url, 30.0, threading.Event(), connect_timeout_s=5)

    assert result.played_s == 0.0
    assert result.error.startswith(f"cannot open stream {url}")
    assert "refused" in result.error.lower()
    assert timeline.events("speaker.open") == []


def test_a_missing_mount(server, speaker):
    result = play_stream(speaker, "vov1", server.url("nope.mp3"), 30.0, threading.Event())
    assert result.played_s == 0.0 and "404" in result.error


def test_a_server_that_never_sends_audio(server, speaker, radio):
    url = server.add("silent.mp3", radio, stream=True, stall_after=0, stall_s=5)
    started = time.monotonic()
    result = play_stream(speaker, "vov1", url, 30.0, threading.Event(), connect_timeout_s=0.5)
    assert result.played_s == 0.0 and "no audio within 0.5 s" in result.error
    assert time.monotonic() - started < 4


@pytest.mark.parametrize("url", ["ftp://radio.example.vn/live", "file:///etc/passwd", "not a url",
                                 "http://"])
def test_only_http_streams(speaker, url, timeline):
    result = play_stream(speaker, "vov1", url, 10.0, threading.Event())
    assert result.played_s == 0.0 and "http" in result.error
    assert timeline.events("speaker.open") == []


def test_a_stop_fades_out_without_an_error(server, tmp_path, radio, timeline):
    url = server.add("live.mp3", radio, stream=True, rate=len(radio) / 8.0 * 4)
    stop = threading.Event()
    speaker = MockSpeaker(tmp_path / "played", timeline, speed=4.0)
    threading.Timer(0.5, stop.set).start()
    result = play_stream(speaker, "vov1", url, 30.0, stop)
    assert result.error is None
    assert 0.3 < result.played_s < 4.0
    assert wav_peak(speaker.path, result.played_s - 0.002, result.played_s) < 0.01


def test_the_output_failing_raises_with_the_seconds_played(server, tmp_path, radio, timeline):
    class Dying(MockSpeaker):
        def write(self, pcm):
            if self.audio_s >= 0.5:
                raise HardwareError("mock output died")
            super().write(pcm)

    url = server.add("live.mp3", radio, stream=True)
    with pytest.raises(HardwareError) as caught:
        play_stream(Dying(tmp_path / "p", timeline, speed=FAST), "vov1", url, 5.0, threading.Event())
    assert caught.value.played_s == pytest.approx(0.5, abs=0.1)


# --- play_item: the item as the player sees it --------------------------------------

def test_item_with_a_dropping_stream_plays_its_fallback(server, speaker, radio, tmp_path, timeline):
    url = server.add("live.mp3", radio, stream=True, drop_after=seconds_of(radio, 1.0))
    fallback = write_wav(tmp_path / "fallback.wav", 0.8)

    result = play_item(speaker, "vov1", threading.Event(), stream=url, duration_s=20.0,
                       fallback=[fallback])

    assert result.source == "fallback"
    assert "dropped after" in result.error
    assert result.played_s == pytest.approx(1.0 + 0.8, abs=0.3)
    assert result.played_s - result.stream_s == pytest.approx(0.8)  # the whole fallback
    files = [e["file"] for e in timeline.events("speaker.open")]
    assert files == ["vov1.wav", "vov1-fallback.wav"]


def test_item_whose_stream_never_opens_plays_the_fallback_at_once(speaker, tmp_path):
    fallback = write_wav(tmp_path / "fallback.wav", 0.5)
    result = play_item(speaker, "vov1", threading.Event(), stream=f"http://127.0.0.1:{free_port()}/x",
                       duration_s=20.0, fallback=[fallback])
    assert result == ItemResult(pytest.approx(0.5), "fallback", result.error)
    assert result.error.startswith("cannot open stream")


def test_item_without_a_fallback_reports_the_stream_error(speaker):
    result = play_item(speaker, "vov1", threading.Event(), stream=f"http://127.0.0.1:{free_port()}/x",
                       duration_s=20.0)
    assert result.source == "stream" and result.played_s == 0.0 and result.error


def test_item_stream_that_plays_through(server, speaker, radio):
    url = server.add("live.mp3", radio, stream=True)
    result = play_item(speaker, "vov1", threading.Event(), stream=url, duration_s=1.0,
                       start_at=time.time() + 0.2)
    assert result == ItemResult(pytest.approx(1.0), "stream", None, pytest.approx(1.0))


def test_item_of_media_files(speaker, tmp_path):
    result = play_item(speaker, "sang", threading.Event(), files=[write_wav(tmp_path / "a.wav", 0.3)],
                       repeat=2)
    assert result == ItemResult(pytest.approx(0.6), "media", None)
