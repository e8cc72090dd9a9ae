"""The config checker's messages as templates, so a technician reads them in Vietnamese.

`provisioning/config.py` builds its messages in plain English from values. Each
template below repeats one of them with `{fields}` where the values go; the catalog
translates the template and `loaxa.i18n.translate_problem` fills it in. Field values are
translated too when a template matches them (the `{hint}` " (did you mean 'url'?)").
A message that no template matches is shown in English: when config.py gains or
rewords a message, add its template here and run scripts/update-translations.py.
"""

from loaxa.i18n import N_

TEMPLATES = [
    # keys and tables
    N_("required"),
    N_("unknown key{hint}"),
    N_("unknown table{hint}"),
    N_(" (did you mean {name}?)"),
    N_(" (known: {names})"),
    N_(" (like {example})"),
    N_("expected a table, got {value}"),
    N_("expected a table of tables, got {value}"),
    # types
    N_("expected a string, got {value}"),
    N_("expected an integer, got {value}"),
    N_("expected a number, got {value}"),
    N_("expected a finite number, got {value}"),
    N_("expected a list of {what}, got {value}"),
    N_("group paths"),
    N_("BCM pin numbers"),
    N_("a table"),
    N_("a list"),
    N_("{value} (a boolean)"),
    N_("{value} (a date/time)"),
    N_("must not be empty"),
    # ranges and choices
    N_("must be between {low} and {high}, got {value}"),
    N_("must be at least {low}, got {value}"),
    N_("must be at most {high}, got {value}"),
    N_("must be greater than 0, got {value}"),
    N_("must be one of {options}, got {value}{hint}"),
    # unit
    N_("must be 3-64 characters of a-z, 0-9 and '-', not starting with '-' "
       "([a-z0-9][a-z0-9-]{{2,63}}), got {value}"),
    N_("must be segments of a-z, 0-9 and '-' separated by '/' "
       "(like 'dak-lak/lak/bong-krang'), got {value}"),
    N_("unknown IANA time zone {value}{hint}"),
    N_("must be \"HH:MM-HH:MM\" (like \"22:00-05:00\") or \"\" for none, got {value}"),
    N_("start and end are the same time, got {value}; use \"\" for no quiet hours"),
    # broker
    N_("{url}: scheme must be mqtt:// or mqtts://"),
    N_("{url}: no host"),
    N_("must not contain the MQTT wildcards '+' or '#', got {value}"),
    N_("must not start or end with '/', got {value}"),
    N_("{path}: no such file"),
    N_("{path}: not a regular file"),
    N_("{path}: cannot read ({reason})"),
    N_("cannot read {path} ({reason})"),
    N_("{path} is empty"),
    # trust
    N_("expected a table of key name = base64 public key, got {value}"),
    N_("a key name must not be empty"),
    N_("not base64 (the one line of the key's .pub file)"),
    N_("decodes to {count} bytes; an Ed25519 public key is 32"),
    # gpio
    N_("pin {pin} is already used by {role}"),
    N_("role names or BCM pin numbers"),
    N_("expected a role name like 'mute' or 'zone2', got {value}"),
    N_("no role {role}{hint}"),
    N_(" (roles: {names})"),
    N_("pin {pin} has no role in [gpio]"),
    # the file itself
    N_("cannot read: {reason}"),
    N_("not UTF-8 text (bad byte at offset {offset})"),
    N_("TOML syntax error: {detail}"),
    N_("no such file (given with --config)"),
    N_("no such file (named by $LOAXA_CONFIG)"),
    N_("is a folder, not a config file (given with --config)"),
    N_("is a folder, not a config file (named by $LOAXA_CONFIG)"),
    # warnings
    N_("none; the unit will refuse every schedule and command"),
    N_("mqtt:// sends the password unencrypted; use mqtts://"),
    N_("not used with mqtt:// (no TLS)"),
]
