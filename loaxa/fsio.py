"""Durable file writes: a write that matters survives kill -9 and power loss.

Every state file of a unit is written here, so this is also where disk faults are
injected in tests (`set_fault_hook`): a hook sees each write before it reaches the
disk and may raise OSError (ENOSPC, EROFS) or let only part of the data through (a
short write), as a full or failing SD card does. Real faults (a full tmpfs, a
read-only remount) take the same paths, since the hook only imitates what the
kernel answers.
"""

import errno
import os
import tempfile
import time
from pathlib import Path

# Errors that mean "the storage refuses writes", as opposed to a bad path or a bug.
STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EIO, errno.EFBIG})

_fault_hook = None  # callable(path: Path, data: bytes) -> bytes | None; see set_fault_hook


def set_fault_hook(hook) -> None:
    """Tests only: `hook(path, data)` runs before every write of this module. It may
    raise OSError (the write fails), return a shorter `bytes` (a short write: that
    much reaches the file, then ENOSPC), or return None (the write goes through).
    `None` removes the hook."""
    global _fault_hook
    _fault_hook = hook


def is_storage_fault(exc: BaseException) -> bool:
    """True for an OSError that says the disk is full, read-only or failing."""
    return isinstance(exc, OSError) and exc.errno in STORAGE_ERRNOS


def fsync_dir(path: Path) -> None:
    """Flush a folder's entry table, so a rename inside it survives power loss."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(f, path: Path, data: bytes) -> None:
    hook = _fault_hook
    allowed = hook(path, data) if hook is not None else None
    if allowed is not None and len(allowed) < len(data):
        f.write(allowed)
        f.flush()
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
    f.write(data)


def atomic_write(path, data: bytes, mode: int = 0o644) -> None:
    """Replace `path` with `data` atomically: readers see the old or the new file, never half.

    Order: data to a temporary file in the same folder, fsync it, rename it over
    `path`, fsync the folder. A failure at any step (ENOSPC, EROFS, a short write)
    leaves the old file as it was and raises the OSError."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            _write_all(f, path, data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:  # gone already, or the folder went read-only meanwhile
            pass
        raise
    fsync_dir(path.parent)


def atomic_write_text(path, text: str, mode: int = 0o644) -> None:
    atomic_write(path, text.encode("utf-8"), mode)


def probe_writable(folder) -> None:
    """Write, fsync and remove a small file in `folder`; raises the OSError when the
    storage refuses (what the storage monitor uses to see a disk come back)."""
    atomic_write(Path(folder) / ".storage-probe", b"loaxa storage probe\n")
    os.unlink(Path(folder) / ".storage-probe")


def quarantine(path, now: float | None = None) -> Path | None:
    """Move a damaged state file aside as `<name>.corrupt-<UTC time>` (kept for
    inspection) and return the new path; None when it cannot be moved (a read-only
    disk: it stays where it is and is read as damaged again next time)."""
    path = Path(path)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
    try:
        os.replace(path, target)
        fsync_dir(path.parent)
    except OSError:
        return None
    return target
