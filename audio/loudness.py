"""Loudness (EBU R128 / ITU-R BS.1770-4) and a true-peak limiter, on streamed blocks.

Pure numpy over float PCM shaped (frames, channels); nothing here starts a
process or touches a file, so the maths is tested with synthetic signals.

How the meter stays fast without an IIR filter in Python: BS.1770 weights each
channel with the K filter (a high shelf and a high-pass, two biquads), then takes
mean squares over 400 ms blocks overlapping by 75 %. The mean square of a filtered
segment is, by Parseval, the sum of its power spectrum weighted by |H(f)|^2, so the
meter takes one FFT per 100 ms segment and one dot product with |H_K|^2 instead of
filtering sample by sample. Four segments make a gating block. The error of
treating each segment as periodic is far below the 0.1 LU the standard's test
signals allow (the K filter's memory is a few milliseconds).

True peak follows BS.1770-4 Annex 2: 4x oversampling (a 12-tap-per-phase windowed
sinc interpolator), absolute maximum. The limiter works on 10 ms windows: it works
out the gain each window may have so that its true peak stays under the ceiling,
lowers the gain one window ahead of a peak (the attack ramp), and lets it recover
by at most RELEASE_DB_PER_S (no pumping on speech).
"""

import math

import numpy as np

SEGMENT_S = 0.1  # gating blocks are 4 segments (400 ms) with a 100 ms step
ABSOLUTE_GATE_LUFS = -70.0
RELATIVE_GATE_LU = -10.0
LUFS_OFFSET = -0.691  # BS.1770's constant: a 997 Hz sine at 0 dBFS reads -3.01 LUFS

OVERSAMPLE = 4
TAPS_PER_PHASE = 12
KAISER_BETA = 6.0
WINDOW_S = 0.010
RELEASE_DB_PER_S = 40.0
# Windows whose sample peak is this far under the ceiling skip the oversampling:
# an intersample peak 6 dB over the samples around it needs content at the edge
# of the band, at full level, for a whole 10 ms; decoded speech has none.
TRUE_PEAK_MARGIN_DB = 6.0
PLAN_CHUNK_WINDOWS = 30000  # 5 minutes of 10 ms windows per step of the gain planner


def db_to_gain(db: float) -> float:
    return 10.0 ** (db / 20.0)


def gain_to_db(gain: float) -> float:
    return 20.0 * math.log10(gain) if gain > 0 else float("-inf")


# ---------------------------------------------------------------- K-weighting

def k_filter_coefficients(rate: int) -> tuple[tuple, tuple]:
    """The two biquads of BS.1770's K filter at `rate`: ((b, a) shelf, (b, a) high-pass).

    At 48 kHz they equal the coefficients printed in the standard; other rates use
    the analogue prototypes they were derived from (as libebur128 does).
    """
    k = math.tan(math.pi * 1681.974450955533 / rate)
    q = 0.7071752369554196
    vh = db_to_gain(3.999843853973347)
    vb = vh ** 0.4996667741545416
    a0 = 1.0 + k / q + k * k
    shelf = ((vh + vb * k / q + k * k) / a0, 2.0 * (k * k - vh) / a0, (vh - vb * k / q + k * k) / a0), \
        (1.0, 2.0 * (k * k - 1.0) / a0, (1.0 - k / q + k * k) / a0)
    k = math.tan(math.pi * 38.13547087602444 / rate)
    q = 0.5003270373238773
    a0 = 1.0 + k / q + k * k
    highpass = (1.0, -2.0, 1.0), (1.0, 2.0 * (k * k - 1.0) / a0, (1.0 - k / q + k * k) / a0)
    return shelf, highpass


def _biquad_response(b, a, z) -> np.ndarray:
    return (b[0] + b[1] * z + b[2] * z * z) / (a[0] + a[1] * z + a[2] * z * z)


