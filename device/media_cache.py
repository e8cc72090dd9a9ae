"""Media cache: fetched files stored by sha256, prepared (decoded) copies beside them.

A bulletin is fetched once, verified against the sha256 the signed schedule
names, and prepared for air long before its time; at air time the player only
reads a WAV from disk.
"""

import hashlib
import logging
import os
import shutil
import tempfile
import threading
import urllib.request
from pathlib import Path

from audio import BUILTIN, builtin_wav, decode_to_wav
from loaxa.errors import MediaError
from loaxa.fsio import fsync_dir

log = logging.getLogger("loaxa.media")

MAX_MEDIA_BYTES = 200 * 1024 * 1024
MAX_MEDIA_SECONDS = 3 * 3600
CHUNK = 64 * 1024


class MediaCache:
    def __init__(self, folder: Path, *, timeout_s: float = 30.0):
        self.folder = Path(folder)
        self.originals = self.folder / "sha256"
        self.prepared = self.folder / "prepared"
        self.builtins = self.folder / "builtin"
        for sub in (self.originals, self.prepared, self.builtins):
            sub.mkdir(parents=True, exist_ok=True)
        self.timeout_s = timeout_s
        # One lock per hash: two schedules naming one file fetch it once.
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    def _lock_for(self, key: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(key, threading.Lock())

    def original_path(self, sha256: str) -> Path:
        return self.originals / sha256

    def prepared_path(self, sha256: str) -> Path:
        return self.prepared / f"{sha256}.wav"

    def has(self, sha256: str) -> bool:
        return self.prepared_path(sha256).exists()

    def builtin(self, name: str) -> Path:
        return builtin_wav(name, self.builtins)

    def resolve(self, media_id: str, media: dict) -> Path:
        """The prepared WAV for a media id of a schedule, fetching it if needed."""
        if media_id in BUILTIN and media_id not in media:
            return self.builtin(media_id)
        entry = media[media_id]
        return self.ensure(entry.url, entry.sha256, entry.size)

    def ensure(self, url: str, sha256: str, size: int | None = None) -> Path:
        """Fetch, verify and prepare one file; return the prepared WAV. Raises MediaError."""
        with self._lock_for(sha256):
            prepared = self.prepared_path(sha256)
            if prepared.exists():
                return prepared
            original = self.original_path(sha256)
            if not original.exists():
                self._download(url, sha256, size)
            try:
                decode_to_wav(original, prepared, max_seconds=MAX_MEDIA_SECONDS)
            except MediaError:
                # A file that verifies but does not decode will never decode: drop it so a
                # corrected upload under a new hash is the only way forward.
                original.unlink(missing_ok=True)
                raise
            return prepared

    def seed(self, path: Path, sha256: str) -> None:
        """Put a local file (the demo bulletin) into the cache as if fetched."""
        target = self.original_path(sha256)
        if not target.exists():
            shutil.copyfile(path, target)

    def _download(self, url: str, sha256: str, size: int | None) -> None:
        limit = min(size, MAX_MEDIA_BYTES) if size else MAX_MEDIA_BYTES
        fd, tmp = tempfile.mkstemp(dir=self.originals, prefix=".dl-")
        try:
            with os.fdopen(fd, "wb") as out:
                digest = self._copy_verified(url, out, limit)
                out.flush()
                os.fsync(out.fileno())
            if digest != sha256:
                raise MediaError(f"{url}: sha256 mismatch (got {digest[:12]}…, expected {sha256[:12]}…)")
            os.replace(tmp, self.original_path(sha256))
            fsync_dir(self.originals)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def _copy_verified(self, url: str, out, limit: int) -> str:
        if not url.startswith(("http://", "https://")):
            raise MediaError(f"{url}: only http and https media URLs are fetched")
        hasher = hashlib.sha256()
        total = 0
        try:
            with urllib.request.urlopen(url, timeout=self.timeout_s) as response:
                while chunk := response.read(CHUNK):
                    total += len(chunk)
                    if total > limit:
                        raise MediaError(f"{url}: larger than the {limit} bytes allowed")
                    hasher.update(chunk)
                    out.write(chunk)
        except MediaError:
            raise
        except (OSError, ValueError) as exc:
            raise MediaError(f"{url}: download failed: {exc}") from exc
        return hasher.hexdigest()
