"""Disk faults for tests: injected where the code writes (`FaultyDisk`), and real ones
(a small tmpfs filled to ENOSPC, remounted read-only for EROFS).

Tests run as root, so permission tricks prove nothing: a full or read-only disk is
either imitated at the write (loaxa.fsio's fault hook) or made for real with a mount.
"""

import errno
import os
import subprocess
from contextlib import contextmanager
from pathlib import Path

import pytest

from loaxa import fsio


class FaultyDisk:
    """Every `loaxa.fsio` write under `folder` fails while the fault is on.

    `error` is the errno (ENOSPC: full, EROFS: read-only); `short=True` lets half the
    data reach the temporary file first (a short write, then ENOSPC). `heal()` lets
    writes through again; `failures` counts the writes refused."""

    def __init__(self, folder, error: int = errno.ENOSPC, short: bool = False):
        self.folder = Path(folder).resolve()
        self.error, self.short = error, short
        self.on = True
        self.failures = 0

    def __enter__(self) -> "FaultyDisk":
        fsio.set_fault_hook(self._hook)
        return self

    def __exit__(self, *exc_info) -> None:
        fsio.set_fault_hook(None)

    def _hook(self, path: Path, data: bytes):
        if not self.on or self.folder not in Path(path).resolve().parents:
            return None
        self.failures += 1
        if self.short:
            return data[: len(data) // 2]
        raise OSError(self.error, os.strerror(self.error), str(path))

    def heal(self) -> None:
        self.on = False

    def break_again(self) -> None:
        self.on = True


def _run(*args) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True)


@contextmanager
def tmpfs(path, size: str = "8m"):
    """A real tmpfs of `size` mounted on `path` (skips when mounting is not allowed)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    result = _run("mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path))
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({result.stderr.strip() or 'mount failed'}); "
                    "the FaultyDisk tests cover the same paths")
    try:
        yield path
    finally:
        for _ in range(4):  # a bind mount a failed test left on top, then the tmpfs
            if not os.path.ismount(path):
                break
            if _run("umount", str(path)).returncode != 0:
                _run("umount", "-l", str(path))


def remount(path, mode: str) -> None:
    """`mode` "ro" or "rw": the SD card that turns read-only under a running system."""
    result = _run("mount", "-o", f"remount,{mode}", str(path))
    assert result.returncode == 0, result.stderr


def bind_read_only(path) -> None:
    """Make `path` read-only under a running unit: a read-only bind mount over it (a busy
    tmpfs cannot be remounted read-only; the kernel's errors=remount-ro on a failing
    card can). Files opened before keep writing; every new write gets EROFS.
    `unbind(path)` takes it away."""
    for args in (("--bind", str(path), str(path)), ("-o", "remount,bind,ro", str(path))):
        result = _run("mount", *args)
        assert result.returncode == 0, result.stderr


def unbind(path) -> None:
    result = _run("umount", str(path))
    assert result.returncode == 0, result.stderr


def fill(folder, name: str = "filler") -> Path:
    """Write into `folder` until the file system says ENOSPC; return the filler file."""
    filler = Path(folder) / name
    block = b"\0" * (64 * 1024)
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(block)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
        try:
            while True:  # the last partial block, so not even 4 KiB is left
                f.write(b"\0" * 512)
        except OSError:
            pass
    return filler
