"""The aplay sink, as far as a PC without a sound card allows.

Real aplay (alsa-utils, in scripts/bootstrap.sh) against ALSA's `null` device
plays for real through libasound's config, and a device that does not exist
fails as it would on a Pi. Stand-in scripts play the parts a PC cannot: a card
that records what it got, a busy device, a player that hangs.
"""

import shutil
import threading
import time
import wave

import pytest

from audio import AlsaSink, PcmFormat, list_devices, play_files
from audio.alsa import BUFFER_US
from loaxa.errors import HardwareError
from tests.support.media import write_wav

needs_aplay = pytest.mark.skipif(shutil.which("aplay") is None, reason="aplay (alsa-utils) not installed")


def fake_aplay(folder, body):
    """An executable standing in for aplay: `body` runs with $out = the -D argument."""
    script = folder / "aplay"
    script.write_text("#!/bin/sh\nwhile [ $# -gt 0 ]; do [ \"$1\" = -D ] && out=$2; shift; done\n"
                      + body + "\n")
    script.chmod(0o755)
    return str(script)


def read_pcm(path):
    with wave.open(str(path), "rb") as w:
        return w.readframes(w.getnframes())


# --- the command line -------------------------------------------------------------

def test_command_shape():
    assert AlsaSink().command() == ["aplay", "-q", "-D", "default", "-t", "raw", "-f", "S16_LE",
                                    "-r", "48000", "-c", "1", "-B", str(BUFFER_US)]
    assert AlsaSink("plughw:CARD=Headphones,DEV=0").command()[3] == "plughw:CARD=Headphones,DEV=0"
    assert AlsaSink(fmt=PcmFormat(44100, 2, 2)).command()[-6:-2] == ["-r", "44100", "-c", "2"]
    assert AlsaSink(fmt=PcmFormat(48000, 1, 3)).command()[7] == "S24_3LE"


@pytest.mark.parametrize("device", ["", "-Dhw:0", "hw:0 --oops", "a\nb", None])
def test_device_names_that_are_not_one_word_are_refused(device):
    with pytest.raises(HardwareError, match="not an ALSA device name"):
        AlsaSink(device)


def test_unplayable_sample_width():
    with pytest.raises(HardwareError, match="5-byte"):
        AlsaSink(fmt=PcmFormat(48000, 1, 5))


# --- real aplay -----------------------------------------------------------------

@needs_aplay
def test_real_aplay_plays_into_the_null_device(tmp_path):
    sink = AlsaSink("null")
    played = play_files(sink, "x", [write_wav(tmp_path / "a.wav", 0.5)], threading.Event())
    assert played == 0.5
    sink.close()  # again: a no-op


@needs_aplay
def test_real_aplay_on_a_device_that_does_not_exist(tmp_path):
    sink = AlsaSink("hw:CARD=NoSuchCard,DEV=0")
    with pytest.raises(HardwareError) as caught:
        sink.open("x")
    message = str(caught.value)
    assert "hw:CARD=NoSuchCard,DEV=0" in message and "does not exist" in message and "aplay -L" in message
    assert "\n" not in message
    sink.close()
    sink.abort()


@needs_aplay
def test_real_aplay_check_and_device_list():
    AlsaSink("null").check()
    assert "null" in list_devices()


# --- stand-ins for what a PC cannot do ----------------------------------------------

def test_feeds_the_player_process(tmp_path):
    out = tmp_path / "card.raw"
    sink = AlsaSink(str(out), aplay=fake_aplay(tmp_path, 'cat > "$out"'))
    src = write_wav(tmp_path / "a.wav", 0.5)

    assert play_files(sink, "x", [src], threading.Event(), volume=None) == 0.5
    assert out.read_bytes() == read_pcm(src)
    sink.close()


def test_a_busy_device_is_named_as_busy_at_open(tmp_path):
    sink = AlsaSink("hw:0", aplay=fake_aplay(
        tmp_path, 'echo "aplay: main:831: audio open error: Device or resource busy" >&2; exit 1'))
    with pytest.raises(HardwareError) as caught:
        sink.open("x")
    assert "audio output hw:0 is busy" in str(caught.value)
    assert "Device or resource busy" in str(caught.value)
    sink.open  # the sink is usable again: nothing is left open
    assert sink._proc is None


def test_no_permission(tmp_path):
    sink = AlsaSink("hw:0", aplay=fake_aplay(
        tmp_path, 'echo "aplay: main:831: audio open error: Permission denied" >&2; exit 1'))
    with pytest.raises(HardwareError, match="'audio' group"):
        sink.open("x")


def test_a_player_dying_while_playing_is_reported(tmp_path):
    sink = AlsaSink("hw:9", aplay=fake_aplay(
        tmp_path, 'head -c 1000 >/dev/null; echo "aplay: pcm_write:2178: write error: Input/output error" >&2; exit 1'))
    sink.open("x")
    with pytest.raises(HardwareError) as caught:
        for _ in range(400):  # the pipe takes a little before the reader is known dead
            sink.write(b"\0\0" * 960)
            time.sleep(0.002)
        sink.close()
    assert "Input/output error" in str(caught.value) and "hw:9" in str(caught.value)
    sink.close()


def test_abort_kills_the_player(tmp_path):
    sink = AlsaSink(str(tmp_path / "out.raw"), aplay=fake_aplay(tmp_path, "exec sleep 30"))
    sink.open("x")
    started = time.monotonic()
    sink.abort()
    sink.abort()
    sink.close()
    assert time.monotonic() - started < 5


def test_abort_from_another_thread_ends_a_blocked_playback(tmp_path):
    # The stand-in never reads: writes block once the pipe is full, as on a stuck card.
    sink = AlsaSink(str(tmp_path / "out.raw"), aplay=fake_aplay(tmp_path, "exec sleep 30"))
    threading.Timer(0.3, sink.abort).start()
    started = time.monotonic()
    with pytest.raises(HardwareError, match="aborted") as caught:
        play_files(sink, "x", [write_wav(tmp_path / "a.wav", 5.0)], threading.Event())
    assert time.monotonic() - started < 5
    assert caught.value.played_s < 1.0


def test_without_aplay(tmp_path):
    sink = AlsaSink(aplay=str(tmp_path / "no-such-aplay"))
    with pytest.raises(HardwareError, match="alsa-utils"):
        sink.open("x")
    sink.close()
    with pytest.raises(HardwareError, match="alsa-utils"):
        list_devices(aplay=str(tmp_path / "no-such-aplay"))


def test_write_before_open():
    with pytest.raises(HardwareError):
        AlsaSink().write(b"\0\0")


def test_device_list_parses_aplay_l(tmp_path):
    listing = ("null\\n    Discard all samples (playback) or generate zero samples (capture)\\n"
               "default\\n    Playback/recording through the PulseAudio sound server\\n"
               "hw:CARD=Headphones,DEV=0\\n    bcm2835 Headphones, bcm2835 Headphones\\n"
               "    Direct hardware device without any conversions\\n")
    script = tmp_path / "aplay"
    script.write_text(f"#!/bin/sh\nprintf '{listing}'\n")
    script.chmod(0o755)
    assert list_devices(aplay=str(script)) == ["null", "default", "hw:CARD=Headphones,DEV=0"]
