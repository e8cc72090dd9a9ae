"""The loudness meter, the true-peak estimate and the limiter, on synthetic signals.

The meter is checked against BS.1770's own reference points and against ffmpeg's
ebur128 filter on the same samples; the limiter against the true peak of its output.
"""

import math
import subprocess
import wave

import numpy as np
import pytest

from audio.loudness import (LoudnessMeter, TruePeakLimiter, db_to_gain, gain_to_db,
                            k_filter_coefficients, plan_gain, true_peak)

RATE = 48000


def tone(freq, seconds, amplitude, rate=RATE, phase=0.0):
    t = np.arange(round(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t + phase)).astype(np.float32).reshape(-1, 1)


def measure(samples, rate=RATE, block=4800 * 3 + 17):
    meter = LoudnessMeter(rate)
    for start in range(0, len(samples), block):
        meter.add(samples[start:start + block])
    return meter


def ffmpeg_loudness(samples, tmp_path, rate=RATE) -> float:
    path = tmp_path / "x.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.clip(np.rint(samples[:, 0] * 32767), -32768, 32767).astype("<i2").tobytes())
    out = subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-nostats", "-i", str(path),
                          "-af", "ebur128", "-f", "null", "-"], capture_output=True, text=True, timeout=60)
    summary = out.stderr[out.stderr.rindex("Summary:"):]
    return float(summary.split("I:")[1].split()[0])


# --- the meter ----------------------------------------------------------------

def test_k_filter_matches_the_coefficients_printed_in_bs1770():
    (b1, a1), (b2, a2) = k_filter_coefficients(48000)
    assert b1 == pytest.approx((1.53512485958697, -2.69169618940638, 1.19839281085285), abs=1e-9)
    assert a1 == pytest.approx((1.0, -1.69065929318241, 0.73248077421585), abs=1e-9)
    assert b2 == (1.0, -2.0, 1.0)
    assert a2 == pytest.approx((1.0, -1.99004745483398, 0.99007225036621), abs=1e-9)


def test_a_997_hz_sine_reads_as_the_standard_says():
    # BS.1770: a 0 dBFS 997 Hz sine in one channel reads -3.01 LKFS; -20 dBFS reads -23.01.
    meter = measure(tone(997, 5, 0.1))
    assert meter.integrated() == pytest.approx(-23.01, abs=0.05)
    assert meter.seconds == pytest.approx(5.0)
    assert gain_to_db(meter.sample_peak) == pytest.approx(-20.0, abs=0.01)


def test_gating_ignores_silence_and_quiet_passages(tmp_path):
    loud = tone(997, 4, 0.1)
    silence = np.zeros((RATE * 6, 1), dtype=np.float32)
    whisper = tone(997, 4, 0.001)  # -60 dBFS: under the relative gate, above the absolute one
    alone = measure(np.concatenate([silence, loud, silence])).integrated()
    mixed = np.concatenate([silence, loud, silence, whisper])
    # Only the blocks straddling the tone's edges pull it under -23.01; silence and whisper count for nothing.
    assert -23.5 < alone < -23.0
    assert measure(mixed).integrated() == pytest.approx(alone, abs=0.01)
    assert measure(mixed).integrated() == pytest.approx(ffmpeg_loudness(mixed, tmp_path), abs=0.1)


def test_silence_has_no_loudness():
    assert measure(np.zeros((RATE * 2, 1), dtype=np.float32)).integrated() is None
    assert LoudnessMeter(RATE).integrated() is None


def test_agrees_with_ffmpeg_on_noise_and_a_sweep_of_levels(tmp_path):
    rng = np.random.default_rng(7)
    noise = rng.normal(0, 0.05, (RATE * 8, 1)).astype(np.float32)
    noise[RATE * 4:] *= 0.3  # a quieter second half: the gates matter
    assert measure(noise).integrated() == pytest.approx(ffmpeg_loudness(noise, tmp_path), abs=0.15)


@pytest.mark.parametrize("rate", [44100, 32000, 16000])
def test_other_rates_agree_with_ffmpeg(tmp_path, rate):
    # 100 ms at 44.1 kHz is 4410 samples: the meter pads its FFT to a fast size (4500).
    rng = np.random.default_rng(rate)
    noise = rng.normal(0, 0.05, (rate * 6, 1)).astype(np.float32)
    noise += tone(3000, 6, 0.05, rate=rate)
    assert measure(noise, rate=rate).integrated() == \
        pytest.approx(ffmpeg_loudness(noise, tmp_path, rate=rate), abs=0.15)


def test_block_sizes_do_not_change_the_result():
    signal = tone(440, 3, 0.2) + tone(3000, 3, 0.05)
    a, b = measure(signal, block=100), measure(signal, block=RATE)
    assert a.integrated() == pytest.approx(b.integrated(), abs=1e-9)
    assert np.array_equal(a.window_peaks_view(), b.window_peaks_view())


# --- true peak ------------------------------------------------------------------

