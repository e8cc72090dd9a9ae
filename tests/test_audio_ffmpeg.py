"""Decoding with real ffmpeg, the built-in sounds, and the bundled demo bulletin."""

import os
import random
import subprocess
import wave

import pytest

from audio import BUILTIN, DEMO_BULLETIN, OUTPUT_FORMAT, builtin_wav, decode_to_wav, duration_s
from audio.ffmpeg import probe_file
from loaxa.errors import MediaError
from tests.support.media import dbfs, make_tone, wav_duration, wav_peak, wav_rms, wav_samples

CODECS = ["mp3", "wav", "ogg", "opus", "flac", "m4a"]


def wav_format(path):
    with wave.open(str(path), "rb") as w:
        return (w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getcomptype())


def leftovers(folder, keep):
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


# --- decoding every codec -------------------------------------------------

@pytest.mark.parametrize("ext", CODECS)
def test_decode_each_codec_to_output_format(tmp_path, ext):
    src = make_tone(tmp_path / "tone", 2.0, freq=440, codec_ext=ext, channels=2, level_dbfs=-6)
    dst = tmp_path / "out" / "tone.wav"

    assert decode_to_wav(src, dst) == dst

    fmt = OUTPUT_FORMAT
    assert wav_format(dst) == (fmt.rate, fmt.channels, fmt.width, "NONE")
    assert wav_duration(dst) == pytest.approx(2.0, abs=0.05)
    # A -6 dBFS sine has an RMS of -9 dBFS; lossy codecs stay within a dB of it.
    assert dbfs(wav_rms(dst, 0.2, 1.8)) == pytest.approx(-9.0, abs=1.0)
    assert leftovers(dst.parent, {"tone.wav"}) == []


@pytest.mark.parametrize("ext", ["mp3", "flac", "m4a"])
def test_duration_s_reports_the_length(tmp_path, ext):
    src = make_tone(tmp_path / "tone", 1.5, codec_ext=ext)
    assert duration_s(src) == pytest.approx(1.5, abs=0.06)


def test_decode_replaces_an_existing_file(tmp_path):
    dst = tmp_path / "tone.wav"
    dst.write_bytes(b"old")
    decode_to_wav(make_tone(tmp_path / "tone", 0.5, codec_ext="flac"), dst)
    assert wav_duration(dst) == pytest.approx(0.5, abs=0.01)


def test_decode_within_max_seconds_succeeds(tmp_path):
    src = make_tone(tmp_path / "tone", 2.0, codec_ext="mp3")
    decode_to_wav(src, tmp_path / "out.wav", max_seconds=2)
    assert wav_duration(tmp_path / "out.wav") == pytest.approx(2.0, abs=0.05)


# --- bad inputs: one plain line, no partial output ---------------------------

def assert_one_line_error(src, dst, *words, **kwargs):
    with pytest.raises(MediaError) as caught:
        decode_to_wav(src, dst, **kwargs)
    message = str(caught.value)
    assert "\n" not in message and "Traceback" not in message
    for word in words:
        assert word in message
    return message


def test_missing_file(tmp_path):
    assert_one_line_error(tmp_path / "nope.mp3", tmp_path / "out.wav", "nope.mp3", "not found")
    assert not (tmp_path / "out.wav").exists()


def test_empty_file(tmp_path):
    src = tmp_path / "empty.mp3"
    src.write_bytes(b"")
    assert_one_line_error(src, tmp_path / "out.wav", "empty.mp3", "empty")
    assert leftovers(tmp_path, {"empty.mp3"}) == []


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_bytes(tmp_path, seed):
    src = tmp_path / "noise.mp3"
    src.write_bytes(random.Random(seed).randbytes(20000))
    message = assert_one_line_error(src, tmp_path / "out.wav", "noise.mp3")
    # ffprobe refuses most noise; now and then it takes it for a text format with no audio.
    assert "not a readable audio file" in message or "no audio stream" in message
    assert leftovers(tmp_path, {"noise.mp3"}) == []


@pytest.mark.parametrize("name", ["notes.txt", "notes.mp3"])
def test_text_file(tmp_path, name):
    src = tmp_path / name
    src.write_text("Lịch phát thanh tuần 48\nkhông phải âm thanh\n" * 20, encoding="utf-8")
    message = assert_one_line_error(src, tmp_path / "out.wav", name)
    assert "not a readable audio file" in message or "no audio stream" in message
    assert leftovers(tmp_path, {name}) == []


def test_image_has_no_audio_stream(tmp_path):
    src = tmp_path / "poster.png"
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i",
                    "color=c=red:s=32x32", "-frames:v", "1", str(src)], check=True, timeout=30)
    assert_one_line_error(src, tmp_path / "out.wav", "poster.png", "no audio stream")


def test_directory_is_not_media(tmp_path):
    (tmp_path / "folder.mp3").mkdir()
    assert_one_line_error(tmp_path / "folder.mp3", tmp_path / "out.wav", "not a regular file")


def test_over_max_seconds(tmp_path):
    src = make_tone(tmp_path / "long", 5.0, codec_ext="ogg")
    assert_one_line_error(src, tmp_path / "out.wav", "long.ogg", "over the limit of 3 s",
                          max_seconds=3)
    assert leftovers(tmp_path, {"long.ogg"}) == []


