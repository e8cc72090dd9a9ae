"""Memory of the command line and of a unit preparing media: summed RSS of each process tree.

Goals (issue 11, item 8), all measured in this run, beside their baselines:
- `loaxa --help`: what the front costs (baseline: a bare interpreter). Information,
  plus: the help must load no operator package (paho, cryptography, SQLAlchemy, numpy).
- `loaxa media prepare SPEECH.mp3 --out X.wav`, the whole tree (Python and ffmpeg):
  <= 100 MB (baseline: a plain ffmpeg decode of the same file, and `audio.prepare`
  called from a bare interpreter, i.e. the module without the CLI).
- a mock unit daemon fetching and preparing the same file for a schedule pushed to it
  (the daemon and its preparing child; ffmpeg too where PyAV is missing): <= 110 MB (baseline: the
  same daemon idle, before the push).

The speech MP3 is bench_audio's (espeak-ng, else speech-like noise), --minutes long.
Trees are sampled every 10 ms through /proc. A broker (tests/support/broker.py, a
free port) and a local HTTP server stand in for the province. Exit 1 when a goal is
missed. Run: `python bench/bench_cli_memory.py [--minutes 10] [--only cli|unit]`.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_audio import POLL_S, _children, _rss_kb, speech_mp3, tree_rss_kb  # noqa: E402

GOAL_CLI_MB = 100.0
GOAL_UNIT_MB = 110.0
HEAVY = ("paho", "cryptography", "sqlalchemy", "numpy")
UNIT_ID = "bench-prepare-01"
GROUP = "dak-lak/lak/bong-krang"


def loaxa_argv(*args) -> list[str]:
    return [sys.executable, "-m", "loaxa", *args]


def _report(rows) -> int:
    missed = 0
    for row in rows:
        name, value, goal = row[:3]
        verdict = "" if len(row) == 3 else ("ok" if row[3] else "MISSED")
        missed += verdict == "MISSED"
        print(f"  {name:58s} {value:22s} {goal:12s} {verdict}", flush=True)
    return missed


# ---- the command line ----

def help_modules() -> list[str]:
    code = ("import runpy, sys\nsys.argv = ['loaxa', '--help']\ntry:\n    runpy.run_module('loaxa', run_name='__main__')\n"
            "except SystemExit:\n    pass\nprint(sorted({m.split('.')[0] for m in sys.modules} & set(%r)), file=sys.stderr)\n"
            % (HEAVY,))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    return json.loads(done.stderr.strip().splitlines()[-1].replace("'", '"'))


def bench_cli(folder: Path, src: Path) -> int:
    quiet = {"stdout": subprocess.DEVNULL}
    bare = max(run_measured_quiet([sys.executable, "-c", "pass"], **quiet)[1] for _ in range(2))
    helps = [run_measured_quiet(loaxa_argv("--help"), **quiet) for _ in range(2)]
    help_wall, help_rss = min(h[0] for h in helps), max(h[1] for h in helps)
    loaded = help_modules()
    decode = ["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(src), "-f", "s16le", "-y", os.devnull]
    base_rss = max(run_measured_quiet(decode)[1] for _ in range(2))
    module = ("import sys; from audio import prepare; prepare(sys.argv[1], sys.argv[2])")
    module_rss = max(run_measured_quiet([sys.executable, "-c", module, str(src), str(folder / "m.wav")])[1]
                     for _ in range(2))
    runs = [run_measured_quiet(loaxa_argv("media", "prepare", str(src), "--out", str(folder / "c.wav")), **quiet)
            for _ in range(2)]
    if any(r[2] != 0 for r in runs):
        print("loaxa media prepare failed")
        return 1
    cli_rss = max(r[1] for r in runs)
    print("the command line:")
    return _report([
        ("bare python (baseline)", f"{bare:.1f} MB", ""),
        ("loaxa --help: peak RSS", f"{help_rss:.1f} MB, {help_wall * 1000:.0f} ms", "(information)"),
        ("loaxa --help: operator packages loaded", ", ".join(loaded) or "none", "none", not loaded),
        ("plain ffmpeg decode of the file (baseline)", f"{base_rss:.1f} MB", ""),
        ("audio.prepare from a bare interpreter (baseline)", f"{module_rss:.1f} MB", ""),
        ("loaxa media prepare: peak RSS, process tree", f"{cli_rss:.1f} MB", f"<= {GOAL_CLI_MB:g} MB",
         cli_rss <= GOAL_CLI_MB),
    ])


def run_measured_quiet(argv, **kwargs):
    """Run argv from the repository; (wall s, peak summed RSS of its tree in MB, exit code)."""
    started = time.monotonic()
    process = subprocess.Popen(argv, cwd=ROOT, **kwargs)
    peak = _peak_while(process)
    return time.monotonic() - started, peak / 1024, process.returncode


def _peak_while(process) -> int:
    peak = 0
    while process.poll() is None:
        peak = max(peak, tree_rss_kb(process.pid))
        time.sleep(POLL_S)
    return peak


# ---- a unit preparing what a schedule needs ----

def bench_unit(folder: Path, src: Path) -> int:
    from tests.support.broker import Broker
    from tests.support.unit import MediaServer, OperatorKey, UnitProcess, write_unit_config

    www = folder / "www"
    www.mkdir()
    shutil.copy(src, www / "speech.mp3")
    broker = Broker(folder / "broker").start()
    server = MediaServer(www)
    unit = None
    try:
        key = OperatorKey(folder / "keys")
        config = write_unit_config(folder / "unit", unit_id=UNIT_ID, groups=[GROUP], broker_url=broker.url,
                                   trust={key.name: key.public})
        unit = UnitProcess(config)
        unit.wait_console("connected to broker", timeout=60)
        time.sleep(3.0)  # settle: the idle figure is the baseline
        idle = max(tree_rss_kb(unit.process.pid) for _ in range(20)) / 1024
        peak, prepared_s = _push_and_watch(folder, broker, key, server, unit, config.parent / "state" / "media")
    finally:
        if unit is not None:
            unit.stop()
        server.close()
        broker.stop()
    print("a unit preparing the media of a schedule:")
    if peak is None:
        print("  the unit did not prepare the media within the time allowed")
        return 1
    return _report([
        ("the same daemon idle (baseline)", f"{idle:.1f} MB", ""),
        (f"daemon + preparing child (+ its ffmpeg) ({prepared_s:.1f} s)", f"{peak:.1f} MB",
         f"<= {GOAL_UNIT_MB:g} MB", peak <= GOAL_UNIT_MB),
    ])


def _push_and_watch(folder, broker, key, server, unit, media_dir):
    """Push a schedule that needs the file; the peak tree RSS until it is prepared."""
    tz_now = datetime.now().astimezone()
    doc = {"type": "schedule", "id": "bench/prepare", "version": 1, "targets": [f"group:{GROUP}"],
           "issued_at": tz_now.isoformat(timespec="seconds"),
           "valid_from": (tz_now - timedelta(days=1)).date().isoformat(),
           "valid_until": (tz_now + timedelta(days=7)).date().isoformat(), "timezone": "Asia/Ho_Chi_Minh",
           "media": {"speech": server.media_entry("speech.mp3")},
           "items": [{"id": "later", "play": ["speech"], "at": (tz_now + timedelta(days=2)).isoformat(timespec="seconds")}]}
    path = folder / "doc.json"
    path.write_text(json.dumps(doc))
    pushed = subprocess.run(loaxa_argv("schedule", "push", str(path), "--key", str(key.key_path),
                                       "--broker", broker.url), cwd=ROOT, capture_output=True, text=True)
    if pushed.returncode != 0:
        raise SystemExit(f"push failed: {pushed.stderr}")
    started, peak, parts = time.monotonic(), 0, []
    while time.monotonic() - started < 600:
        now = tree_parts(unit.process.pid)
        if sum(kb for _, kb in now) > peak:
            peak, parts = sum(kb for _, kb in now), now
        if any((media_dir / "prepared").glob("*.wav")):
            print("  at the peak: " + ", ".join(f"{name} {kb / 1024:.1f} MB" for name, kb in parts))
            return peak / 1024, time.monotonic() - started
        time.sleep(POLL_S)
    return None, None


def tree_parts(pid: int) -> list[tuple[str, int]]:
    """(command name, RSS kB) of each process of the tree under `pid`."""
    parts, todo = [], [pid]
    while todo:
        current = todo.pop()
        try:
            name = Path(f"/proc/{current}/comm").read_text().strip()
        except OSError:
            continue
        parts.append((name, _rss_kb(current)))
        todo += _children(current)
    return parts


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--only", choices=("cli", "unit"))
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="loaxa-bench-cli-"))
    try:
        print(f"generating a {args.minutes:g}-minute speech MP3 ...", flush=True)
        src = speech_mp3(folder, args.minutes)
        missed = 0
        if args.only in (None, "cli"):
            missed += bench_cli(folder, src)
        if args.only in (None, "unit"):
            missed += bench_unit(folder, src)
        return 1 if missed else 0
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
