"""Preparation before air with real ffmpeg: every codec to -16 LUFS under -1.5 dBTP,
measured on the output with ffmpeg's own EBU R128 meter; every bad input a MediaError."""

import re
import subprocess
import threading
import wave

import pytest

from audio import OUTPUT_FORMAT, PrepareCancelled, PrepareCrashed, prepare, prepare_isolated
from loaxa.errors import MediaError
from tests.support import bad_media
from tests.support.media import make_tone, wav_duration

CODECS = ["mp3", "wav", "ogg", "opus", "flac", "m4a"]


def ebur128(path) -> tuple[float, float]:
    """(integrated LUFS, true peak dBTP) of a file, by ffmpeg's ebur128 filter."""
    out = subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-nostats", "-i", str(path),
                          "-af", "ebur128=peak=true", "-f", "null", "-"],
                         capture_output=True, text=True, timeout=120)
    summary = out.stderr[out.stderr.rindex("Summary:"):]
    loudness = float(summary.split("I:")[1].split()[0])
    peak = float(summary.split("Peak:")[1].split()[0])
    return loudness, peak


def peaky(path, seconds=4.0, codec="flac", rate=48000):
    """A quiet tone with loud 5 ms bursts: peaks ~20 dB over its loudness, like speech."""
    expr = "0.05*sin(2*PI*1000*t)+0.5*sin(2*PI*3000*t)*lt(mod(t\\,0.5)\\,0.005)"
    path = path.with_suffix(f".{codec}")
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    f"aevalsrc={expr}:s={rate}:d={seconds}", str(path)], check=True, timeout=60)
    return path


def wav_format(path):
    with wave.open(str(path), "rb") as w:
        return w.getframerate(), w.getnchannels(), w.getsampwidth()


# --- what comes out ------------------------------------------------------------

@pytest.mark.parametrize("ext", CODECS)
def test_every_codec_comes_out_at_the_target(tmp_path, ext):
    src = make_tone(tmp_path / "tone", 3.0, freq=440, codec_ext=ext, channels=2, level_dbfs=-20)
    result = prepare(src, tmp_path / "out.wav")

    loudness, peak = ebur128(result.path)
    assert loudness == pytest.approx(-16.0, abs=1.0)
    assert peak <= -1.0
    assert wav_format(result.path) == (OUTPUT_FORMAT.rate, OUTPUT_FORMAT.channels, OUTPUT_FORMAT.width)
    assert wav_duration(result.path) == pytest.approx(3.0, abs=0.06)
    assert result.output_lufs == pytest.approx(loudness, abs=0.3)
    assert result.gain_db == pytest.approx(result.output_lufs - result.input_lufs, abs=0.3)


def test_peaks_are_limited_and_loudness_still_reached(tmp_path):
    result = prepare(peaky(tmp_path / "speechy"), tmp_path / "out.wav")
    loudness, peak = ebur128(result.path)
    assert loudness == pytest.approx(-16.0, abs=1.0)
    assert peak <= -1.0
    assert result.limited_s > 0
    assert result.true_peak_dbtp <= -1.45


@pytest.mark.parametrize("lufs", [-23.0, -12.0])
def test_other_targets(tmp_path, lufs):
    src = make_tone(tmp_path / "tone", 2.0, codec_ext="flac", level_dbfs=-10)
    loudness, peak = ebur128(prepare(src, tmp_path / "out.wav", lufs=lufs).path)
    assert loudness == pytest.approx(lufs, abs=1.0)
    assert peak <= -1.0


@pytest.mark.parametrize("rate", [44100, 22050, 8000])
def test_source_rates_are_measured_and_resampled(tmp_path, rate):
    src = make_tone(tmp_path / "tone", 2.0, codec_ext="wav", rate=rate, level_dbfs=-25)
    result = prepare(src, tmp_path / "out.wav")
    assert wav_format(result.path)[0] == 48000
    assert ebur128(result.path)[0] == pytest.approx(-16.0, abs=1.0)


def test_replaces_the_old_file_only_when_done(tmp_path):
    dst = tmp_path / "out.wav"
    dst.write_bytes(b"old")
    with pytest.raises(MediaError):
        prepare(bad_media.not_audio(tmp_path), dst)
    assert dst.read_bytes() == b"old"
    prepare(make_tone(tmp_path / "tone", 1.0, codec_ext="ogg"), dst)
    assert wav_duration(dst) == pytest.approx(1.0, abs=0.05)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lich-phat-thanh.mp3", "out.wav", "tone.ogg"]


