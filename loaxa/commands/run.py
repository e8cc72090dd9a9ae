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
    from device.daemon import Unit
    from device.demo import build_demo_config, install_demo_schedule

    path = find_config(args.config)
    if path is None:
        cfg = build_demo_config()
        log_in_timezone(ZoneInfo(cfg.unit.timezone))
        log.info("no config found: running the built-in demo (state in %s)", cfg.unit.state_dir)
        Unit(cfg, after_start=install_demo_schedule).run()
    else:
        cfg = load_config(path)
        log_in_timezone(ZoneInfo(cfg.unit.timezone))
        log.info("unit %s starting with %s", cfg.unit.id, path)
        Unit(cfg).run()
    return 0
