"""Preparation decoding in-process with PyAV (audio/libav.py): the same PCM as the ffmpeg
command, the same probe, and no ffmpeg or ffprobe process beside the preparing child."""

import os
import subprocess
import sys

import numpy as np
import pytest

from audio._api import PcmFormat
from audio.ffmpeg import PcmDecoder
from audio.ffmpeg import probe_file as ffprobe_file
from loaxa.errors import MediaError
from tests.support.bad_media import REASONS
from tests.support.media import make_tone, wav_duration
from tests.support.unit import ROOT

from audio.libav import LibavDecoder, probe_file  # noqa: E402 - PyAV is a dependency: no skip

FORMATS = [("mp3", 2, 44100), ("flac", 1, 22050), ("wav", 1, 8000), ("ogg", 1, 48000), ("opus", 2, 48000),
           ("m4a", 2, 44100)]
# Integer decoders give the same samples whatever FFmpeg; the float ones (Vorbis, Opus,
# AAC) differ between FFmpeg versions in the last bit of a float (-140 dB).
EXACT = {"mp3", "flac", "wav"}


def decoded(decoder_class, src, fmt, sample_format, **options) -> bytes:
    with decoder_class(src, fmt, sample_format=sample_format, **options) as decoder:
        data = decoder.read(1 << 30)
        decoder.finish()
    return data


@pytest.mark.parametrize("ext, channels, rate", FORMATS)
def test_the_same_pcm_as_the_ffmpeg_command(tmp_path, ext, channels, rate):
    src = make_tone(tmp_path / "tone", 2.5, codec_ext=ext, channels=channels, rate=rate)
    for fmt, sample_format, dtype in [(PcmFormat(rate, 1, 2), "s16le", "<i2"), (PcmFormat(48000, 1, 4), "f32le", "<f4")]:
        ours, command = (decoded(cls, src, fmt, sample_format) for cls in (LibavDecoder, PcmDecoder))
        assert len(ours) == len(command) > 0
        if ext in EXACT:
            assert ours == command
        else:
            difference = np.abs(np.frombuffer(ours, dtype).astype(float) - np.frombuffer(command, dtype))
            assert difference.max() <= (1 if dtype == "<i2" else 1e-6)


def test_a_limit_stops_the_decode(tmp_path):
    src = make_tone(tmp_path / "tone", 3.0, codec_ext="flac")
    fmt = PcmFormat(48000, 1, 4)
    assert decoded(LibavDecoder, src, fmt, "f32le", limit_s=1.25) == decoded(PcmDecoder, src, fmt, "f32le",
                                                                              limit_s=1.25)
    assert len(decoded(LibavDecoder, src, fmt, "f32le", limit_s=1.25)) == 60000 * 4


@pytest.mark.parametrize("ext, channels, rate", FORMATS)
def test_the_probe_agrees_with_ffprobe(tmp_path, ext, channels, rate):
    src = make_tone(tmp_path / "tone", 2.5, codec_ext=ext, channels=channels, rate=rate)
    ours, theirs = probe_file(src), ffprobe_file(src)
    assert (ours.format_name, ours.rate) == (theirs.format_name, theirs.rate)
    assert ours.duration == pytest.approx(theirs.duration, abs=0.05)


def test_preparing_needs_no_ffmpeg_process(tmp_path):
    """The preparing child decodes in itself: no ffmpeg or ffprobe (52 and 47 MB) beside it.
    Shown by preparing with no ffmpeg on PATH."""
    src = make_tone(tmp_path / "bulletin", 4.0, codec_ext="mp3", channels=2)
    out = tmp_path / "ready.wav"
    env = dict(os.environ, PATH=str(tmp_path / "no-binaries-here"), PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-m", "audio.preparation", str(src), str(out)], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert wav_duration(out) == pytest.approx(4.0, abs=0.05)


def test_both_decoders_prepare_the_same_file(tmp_path):
    from audio.preparation import prepare
    src = make_tone(tmp_path / "bulletin", 6.0, codec_ext="mp3", channels=2, level_dbfs=-20.0)
    command = prepare(src, tmp_path / "command.wav", decoder="command")
    ours = prepare(src, tmp_path / "ours.wav", decoder="in-process")
    assert (tmp_path / "command.wav").read_bytes() == (tmp_path / "ours.wav").read_bytes()
    assert ours.as_dict() | {"path": ""} == command.as_dict() | {"path": ""}


@pytest.mark.parametrize("case", sorted(REASONS))
def test_bad_media_gives_the_same_plain_reason_in_process(tmp_path, case):
    from audio.preparation import prepare
    make, expected = REASONS[case]
    src = make(tmp_path)
    with pytest.raises(MediaError) as caught:
        prepare(src, tmp_path / "out.wav", max_seconds=10800, decoder="in-process")
    assert expected in str(caught.value) and src.name in str(caught.value)
    assert not (tmp_path / "out.wav").exists()


def test_the_command_decoder_does_not_carry_pyav(tmp_path):
    """`audio.prepare` with the ffmpeg command (an operator's `loaxa media prepare`) must not
    load PyAV too: 24 MB for nothing beside the ffmpeg process."""
    code = ("import sys; from audio import prepare; prepare(sys.argv[1], sys.argv[2]); "
            "print('av' in sys.modules)")
    src = make_tone(tmp_path / "bulletin", 1.0, codec_ext="mp3")
    done = subprocess.run([sys.executable, "-c", code, str(src), str(tmp_path / "out.wav")], cwd=ROOT,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "False", done.stderr