def test_cancel_stops_and_leaves_nothing(tmp_path):
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(PrepareCancelled):
        prepare(make_tone(tmp_path / "tone", 2.0, codec_ext="mp3"), tmp_path / "out.wav", cancel=cancel)
    assert not (tmp_path / "out.wav").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["tone.mp3"]


def test_the_summary_says_what_was_done(tmp_path):
    result = prepare(make_tone(tmp_path / "tone", 1.0, codec_ext="flac", level_dbfs=-30), tmp_path / "o.wav")
    text = result.summary()
    assert "LUFS" in text and "dBTP" in text and "gain +" in text


# --- bad input: one plain line each ------------------------------------------------

BAD = {
    "empty": (bad_media.empty, "file is empty"),
    "not audio": (bad_media.not_audio, ("not a readable audio file", "no audio stream")),
    "truncated": (bad_media.truncated, "truncated"),
    "corrupt": (bad_media.corrupt, "damaged"),
    "unsupported codec": (bad_media.unsupported_codec, "unsupported audio codec"),
    "silent": (bad_media.silent, "silent"),
    "ten hours": (bad_media.ten_hours, "over the limit of 10800 s"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_a_plain_media_error(tmp_path, case):
    make, expected = BAD[case]
    src = make(tmp_path)
    with pytest.raises(MediaError) as caught:
        prepare(src, tmp_path / "out" / "x.wav", max_seconds=10800)
    message = str(caught.value)
    assert "\n" not in message and src.name in message
    assert any(text in message for text in ((expected,) if isinstance(expected, str) else expected))
    assert not (tmp_path / "out" / "x.wav").exists()
    assert list((tmp_path / "out").glob("*")) == []


def test_missing_file(tmp_path):
    with pytest.raises(MediaError, match="not found"):
        prepare(tmp_path / "nope.mp3", tmp_path / "x.wav")


def test_over_the_limit_when_the_container_hides_the_length(tmp_path):
    src = make_tone(tmp_path / "tone", 4.0, codec_ext="wav")
    with pytest.raises(MediaError, match="over the limit of 2 s"):
        prepare(src, tmp_path / "x.wav", max_seconds=2)


def test_settings_out_of_range(tmp_path):
    src = make_tone(tmp_path / "tone", 0.5, codec_ext="wav")
    with pytest.raises(MediaError, match="between -40 and -5"):
        prepare(src, tmp_path / "x.wav", lufs=0)
    with pytest.raises(MediaError, match="ceiling"):
        prepare(src, tmp_path / "x.wav", ceiling_dbtp=1.0)


# --- in a child process, as the unit prepares -------------------------------------------

def test_isolated_preparation_reports_like_the_in_process_one(tmp_path):
    src = make_tone(tmp_path / "tone", 1.0, codec_ext="mp3", level_dbfs=-20)
    report = prepare_isolated(src, tmp_path / "out.wav", lufs=-18.0)
    assert report["path"] == str(tmp_path / "out.wav")
    assert report["output_lufs"] == pytest.approx(-18.0, abs=0.3)
    assert ebur128(tmp_path / "out.wav")[0] == pytest.approx(-18.0, abs=1.0)


def test_isolated_preparation_passes_on_the_reason(tmp_path):
    with pytest.raises(MediaError) as caught:
        prepare_isolated(bad_media.ten_hours(tmp_path), tmp_path / "out.wav", max_seconds=10800)
    assert re.fullmatch(r"ten-hours\.mp3: \d{5}\.\d s long, over the limit of 10800 s", str(caught.value))
    assert not isinstance(caught.value, PrepareCrashed)


def test_isolated_preparation_cancelled(tmp_path):
    cancel = threading.Event()
    threading.Timer(0.05, cancel.set).start()
    with pytest.raises(PrepareCancelled):
        prepare_isolated(make_tone(tmp_path / "tone", 30.0, codec_ext="flac"), tmp_path / "out.wav",
                         cancel=cancel)
    assert not (tmp_path / "out.wav").exists()


def test_a_crashing_child_is_reported_as_a_crash(tmp_path, monkeypatch):
    # A real crash: the child process kills itself as Python starts (sitecustomize).
    (tmp_path / "crash").mkdir()
    (tmp_path / "crash" / "sitecustomize.py").write_text("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "crash"))
    with pytest.raises(PrepareCrashed, match="killed by signal 9"):
        prepare_isolated(make_tone(tmp_path / "tone", 1.0, codec_ext="flac"), tmp_path / "out.wav")
