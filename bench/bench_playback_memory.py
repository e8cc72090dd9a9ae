"""Playing a 60-minute prepared file through the mock speaker: memory must not grow.

Goal (issue 3): playing a 60-minute prepared WAV through the mock speaker at high
speed grows the resident memory of the playing process by <= 10 MB.

The WAV (48 kHz mono 16-bit, 346 MB) is written here and deleted after. The play
runs in a child process set up as the daemon's player is: hardware factory, mock
speaker, `play_files` with a volume (so every block is scaled). Its resident memory
is sampled every 10 ms; the baseline is the same process just before the long play,
after a short play has warmed up every import and buffer. Exit 1 when the goal is
missed. Run: `python bench/bench_playback_memory.py [--minutes 60] [--speed 400]`.
"""

import argparse
import json
import math
import subprocess
import sys
import tempfile
import wave
from array import array
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GOAL_GROWTH_MB = 10.0

CHILD = r"""
import json, sys, threading, time
from pathlib import Path
from audio import builtin_wav, play_files
from hw import MockHardware

def rss_kb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])

src, out, speed = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3])
with MockHardware(out, speed=speed) as hw:
    speaker = hw.speaker()
    play_files(speaker, "warm-up", [builtin_wav("chime", out)], threading.Event(), volume=80)
    before = rss_kb()
    peak = before
    done = threading.Event()
    def sample():
        global peak
        while not done.is_set():
            peak = max(peak, rss_kb())
            time.sleep(0.01)
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.monotonic()
    played = play_files(speaker, "long", [src], threading.Event(), volume=80)
    wall = time.monotonic() - started
    done.set()
    sampler.join()
    print(json.dumps({"before_kb": before, "peak_kb": peak, "after_kb": rss_kb(),
                      "played_s": played, "wall_s": wall}))
"""


def long_wav(path: Path, minutes: float) -> Path:
    """A tone-and-silence WAV of `minutes` at 48 kHz mono 16-bit, written a second at a time."""
    rate = 48000
    second = array("h", (int(8000 * math.sin(2 * math.pi * 440 * i / rate)) for i in range(rate)))
    quiet = array("h", bytes(2 * rate))
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        for n in range(round(minutes * 60)):
            w.writeframes((second if n % 4 else quiet).tobytes())
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--speed", type=float, default=400.0, help="mock speaker speed")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="loaxa-bench-play-") as tmp:
        folder = Path(tmp)
        src = long_wav(folder / "long.wav", args.minutes)
        print(f"  {args.minutes:g}-minute prepared WAV: {src.stat().st_size / 1e6:.0f} MB; "
              f"playing at {args.speed:g}x", flush=True)
        result = subprocess.run([sys.executable, "-c", CHILD, str(src), str(folder / "out"),
                                 str(args.speed)], capture_output=True, text=True, cwd=ROOT)
        if result.returncode != 0:
            print(result.stderr)
            return 1
        numbers = json.loads(result.stdout.strip().splitlines()[-1])
    growth = (numbers["peak_kb"] - numbers["before_kb"]) / 1024
    ok = growth <= GOAL_GROWTH_MB
    print(f"  played {numbers['played_s'] / 60:.1f} min of audio in {numbers['wall_s']:.1f} s")
    print(f"  RSS before {numbers['before_kb'] / 1024:.1f} MB (baseline), peak while playing "
          f"{numbers['peak_kb'] / 1024:.1f} MB, after {numbers['after_kb'] / 1024:.1f} MB")
    print(f"  goal: growth <= {GOAL_GROWTH_MB:g} MB: {growth:.2f} MB {'ok' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
