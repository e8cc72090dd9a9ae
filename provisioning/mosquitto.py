"""What the provincial broker's admin needs for one unit: its password line and ACL lines.

mosquitto reads users from its `password_file` and access rules from its `acl_file`.
`password_line()` writes the line `mosquitto_passwd` would (mosquitto 2.0, as on
Raspberry Pi OS Bookworm: `$7$` = PBKDF2-HMAC-SHA512, 101 iterations, 12-byte salt,
base64), so the admin appends it to the password file and reloads; no need for the
mosquitto tools on the unit. `acl_lines()` confines the unit as SPEC says: it may
write only its own report topics and read only its own and its groups' schedule,
command, trust and release topics.

`operator_acl_lines()` confines an operator account to what its trust roles may sign
(docs/design.md, "Trust model"): it writes only the kinds of topic its roles allow
(ROLE_KINDS), and only those of the groups and units inside its scope, listed one by one
from the fleet database (mosquitto's `+` cannot say "any depth, ending in /schedule").
`fleet_acl()` writes a whole acl_file, units and operators, so a deployed broker's ACL is
regenerated for units already in the field (then `kill -HUP` mosquitto).
"""

import base64
import binascii
import hashlib
import hmac
import os
import secrets

from scheduler.targets import expand_groups, parse_target

HASH_ID = "7"              # mosquitto's id for PBKDF2-SHA512
ITERATIONS = 101           # mosquitto_passwd's default
SALT_BYTES = 12
PASSWORD_BYTES = 24        # 192 bits of randomness: 32 characters of URL-safe base64

REPORT_KINDS = ("state", "health", "playlog", "event", "reply", "track")  # track: a vehicle's positions
LISTEN_KINDS = ("schedule", "cmd", "trust", "release")
# The kinds of topic an operator account may publish to, by trust role: whoever holds a
# role may need to push what it signs. Trust documents go out from the `admin` account.
ROLE_KINDS = {"editor": ("schedule",), "approver": ("schedule", "cmd"), "emergency": ("schedule", "cmd"),
              "operator": ("cmd",), "technician": ("cmd",), "release": ("release",), "admin": ("trust",)}
OPERATOR_READ_KINDS = ("state", "event", "reply")


def generate_password() -> str:
    """A strong password of URL-safe characters (no quoting trouble in any file)."""
    return secrets.token_urlsafe(PASSWORD_BYTES)


def hash_password(password: str, *, salt: bytes | None = None, iterations: int = ITERATIONS) -> str:
    """`$7$<iterations>$<salt b64>$<hash b64>`, the form mosquitto 2.0 writes and reads."""
    salt = os.urandom(SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations)
    return f"${HASH_ID}${iterations}${_b64(salt)}${_b64(digest)}"


def password_line(username: str, password: str, *, salt: bytes | None = None) -> str:
    """One line for mosquitto's password_file (without the newline)."""
    if not username or ":" in username or "\n" in username:
        raise ValueError(f"username {username!r} cannot go into a mosquitto password file")
    return f"{username}:{hash_password(password, salt=salt)}"


def check_password_line(line: str, username: str, password: str) -> bool:
    """Does `line` (as mosquitto_passwd wrote it) accept this username and password?"""
    name, _, hashed = line.strip().partition(":")
    parts = hashed.split("$")
    if name != username or len(parts) != 5 or parts[1] != HASH_ID:
        return False
    try:
        iterations, salt, expected = int(parts[2]), base64.b64decode(parts[3]), base64.b64decode(parts[4])
    except (ValueError, binascii.Error):
        return False
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations)
    return hmac.compare_digest(digest, expected)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def report_topics(prefix: str, unit_id: str) -> list[str]:
    """The topics the unit writes: its own state, health, playlogs, events, replies and track."""
    return [f"{prefix}/unit/{unit_id}/{kind}" for kind in REPORT_KINDS]


def listen_topics(prefix: str, unit_id: str, groups) -> list[str]:
    """The topics the unit reads: schedule and cmd of itself, its groups and their ancestors."""
    owners = [f"unit/{unit_id}"] + [f"group/{path}" for path in expand_groups(groups)]
    return [f"{prefix}/{owner}/{kind}" for owner in owners for kind in LISTEN_KINDS]


def acl_lines(unit_id: str, groups, prefix: str = "loaxa", username: str | None = None) -> list[str]:
    """The unit's block for mosquitto's acl_file: `user <username>` (default: the unit id),
    then one `topic` line each.

    Blocks of many units can be concatenated: each `user` line starts a new block.
    """
    lines = [f"# loaxa unit {unit_id}", f"user {username or unit_id}"]
    lines += [f"topic write {topic}" for topic in report_topics(prefix, unit_id)]
    lines += [f"topic read {topic}" for topic in listen_topics(prefix, unit_id, groups)]
    return lines


def _inside(path: str, scope_path: str) -> bool:
    return path == scope_path or path.startswith(scope_path + "/")


def scope_members(scope, fleet) -> tuple[list[str], list[str]]:
    """(group paths, unit ids) inside `scope` (`group:P` / `unit:ID` entries), as far as
    `fleet` ({unit id: its groups}) knows them; by whole path segments."""
    known_groups = sorted({g for groups in fleet.values() for g in expand_groups(groups)})
    groups, units = set(), set()
    for entry in scope:
        kind, name = parse_target(entry)
        if kind == "unit":
            if name in fleet:
                units.add(name)
            continue
        groups.update(g for g in known_groups if _inside(g, name))
        units.update(u for u, unit_groups in fleet.items() if any(_inside(g, name) for g in unit_groups))
    return sorted(groups), sorted(units)


def operator_acl_lines(username: str, roles, scope, fleet, prefix: str = "loaxa", slots=()) -> list[str]:
    """An operator account's block: publish the kinds its roles allow inside its scope;
    read the state, events and replies of the units there, and what it may publish."""
    if not username or any(c.isspace() for c in username):
        raise ValueError(f"username {username!r} cannot go into a mosquitto ACL")
    unknown = [r for r in roles if r not in ROLE_KINDS]
    if unknown:
        raise ValueError(f"unknown role {unknown[0]!r}; one of {', '.join(ROLE_KINDS)}")
    kinds = [k for k in LISTEN_KINDS if any(k in ROLE_KINDS[r] for r in roles)]
    groups, units = scope_members(scope, fleet)
    owners = [f"group/{g}" for g in groups] + [f"unit/{u}" for u in units]
    lines = [f"# loaxa operator {username}: {', '.join(roles)} in {', '.join(scope)}", f"user {username}"]
    for owner in owners:
        for kind in kinds:
            lines.append(f"topic readwrite {prefix}/{owner}/{kind}")
            if kind == "schedule":
                lines += [f"topic readwrite {prefix}/{owner}/schedule/{slot}" for slot in slots]
    lines += [f"topic read {prefix}/unit/{u}/{kind}" for u in units for kind in OPERATOR_READ_KINDS]
    return lines


def fleet_acl(fleet, operators=(), prefix: str = "loaxa") -> str:
    """A whole acl_file: every unit of `fleet` ({unit id: groups}) and every operator
    (dicts with `username`, `roles`, `scope`, optional `slots`)."""
    blocks = [acl_lines(unit, groups, prefix) for unit, groups in sorted(fleet.items())]
    blocks += [operator_acl_lines(op["username"], op["roles"], op["scope"], fleet, prefix, op.get("slots", ()))
               for op in operators]
    return "\n\n".join("\n".join(block) for block in blocks) + "\n"
