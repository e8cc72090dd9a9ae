"""The daemon's side of the launcher's health gate.

The launcher (updater/launcher.py) starts a version on trial with `LOAXA_UPDATE_HEALTH_FILE`
set to a path; the daemon calls `report_healthy()` once it is online (the broker link is
up) and its start checks passed (every part started). The file's appearance confirms the
version. Outside a trial (no variable) this does nothing. Never raises: a unit that cannot
write the file is rolled back by the launcher, which is the safe side.
"""

import json
import logging
import os
from pathlib import Path

from loaxa.fsio import atomic_write

HEALTH_ENV = "LOAXA_UPDATE_HEALTH_FILE"
log = logging.getLogger("loaxa.update")
_reported = False


def report_healthy(version: str | None = None) -> bool:
    """Tell the launcher this version is online and passed its start checks (once)."""
    global _reported
    path = os.environ.get(HEALTH_ENV)
    if not path or _reported:
        return False
    try:
        from loaxa import __version__
        atomic_write(Path(path), json.dumps({"version": version or __version__}).encode())
    except OSError as exc:
        log.error("cannot tell the launcher this version is healthy: %s", exc.strerror or exc)
        return False
    _reported = True
    log.info("online with start checks passed: reported to the launcher")
    return True
