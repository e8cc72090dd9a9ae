"""Preparation in a child process: how the unit daemon prepares media.

`prepare_isolated` runs `python -m audio.preparation` and waits for it. The daemon
thus never imports numpy (it stays at its idle size, see docs/performance.md), the
memory preparation needs is given back when the child exits, and a crash or an
out-of-memory kill while decoding some odd upload takes down the child, never the
unit. This module itself imports nothing heavy.
"""

import json
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from loaxa.errors import MediaError

from ._api import CEILING_DBTP, DEFAULT_LUFS

POLL_S = 0.1
EXIT_MEDIA_ERROR = 3  # the child's exit code for a MediaError (its reason on stderr)


class PrepareCancelled(MediaError):
    """`cancel` was set while preparing (the unit is stopping); nothing was written."""


class PrepareCrashed(MediaError):
    """The preparing process died (killed, out of memory): worth another try later."""


def prepare_isolated(src, dst, *, lufs: float = DEFAULT_LUFS, ceiling_dbtp: float = CEILING_DBTP,
                     max_seconds: float | None = None, cancel: threading.Event | None = None) -> dict:
    """`audio.prepare` in a child process; returns its report as a dict (the fields of
    `Prepared`, path as a string). Raises MediaError with the child's one-line reason,
    PrepareCancelled when `cancel` is set, PrepareCrashed when the child dies."""
    argv = [sys.executable, "-m", "audio.preparation", str(src), str(dst), "--lufs", repr(float(lufs)),
            "--ceiling", repr(float(ceiling_dbtp))]
    if max_seconds is not None:
        argv += ["--max-seconds", repr(float(max_seconds))]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                 cwd=str(Path(__file__).resolve().parents[1]))
        code = _wait(child, cancel)
        if code is None:
            raise PrepareCancelled(f"{Path(src).name}: preparation cancelled")
        return _result(code, _text(out), _text(err), Path(src))


def _wait(child: subprocess.Popen, cancel) -> int | None:
    """The child's exit code; None (after killing it) when `cancel` was set first."""
    while True:
        try:
            return child.wait(timeout=POLL_S)
        except subprocess.TimeoutExpired:
            if cancel is not None and cancel.is_set():
                child.kill()
                child.wait()
                return None


def _text(file) -> str:
    file.seek(0)
    return file.read().decode("utf-8", "replace").strip()


def _result(code: int, stdout: str, stderr: str, src: Path) -> dict:
    if code == 0:
        return json.loads(stdout.splitlines()[-1])
    last = stderr.splitlines()[-1] if stderr else ""
    if code == EXIT_MEDIA_ERROR and last:
        raise MediaError(last)  # the child's MediaError, one line
    how = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
    raise PrepareCrashed(f"{src.name}: preparation crashed ({how}{': ' + last if last else ''})")
