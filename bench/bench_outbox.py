"""The outbox against a real mosquitto: replay speed, and memory under a large backlog.

1. Replay after reconnect: 10,000 records, beside a plain paho QoS 1 publish loop.
   Goal (issue 5): the outbox replays at >= 25% of the plain loop's rate, measured in
   the same run against the same mosquitto. The outbox pays for what the plain loop
   does not: every record read from SQLite (WAL, synchronous=FULL) and deleted only
   once its PUBACK came.
2. Backlog (issue 11): 200,000 queued records drain completely, and the process that
   holds the outbox and the link stays within +10 MB of its own idle RSS (the baseline:
   the same process, backlog on disk, broker not yet there). The process is a child,
   its RSS sampled from outside every 10 ms. Before the window the link handed paho the
   whole backlog at connect: +105 MB at 50,000 records, and a stall past 65,535.

`bench/run.py outbox`; `--only replay|backlog`, `--records N` for the backlog.
"""

import argparse
import json
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import paho.mqtt.client as mqtt  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from device.mqtt_link import MqttLink  # noqa: E402
from device.outbox import Outbox  # noqa: E402
from tests.support.broker import Broker  # noqa: E402

RECORDS = 10_000
GOAL_RATIO = 0.25
BACKLOG = 200_000
GOAL_BACKLOG_MB = 10.0
IDLE_S = 3.0  # the child settles this long before its idle RSS is taken
PAYLOAD = (b'{"id":"00000000-0000-0000-0000-000000000000","unit":"dl-lak-bongkrang-01",'
           b'"schedule":"dak-lak/2026-w48","version":3,"item":"sang","outcome":"completed",'
           b'"played_s":79.1,"expected_s":79.1}')


def plain_paho_rate(broker) -> float:
    done = threading.Event()
    acked = [0]

    def on_publish(client, userdata, mid, reason_code, properties):
        acked[0] += 1
        if acked[0] == RECORDS:
            done.set()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-plain", protocol=mqtt.MQTTv5)
    client.on_publish = on_publish
    client.connect(broker.host, broker.port)
    client.loop_start()
    start = time.perf_counter()
    for _ in range(RECORDS):
        client.publish("loaxa/unit/bench/playlog", PAYLOAD, qos=1)
    done.wait(120)
    elapsed = time.perf_counter() - start
    client.loop_stop()
    client.disconnect()
    return RECORDS / elapsed


def bench_link(url: str, box: Outbox) -> MqttLink:
    return MqttLink(url=url, client_id="bench-unit", username=None, password=None, ca_file=None,
                    state_topic="loaxa/unit/bench/state", online_payload=lambda: b"{}",
                    will_payload=b"{}", offline_payload=lambda: b"{}", subscriptions=[],
                    on_message=lambda t, p: None, outbox=box, min_delay_s=0.2, max_delay_s=0.5)


def outbox_replay_rate(broker, folder: Path) -> float:
    box = Outbox(folder / "outbox.sqlite")
    for _ in range(RECORDS):
        box.add("loaxa/unit/bench/playlog", PAYLOAD, kind="playlog")
    link = bench_link(broker.url, box)
    start = time.perf_counter()
    link.start()
    while box.depth() and time.perf_counter() - start < 300:
        time.sleep(0.01)
    elapsed = time.perf_counter() - start
    left = box.depth()
    link.stop()
    box.close()
    if left:
        raise SystemExit(f"outbox did not drain: {left} records left")
    return RECORDS / elapsed


def fill_backlog(path: Path, count: int) -> None:
    """Rows written straight into the outbox's table (200,000 fsyncs would take minutes)."""
    Outbox(path).close()
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("BEGIN")
    db.executemany("INSERT INTO outbox (topic, payload, qos, kind) VALUES (?,?,?,?)",
                   (("loaxa/unit/bench/playlog", PAYLOAD, 1, "playlog") for _ in range(count)))
    db.execute("COMMIT")
    db.close()


def backlog_child(path: str, port: int) -> None:
    """In the child: the outbox and the link, offline first (idle), then draining."""
    box = Outbox(Path(path))
    link = bench_link(f"mqtt://127.0.0.1:{port}", box)
    link.start()
    time.sleep(IDLE_S)
    print("idle", box.depth(), flush=True)
    sys.stdin.readline()  # the parent has taken the idle figure and started the broker
    start = time.perf_counter()
    while box.depth() and time.perf_counter() - start < 600:
        time.sleep(0.05)
    print("drained", box.depth(), time.perf_counter() - start, flush=True)
    link.stop()
    box.close()


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def backlog_drain(folder: Path, count: int) -> dict:
    path = folder / "backlog.sqlite"
    fill_backlog(path, count)
    broker = Broker(folder / "backlog-broker")
    child = subprocess.Popen([sys.executable, __file__, "--child", str(path), str(broker.port)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                             cwd=Path(__file__).resolve().parents[1])
    try:
        first = child.stdout.readline().split()
        if not first or first[0] != "idle":
            raise SystemExit(f"the backlog child failed: {first}")
        idle = rss_kb(child.pid)
        broker.start()
        peak = [idle]
        done = threading.Event()

        def sample():
            while not done.is_set():
                try:
                    peak[0] = max(peak[0], rss_kb(child.pid))
                except OSError:
                    return
                done.wait(0.01)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        child.stdin.write("go\n")
        child.stdin.flush()
        _, left, elapsed = child.stdout.readline().split()
        done.set()
        sampler.join()
        child.wait(30)
    finally:
        if child.poll() is None:
            child.kill()
        broker.stop()
    return {"records": count, "queued": int(first[1]), "left": int(left), "seconds": float(elapsed),
            "idle_mb": idle / 1024, "peak_mb": peak[0] / 1024}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("replay", "backlog"))
    parser.add_argument("--records", type=int, default=BACKLOG, help="backlog size (default 200,000)")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        backlog_child(args.child[0], int(args.child[1]))
        return 0
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        if args.only in (None, "replay"):
            broker = Broker(Path(tmp) / "broker").start()
            try:
                plain = plain_paho_rate(broker)
                ours = outbox_replay_rate(broker, Path(tmp))
            finally:
                broker.stop()
            ratio = ours / plain
            print(f"plain paho QoS 1 loop:  {plain:8.0f} records/s")
            print(f"outbox replay:          {ours:8.0f} records/s")
            print(f"ratio:                  {ratio:8.1%}  (goal >= {GOAL_RATIO:.0%})")
            ok &= ratio >= GOAL_RATIO
        if args.only in (None, "backlog"):
            got = backlog_drain(Path(tmp), args.records)
            growth = got["peak_mb"] - got["idle_mb"]
            print(f"backlog: {got['queued']:,} records queued, {got['queued'] - got['left']:,} delivered "
                  f"in {got['seconds']:.1f} s ({(got['queued'] - got['left']) / got['seconds']:,.0f} records/s)")
            print(f"RSS idle (baseline):    {got['idle_mb']:8.1f} MB")
            print(f"RSS peak while draining:{got['peak_mb']:8.1f} MB  (+{growth:.1f} MB, goal <= "
                  f"+{GOAL_BACKLOG_MB:.0f} MB)")
            print(json.dumps(got))
            ok &= got["left"] == 0 and growth <= GOAL_BACKLOG_MB
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
