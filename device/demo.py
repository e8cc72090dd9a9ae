"""The built-in demo: `loaxa run` with no config anywhere.

Mock hardware, the bundled Vietnamese demo bulletin, and a real signed schedule
that the demo signs itself with a key it makes on first start: the first play
within 30 seconds of start, then every 5 minutes. It reports to a broker on
localhost when one answers and works offline otherwise.
"""

import hashlib
import json
import logging
import os
from datetime import timedelta
from pathlib import Path

from audio import DEMO_BULLETIN
from provisioning import demo_config
from scheduler import load_private_key, public_key_b64, sign_document, write_keypair

log = logging.getLogger("loaxa.demo")

DEMO_KEY_NAME = "demo"
DEMO_BROKER = "mqtt://127.0.0.1:1883"
FIRST_PLAY_AFTER_S = 20
EVERY_S = 300
DEMO_MEDIA_URL = "https://demo.loaxa.invalid/demo-bulletin.ogg"


def demo_state_dir(environ=os.environ) -> Path:
    base = environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "loaxa-demo"


def demo_key(state_dir: Path):
    """The demo's own signing key, made on first start and kept."""
    key_path = state_dir / "keys" / f"{DEMO_KEY_NAME}.key"
    if not key_path.exists():
        write_keypair(key_path.parent, DEMO_KEY_NAME)
    return load_private_key(key_path)


def demo_schedule(unit_id: str, tz, now, sha256: str, size: int, lateness_s: float = 600.0) -> str:
    """A day of plays: FIRST_PLAY_AFTER_S from now, then every EVERY_S, recurring daily.

    The times just before now are left out: today's occurrence of them would be less
    than `lateness_s` old, and the unit would play it late at once, before the first."""
    local_now = now.astimezone(tz)
    first = local_now + timedelta(seconds=FIRST_PLAY_AFTER_S)
    last_offset_s = 86400 - FIRST_PLAY_AFTER_S - lateness_s
    times = sorted({(first + timedelta(seconds=EVERY_S * k)).strftime("%H:%M:%S")
                    for k in range(86400 // EVERY_S) if EVERY_S * k < last_offset_s})
    doc = {
        "type": "schedule", "id": f"demo/{unit_id}", "version": int(now.timestamp()),
        "targets": [f"unit:{unit_id}"], "issued_at": local_now.isoformat(timespec="seconds"),
        "valid_from": (local_now - timedelta(days=1)).date().isoformat(),
        "valid_until": (local_now + timedelta(days=365)).date().isoformat(),
        "timezone": str(tz),
        "media": {"ban-tin-demo": {"url": DEMO_MEDIA_URL, "sha256": sha256, "size": size,
                                   "title": "Bản tin thử nghiệm loa xã"}},
        "items": [{"id": f"demo-{t.replace(':', '')}", "play": ["chime", "ban-tin-demo"], "at": t}
                  for t in times],
    }
    return json.dumps(doc, ensure_ascii=False, indent=1)


def install_demo_schedule(unit) -> None:
    """Sign today's demo schedule and offer it to the unit as if it came from the province."""
    data = DEMO_BULLETIN.read_bytes()
    sha256 = hashlib.sha256(data).hexdigest()
    unit.media.seed(DEMO_BULLETIN, sha256)
    name, key = demo_key(unit.cfg.unit.state_dir)
    text = demo_schedule(unit.cfg.unit.id, unit.tz, unit.clock.now(), sha256, len(data),
                         lateness_s=unit.cfg.unit.lateness_s)
    unit.offer_schedule(unit.topics.state.rsplit("/", 1)[0] + "/schedule", sign_document(text, key, name))
    log.info("demo: first bulletin in about %d s, then every %d minutes; mock speaker output in %s",
             FIRST_PLAY_AFTER_S, EVERY_S // 60, unit.cfg.hardware.mock_output_dir)


def build_demo_config(environ=os.environ):
    state_dir = demo_state_dir(environ)
    _, key = demo_key(state_dir)
    return demo_config(state_dir, broker_url=DEMO_BROKER,
                       trust_keys={DEMO_KEY_NAME: public_key_b64(key)})
