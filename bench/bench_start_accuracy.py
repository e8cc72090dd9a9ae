"""Start accuracy: is the first sample written at the scheduled time?

Goal (issue 3): over 50 scheduled starts through the mock speaker, the first sample
(the timeline's `speaker.first_sample` time) is within 20 ms of `start_at` at p99,
the amplifier's warm-up being done ahead (as the player does).

Baseline, in the same run: the naive way, sleeping until the time and only then
opening the files and the sink (what the player did before `start_at`). Where aplay
is installed, both also run through the ALSA sink on the `null` device, whose
start-up (a process per playback) the naive way pays at air time. Exit 1 when the
goal is missed. Run: `python bench/bench_start_accuracy.py [--starts 50]`.
"""

import argparse
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from audio import AlsaSink, builtin_wav, play_files  # noqa: E402
from hw import MockHardware, SystemClock  # noqa: E402

GOAL_P99_MS = 20.0
LEAD_S = (0.15, 0.45)  # how far ahead of its time each start is handed over


class _StampedAlsa(AlsaSink):
    """The ALSA sink, noting when the first sample is handed to aplay."""

    def open(self, label):
        self.first = None
        super().open(label)

    def write(self, pcm):
        if self.first is None:
            self.first = time.time()
        super().write(pcm)


def run(starts: int, sink_kind: str, naive: bool, folder: Path) -> list[float]:
    """Errors (ms, first sample minus start time) of `starts` scheduled starts."""
    files = [builtin_wav("chime", folder)]
    clock = SystemClock()
    rng = random.Random(1)
    errors = []
    with MockHardware(folder / f"out-{sink_kind}-{naive}", speed=50.0, clock=clock) as hw:
        sink = hw.speaker() if sink_kind == "mock" else _StampedAlsa("null")
        for n in range(starts):
            start_at = time.time() + rng.uniform(*LEAD_S)
            stop = threading.Event()
            if naive:
                stop.wait(max(0.0, start_at - time.time()))
                play_files(sink, f"s{n}", files, stop)
            else:
                play_files(sink, f"s{n}", files, stop, start_at=start_at, clock=clock)
            first = (hw.timeline.events("speaker.first_sample")[-1]["t"] if sink_kind == "mock"
                     else sink.first)
            errors.append((first - start_at) * 1000)
    return errors


def p99(values: list[float]) -> float:
    ordered = sorted(abs(v) for v in values)
    return ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]


def describe(values: list[float]) -> str:
    return (f"median {statistics.median(values):+6.2f} ms, p99 |error| {p99(values):6.2f} ms, "
            f"max |error| {max(abs(v) for v in values):6.2f} ms")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=50)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="loaxa-bench-start-") as tmp:
        folder = Path(tmp)
        kinds = ["mock"] + (["alsa-null"] if shutil.which("aplay") else [])
        results = {}
        for kind in kinds:
            for naive in (True, False):
                results[kind, naive] = run(args.starts, kind, naive, folder)
                way = "sleep, then open (baseline)" if naive else "start_at (open, then wait)"
                print(f"  {kind:9s} {way:28s} {describe(results[kind, naive])}", flush=True)
    achieved = p99(results["mock", False])
    ok = achieved <= GOAL_P99_MS
    print(f"  goal: p99 within {GOAL_P99_MS:g} ms through the mock speaker over {args.starts} starts: "
          f"{achieved:.2f} ms {'ok' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
