"""systemd's sd_notify protocol, without libsystemd: `Type=notify` and the watchdog.

A service started by systemd with `Type=notify` finds `$NOTIFY_SOCKET` (a path, or
`@name` for the abstract namespace) and sends it datagrams of `KEY=value` lines:
`READY=1` once it serves, `WATCHDOG=1` at least every `WatchdogSec`, `STOPPING=1`
when it begins to stop, `STATUS=...` for `systemctl status`. Outside systemd (no
`$NOTIFY_SOCKET`) every call does nothing and returns False; a send that fails is
logged at debug level and returns False: notification is never worth a crash.
"""

import logging
import os
import socket

__all__ = ["notify", "ready", "status", "stopping", "watchdog", "watchdog_interval"]

log = logging.getLogger("loaxa.unit.sdnotify")


def _address(environ) -> str | None:
    name = environ.get("NOTIFY_SOCKET", "")
    if not name or name[0] not in "/@":
        return None  # unset, or a form systemd does not use (vsock) that we do not speak
    return "\0" + name[1:] if name[0] == "@" else name


def _message(fields: dict) -> bytes:
    lines = []
    for key, value in fields.items():
        if not key.isidentifier():
            raise ValueError(f"sd_notify field {key!r}: a KEY is letters, digits and _")
        text = str(value)
        if "\n" in text:  # one field a line: a newline would start a field of its own
            text = " ".join(text.split())
        lines.append(f"{key.upper()}={text}")
    return "\n".join(lines).encode("utf-8")


def notify(*, environ=None, **fields) -> bool:
    """Send `KEY=value` fields (`notify(READY=1, STATUS="playing")`); True if sent."""
    environ = os.environ if environ is None else environ
    address = _address(environ)
    if address is None or not fields:
        return False
    data = _message(fields)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(data, address)
    except OSError as exc:
        log.debug("sd_notify to %s failed: %s", environ.get("NOTIFY_SOCKET"), exc)
        return False
    return True


def ready(text: str | None = None, *, environ=None) -> bool:
    """The daemon is up (`READY=1`, with an optional STATUS line)."""
    fields = {"READY": 1, "MAINPID": os.getpid()}
    if text:
        fields["STATUS"] = text
    return notify(environ=environ, **fields)


def watchdog(*, environ=None) -> bool:
    """Still alive (`WATCHDOG=1`): call every `watchdog_interval()` seconds while healthy."""
    return notify(environ=environ, WATCHDOG=1)


def stopping(text: str | None = None, *, environ=None) -> bool:
    """Shutting down (`STOPPING=1`)."""
    fields = {"STOPPING": 1}
    if text:
        fields["STATUS"] = text
    return notify(environ=environ, **fields)


def status(text: str, *, environ=None) -> bool:
    """One line for `systemctl status`."""
    return notify(environ=environ, STATUS=" ".join(str(text).split()))


def watchdog_interval(*, environ=None) -> float | None:
    """Seconds between watchdog pings (half of `$WATCHDOG_USEC`), or None without a watchdog.

    As sd_watchdog_enabled(3): a `$WATCHDOG_PID` naming another process means the
    watchdog is not ours."""
    environ = os.environ if environ is None else environ
    pid = environ.get("WATCHDOG_PID")
    if pid and pid != str(os.getpid()):
        return None
    try:
        usec = int(environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec / 2e6 if usec > 0 else None