def test_true_peak_finds_the_peak_between_samples():
    # A quarter-rate sine sampled 45 degrees off its crests: every sample is at 0.707 of the peak.
    samples = tone(RATE / 4, 0.1, 1.0, phase=math.pi / 4)
    assert gain_to_db(float(np.abs(samples).max())) == pytest.approx(-3.01, abs=0.01)
    assert gain_to_db(true_peak(samples)) == pytest.approx(0.0, abs=0.2)


def test_true_peak_of_a_low_tone_is_its_sample_peak():
    assert gain_to_db(true_peak(tone(440, 0.5, 0.5))) == pytest.approx(gain_to_db(0.5), abs=0.02)


# --- the limiter ------------------------------------------------------------------

def peaky(seconds=3.0, base=0.02, burst=0.7):
    """A quiet tone with 5 ms loud bursts every half second: speech-like peak-to-loudness."""
    signal = tone(1000, seconds, base)
    t = np.arange(len(signal)) / RATE
    bursts = (np.mod(t, 0.5) < 0.005) * burst * np.sin(2 * np.pi * 3000 * t)
    return (signal[:, 0] + bursts).astype(np.float32).reshape(-1, 1)


def run_limiter(samples, gain_db, ceiling_dbtp=-1.5, block=RATE):
    limiter = TruePeakLimiter(db_to_gain(gain_db), db_to_gain(ceiling_dbtp), RATE)
    parts = [limiter.process(samples[i:i + block]) for i in range(0, len(samples), block)]
    parts.append(limiter.flush())
    return np.concatenate(parts), limiter


def test_limiter_keeps_the_true_peak_under_the_ceiling():
    out, limiter = run_limiter(peaky(), gain_db=14.0)
    assert len(out) == 3 * RATE
    assert gain_to_db(true_peak(out)) <= -1.5 + 0.05
    assert limiter.limited_s > 0
    assert gain_to_db(limiter.peak) == pytest.approx(gain_to_db(true_peak(out)), abs=0.3)
    # Between the bursts the full gain applies: the quiet tone is 14 dB louder.
    assert gain_to_db(float(np.abs(out[int(0.2 * RATE):int(0.45 * RATE)]).max())) == \
        pytest.approx(gain_to_db(0.02) + 14.0, abs=0.05)


def test_limiter_output_does_not_depend_on_block_sizes():
    signal = peaky(2.0)
    a, _ = run_limiter(signal, 14.0, block=777)
    b, _ = run_limiter(signal, 14.0, block=RATE)
    assert np.array_equal(a, b)


def test_without_overs_the_limiter_is_plain_gain():
    signal = tone(440, 1.0, 0.1)
    out, limiter = run_limiter(signal, 6.0)
    assert np.allclose(out, signal * db_to_gain(6.0), atol=1e-6)
    assert limiter.limited_s == 0


def test_limiter_recovers_no_faster_than_its_release():
    out, _ = run_limiter(peaky(1.0, base=0.05), gain_db=14.0)
    level = np.abs(out[:, 0]).reshape(-1, 480).max(axis=1)  # per 10 ms
    # Right after the first burst the gain is still held down, then rises back over ~0.2 s.
    full = 0.05 * db_to_gain(14.0)
    assert level[2] < 0.8 * full
    assert level[40] == pytest.approx(full, rel=0.01)


def test_short_inputs_come_out_whole():
    for frames in (0, 1, 100, 479, 480, 481, 1500):
        out, _ = run_limiter(tone(440, frames / RATE, 0.5), 3.0, block=64)
        assert len(out) == frames


def test_plan_gain_makes_up_for_what_limiting_takes():
    signal = peaky(6.0, base=0.05, burst=0.5)
    meter = measure(signal)
    plain = -16.0 - meter.integrated()
    out, _ = run_limiter(signal, plain)
    assert measure(out).integrated() < -16.5  # gain alone falls short once peaks are limited
    planned = plan_gain(meter, -16.0, db_to_gain(-1.5), 24.0)
    assert planned > plain + 0.5
    out, _ = run_limiter(signal, planned)
    assert measure(out).integrated() == pytest.approx(-16.0, abs=0.2)
    assert gain_to_db(true_peak(out)) <= -1.45


def test_plan_gain_settles_for_the_closest_when_the_target_is_out_of_reach():
    # Loud bursts carry the loudness: limiting them takes back what more gain adds.
    signal = peaky(6.0, base=0.02, burst=0.9)
    meter = measure(signal)
    plain = -16.0 - meter.integrated()
    planned = plan_gain(meter, -16.0, db_to_gain(-1.5), 24.0)
    assert 0 < planned <= 24.0

    def miss(gain):
        return abs(measure(run_limiter(signal, gain)[0]).integrated() + 16.0)

    assert miss(planned) <= miss(plain) + 0.05  # never further off than gain alone


def test_plan_gain_of_silence_is_nothing():
    assert plan_gain(measure(np.zeros((RATE, 1), np.float32)), -16.0, 0.8, 24.0) == 0.0
