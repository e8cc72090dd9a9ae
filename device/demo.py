"""The built-in demo: `loaxa run` with no config anywhere.

Mock hardware, the bundled Vietnamese demo bulletin, and a real signed schedule
that the demo signs itself with a key it makes on first start: the first play
within 30 seconds of start, then every 5 minutes. It reports to a broker on
localhost when one answers (`LOAXA_DEMO_BROKER` names another) and works offline
otherwise.

Each start makes a new schedule whose times count from that start, and it is in
force before the unit plans anything: the previous run's schedule, whose times
count from the previous start, would otherwise be planned first and its recent
plays (up to the lateness limit old) played late at once, before the new first
bulletin.
"""

import hashlib
import json
import logging
import os
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from audio import DEMO_BULLETIN
from hw.clock import SystemClock
from loaxa.brokerurl import parse_broker_url
from loaxa.errors import ConfigError, LoaxaError
from provisioning import demo_config
from scheduler import (ScheduleStore, load_private_key, load_trusted_keys, public_key_b64,
                       sign_document, write_keypair)

log = logging.getLogger("loaxa.demo")

DEMO_KEY_NAME = "demo"
DEMO_BROKER = "mqtt://127.0.0.1:1883"
# The broker the demo reports to instead of DEMO_BROKER: the test suite points every
# demo it starts at a port of its own, so `make test` never reaches a user's broker.
DEMO_BROKER_ENV = "LOAXA_DEMO_BROKER"
FIRST_PLAY_AFTER_S = 20
EVERY_S = 300
DEMO_MEDIA_URL = "https://demo.loaxa.invalid/demo-bulletin.ogg"
DEMO_MEDIA_ID = "ban-tin-demo"


def demo_state_dir(environ=os.environ) -> Path:
    base = environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "loaxa-demo"


def demo_broker_url(environ=os.environ) -> str:
    """$LOAXA_DEMO_BROKER when set, else the local broker; a bad one is a ConfigError naming it."""
    url = environ.get(DEMO_BROKER_ENV, "").strip()
    if not url:
        return DEMO_BROKER
    try:
        parse_broker_url(url)
    except ConfigError as exc:
        raise ConfigError(exc.errors, DEMO_BROKER_ENV) from exc
    return url


def demo_key(state_dir: Path):
    """The demo's own signing key, made on first start and kept."""
    key_path = state_dir / "keys" / f"{DEMO_KEY_NAME}.key"
    if not key_path.exists():
        write_keypair(key_path.parent, DEMO_KEY_NAME)
    return load_private_key(key_path)


def demo_schedule(unit_id: str, tz, now, sha256: str, size: int, lateness_s: float = 600.0,
                  version: int | None = None) -> str:
    """A day of plays: FIRST_PLAY_AFTER_S from now, then every EVERY_S, recurring daily.

    The times just before now are left out: today's occurrence of them would be less
    than `lateness_s` old, and the unit would play it late at once, before the first.
    `version` defaults to `now` in whole seconds."""
    local_now = now.astimezone(tz)
    first = local_now + timedelta(seconds=FIRST_PLAY_AFTER_S)
    last_offset_s = 86400 - FIRST_PLAY_AFTER_S - lateness_s
    times = sorted({(first + timedelta(seconds=EVERY_S * k)).strftime("%H:%M:%S")
                    for k in range(86400 // EVERY_S) if EVERY_S * k < last_offset_s})
    doc = {
        "type": "schedule", "id": f"demo/{unit_id}",
        "version": int(now.timestamp()) if version is None else version,
        "targets": [f"unit:{unit_id}"], "issued_at": local_now.isoformat(timespec="seconds"),
        "valid_from": (local_now - timedelta(days=1)).date().isoformat(),
        "valid_until": (local_now + timedelta(days=365)).date().isoformat(),
        "timezone": str(tz),
        "media": {DEMO_MEDIA_ID: {"url": DEMO_MEDIA_URL, "sha256": sha256, "size": size,
                                  "title": "Bản tin thử nghiệm loa xã"}},
        "items": [{"id": f"demo-{t.replace(':', '')}", "play": ["chime", DEMO_MEDIA_ID], "at": t}
                  for t in times],
    }
    return json.dumps(doc, ensure_ascii=False, indent=1)


def demo_schedule_topic(cfg) -> str:
    return f"{cfg.broker.topic_prefix}/unit/{cfg.unit.id}/schedule"


def _store_and_context(cfg):
    """The unit's schedule store, and the checks the unit applies to an offer (as the unit does)."""
    tz = ZoneInfo(cfg.unit.timezone)
    context = dict(trusted=load_trusted_keys(cfg.trust.keys), unit_id=cfg.unit.id,
                   groups=cfg.unit.groups, prefix=cfg.broker.topic_prefix,
                   quiet_hours=cfg.unit.quiet_hours, unit_tz=tz)
    return ScheduleStore(cfg.unit.state_dir / "schedules", **context), context


def prepare_demo(cfg, clock=None) -> None:
    """Before the unit starts: the bulletin in its media cache, and this start's schedule
    in force in its store, replacing the previous run's before the planner reads it.

    The version is above every one accepted before (a clock set back, or two starts in
    one second, would otherwise have the new schedule refused and the old one played)."""
    from device.media_cache import MediaCache

    clock = clock or SystemClock()
    data = DEMO_BULLETIN.read_bytes()
    sha256 = hashlib.sha256(data).hexdigest()
    try:
        MediaCache(cfg.unit.media_dir).seed(DEMO_BULLETIN, sha256)
    except OSError as exc:  # a full or read-only state folder: the unit still starts and says so
        log.error("demo: the bulletin could not be put in the media cache (%s)", exc)
    store, context = _store_and_context(cfg)
    now = clock.now()
    doc_id = f"demo/{cfg.unit.id}"
    version = max(int(now.timestamp()), store.versions().get(doc_id, 0) + 1)
    text = demo_schedule(cfg.unit.id, context["unit_tz"], now, sha256, len(data),
                         lateness_s=cfg.unit.lateness_s, version=version)
    name, key = demo_key(cfg.unit.state_dir)
    try:
        store.offer(demo_schedule_topic(cfg), sign_document(text, key, name), **context)
    except (LoaxaError, OSError) as exc:  # a full or read-only state folder: the unit still starts
        log.error("demo: this start's schedule could not be stored (%s); the previous one, "
                  "if any, stays in force", exc)


def announce_demo(unit) -> None:
    log.info("demo: first bulletin in about %d s, then every %d minutes; mock speaker output in %s",
             FIRST_PLAY_AFTER_S, EVERY_S // 60, unit.cfg.hardware.mock_output_dir)


def build_demo_config(environ=os.environ):
    broker_url = demo_broker_url(environ)  # before anything is written
    state_dir = demo_state_dir(environ)
    _, key = demo_key(state_dir)
    return demo_config(state_dir, broker_url=broker_url, trust_keys={DEMO_KEY_NAME: public_key_b64(key)})


def run_demo(environ=os.environ) -> int:
    """`loaxa run` with no config: the demo, until SIGTERM/SIGINT."""
    from device.daemon import Unit

    cfg = build_demo_config(environ)
    log.info("no config found: running the built-in demo as unit %s (state in %s)",
             cfg.unit.id, cfg.unit.state_dir)
    prepare_demo(cfg)
    Unit(cfg, after_start=announce_demo).run()
    return 0
