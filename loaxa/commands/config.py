"""`loaxa config check` and `loaxa config show`: is a unit's config valid, and what it amounts to."""

import json
import sys

from loaxa.errors import ConfigError
from provisioning import SCHEMA, SYSTEM_CONFIG, config_warnings, find_config, load_config


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "config", help="check or show a unit's configuration",
        description="Check a unit's config.toml, or show it with every default filled in. "
                    "The config is --config, else $LOAXA_CONFIG, else /etc/loaxa/config.toml.")
    # `loaxa config` alone: the actions' help, exit 2; an action's own func replaces this.
    parser.set_defaults(func=lambda args: _usage(parser))
    actions = parser.add_subparsers(title="actions", metavar="ACTION")

    check = actions.add_parser(
        "check", help="validate the config and list every problem",
        description="Validate the config; print 'config OK: PATH' and any warnings, or every "
                    "problem found (exit 1).")
    _add_config_option(check)
    check.add_argument("--json", action="store_true",
                       help='print {"ok", "path", "errors": [...], "warnings": [...]}')
    check.set_defaults(func=check_config)

    show = actions.add_parser(
        "show", help="print the effective config, defaults filled in, secrets masked",
        description="Print the effective config as TOML (or JSON), with every default filled "
                    "in and secrets masked. The broker password file's path is shown, never "
                    "its contents.")
    _add_config_option(show)
    show.add_argument("--json", action="store_true", help="print JSON instead of TOML")
    show.set_defaults(func=show_config)


def _add_config_option(parser) -> None:
    parser.add_argument("--config", metavar="PATH", help="the unit's config.toml")


def _usage(parser) -> int:
    parser.print_help(sys.stderr)
    return 2


def check_config(args) -> int:
    try:
        path = _config_path(args.config)
        cfg = load_config(path)
    except ConfigError as exc:
        if not args.json:
            raise  # the front prints every problem, one per line
        _print_json({"ok": False, "path": exc.source, "errors": exc.errors, "warnings": []})
        return 1
    warnings = config_warnings(cfg)
    if args.json:
        _print_json({"ok": True, "path": str(path), "errors": [], "warnings": warnings})
    else:
        print(f"config OK: {path}")
        for warning in warnings:
            print(f"warning: {warning}")
    return 0


def show_config(args) -> int:
    cfg = load_config(_config_path(args.config))
    tables = cfg.masked()
    if args.json:
        _print_json(tables)
    else:
        sys.stdout.write(toml_text(tables, cfg.source))
    return 0


def _config_path(explicit):
    path = find_config(explicit)
    if path is None:
        raise ConfigError([f"none found: no --config, $LOAXA_CONFIG not set and {SYSTEM_CONFIG} "
                           "does not exist ('loaxa run' would start the built-in demo)"], "config")
    return path


def _print_json(data) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False))


def toml_text(tables: dict, source=None) -> str:
    """A TOML document of `tables`; keys the schema knows but `tables` lacks show as comments."""
    lines = [f"# loaxa config from {source or 'defaults'}: defaults filled in, secrets masked"]
    for table, keys in tables.items():
        lines += ["", f"[{table}]"]
        lines += [f"{name} = {toml_value(value)}" for name, value in keys.items()]
        lines += [f"# {name}: not set" for name in SCHEMA.get(table, {}) if name not in keys]
    return "\n".join(lines) + "\n"


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        pairs = ", ".join(f"{_toml_string(key)} = {toml_value(item)}" for key, item in value.items())
        return "{ " + pairs + " }" if pairs else "{}"
    raise TypeError(f"no TOML form for {type(value).__name__}")


def _toml_string(text: str) -> str:
    # JSON's escapes are valid in a TOML basic string; DEL is the one control
    # character JSON leaves raw and TOML refuses.
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")
