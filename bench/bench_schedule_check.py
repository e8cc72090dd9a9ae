"""`loaxa schedule check` of a 3,000-item document: time grows with the items, not their square.

Goal (issue 11, item 9): checking a document of 3,000 daily items (a week of plays listed,
overlaps found) takes at most 6x the time of the same kind of document with 750 items,
measured in this run (linear is 4x; the quadratic check of before was 16x: 2.1 s for
3,000). Also shown: a crowded document (every item at the same minute), the worst case
for overlap warnings. Timed in-process (the command's handler through `loaxa.cli.main`,
output to /dev/null), best of 3, so interpreter start-up does not blur the ratio.
Run: `python bench/bench_schedule_check.py [--items 3000]`.
"""

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from loaxa.cli import main as loaxa_main  # noqa: E402
from tests.test_scheduler_document import example_doc  # noqa: E402

GOAL_RATIO = 6.0
BASELINE_SHARE = 4  # the baseline document has a quarter of the items
RUNS = 3


def document(count: int, crowded: bool = False) -> dict:
    """`count` daily items spread over the day (or all at 07:00), compact JSON under 256 KiB."""
    d = example_doc()
    times = ["07:00"] * count if crowded else [
        f"{m // 60:02d}:{m % 60:02d}" for m in (n * 1440 // count for n in range(count))]
    d["items"] = [{"id": f"i{n}", "play": ["chime"], "at": at} for n, at in enumerate(times)]
    return d


def time_check(path: Path) -> float:
    """Best of RUNS: seconds for `loaxa schedule check PATH` (a week from 2026-11-30)."""
    argv = ["schedule", "check", str(path), "--from", "2026-11-30", "--quiet-hours", ""]
    best = float("inf")
    for _ in range(RUNS):
        with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
            started = time.perf_counter()
            code = loaxa_main(argv)
            best = min(best, time.perf_counter() - started)
        if code != 0:
            raise SystemExit(f"check of {path.name} failed with exit code {code}")
    return best


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=3000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        files = {}
        for name, count, crowded in [("baseline", args.items // BASELINE_SHARE, False),
                                     ("spread", args.items, False), ("crowded", args.items, True)]:
            files[name] = Path(tmp) / f"{name}.json"
            files[name].write_text(json.dumps(document(count, crowded), separators=(",", ":")))
        times = {name: time_check(path) for name, path in files.items()}
    ratio = times["spread"] / times["baseline"]
    print(f"  {args.items // BASELINE_SHARE:5d} items spread over the day (baseline): {times['baseline']:.3f} s")
    print(f"  {args.items:5d} items spread over the day:            {times['spread']:.3f} s = "
          f"{ratio:.1f}x the baseline (goal <= {GOAL_RATIO:g}x; linear 4x, quadratic 16x) "
          f"{'ok' if ratio <= GOAL_RATIO else 'MISSED'}")
    print(f"  {args.items:5d} items all at 07:00:                   {times['crowded']:.3f} s")
    return 0 if ratio <= GOAL_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
