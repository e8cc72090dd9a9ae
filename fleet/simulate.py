"""`loaxa fleet simulate`: many units running the real unit code on mock hardware.

Each simulated unit is a `device.daemon.Unit` with `hw.mock.MockHardware` (the mock
speaker running `speed` times faster than real time), its own state folder and its
own broker connection: what the broker, the collector and the reports meet is
exactly what real units would send.

Units run in worker processes of at most `per_process` units each. paho's network
loop uses select(), which cannot watch a file descriptor numbered 1024 or more; a
unit holds about 7 (broker socket and wake-up pair, outbox database with its WAL
and shared memory, hardware log), so 100 units a process stay well under the limit.
A worker reads its plan as one JSON line on standard input, says `ready N` when its
units are up, and stops them when its standard input closes or on SIGTERM: a parent
that dies takes its workers with it.

Layout: units are `{province}-dNN-cNN-uNN` in group `{province}/dNN/cNN` (district,
commune), `per_commune` units a commune and `per_district` communes a district.
"""

import json
import logging
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from fleet.errors import FleetError

__all__ = ["MAX_PER_PROCESS", "SimulatedUnit", "Simulation", "SimulationPlan", "layout"]

log = logging.getLogger("loaxa.fleet.simulate")

MAX_PER_PROCESS = 120
DEFAULT_PER_PROCESS = 100
READY_TIMEOUT_S = 60.0
STOP_THREADS = 32


@dataclass(frozen=True)
class SimulatedUnit:
    id: str
    group: str


def layout(count: int, province: str = "sim", per_commune: int = 5, per_district: int = 10) -> list[SimulatedUnit]:
    """`count` units, `per_commune` to a commune and `per_district` communes to a district."""
    communes = math.ceil(count / per_commune)
    districts = math.ceil(communes / per_district)
    dw, cw, uw = (max(2, len(str(n))) for n in (districts, per_district, per_commune))
    units = []
    for n in range(count):
        commune_index, u = divmod(n, per_commune)
        d, c = divmod(commune_index, per_district)
        units.append(SimulatedUnit(f"{province}-d{d + 1:0{dw}}-c{c + 1:0{cw}}-u{u + 1:0{uw}}",
                                   f"{province}/d{d + 1:0{dw}}/c{c + 1:0{cw}}"))
    return units


@dataclass(frozen=True)
class SimulationPlan:
    """What every simulated unit shares; `units` says who they are."""
    units: list
    broker_url: str
    trust_keys: dict
    state_root: str
    topic_prefix: str = "loaxa"
    username: str | None = None
    password_file: str | None = None
    ca_file: str | None = None
    speed: float = 20.0
    warmup_s: float = 0.2
    cooldown_s: float = 1.0
    timezone: str = "Asia/Ho_Chi_Minh"
    health_interval_s: float | None = None
    log_level: str = "WARNING"
    extra: dict = field(default_factory=dict)  # more config tables/keys, merged per table


def unit_config(plan: SimulationPlan, unit: SimulatedUnit):
    """The unit's Config, built through the same schema a real unit's config.toml goes through."""
    from provisioning import parse_config
    state_dir = Path(plan.state_root) / unit.id
    broker = {"url": plan.broker_url, "topic_prefix": plan.topic_prefix}
    for key in ("username", "password_file", "ca_file"):
        if getattr(plan, key):
            broker[key] = getattr(plan, key)
    data = {
        "unit": {"id": unit.id, "groups": [unit.group], "state_dir": str(state_dir), "quiet_hours": "",
                 "timezone": plan.timezone},
        "clock": {"trust": "always"},
        "broker": broker,
        "trust": {"keys": dict(plan.trust_keys)},
        "hardware": {"mode": "mock", "mock_speed": plan.speed},
        "amplifier": {"warmup_s": plan.warmup_s, "cooldown_s": plan.cooldown_s},
    }
    if plan.health_interval_s is not None:
        data["unit"]["health_interval_s"] = plan.health_interval_s
    for table, values in plan.extra.items():
        data.setdefault(table, {}).update(values)
    return parse_config(data, base_dir=state_dir, source=f"simulated unit {unit.id}")


# ---- the worker process ----

def _start_unit(plan: SimulationPlan, unit: SimulatedUnit):
    from device.daemon import Unit
    from hw.mock import MockHardware
    cfg = unit_config(plan, unit)
    hardware = MockHardware(cfg.hardware.mock_output_dir, speed=cfg.hardware.mock_speed)
    running = Unit(cfg, hardware=hardware)
    running.start()
    return running


