"""`loaxa fleet simulate`: many units running the real unit code on mock hardware.

Each simulated unit is a `device.daemon.Unit` with `hw.mock.MockHardware` (the mock
speaker running `speed` times faster than real time, the serial devices on their
simulators), its own state folder and its own broker connection: what the broker,
the collector and the reports meet is exactly what real units would send.

Units run in worker processes of at most `per_process` units each (default 10).
Units in one process share its GIL: when a province-wide push makes every unit busy
at once, a worker with many units queues them all behind one lock. Measured on 2
cores with 2,000 units: 10 a process (200 processes) accepted in 7.0-7.5 s; 40 a
process (50) took 23 s or collapsed into keep-alive timeouts. An idle simulated unit
costs ~0.3 ms of CPU a second because nothing in it polls: the simulators sleep until
spoken to, the amplifier is watched only while it is on. paho's network
loop uses select(), which cannot watch a file descriptor numbered 1024 or more, and
a mock unit holds a few dozen (broker socket and wake-up pair, outbox database with
its WAL, pseudo-terminals of its serial simulators, control socket, logs): a worker
stops starting units once its descriptors near FD_CEILING and says how many fit.
Workers are forked from a forkserver that has imported the unit code once, so
starting a hundred processes costs no hundred imports. A worker stops its units when
told, on SIGTERM, or when its parent goes away (its end of the pipe closes).

Layout: units are `{province}-dNN-cNN-uNN` in group `{province}/dNN/cNN` (district,
commune), `per_commune` units a commune and `per_district` communes a district.
"""

import json
import logging
import math
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from fleet.errors import FleetError

__all__ = ["DEFAULT_DEVICES", "MAX_PER_PROCESS", "SimulatedUnit", "Simulation", "SimulationPlan", "layout"]

log = logging.getLogger("loaxa.fleet.simulate")

MAX_PER_PROCESS = 200
DEFAULT_PER_PROCESS = 10
# Serial devices each unit has: a fixed commune cluster has an amplifier and a modem;
# a GPS (vehicles) costs a simulated unit more CPU than the rest of its idle work.
DEFAULT_DEVICES = ("amplifier", "modem")
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
    devices: tuple = DEFAULT_DEVICES
    log_level: str = "WARNING"
    # A thread waiting for the GIL wakes every switch interval to ask for it (5 ms by
    # default). When a province-wide push wakes every unit at once, a worker holds a
    # hundred such threads and the machine drowns in their wake-ups: measured on 2
    # cores, 2,000 units collapsed (keep-alive timeouts, reconnect storms) at 5 ms and
    # accepted in 7 s at 50 ms. A unit process on a Pi keeps Python's default.
    switch_interval_s: float = 0.05
    extra: dict = field(default_factory=dict)  # more config tables/keys, merged per table
    # Vehicles (issue 13): these units also have a GPS whose simulator drives `route`
    # (hw.sim.route: GPX, or JSON waypoints and faults) from the unit's start.
    route: str | None = None
    vehicles: tuple = ()


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

FD_CEILING = 900  # stay well below select()'s 1024
PRELOAD = ["device.daemon", "hw.mock", "provisioning", "fleet.simulate"]


def _start_unit(plan: SimulationPlan, unit: SimulatedUnit):
    from device.daemon import Unit
    from hw.mock import MockHardware
    cfg = unit_config(plan, unit)
    vehicle = plan.route is not None and unit.id in plan.vehicles
    fitted = tuple(dict.fromkeys(plan.devices + ("gps",))) if vehicle else plan.devices
    hardware = MockHardware(cfg.hardware.mock_output_dir, speed=cfg.hardware.mock_speed, fitted=fitted,
                            route=plan.route if vehicle else None)
    running = Unit(cfg, hardware=hardware)
    running.start()
    return running


def _stop_all(running) -> None:
    with ThreadPoolExecutor(max_workers=STOP_THREADS) as pool:
        list(pool.map(lambda u: u.stop(), running))


def _highest_fd() -> int:
    return max((int(name) for name in os.listdir("/proc/self/fd")), default=0)


