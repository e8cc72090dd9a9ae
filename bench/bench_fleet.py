"""Fleet benchmarks (issue 7), each beside a baseline measured in the same run.

1. Collector: at least 5,000 records a second into SQLite. 50,000 playlogs (from 2,000
   unit ids) go through one mosquitto twice: (a) "backlog": queued in the collector's
   persistent session while it is away, then drained (what the collector itself can
   sustain); (b) "live": fed by a publisher process at full speed while it collects.
   Baseline: a plain paho subscriber on the same shared subscription that only counts
   (acknowledging on receipt, no database). The goal is judged on (a), the collector's
   own capacity; in (b) it must keep pace with what the publishers offer.
2. Schedule acceptance: 2,000 simulated units (the real unit code on mock hardware,
   `loaxa fleet simulate`'s machinery) on one mosquitto; a schedule pushed retained to
   the province group must be accepted by all of them within 10 s, measured from the
   publish to the last `schedule.accepted` event. Baseline: the same schedule pushed to
   one commune (5 units) in the same run. The idle CPU of the units is measured too:
   it is what limits how many fit on a machine.

`python bench/bench_fleet.py [--units N] [--per-process N] [--records N] [--only collector|units]`;
exit 0 when every goal run was met.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import paho.mqtt.client as mqtt  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402
from paho.mqtt.packettypes import PacketTypes  # noqa: E402
from paho.mqtt.properties import Properties  # noqa: E402

from fleet.broker import BrokerOptions, publish  # noqa: E402
from loaxa.brokerurl import parse_broker_url  # noqa: E402
from tests.support.broker import Broker  # noqa: E402
from tests.support.waiting import wait_for  # noqa: E402

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
RECORDS_GOAL_PER_S = 5000
ACCEPT_GOAL_S = 10.0
BROKER_SETTINGS = "max_queued_messages 0\nmax_connections -1"


def shared(group: str) -> str:
    """Each phase has its own share group: sessions left from an earlier phase would take a share."""
    return f"$share/{group}/loaxa/unit/+/playlog"


# ---- part 1: the collector ----

def playlog_payloads(count: int) -> list[tuple[str, bytes]]:
    at = datetime(2026, 12, 1, 6, 0, tzinfo=TZ)
    out = []
    for n in range(count):
        unit = f"dl-bench-{n % 2000:04d}"
        when = at + timedelta(days=n // 2000)
        doc = {"id": str(uuid.uuid4()), "unit": unit, "schedule": "dak-lak/2026-w48", "version": 3,
               "item": "sang", "media": ["chime", "bt-giam-ngheo"], "priority": "normal", "source": "media",
               "scheduled_at": when.isoformat(timespec="milliseconds"),
               "started_at": when.isoformat(timespec="milliseconds"),
               "ended_at": (when + timedelta(seconds=79.1)).isoformat(timespec="milliseconds"),
               "expected_s": 79.1, "played_s": 79.1, "outcome": "completed", "reason": None, "volume": 80,
               "zones": [1, 2], "position": {"lat": 12.41, "lon": 108.03}, "clock": "ntp", "mock": True}
        out.append((f"loaxa/unit/{unit}/playlog", json.dumps(doc).encode()))
    return out


def publisher_main(url: str, count: int) -> None:
    """A separate process: publish `count` playlogs at QoS 1 as fast as the broker takes them."""
    address = parse_broker_url(url)
    messages = playlog_payloads(count)
    done = threading.Event()
    acked = [0]

    def on_publish(client, userdata, mid, reason_code, properties):
        acked[0] += 1
        if acked[0] == count:
            done.set()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{os.getpid()}", protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.on_publish = on_publish
    client.connect(address.host, address.port)
    client.loop_start()
    start = time.perf_counter()
    for topic, payload in messages:
        client.publish(topic, payload, qos=1)
    done.wait(600)
    print(f"{count / (time.perf_counter() - start):.0f}", flush=True)
    client.loop_stop()
    client.disconnect()


def publish_fast(broker, count: int) -> float:
    """Publish from another process (its own GIL); returns its rate."""
    out = subprocess.run([sys.executable, __file__, "--publisher", broker.url, str(count)],
                         capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return float(out.stdout.strip().splitlines()[-1])


LIVE_PUBLISHERS = 2  # one paho publisher manages about 5,000 QoS 1 messages/s here: not enough


class Publishers:
    """LIVE_PUBLISHERS processes publishing `count` messages between them, at full speed."""

    def __init__(self, broker, count: int):
        share = count // LIVE_PUBLISHERS
        counts = [share] * (LIVE_PUBLISHERS - 1) + [count - share * (LIVE_PUBLISHERS - 1)]
        self.started = time.perf_counter()
        self.processes = [subprocess.Popen([sys.executable, __file__, "--publisher", broker.url, str(n)],
                                           stdout=subprocess.PIPE, text=True) for n in counts]
        self.count = count

    def rate(self) -> float:
        """Messages a second offered by all of them together (waits for them to finish)."""
        for process in self.processes:
            process.communicate(timeout=600)
        return self.count / (time.perf_counter() - self.started)


def start_publisher(broker, count: int) -> Publishers:
    return Publishers(broker, count)


class CountingSubscriber:
    """The baseline: a persistent-session paho subscriber that only counts."""

    def __init__(self, broker, client_id: str):
        self.count = 0
        topic = shared(client_id)
        self.first = self.last = None
        self._target = None
        self.done = threading.Event()
        self.subscribed = threading.Event()
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        props.ReceiveMaximum = 2000
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.on_message = self._on_message
        self._connect = lambda: self.client.connect(broker.host, broker.port, clean_start=False, properties=props)

    def _on_message(self, client, userdata, message):
        now = time.perf_counter()
        self.first = self.first or now
        self.last = now
        self.count += 1
        if self._target and self.count >= self._target:
            self.done.set()

    def start(self, target=None) -> None:
        self._target = target
        self._connect()
        self.client.loop_start()
        self.subscribed.wait(10)

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        self.subscribed.clear()


def collector_for(broker, db_url: str, client_id: str):
    from fleet.broker import BrokerOptions
    from fleet.collector import Collector, CollectorSettings
    from fleet.db import open_database
    from fleet.store import FleetStore
    engine = open_database(db_url)
    return Collector(BrokerOptions(parse_broker_url(broker.url)), FleetStore(engine),
                     CollectorSettings(client_id=client_id, share_group=client_id, stats_every_s=3600))


def baseline_backlog(broker, records: int) -> float:
    sub = CountingSubscriber(broker, "bench-baseline")
    sub.start()
    sub.stop()  # the session now exists: the broker queues for it
    publish_fast(broker, records)
    sub = CountingSubscriber(broker, "bench-baseline")
    start = time.perf_counter()
    sub.start(records)
    sub.done.wait(600)
    elapsed = time.perf_counter() - start
    sub.stop()
    return sub.count / elapsed


def collector_backlog(broker, folder: Path, records: int) -> tuple[float, int]:
    db = f"sqlite:///{folder / 'backlog.db'}"
    first = collector_for(broker, db, "bench-collector")
    first.start()
    first.wait_subscribed(10)
    first.stop()
    publish_fast(broker, records)
    collector = collector_for(broker, db, "bench-collector")
    start = time.perf_counter()
    collector.start()
    wait_for(lambda: collector.stats.stored >= records, 600, 0.01)
    elapsed = time.perf_counter() - start
    collector.stop()
    stored = collector.store.counts()["playlogs"]
    collector.store.engine.dispose()
    return collector.stats.stored / elapsed, stored


def baseline_live(broker, records: int) -> tuple[float, float]:
    sub = CountingSubscriber(broker, "bench-baseline-live")
    sub.start(records)
    start = time.perf_counter()
    pub = start_publisher(broker, records)
    sub.done.wait(600)
    elapsed = time.perf_counter() - start
    pub_rate = pub.rate()
    sub.stop()
    return sub.count / elapsed, pub_rate


def collector_live(broker, folder: Path, records: int) -> tuple[float, float, int]:
    collector = collector_for(broker, f"sqlite:///{folder / 'live.db'}", "bench-collector-live")
    collector.start()
    collector.wait_subscribed(10)
    start = time.perf_counter()
    pub = start_publisher(broker, records)
    wait_for(lambda: collector.stats.stored >= records, 600, 0.01)
    elapsed = time.perf_counter() - start
    pub_rate = pub.rate()
    collector.stop()
    stored = collector.store.counts()["playlogs"]
    collector.store.engine.dispose()
    return collector.stats.stored / elapsed, pub_rate, stored


def bench_collector(records: int) -> bool:
    with tempfile.TemporaryDirectory(prefix="loaxa-bench-fleet-") as tmp:
        folder = Path(tmp)
        broker = Broker(folder / "broker", BROKER_SETTINGS).start()
        try:
            base = baseline_backlog(broker, records)
            rate, stored = collector_backlog(broker, folder, records)
            base_live, pub_rate_base = baseline_live(broker, records)
            live, pub_rate, stored_live = collector_live(broker, folder, records)
        finally:
            broker.stop()
    print(f"collector, backlog of {records} playlogs drained into SQLite: {rate:,.0f} records/s "
          f"(goal >= {RECORDS_GOAL_PER_S:,}); {stored} rows stored")
    print(f"  baseline, plain paho subscriber that only counts: {base:,.0f} msg/s "
          f"(collector at {rate / base:.0%} of it)")
    print(f"collector, live from a publisher process: {live:,.0f} records/s "
          f"(fed by {LIVE_PUBLISHERS} publisher processes offering {pub_rate:,.0f}/s); {stored_live} rows stored")
    print(f"  baseline, live: {base_live:,.0f} msg/s (publishers offering {pub_rate_base:,.0f}/s)")
    kept_pace = live >= 0.95 * pub_rate
    print(f"  live, the collector {'kept pace with' if kept_pace else 'FELL BEHIND'} the offered load; on this "
          f"{os.cpu_count()}-core machine publishers, broker and collector share the cores, so the offered "
          "load, not the collector, sets the live figure")
    ok = rate >= RECORDS_GOAL_PER_S and kept_pace and stored == records == stored_live
    print(f"collector goal (backlog drain >= {RECORDS_GOAL_PER_S:,}/s, live keeps pace, nothing lost or doubled) "
          f"{'met' if ok else 'MISSED'}")
    return ok


# ---- part 2: 2,000 units accept a schedule ----

class Observer:
    """Counts units online and `schedule.accepted` events per schedule id, with arrival times."""

    def __init__(self, broker):
        self.online: set[str] = set()
        self.accepted: dict[str, dict[str, float]] = {}
        self.kinds: dict[str, int] = {}  # events by kind: what else the units had to say
        self.drops = 0  # units that went from online to lost or offline
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        ready = threading.Event()
        self.client.on_connect = lambda c, *a: c.subscribe([("loaxa/unit/+/state", 1), ("loaxa/unit/+/event", 1)])
        self.client.on_subscribe = lambda *a: ready.set()
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        ready.wait(10)

    def _on_message(self, client, userdata, message):
        now = time.perf_counter()
        unit = message.topic.split("/")[2]
        doc = json.loads(message.payload)
        if message.topic.endswith("/state"):
            if doc.get("state") == "online":
                self.online.add(unit)
            elif unit in self.online:
                self.online.discard(unit)
                self.drops += 1
            return
        self.kinds[doc.get("kind")] = self.kinds.get(doc.get("kind"), 0) + 1
        if doc.get("kind") == "schedule.accepted":
            self.accepted.setdefault(doc.get("schedule"), {}).setdefault(unit, now)

    def close(self):
        self.client.loop_stop()
        self.client.disconnect()


def schedule_envelope(key, schedule_id: str, target: str) -> bytes:
    from scheduler import sign_document
    now = datetime.now(TZ)
    doc = {"type": "schedule", "id": schedule_id, "version": 1, "targets": [target],
           "issued_at": now.isoformat(timespec="seconds"), "valid_from": now.date().isoformat(),
           "valid_until": (now + timedelta(days=7)).date().isoformat(), "timezone": "Asia/Ho_Chi_Minh",
           "media": {}, "items": [{"id": "sang", "play": ["chime"], "at": "06:00"},
                                 {"id": "chieu", "play": ["chime"], "at": "17:00"}]}
    return sign_document(json.dumps(doc), key.key, key.name)


def push_and_time(broker, observer, key, schedule_id: str, target: str, expected: int, timeout: float):
    topic = f"loaxa/{target.replace(':', '/', 1)}/schedule"
    envelope = schedule_envelope(key, schedule_id, target)
    start = time.perf_counter()
    publish(BrokerOptions(parse_broker_url(broker.url)), [(topic, envelope, True)])
    wait_for(lambda: len(observer.accepted.get(schedule_id, {})) >= expected, timeout, 0.02)
    times = sorted(t - start for t in observer.accepted.get(schedule_id, {}).values())
    return times


def cpu_seconds(pids) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def quantile(values, q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


WAVE = 100           # units started at a time
IDLE_LIMIT = 0.5     # stop adding units once their idle load takes this share of the machine's cores


def idle_cores(pids, seconds: float = 5.0) -> float:
    cpu0, wall0 = cpu_seconds(pids), time.perf_counter()
    time.sleep(seconds)
    return (cpu_seconds(pids) - cpu0) / (time.perf_counter() - wall0)


class Fleet:
    """The simulated units, started a wave at a time while the machine can hold them idle.

    A machine whose cores are all busy with idle units cannot say anything about how
    fast they accept a schedule (and starves every other process on it); so waves stop
    once the units' idle load passes IDLE_LIMIT of the cores, and the report says so."""

    def __init__(self, plan, per_process: int, observer):
        self.plan, self.per_process, self.observer = plan, per_process, observer
        self.simulations = []
        self.idle = 0.0
        self.stopped_early = False
        self.start_s = 0.0

    @property
    def pids(self):
        return [pid for s in self.simulations for pid in s.pids]

    @property
    def started(self) -> int:
        return sum(s.started for s in self.simulations)

    def grow(self) -> None:
        from dataclasses import replace

        from fleet.simulate import Simulation
        began = time.perf_counter()
        units = self.plan.units
        for first in range(0, len(units), WAVE):
            wave = units[first:first + WAVE]
            simulation = Simulation(replace(self.plan, units=wave), per_process=self.per_process)
            self.simulations.append(simulation)
            simulation.start(timeout=120)
            wait_for(lambda: len(self.observer.online) >= first + len(wave), 60, 0.1)
            self.start_s = time.perf_counter() - began
            self.idle = idle_cores(self.pids, 3.0)
            print(f"  {len(self.observer.online)} units online after {self.start_s:.0f} s; idle load "
                  f"{self.idle:.2f} cores; load average {os.getloadavg()[0]:.1f}", file=sys.stderr, flush=True)
            if first + len(wave) < len(units) and self.idle > IDLE_LIMIT * os.cpu_count():
                self.stopped_early = True
                return

    def stop(self) -> None:
        for simulation in self.simulations:
            simulation.stop(timeout=120)


