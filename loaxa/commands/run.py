"""`loaxa run`: the unit daemon, or the built-in demo when no config exists."""

import logging
from zoneinfo import ZoneInfo

from loaxa.cli import log_in_timezone
from provisioning import find_config, load_config

log = logging.getLogger("loaxa.run")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "run", help="run the unit daemon (the built-in demo when no config exists)",
        description="Run the unit daemon. The config is --config, else $LOAXA_CONFIG, else "
                    "/etc/loaxa/config.toml; with none of them the built-in demo runs on mock "
                    "hardware.")
    parser.add_argument("--config", metavar="PATH", help="the unit's config.toml")
    parser.set_defaults(func=run)


def run(args) -> int:
    # Imported here so `loaxa --help` stays fast and free of hardware imports.
    path = find_config(args.config)
    if path is None:
        from device.demo import build_demo_config, run_demo

        log_in_timezone(ZoneInfo(build_demo_config().unit.timezone))
        return run_demo()
    from device.daemon import Unit

    cfg = load_config(path)
    log_in_timezone(ZoneInfo(cfg.unit.timezone))
    log.info("unit %s starting with %s", cfg.unit.id, path)
    Unit(cfg).run()
    return 0