def _stop_all(running) -> None:
    with ThreadPoolExecutor(max_workers=STOP_THREADS) as pool:
        list(pool.map(lambda u: u.stop(), running))


def worker_main(stdin=sys.stdin, stdout=sys.stdout) -> int:
    """One worker: read the plan, start its units, report, wait, stop them."""
    spec = json.loads(stdin.readline())
    plan = SimulationPlan(**{**spec, "units": [SimulatedUnit(**u) for u in spec["units"]]})
    logging.basicConfig(level=plan.log_level, stream=sys.stderr,
                        format=f"%(asctime)s %(levelname)s w{os.getpid()} %(name)s: %(message)s")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    threading.Thread(target=lambda: (stdin.read(), stop.set()), daemon=True, name="lifeline").start()
    running = []
    try:
        for unit in plan.units:
            if stop.is_set():
                break
            running.append(_start_unit(plan, unit))
        print(f"ready {len(running)}", file=stdout, flush=True)
        stop.wait()
    except Exception as exc:  # noqa: BLE001 - said once, plainly, to the parent
        print(f"error {type(exc).__name__}: {' '.join(str(exc).split())}", file=stdout, flush=True)
        return 1
    finally:
        _stop_all(running)
    return 0


# ---- the parent ----

class Simulation:
    """Start `plan.units` in worker processes; `stop()` (or leaving `with`) ends them."""

    def __init__(self, plan: SimulationPlan, *, per_process: int = DEFAULT_PER_PROCESS):
        if not 1 <= per_process <= MAX_PER_PROCESS:
            raise FleetError(f"--per-process must be 1-{MAX_PER_PROCESS}: paho's select() loop fails once "
                             "a process holds 1024 file descriptors, and a unit holds about 7")
        self.plan = plan
        self.per_process = per_process
        self.workers: list[subprocess.Popen] = []
        self.started = 0

    @property
    def units(self) -> list[SimulatedUnit]:
        return list(self.plan.units)

    def _chunks(self) -> list[list]:
        units = self.plan.units
        count = math.ceil(len(units) / self.per_process)
        size = math.ceil(len(units) / count) if count else 0
        return [units[i:i + size] for i in range(0, len(units), size)] if size else []

    def start(self, timeout: float | None = None) -> "Simulation":
        Path(self.plan.state_root).mkdir(parents=True, exist_ok=True)
        for chunk in self._chunks():
            spec = {**asdict(self.plan), "units": [asdict(u) for u in chunk]}
            worker = subprocess.Popen([sys.executable, "-m", "fleet.simulate"], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, text=True, cwd=_project_root(),
                                      env={**os.environ, "PYTHONPATH": _python_path()})
            worker.stdin.write(json.dumps(spec) + "\n")
            worker.stdin.flush()
            self.workers.append(worker)
        try:
            self._wait_ready(timeout or READY_TIMEOUT_S + 0.05 * len(self.plan.units))
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for worker in self.workers:
            line = _read_line(worker, deadline)
            if not line.startswith("ready "):
                raise FleetError(f"a simulator process failed: {line.strip() or 'it exited'}")
            self.started += int(line.split()[1])

    def alive(self) -> bool:
        return all(w.poll() is None for w in self.workers)

    def stop(self, timeout: float = 60.0) -> None:
        """Stop every unit cleanly (each publishes `offline`). Safe twice."""
        for worker in self.workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for worker in self.workers:
            try:
                worker.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
            for stream in (worker.stdin, worker.stdout):
                try:
                    stream.close()
                except (OSError, ValueError):
                    pass
        self.workers = []

    def __enter__(self) -> "Simulation":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


def _read_line(worker, deadline: float) -> str:
    """One line from a worker's stdout, or "" when it exits or the deadline passes."""
    result = []
    reader = threading.Thread(target=lambda: result.append(worker.stdout.readline()), daemon=True)
    reader.start()
    reader.join(max(0.0, deadline - time.monotonic()))
    if not result:
        return "timed out starting its units"
    return result[0]


def _project_root() -> str:
    return str(Path(__file__).resolve().parents[1])


def _python_path() -> str:
    parts = [_project_root()] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return os.pathsep.join(dict.fromkeys(parts))


def temporary_state_root() -> str:
    return tempfile.mkdtemp(prefix="loaxa-sim-")


def remove_state_root(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(worker_main())