def units_state_root(folder: Path) -> Path:
    """Where the units keep their state: in memory when the machine has /dev/shm.

    Each real unit writes (and fsyncs) its own SD card; 2,000 simulated units writing
    one disk would measure that disk's fsync queue, not the fleet."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        return Path(tempfile.mkdtemp(prefix="loaxa-bench-units-", dir=shm))
    return folder / "units"


def bench_units(count: int, per_process: int) -> bool:
    from fleet.simulate import SimulationPlan, layout
    from tests.support.unit import OperatorKey
    with tempfile.TemporaryDirectory(prefix="loaxa-bench-units-") as tmp:
        folder = Path(tmp)
        broker = Broker(folder / "broker", BROKER_SETTINGS).start()
        observer = Observer(broker)
        key = OperatorKey(folder / "keys")
        plan = SimulationPlan(units=layout(count), broker_url=broker.url, trust_keys={key.name: key.public},
                              state_root=str(units_state_root(folder)), speed=20.0)
        fleet = Fleet(plan, per_process, observer)
        try:
            fleet.grow()
            online, processes = len(observer.online), len(fleet.pids)
            time.sleep(3)  # let the last wave settle before measuring idle load
            idle = idle_cores(fleet.pids, 10.0)
            load = os.getloadavg()[0]
            commune = push_and_time(broker, observer, key, "bench/commune", "group:sim/d01/c01", 5, 60)
            cpu_before = cpu_seconds(fleet.pids), cpu_seconds([broker.process.pid])
            province = push_and_time(broker, observer, key, "bench/province", "group:sim", online, 120)
            push_cpu = cpu_seconds(fleet.pids) - cpu_before[0], cpu_seconds([broker.process.pid]) - cpu_before[1]
            drops, kinds = observer.drops, dict(sorted(observer.kinds.items()))
        finally:
            fleet.stop()
            observer.close()
            broker.stop()
            shutil.rmtree(plan.state_root, ignore_errors=True)
    per_unit_ms = idle / max(online, 1) * 1000
    print(f"units: {fleet.started} of {count} started in {fleet.start_s:.1f} s ({processes} processes of up "
          f"to {per_process}); {online} online")
    if fleet.stopped_early:
        print(f"  STOPPED ADDING UNITS at {fleet.started}: their idle load passed {IDLE_LIMIT:.0%} of this "
              f"machine's {os.cpu_count()} cores; {count} units would need about {per_unit_ms * count / 1000:.1f} "
              "cores just to idle")
    print(f"  idle: {idle:.2f} CPU cores for {online} units = {per_unit_ms:.2f} ms of CPU per unit per second; "
          f"load average {load:.1f} before the push")
    print(f"  baseline, pushed to one commune: {len(commune)} of 5 accepted, last after "
          f"{commune[-1] if commune else float('nan'):.2f} s")
    last = province[-1] if province else float("nan")
    print(f"schedule to the province: {len(province)} of {online} online units accepted, last after {last:.2f} s "
          f"(goal: all of {count} within {ACCEPT_GOAL_S:g} s); p50 {quantile(province, 0.5):.2f} s, "
          f"p90 {quantile(province, 0.9):.2f} s, first {province[0] if province else float('nan'):.2f} s")
    print(f"  CPU while it spread: units {push_cpu[0]:.1f} s ({push_cpu[0] / max(len(province), 1) * 1000:.1f} ms "
          f"a unit), broker {push_cpu[1]:.1f} s")
    print(f"  events seen: {kinds}; units that went offline or lost before the end: {drops}")
    ok = len(province) == count and last <= ACCEPT_GOAL_S
    print(f"acceptance goal {'met' if ok else 'MISSED'}")
    return ok


def main(argv) -> int:
    if argv[:1] == ["--publisher"]:
        publisher_main(argv[1], int(argv[2]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=2000)
    parser.add_argument("--per-process", type=int, default=10)
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--only", choices=("collector", "units"))
    args = parser.parse_args(argv)
    results = []
    if args.only in (None, "collector"):
        results.append(bench_collector(args.records))
    if args.only in (None, "units"):
        results.append(bench_units(args.units, args.per_process))
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
