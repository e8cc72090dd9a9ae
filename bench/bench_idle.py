"""An idle unit daemon: resident memory and CPU, beside a bare Python interpreter.

Goals (issue 5): resident memory <= 45 MB and CPU < 1% of a core while idle
(connected to its broker, a schedule in force, nothing playing).
"""

import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.broker import Broker  # noqa: E402
from tests.support.unit import OperatorKey, write_unit_config  # noqa: E402

SETTLE_S = 8.0
MEASURE_S = 30.0
GOAL_RSS_MB = 45.0
GOAL_CPU = 0.01
TICKS = 100  # os.sysconf("SC_CLK_TCK") on Linux


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def measure(argv, cwd) -> tuple[float, float]:
    proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(SETTLE_S)
        cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
        time.sleep(MEASURE_S)
        cpu = (cpu_seconds(proc.pid) - cpu0) / (time.monotonic() - t0)
        return rss_mb(proc.pid), cpu
    finally:
        proc.terminate()
        proc.wait(15)


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        broker = Broker(tmp / "broker").start()
        try:
            key = OperatorKey(tmp / "keys")
            config = write_unit_config(tmp / "unit", unit_id="bench-idle-01", groups=["dak-lak"],
                                       broker_url=broker.url, trust={key.name: key.public})
            bare_rss, bare_cpu = measure([sys.executable, "-c", "import time; time.sleep(600)"], ROOT)
            rss, cpu = measure([sys.executable, "-m", "loaxa", "run", "--config", str(config)], ROOT)
        finally:
            broker.stop()
    print(f"bare python:   RSS {bare_rss:5.1f} MB  CPU {bare_cpu:6.2%}")
    print(f"idle daemon:   RSS {rss:5.1f} MB  CPU {cpu:6.2%}   (goals: <= {GOAL_RSS_MB:.0f} MB, < {GOAL_CPU:.0%})")
    return 0 if rss <= GOAL_RSS_MB and cpu < GOAL_CPU else 1


if __name__ == "__main__":
    sys.exit(main())
