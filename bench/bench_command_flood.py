"""How fast the unit screens a flood on its command topic (issue 11, item 6).

Each message goes through `CommandGate.screen` (what paho's network thread now runs
before anything is queued) and, for comparison in the same run, through
`CommandGate.admit` + a reply and an event written to a real outbox (what the old
command thread did for every message, one fsync'd row each). Kinds: not JSON, JSON
that is no envelope, an unknown key, a known key with a wrong signature (one Ed25519
verify), and a good signed command. Prints messages per second for each.
"""

import json
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from device.commands import CommandGate, RefusalReporter  # noqa: E402
from device.outbox import Outbox  # noqa: E402
from loaxa.errors import Rejected  # noqa: E402
from scheduler import build_command, load_private_key, load_trusted_keys, sign_document, write_keypair  # noqa: E402

ICT = timezone(timedelta(hours=7))
UNIT = "dl-bench-01"
TOPIC = f"loaxa/unit/{UNIT}/cmd"
N = 5_000


def messages(key, name, now):
    text = build_command("ping", {}, f"unit:{UNIT}", now=now, command_id="forged")
    return {
        "not json": b"\xff\xfe not json",
        "no envelope": json.dumps({"hello": 1}).encode(),
        "unknown key": json.dumps({"payload": text, "alg": "ed25519", "key": "x", "sig": "A" * 86 + "=="}).encode(),
        "bad signature": json.dumps({"payload": text, "alg": "ed25519", "key": name, "sig": "A" * 86 + "=="}).encode(),
        "signed": sign_document(text, key, name),
    }


def rate(fn, count):
    started = time.perf_counter()
    for _ in range(count):
        fn()
    return count / (time.perf_counter() - started)


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        key_path, pub_path = write_keypair(tmp / "keys", "bench")
        name, key = load_private_key(key_path)
        gate = CommandGate(tmp / "commands", trusted=load_trusted_keys({name: pub_path.read_text()}),
                           unit_id=UNIT, groups=[], prefix="loaxa")
        outbox = Outbox(tmp / "outbox.sqlite")
        now = datetime.now(ICT)
        reporter = RefusalReporter(time.monotonic)

        def screen(raw):
            try:
                gate.screen(TOPIC, raw, now)
            except Rejected as exc:
                reporter.admit(TOPIC, str(exc))

        def old_way(raw):
            try:
                gate.admit(TOPIC, raw, now)
            except Rejected as exc:
                outbox.add("r", json.dumps({"detail": str(exc)}).encode(), kind="reply")
                outbox.add("e", json.dumps({"detail": str(exc)}).encode(), kind="event")

        print(f"{'message':<14} {'screen (msg/s)':>15} {'old: admit + 2 rows (msg/s)':>28}")
        for kind, raw in messages(key, name, now).items():
            fast = rate(lambda: screen(raw), N)
            slow = rate(lambda: old_way(raw), 200) if kind != "signed" else float("nan")
            print(f"{kind:<14} {fast:>15,.0f} {slow:>28,.0f}")
        outbox.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