def fft_size(length: int) -> int:
    """The smallest 2^a * 3^b * 5^c >= length: FFTs of such sizes are the fast ones
    (4410, a 100 ms segment at 44.1 kHz, has a factor 7^2 and takes 50 % longer)."""
    best = 1 << (length - 1).bit_length()
    for threes in (1, 3, 9, 27, 81):
        for fives in (1, 5, 25, 125, 625):
            base = threes * fives
            if base > best:
                continue
            size = base << max(0, (-(-length // base) - 1).bit_length())
            best = min(best, size)
    return best


def segment_weights(length: int, rate: int, size: int | None = None) -> np.ndarray:
    """Per bin of a `length`-sample segment's rfft zero-padded to `size`: |H_K|^2 scaled
    so that `|rfft(x, size)|^2 @ weights` is the mean square of the K-filtered segment."""
    size = size or length
    z = np.exp(-2j * np.pi * np.fft.rfftfreq(size))
    shelf, highpass = k_filter_coefficients(rate)
    power = np.abs(_biquad_response(*shelf, z) * _biquad_response(*highpass, z)) ** 2
    # Parseval for a real FFT: bins other than DC and Nyquist stand for two.
    fold = np.full(power.shape, 2.0)
    fold[0] = 1.0
    if size % 2 == 0:
        fold[-1] = 1.0
    return power * fold / (size * length)


# ---------------------------------------------------------------- the meter

class LoudnessMeter:
    """Integrated loudness (LUFS) and sample peak of audio fed in blocks.

    `add(samples)` takes float samples shaped (frames, channels) at `rate`, in any
    block sizes. Channel weights are 1.0 (BS.1770's weight for L, R and C; loaxa's
    output is mono). Memory: one float per 100 ms of audio.
    """

    def __init__(self, rate: int, channels: int = 1):
        self.rate, self.channels = rate, channels
        self.window = max(1, round(rate * WINDOW_S))
        self.segment = self.window * round(SEGMENT_S / WINDOW_S)
        self._fft = fft_size(self.segment)
        self._weights = segment_weights(self.segment, rate, self._fft)
        self._pending = np.zeros((0, channels), dtype=np.float32)
        self._powers: list[np.ndarray] = []
        self._peaks: list[np.ndarray] = []
        self._energy: list[np.ndarray] = []
        self.frames = 0
        self.sample_peak = 0.0

    @property
    def seconds(self) -> float:
        return self.frames / self.rate

    def add(self, samples: np.ndarray) -> None:
        if len(samples) == 0:
            return
        self.frames += len(samples)
        self.sample_peak = max(self.sample_peak, float(np.abs(samples).max()))
        data = np.concatenate((self._pending, samples)) if len(self._pending) else samples
        whole = len(data) // self.segment
        if whole:
            segments = data[: whole * self.segment].reshape(whole, self.segment, self.channels)
            spectrum = np.fft.rfft(segments, n=self._fft, axis=1)
            power = spectrum.real ** 2 + spectrum.imag ** 2  # (whole, bins, channels)
            self._powers.append(np.einsum("sbc,b->s", power, self._weights))
            windows = segments.reshape(-1, self.window * self.channels)
            self._peaks.append(np.abs(windows).max(axis=1).astype(np.float32))
            self._energy.append(np.einsum("ij,ij->i", windows, windows).astype(np.float32))
        self._pending = np.array(data[whole * self.segment:], dtype=np.float32)

    def integrated(self) -> float | None:
        """Gated integrated loudness in LUFS; None when no block is above -70 LUFS."""
        return integrated_loudness(self.segment_powers())

    def segment_powers(self) -> np.ndarray:
        """The K-weighted mean square of each complete 100 ms segment so far."""
        self._powers = [_joined(self._powers, np.float64)]
        return self._powers[0]

    def window_peaks_view(self) -> np.ndarray:
        """The sample peak of each 10 ms window of the complete segments so far."""
        self._peaks = [_joined(self._peaks)]
        return self._peaks[0]

    def window_energy_view(self) -> np.ndarray:
        """The sum of squares (unweighted) of each 10 ms window of the complete segments."""
        self._energy = [_joined(self._energy)]
        return self._energy[0]


def _joined(parts: list, dtype=np.float32) -> np.ndarray:
    """The parts as one array (joined once: the list is replaced by the result)."""
    if len(parts) == 1:
        return parts[0]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)


def integrated_loudness(segment_powers: np.ndarray) -> float | None:
    """BS.1770 gating over 400 ms blocks (four 100 ms segments, 75 % overlap)."""
    if len(segment_powers) < 4:
        return None
    blocks = np.convolve(segment_powers, np.full(4, 0.25), mode="valid")
    loudness = LUFS_OFFSET + 10.0 * np.log10(np.maximum(blocks, 1e-30))
    above = loudness > ABSOLUTE_GATE_LUFS
    if not above.any():
        return None
    relative_gate = LUFS_OFFSET + 10.0 * math.log10(blocks[above].mean()) + RELATIVE_GATE_LU
    kept = blocks[above & (loudness > relative_gate)]
    return LUFS_OFFSET + 10.0 * math.log10(kept.mean())


# ---------------------------------------------------------------- planning the gain

def release_envelope(raw_db: np.ndarray, step_db: float) -> np.ndarray:
    """e_b = min(raw_b, e_(b-1) + step): a gain that falls at once and rises slowly.

    Unrolled, e_b = step*b + the running minimum of (raw_j - step*j), which numpy
    computes in one pass instead of a Python loop over every 10 ms window.
    """
    index = np.arange(len(raw_db))
    return np.minimum.accumulate(raw_db - step_db * index) + step_db * index


def window_edges(limits_db: np.ndarray, start_db: float, step_db: float) -> np.ndarray:
    """Limiter gain (dB) at each edge of len(limits) - 1 windows: edge 0 starts at
    `start_db`, edge b (between windows b-1 and b) at most the limit of either."""
    raw = np.concatenate(([min(start_db, limits_db[0])], np.minimum(limits_db[:-1], limits_db[1:])))
    return release_envelope(raw, step_db)


def ramp_power(edges_db: np.ndarray) -> np.ndarray:
    """Mean of g^2 over each window whose gain ramps linearly from one edge to the next."""
    a = np.power(10.0, edges_db[:-1] / 20.0)
    b = np.power(10.0, edges_db[1:] / 20.0)
    return (a * a + a * b + b * b) / 3.0


def loudness_after(meter: LoudnessMeter, window_power: np.ndarray, gain_db: float) -> float | None:
    """Integrated loudness of `meter`'s audio once each 10 ms window is scaled by its
    mean g^2 (`window_power`) and the whole by `gain_db`: an estimate, used to plan the
    gain and to report the result without measuring the output again."""
    factors = np.ones(len(meter.segment_powers()))
    for first, powers in _chunks(window_power):
        _segment_factors(meter, first, powers, factors)
    return _loudness_with(meter, factors, gain_db)


def _chunks(array: np.ndarray):
    size = PLAN_CHUNK_WINDOWS
    for first in range(0, len(array), size):
        yield first, array[first:first + size]


def _segment_factors(meter: LoudnessMeter, first: int, window_power: np.ndarray,
                     factors: np.ndarray) -> None:
    """Per 100 ms segment: the windows' g^2 weighted by their share of its energy
    (limiting lowers the loud windows, which carry most of the energy)."""
    per_segment = round(SEGMENT_S / WINDOW_S)
    segment0 = first // per_segment
    count = min(len(window_power) // per_segment, len(factors) - segment0)
    if count <= 0:
        return
    span = slice(first, first + count * per_segment)
    energy = meter.window_energy_view()[span].reshape(count, per_segment)
    gains = window_power[: count * per_segment].reshape(count, per_segment)
    total = energy.sum(axis=1, dtype=np.float64)
    weighted = np.einsum("ij,ij->i", energy, gains, dtype=np.float64)
    factors[segment0:segment0 + count] = np.where(total > 0, weighted / np.maximum(total, 1e-30),
                                                  gains.mean(axis=1))


def _loudness_with(meter: LoudnessMeter, factors: np.ndarray, gain_db: float) -> float | None:
    return integrated_loudness(meter.segment_powers() * factors * 10.0 ** (gain_db / 10.0))


def plan_gain(meter: LoudnessMeter, target_lufs: float, ceiling: float, max_gain_db: float,
              peak_allowance_db: float = 0.0) -> float:
    """The gain (dB) that lands on `target_lufs` once the limiter has held down the peaks
    it pushes over `ceiling`: plain gain would come out short by what limiting takes.

    Simulates the limiter on the measured 10 ms window peaks (raised by
    `peak_allowance_db` for the intersample peaks sample peaks miss) and corrects
    the gain until the predicted loudness is within 0.05 LU, at most `max_gain_db`.
    With very peaky audio more gain can make it quieter (the limiter holds the gain
    down longer after each peak): the gain that came closest is returned.
    Works through the windows in chunks, so its memory does not grow with the length.
    """
    measured = meter.integrated()
    if measured is None:
        return 0.0
    gain = min(target_lufs - measured, max_gain_db)
    best = (math.inf, gain)
    for _ in range(8):
        factors = _limited_factors(meter, gain, gain_to_db(ceiling) - peak_allowance_db)
        predicted = _loudness_with(meter, factors, gain)
        if predicted is None:
            break
        miss = abs(predicted - target_lufs)
        if miss >= best[0]:
            break  # more gain no longer helps: longer limiting costs what the gain adds
        best = (miss, gain)
        if miss < 0.05 or gain >= max_gain_db:
            break
        gain = min(gain + target_lufs - predicted, max_gain_db)
    return best[1]


def _limited_factors(meter: LoudnessMeter, gain_db: float, ceiling_db: float) -> np.ndarray:
    """Segment factors of a limiter simulated on window sample peaks at `gain_db`."""
    peaks = meter.window_peaks_view()
    factors = np.ones(len(meter.segment_powers()))
    step, edge = RELEASE_DB_PER_S * WINDOW_S, 0.0
    for first, chunk in _chunks(peaks):
        ahead = peaks[first:first + len(chunk) + 1]  # one more window: the edge after the last
        peak_db = 20.0 * np.log10(np.maximum(ahead, 1e-9), dtype=np.float64)
        limits = np.minimum(0.0, ceiling_db - gain_db - peak_db)
        if len(limits) == len(chunk):
            limits = np.append(limits, limits[-1])
        edges = window_edges(limits, edge, step)
        edge = float(edges[-1])
        _segment_factors(meter, first, ramp_power(edges), factors)
    return factors


# ---------------------------------------------------------------- true peak

def _interpolator() -> np.ndarray:
    """(OVERSAMPLE - 1, TAPS_PER_PHASE) coefficients: the in-between phases of a
    Kaiser-windowed sinc; phase 0 is the samples themselves."""
    half = TAPS_PER_PHASE // 2
    taps = np.arange(-half + 1, half + 1)  # sample offsets -5..6 around n
    reach = half + 0.5
    phases = []
    for phase in range(1, OVERSAMPLE):
        t = taps - phase / OVERSAMPLE
        window = np.i0(KAISER_BETA * np.sqrt(np.clip(1 - (t / reach) ** 2, 0, None))) / np.i0(KAISER_BETA)
        h = np.sinc(t) * window
        phases.append(h / h.sum())
    return np.array(phases, dtype=np.float32)


INTERPOLATOR = _interpolator()
CONTEXT_BEFORE = TAPS_PER_PHASE // 2 - 1  # samples an interpolated point needs before n
CONTEXT_AFTER = TAPS_PER_PHASE // 2  # ...and from n on


def interpolated_peaks(rows: np.ndarray) -> np.ndarray:
    """Per row of mono samples (each with CONTEXT_BEFORE samples before and CONTEXT_AFTER
    after the span measured): the largest |value| at the oversampled in-between points."""
    span = rows.shape[1] - TAPS_PER_PHASE + 1
    acc = np.zeros((len(INTERPOLATOR), rows.shape[0], span), dtype=np.float32)
    for tap in range(TAPS_PER_PHASE):
        acc += INTERPOLATOR[:, tap, None, None] * rows[None, :, tap:tap + span]
    return np.abs(acc).max(axis=(0, 2))


def true_peak(samples: np.ndarray) -> float:
    """True peak (linear) of a whole signal shaped (frames, channels); for tests and checks."""
    padded = np.pad(samples, ((CONTEXT_BEFORE, CONTEXT_AFTER), (0, 0)))
    peak = float(np.abs(samples).max(initial=0.0))
    for channel in range(samples.shape[1]):
        peak = max(peak, float(interpolated_peaks(padded[None, :, channel])[0]))
    return peak


# ---------------------------------------------------------------- the limiter

class TruePeakLimiter:
    """Applies `gain`, then limits so the true peak stays at or under `ceiling` (linear).

    Streaming: `process(block)` returns output delayed by one 10 ms window (the
    look-ahead), `flush()` returns the rest. Per window w it finds r_w, the gain
    that keeps the window's true peak under the ceiling; the gain at each window
    edge is the smaller r of the windows either side (so it is already down when a
    peak arrives), may rise by at most RELEASE_DB_PER_S, and is interpolated
    linearly across the window. Since both edges of a window are at or under its
    r_w, so is every sample between them.
    """

    def __init__(self, gain: float, ceiling: float, rate: int, channels: int = 1):
        self.gain, self.ceiling, self.rate, self.channels = gain, ceiling, rate, channels
        self.window = max(1, round(rate * WINDOW_S))
        self._release_db = RELEASE_DB_PER_S * self.window / rate
        self._pending = np.zeros((0, channels), dtype=np.float32)
        self._before = np.zeros((CONTEXT_BEFORE, channels), dtype=np.float32)
        self._edge_db = 0.0  # limiter gain (dB) at the start of the pending audio
        self._input_frames = 0
        self._output_frames = 0
        self.limited_windows = 0
        self.peak = 0.0  # estimated true peak of the output (linear)
        self._ramp_power: list[np.ndarray] = []  # mean limiter g^2 per window, for loudness

    @property
    def limited_s(self) -> float:
        """Seconds of audio during which the limiter held the gain down."""
        return self.limited_windows * self.window / self.rate

    def process(self, samples: np.ndarray) -> np.ndarray:
        self._input_frames += len(samples)
        data = np.concatenate((self._pending, samples)) if len(self._pending) else samples
        windows = (len(data) - CONTEXT_AFTER) // self.window
        if windows < 2:
            self._pending = np.array(data, dtype=np.float32)
            return np.zeros((0, self.channels), dtype=np.float32)
        out = self._limit(data, windows)
        keep_from = (windows - 1) * self.window
        self._before = np.array(data[keep_from - CONTEXT_BEFORE: keep_from], dtype=np.float32)
        self._pending = np.array(data[keep_from:], dtype=np.float32)
        return out

    def flush(self) -> np.ndarray:
        """The audio still held for look-ahead, limited; the limiter is then empty."""
        left = self._input_frames - self._output_frames
        if left <= 0:
            return np.zeros((0, self.channels), dtype=np.float32)
        padding = 2 * self.window + CONTEXT_AFTER - len(self._pending) % self.window
        tail = np.concatenate((self._pending, np.zeros((padding, self.channels), np.float32)))
        out = self._limit(tail, (len(tail) - CONTEXT_AFTER) // self.window)
        self._pending = np.zeros((0, self.channels), dtype=np.float32)
        return out[:left]

    def _limit(self, data: np.ndarray, windows: int) -> np.ndarray:
        """Output for the first `windows - 1` windows of `data` (the last is look-ahead)."""
        peaks = self._window_peaks(data, windows)  # true peak after `gain`, per window
        limits = np.minimum(0.0, 20.0 * np.log10(self.ceiling / np.maximum(peaks, 1e-12)))
        count = windows - 1
        edges = window_edges(limits, self._edge_db, self._release_db)  # count + 1 edges
        self._edge_db = float(edges[-1])
        audio = data[: count * self.window]
        self._output_frames += len(audio)
        top = np.maximum(edges[:-1], edges[1:])
        self.peak = max(self.peak, float((peaks[:count] * np.power(10.0, top / 20.0)).max()))
        if edges.min() >= 0.0:
            self._ramp_power.append(np.ones(count, dtype=np.float32))  # joined in window_power()
            return audio * np.float32(self.gain)
        self._ramp_power.append(ramp_power(edges).astype(np.float32))
        self.limited_windows += int(np.count_nonzero(top < -0.01))
        return audio * self._sample_gains(edges)

    def window_power(self) -> np.ndarray:
        """Mean g^2 the limiter applied in each 10 ms window so far (1.0 where it did nothing)."""
        self._ramp_power = [_joined(self._ramp_power)]
        return self._ramp_power[0]

    def _window_peaks(self, data: np.ndarray, windows: int) -> np.ndarray:
        span = np.abs(data[: windows * self.window]).reshape(windows, self.window, self.channels)
        peaks = span.max(axis=(1, 2)) * self.gain
        suspects = np.flatnonzero(peaks > self.ceiling * db_to_gain(-TRUE_PEAK_MARGIN_DB))
        if len(suspects):
            peaks[suspects] = np.maximum(peaks[suspects], self._true_peaks(data, suspects) * self.gain)
        return peaks

    def _true_peaks(self, data: np.ndarray, windows: np.ndarray) -> np.ndarray:
        context = np.concatenate((self._before, data))  # data[i] is context[i + CONTEXT_BEFORE]
        offsets = np.arange(self.window + TAPS_PER_PHASE - 1)
        rows = context[(windows * self.window)[:, None] + offsets[None, :]]  # (n, span, channels)
        return np.max([interpolated_peaks(rows[:, :, c]) for c in range(self.channels)], axis=0)

    def _sample_gains(self, edges: np.ndarray) -> np.ndarray:
        """Total gain per sample: linear ramps between the edge gains (a mix of two
        values under a window's limit stays under it)."""
        linear = (self.gain * np.power(10.0, edges / 20.0)).astype(np.float32)
        steps = np.arange(self.window, dtype=np.float32) / np.float32(self.window)
        ramps = linear[:-1, None] + (linear[1:] - linear[:-1])[:, None] * steps[None, :]
        return ramps.reshape(-1, 1)