def test_truncated_mp3_decodes_the_part_or_fails_cleanly(tmp_path):
    whole = make_tone(tmp_path / "whole", 3.0, codec_ext="mp3")
    src = tmp_path / "cut.mp3"
    src.write_bytes(whole.read_bytes()[: whole.stat().st_size // 3])
    dst = tmp_path / "out.wav"
    try:
        decode_to_wav(src, dst)
    except MediaError as exc:
        assert "\n" not in str(exc) and "cut.mp3" in str(exc)
        assert not dst.exists()
    else:
        assert 0.3 < wav_duration(dst) < 2.0  # about the first third, never the whole
    assert leftovers(tmp_path, {"whole.mp3", "cut.mp3", "out.wav"}) == []


def test_failure_keeps_the_previous_file(tmp_path):
    dst = tmp_path / "out.wav"
    decode_to_wav(make_tone(tmp_path / "good", 1.0, codec_ext="wav"), dst)
    before = dst.read_bytes()
    bad = tmp_path / "bad.mp3"
    bad.write_bytes(os.urandom(5000))
    with pytest.raises(MediaError):
        decode_to_wav(bad, dst)
    assert dst.read_bytes() == before


def test_probe_finds_codec_and_duration(tmp_path):
    probe = probe_file(make_tone(tmp_path / "tone", 1.0, codec_ext="opus"))
    assert probe.codec == "opus" and "ogg" in probe.format_name
    assert probe.duration == pytest.approx(1.0, abs=0.05)


def test_duration_of_garbage_is_a_media_error(tmp_path):
    src = tmp_path / "x.m4a"
    src.write_bytes(b"\x00" * 4096)
    with pytest.raises(MediaError):
        duration_s(src)


# --- built-in sounds -------------------------------------------------------

def test_chime_shape_and_level(tmp_path):
    path = builtin_wav("chime", tmp_path)
    assert wav_format(path) == (48000, 1, 2, "NONE")
    assert wav_duration(path) == pytest.approx(2.5, abs=0.01)
    peak = dbfs(wav_peak(path))
    assert -6.0 < peak < -3.0
    # Three strikes: the level jumps at each note's onset...
    for onset in (0.40, 0.80):
        assert wav_rms(path, onset + 0.005, onset + 0.05) > 1.3 * wav_rms(path, onset - 0.05, onset)
    # ...and the bell rings out: the tail is much quieter than the strikes, and ends at zero.
    assert wav_rms(path, 2.2, 2.4) < 0.25 * wav_rms(path, 0.8, 1.0)
    assert wav_peak(path, 2.495) < 0.01 and abs(wav_samples(path, 2.4999)[-1]) <= 2


def test_test_tone_is_1khz_at_minus_12_dbfs(tmp_path):
    path = builtin_wav("test-tone", tmp_path)
    assert wav_duration(path) == pytest.approx(3.0, abs=0.001)
    assert dbfs(wav_peak(path)) == pytest.approx(-12.0, abs=0.1)
    assert dbfs(wav_rms(path, 0.5, 2.5)) == pytest.approx(-15.0, abs=0.1)  # sine RMS = peak - 3 dB
    samples = wav_samples(path, 1.0, 2.0)
    crossings = sum(1 for a, b in zip(samples, samples[1:]) if a < 0 <= b)
    assert crossings == pytest.approx(1000, abs=2)
    # 20 ms fades: quiet at the very edges, full level once they are over.
    assert wav_peak(path, 0, 0.002) < 0.1 * wav_peak(path, 0.5, 0.6)
    assert wav_peak(path, 2.998, 3.0) < 0.1 * wav_peak(path, 0.5, 0.6)
    assert dbfs(wav_peak(path, 0.021, 0.03)) == pytest.approx(-12.0, abs=0.1)


def test_builtins_are_written_once(tmp_path):
    first = builtin_wav("chime", tmp_path)
    stamp = first.stat().st_mtime_ns
    assert builtin_wav("chime", tmp_path) == first
    assert first.stat().st_mtime_ns == stamp
    assert ".v" in first.name and first.name.startswith("chime")
    assert sorted(p.name for p in tmp_path.iterdir()) == [first.name]


def test_every_builtin_is_known(tmp_path):
    assert set(BUILTIN) == {"chime", "test-tone"}
    assert len({builtin_wav(name, tmp_path) for name in BUILTIN}) == 2


def test_unknown_builtin(tmp_path):
    with pytest.raises(MediaError, match="unknown built-in media: 'gong'"):
        builtin_wav("gong", tmp_path)


# --- the bundled demo bulletin ---------------------------------------------

def test_demo_bulletin_is_short_mono_opus(tmp_path):
    assert DEMO_BULLETIN.is_file()
    probe = probe_file(DEMO_BULLETIN)
    assert probe.codec == "opus"
    assert 15 <= duration_s(DEMO_BULLETIN) <= 25
    dst = decode_to_wav(DEMO_BULLETIN, tmp_path / "demo.wav")
    assert 15 <= wav_duration(dst) <= 25
    assert dbfs(wav_rms(dst, 1, 10)) > -35  # speech, not silence