def _start_units(plan: SimulationPlan, stop: threading.Event) -> list:
    running = []
    for unit in plan.units:
        if stop.is_set():
            break
        running.append(_start_unit(plan, unit))
        if _highest_fd() > FD_CEILING:
            each = max(1, _highest_fd() // len(running))
            raise FleetError(f"{len(running)} units hold file descriptors up to {_highest_fd()} (about {each} "
                             f"each); paho's select() fails past 1023: use --per-process "
                             f"{max(1, FD_CEILING // each - 1)} or fewer")
    return running


def worker_process(spec: str, conn) -> None:
    """One worker (forked): start its units, say `("ready", n)`, stop them when told."""
    plan_dict = json.loads(spec)
    plan = SimulationPlan(**{**plan_dict, "units": [SimulatedUnit(**u) for u in plan_dict["units"]]})
    logging.basicConfig(level=plan.log_level, stream=sys.stderr, force=True,
                        format=f"%(asctime)s %(levelname)s w{os.getpid()} %(name)s: %(message)s")
    sys.setswitchinterval(plan.switch_interval_s)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop

    def lifeline():
        try:
            conn.recv()  # "stop", or EOFError when the parent is gone
        except (EOFError, OSError):
            pass
        stop.set()
    threading.Thread(target=lifeline, daemon=True, name="lifeline").start()
    running = []
    try:
        running = _start_units(plan, stop)
        conn.send(("ready", len(running)))
        stop.wait()
    except Exception as exc:  # noqa: BLE001 - said once, plainly, to the parent
        conn.send(("error", f"{type(exc).__name__}: {' '.join(str(exc).split())}"))
    finally:
        _stop_all(running)


# ---- the parent ----

def _context():
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    return ctx


class Simulation:
    """Start `plan.units` in worker processes; `stop()` (or leaving `with`) ends them.

    Workers come from multiprocessing's forkserver, which re-imports the parent's main
    module in each worker: a script using this class must keep its work under
    `if __name__ == "__main__":` (the CLI, the tests and bench/ do)."""

    def __init__(self, plan: SimulationPlan, *, per_process: int = DEFAULT_PER_PROCESS):
        if not 1 <= per_process <= MAX_PER_PROCESS:
            raise FleetError(f"--per-process must be 1-{MAX_PER_PROCESS}: paho's select() loop fails once "
                             "a process holds 1024 file descriptors, and a mock unit holds a few dozen")
        self.plan = plan
        self.per_process = per_process
        self.workers: list = []  # (process, connection)
        self.started = 0

    @property
    def units(self) -> list[SimulatedUnit]:
        return list(self.plan.units)

    @property
    def pids(self) -> list[int]:
        return [process.pid for process, _ in self.workers]

    def chunks(self) -> list[list]:
        units = self.plan.units
        count = math.ceil(len(units) / self.per_process)
        size = math.ceil(len(units) / count) if count else 0
        return [units[i:i + size] for i in range(0, len(units), size)] if size else []

    def start(self, timeout: float | None = None) -> "Simulation":
        Path(self.plan.state_root).mkdir(parents=True, exist_ok=True)
        ctx = _context()
        try:
            for chunk in self.chunks():
                parent_end, child_end = ctx.Pipe()
                spec = json.dumps({**asdict(self.plan), "units": [asdict(u) for u in chunk]})
                process = ctx.Process(target=worker_process, args=(spec, child_end), daemon=False,
                                      name=f"loaxa-sim-{chunk[0].id}")
                process.start()
                child_end.close()
                self.workers.append((process, parent_end))
            self._wait_ready(timeout or READY_TIMEOUT_S + 0.05 * len(self.plan.units))
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for process, conn in self.workers:
            if not conn.poll(max(0.0, deadline - time.monotonic())):
                raise FleetError(f"a simulator process did not start its units within {timeout:.0f} s "
                                 "(the machine may be overloaded: try fewer units)")
            try:
                what, detail = conn.recv()
            except EOFError:
                what, detail = "error", f"it exited with code {process.exitcode}"
            if what != "ready":
                raise FleetError(f"a simulator process failed: {detail}")
            self.started += detail

    def alive(self) -> bool:
        return all(process.is_alive() for process, _ in self.workers)

    def stop(self, timeout: float = 60.0) -> None:
        """Stop every unit cleanly (each publishes `offline`). Safe twice."""
        for process, conn in self.workers:
            try:
                conn.send("stop")
            except (OSError, ValueError):
                pass
        deadline = time.monotonic() + timeout
        for process, conn in self.workers:
            process.join(max(0.1, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join()
            conn.close()
        self.workers = []

    def __enter__(self) -> "Simulation":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


def temporary_state_root() -> str:
    return tempfile.mkdtemp(prefix="loaxa-sim-")


def remove_state_root(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)
