"""`loaxa media prepare` and `loaxa media sync`: the unit's media, by hand.

`prepare` runs one file through exactly the chain a unit uses before air
(decode, loudness to -16 LUFS or --lufs, true-peak limit, output format).
`sync` fetches and prepares, once, every media file of the schedules stored in
the unit's state folder: what the daemon's sync worker does in the background,
for a technician on site (a progress bar on a terminal, plain lines otherwise).
"""

import json
import logging
import sys

from loaxa.errors import ConfigError

MB = 1024 * 1024
REDRAW_S = 0.2
BAR_WIDTH = 24


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "media", help="prepare a media file, or fetch the media the unit's schedules need",
        description="Prepare one media file as the unit does before air, or fetch and prepare "
                    "every media file of the schedules stored on this unit.")
    parser.set_defaults(func=lambda args: _usage(parser))
    actions = parser.add_subparsers(title="actions", metavar="ACTION")

    prepare = actions.add_parser(
        "prepare", help="decode and loudness-normalise one file exactly as the unit does",
        description="Decode INPUT (MP3, WAV, Ogg/Opus, M4A/AAC, FLAC), bring it to the target "
                    "loudness (EBU R128) under a -1.5 dBTP true-peak ceiling, and write a "
                    "48 kHz mono 16-bit WAV to OUTPUT.")
    prepare.add_argument("input", metavar="INPUT", help="the media file")
    prepare.add_argument("--out", metavar="OUTPUT", required=True, help="the WAV to write")
    prepare.add_argument("--lufs", type=float, default=-16.0,
                         help="target integrated loudness, -40 to -5 (default -16)")
    prepare.add_argument("--max-seconds", type=float, default=10800.0,
                         help="refuse audio longer than this (default 10800, the unit's limit)")
    prepare.add_argument("--json", action="store_true", help="print what was done as JSON")
    prepare.set_defaults(func=prepare_media)

    sync = actions.add_parser(
        "sync", help="fetch and prepare the media of the schedules stored on this unit",
        description="Fetch, verify and prepare every media file of the schedules in force on "
                    "this unit (as stored in its state folder), once. The config is --config, "
                    "else $LOAXA_CONFIG, else /etc/loaxa/config.toml. Exit 0 when all are ready.")
    sync.add_argument("--config", metavar="PATH", help="the unit's config.toml")
    sync.add_argument("--json", action="store_true", help="print the final state as JSON")
    sync.set_defaults(func=sync_media)


def _usage(parser) -> int:
    parser.print_help(sys.stderr)
    return 2


# ---------------------------------------------------------------- prepare

def prepare_media(args) -> int:
    from audio import prepare  # numpy: only for the command that needs it

    result = prepare(args.input, args.out, lufs=args.lufs, max_seconds=args.max_seconds)
    if args.json:
        print(json.dumps(result.as_dict()))
    else:
        print(f"prepared {result.path}: {result.summary()}")
    return 0


# ---------------------------------------------------------------- sync

def sync_media(args) -> int:
    from device.media_sync import MediaSync

    cfg = _load_config(args.config)
    if not getattr(args, "verbose", False):
        # The lines below say what the worker's log would; errors still show.
        logging.getLogger("loaxa.media").setLevel(logging.ERROR)
    schedules = _schedules_in_force(cfg)
    if not schedules:
        print("no schedules in force on this unit: no media to fetch")
        return 0
    sync = MediaSync(_cache(cfg), budget_bytes=cfg.audio.cache_budget_mb * MB).start()
    try:
        sync.want(schedules)
        show = _Bar(sys.stdout) if sys.stdout.isatty() and not args.json else _Lines(sys.stdout)
        while not sync.wait_idle(REDRAW_S):
            show.update(sync.status())
        status = sync.status()
        show.done(status)
    finally:
        sync.close()
    if args.json:
        print(json.dumps(status, ensure_ascii=False, indent=2))
    return 0 if status["counts"]["failed"] == 0 else 1


def _load_config(explicit):
    from provisioning import SYSTEM_CONFIG, find_config, load_config

    path = find_config(explicit)
    if path is None:
        raise ConfigError([f"none found: no --config, $LOAXA_CONFIG not set and {SYSTEM_CONFIG} "
                           "does not exist"], "config")
    return load_config(path)


def _cache(cfg):
    from device.media_cache import MediaCache, download_limits

    return MediaCache(cfg.unit.media_dir, lufs=cfg.audio.lufs, max_bytes=cfg.audio.max_media_mb * MB,
                      max_seconds=cfg.audio.max_media_s, limits=download_limits(cfg.audio))


def _schedules_in_force(cfg) -> list:
    from zoneinfo import ZoneInfo

    from scheduler import ScheduleStore, load_trusted_keys

    store = ScheduleStore(cfg.unit.state_dir / "schedules", trusted=load_trusted_keys(cfg.trust.keys),
                          unit_id=cfg.unit.id, groups=cfg.unit.groups, prefix=cfg.broker.topic_prefix,
                          quiet_hours=cfg.unit.quiet_hours, unit_tz=ZoneInfo(cfg.unit.timezone))
    return store.in_force()


class _Lines:
    """Plain lines, one per change of a media's state: for logs and pipes."""

    def __init__(self, out):
        self.out, self.seen = out, {}

    def update(self, status: dict) -> None:
        for media in status["media"]:
            key = (media["state"], media["error"])
            if self.seen.get(media["sha256"]) != key:
                self.seen[media["sha256"]] = key
                print(_line(media), file=self.out, flush=True)

    def done(self, status: dict) -> None:
        self.update(status)
        print(_summary(status), file=self.out, flush=True)


class _Bar:
    """One line redrawn in place: a bar of bytes, the count ready, what is under way."""

    def __init__(self, out):
        self.out, self.last = out, 0

    def update(self, status: dict) -> None:
        media = status["media"]
        total = sum(m["bytes_total"] or 0 for m in media) or 1
        done = sum(min(m["bytes_done"], m["bytes_total"] or m["bytes_done"]) for m in media)
        filled = round(BAR_WIDTH * done / total)
        busy = next((m for m in media if m["state"] in ("downloading", "preparing")), None)
        doing = f"  {busy['state']} {busy['id']}" if busy else ""
        text = (f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {status['counts']['prepared']}/"
                f"{len(media)} ready  {done / MB:.1f}/{total / MB:.1f} MB{doing}")
        self.out.write("\r" + text.ljust(self.last))
        self.out.flush()
        self.last = len(text)

    def done(self, status: dict) -> None:
        self.update(status)
        self.out.write("\n")
        for media in status["media"]:
            if media["state"] == "failed":
                print(_line(media), file=self.out)
        print(_summary(status), file=self.out, flush=True)


def _line(media: dict) -> str:
    size = f" ({media['bytes_total']} bytes)" if media["bytes_total"] else ""
    error = f": {media['error']}" if media["error"] else ""
    return f"{media['id']}: {media['state']}{size if media['state'] == 'downloading' else ''}{error}"


def _summary(status: dict) -> str:
    counts = status["counts"]
    cache = status["cache"]
    return (f"{counts['prepared']} of {len(status['media'])} media ready, {counts['failed']} failed; "
            f"cache {cache['used_mb']:.1f} of {cache['budget_mb']:.0f} MB")
