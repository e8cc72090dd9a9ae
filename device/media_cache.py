"""Media cache: originals stored by sha256, prepared WAVs beside them, downloads that resume.

A bulletin is fetched once, verified against the sha256 the signed schedule
names, and prepared for air (decoded, loudness-normalised: `audio.prepare`) long
before its time; at air time the player only reads a WAV from disk.

Layout of the cache folder (`unit.media_dir`; docs/audio.md):
- `sha256/<hex>`: verified originals, named by their content;
- `partial/<hex>.part`: downloads in progress, resumed with an HTTP Range request
  after a dropped connection (locked with flock while one process appends);
- `prepared/<hex>.<tag>.wav`: ready for air; the tag names the loudness target,
  the true-peak ceiling, the output format and the version of the chain, so a
  change of `audio.lufs` prepares again instead of playing a stale copy;
- `builtin/`: `chime` and `test-tone`.

Errors are MediaError with one plain line. `TransientMediaError` marks what may
work on a later attempt (network, server errors, disk full, another process
downloading); anything else will not get better by retrying soon. The media
sync worker (`device/media_sync.py`) drives this cache ahead of time; `resolve`
is what the player calls, and it only looks: media the worker has not prepared
raise `MediaNotReady` (the player never waits on a network).

Every download has an overall deadline (`DownloadLimits`: from the bytes still to
come at a floor rate, between a minimum and a cap) as well as the per-read socket
timeout, and can be cancelled: a watchdog shuts the socket down at the deadline or
when the caller's `cancel` event is set, so a server trickling one byte every few
seconds cannot hold a download (or the thread doing it) for long. What arrived is
kept; the next attempt resumes from there.
"""

import fcntl
import hashlib
import http.client
import logging
import os
import shutil
import socket
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from audio import (BUILTIN, CEILING_DBTP, DEFAULT_LUFS, OUTPUT_FORMAT, PREPARE_VERSION, PrepareCancelled,
                   PrepareCrashed, builtin_wav, prepare_isolated)
from loaxa.errors import MediaError
from loaxa.fsio import fsync_dir

log = logging.getLogger("loaxa.media")

MB = 1024 * 1024
MAX_MEDIA_BYTES = 200 * MB
MAX_MEDIA_SECONDS = 3 * 3600
MIN_FREE_BYTES = 64 * MB  # never fill the SD card: logs, the outbox and the OS need room
PREPARED_GROWTH = 12  # prepared WAV bytes per original byte, for the disk-space check
LEFTOVER_AGE_S = 6 * 3600  # a temporary file this old belongs to no running preparation
CHUNK = 64 * 1024
USER_AGENT = "loaxa-media/1"


class TransientMediaError(MediaError):
    """A failure that may pass: network down, server error, disk full, file busy."""


class FetchInterrupted(TransientMediaError):
    """The download was interrupted on purpose (shutdown, or more urgent media first);
    what arrived is kept and the next attempt resumes from there."""


class MediaNotReady(MediaError):
    """The media is not prepared (yet): the sync worker has not finished it."""


class DownloadTimedOut(TransientMediaError):
    """The download ran past its overall deadline; what arrived is kept for the next try."""


@dataclass(frozen=True)
class DownloadLimits:
    """How long one download attempt may take: the bytes still to come at `min_rate_kbps`
    (kilobits per second: a poor 3G link), at least `min_s`, at most `max_s`; `max_s`
    when the size is unknown. Config: `audio.download_*` (docs/audio.md)."""

    min_rate_kbps: float = 64.0
    min_s: float = 120.0
    max_s: float = 3600.0

    def deadline_s(self, remaining_bytes: int | None) -> float:
        if remaining_bytes is None:
            return self.max_s
        at_floor = remaining_bytes * 8 / 1000 / self.min_rate_kbps
        return min(self.max_s, max(self.min_s, at_floor))


def download_limits(audio_cfg) -> DownloadLimits:
    """The `[audio]` config's download deadline keys."""
    return DownloadLimits(min_rate_kbps=audio_cfg.download_min_rate_kbps, min_s=audio_cfg.download_min_s,
                          max_s=max(audio_cfg.download_min_s, audio_cfg.download_max_s))


class MediaCache:
    def __init__(self, folder: Path, *, lufs: float = DEFAULT_LUFS,
                 max_bytes: int = MAX_MEDIA_BYTES, max_seconds: float = MAX_MEDIA_SECONDS,
                 timeout_s: float = 30.0, min_free_bytes: int = MIN_FREE_BYTES,
                 limits: DownloadLimits = DownloadLimits()):
        self.folder = Path(folder)
        self.originals = self.folder / "sha256"
        self.partials = self.folder / "partial"
        self.prepared = self.folder / "prepared"
        self.builtins = self.folder / "builtin"
        for sub in (self.originals, self.partials, self.prepared, self.builtins):
            try:
                sub.mkdir(parents=True, exist_ok=True)
            except OSError as exc:  # a full or read-only disk: what is cached still plays
                log.error("media cache folder %s cannot be made: %s", sub, exc.strerror or exc)
        self.lufs, self.max_bytes, self.max_seconds = lufs, max_bytes, max_seconds
        self.timeout_s, self.min_free_bytes = timeout_s, min_free_bytes
        self.limits = limits
        # One lock per hash: two schedules (or the sync and the player) naming one
        # file fetch and prepare it once; the second waits for the first.
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._undecodable: dict[str, str] = {}  # sha256 -> why it will never play

    # ---- names ----
    def tag(self) -> str:
        fmt = OUTPUT_FORMAT
        return (f"lufs{self.lufs:+.1f}_tp{CEILING_DBTP:+.1f}_{fmt.rate}-{fmt.channels}ch"
                f"-s{fmt.width * 8}_v{PREPARE_VERSION}")

    def original_path(self, sha256: str) -> Path:
        return self.originals / sha256

    def partial_path(self, sha256: str) -> Path:
        return self.partials / f"{sha256}.part"

    def prepared_path(self, sha256: str) -> Path:
        return self.prepared / f"{sha256}.{self.tag()}.wav"

    def has(self, sha256: str) -> bool:
        """True when the prepared WAV for the current settings is on disk."""
        return self.prepared_path(sha256).exists()

    def has_original(self, sha256: str) -> bool:
        return self.original_path(sha256).exists()

    def failure(self, sha256: str) -> str | None:
        """Why verified media can never play (it does not decode), or None."""
        return self._undecodable.get(sha256)

    def partial_bytes(self, sha256: str) -> int:
        try:
            return self.partial_path(sha256).stat().st_size
        except OSError:
            return 0

    def builtin(self, name: str) -> Path:
        return builtin_wav(name, self.builtins)

    def _lock_for(self, key: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(key, threading.Lock())

    # ---- what the player calls ----
    def resolve(self, media_id: str, media: dict) -> Path:
        """The prepared WAV for a media id of a schedule. Never fetches nor prepares:
        raises MediaNotReady when the sync worker has not prepared it, MediaError when
        it can never play."""
        if media_id in BUILTIN and media_id not in media:
            return self.builtin(media_id)
        if media_id not in media:
            raise MediaError(f"{media_id}: no such media in the schedule")
        sha256 = media[media_id].sha256
        path = self.prepared_path(sha256)
        if not path.exists():
            if sha256 in self._undecodable:
                raise MediaError(f"{media_id}: {self._undecodable[sha256]}")
            raise MediaNotReady(f"media not ready: {media_id} is not downloaded and prepared yet")
        _touch(path)  # last use, for eviction
        return path

    def ensure(self, url: str, sha256: str, size: int | None = None, *, progress=None,
               cancel=None) -> Path:
        """Fetch, verify and prepare one file; return the prepared WAV. Raises MediaError."""
        prepared = self.prepared_path(sha256)
        if prepared.exists():
            return prepared
        if sha256 in self._undecodable:  # fetching it again would not change its content
            raise MediaError(self._undecodable[sha256])
        if not self.has_original(sha256):
            self.fetch(url, sha256, size, progress=progress, cancel=cancel)
        return self.prepare(sha256)

    def seed(self, path: Path, sha256: str) -> None:
        """Put a local file (the demo bulletin) into the cache as if fetched."""
        target = self.original_path(sha256)
        if not target.exists():
            tmp = target.with_name(f".{sha256}.seed")
            shutil.copyfile(path, tmp)
            os.replace(tmp, target)

    # ---- preparing ----
    def prepare(self, sha256: str, *, cancel=None) -> Path:
        """Prepare the verified original for air; return the WAV.

        `audio.prepare` runs in a child process (`audio.prepare_isolated`): the daemon
        never holds numpy or a decode's memory, and a crash there cannot stop the unit."""
        with self._lock_for(sha256):
            prepared = self.prepared_path(sha256)
            if prepared.exists():
                return prepared
            if sha256 in self._undecodable:
                raise MediaError(self._undecodable[sha256])
            original = self.original_path(sha256)
            if not original.exists():
                raise MediaError(f"{sha256[:12]}: not downloaded yet")
            # The WAV is some 8-24 times the size of a compressed upload.
            self._check_space(original.stat().st_size * PREPARED_GROWTH, "prepare")
            try:
                report = prepare_isolated(original, prepared, lufs=self.lufs, ceiling_dbtp=CEILING_DBTP,
                                          max_seconds=self.max_seconds, cancel=cancel)
            except PrepareCancelled:
                self._sweep_leftovers(sha256)
                raise
            except MediaError as exc:
                if isinstance(exc, PrepareCrashed):
                    self._sweep_leftovers(sha256)
                if isinstance(exc, PrepareCrashed) or _not_the_media(exc):
                    raise TransientMediaError(str(exc)) from exc
                # Verified content that does not decode never will: drop it, remember why.
                self._undecodable[sha256] = f"{sha256[:12]}: {_without_name(str(exc), original)}"
                original.unlink(missing_ok=True)
                raise MediaError(self._undecodable[sha256]) from exc
            log.info("media %s prepared: %.1f s, %s LUFS in, gain %+.1f dB, %s dBTP out",
                     sha256[:12], report["seconds"], report["input_lufs"], report["gain_db"],
                     report["true_peak_dbtp"])
            return prepared

    # ---- fetching ----
    def fetch(self, url: str, sha256: str, size: int | None = None, *, progress=None,
              cancel=None) -> Path:
        """Download `url` into the cache as `sha256`, resuming a partial download.

        `progress(done, total)` is called as bytes arrive (total None when unknown);
        `cancel.is_set()` stops it with FetchInterrupted (at once, even inside a read),
        keeping what arrived; past its deadline (`limits`) it stops with
        DownloadTimedOut, keeping what arrived. Raises MediaError for a wrong URL, a file over the limits, an HTTP
        4xx answer or a sha256 mismatch, TransientMediaError for what may pass.
        """
        _check_url(url)
        limit = self._limit(url, size)
        with self._lock_for(sha256):
            original = self.original_path(sha256)
            if original.exists():
                return original
            with _Partial(self.partial_path(sha256)) as part:
                self._check_space((size or limit) - part.size, "download")
                _Download(self, url, sha256, size, limit, part, progress, cancel).run()
                part.commit(original)
        log.info("media %s downloaded from %s", sha256[:12], url)
        return original

    def _limit(self, url: str, size: int | None) -> int:
        if size is not None and size > self.max_bytes:
            raise MediaError(f"{url}: declared size {size} bytes is over the limit of "
                             f"{self.max_bytes // MB} MB")
        if size == 0:
            raise MediaError(f"{url}: the schedule declares an empty file")
        return size if size else self.max_bytes

    def _check_space(self, needed: int, what: str) -> None:
        try:
            free = shutil.disk_usage(self.folder).free
        except OSError:
            return
        if free - max(0, needed) < self.min_free_bytes:
            raise TransientMediaError(f"not enough disk space to {what}: {free // MB} MB free, "
                                      f"{max(0, needed) // MB} MB needed plus a reserve of "
                                      f"{self.min_free_bytes // MB} MB")

    # ---- disk budget ----
    def usage(self) -> dict:
        """Bytes on disk: {"originals", "prepared", "partial", "total"}."""
        sizes = {"originals": 0, "prepared": 0, "partial": 0}
        for kind, _, path in self._files():
            sizes[kind] += _size(path)
        sizes["total"] = sum(sizes.values())
        return sizes

    def evict(self, keep, budget_bytes: int) -> list[str]:
        """Delete media not in `keep` (sha256s), least recently used first, until the
        cache fits `budget_bytes`; prepared files made with other settings go first.
        Returns the sha256s whose files were removed. Media in `keep` are never touched."""
        keep, tag = set(keep), self.tag()
        self._sweep_leftovers()
        groups: dict[str, list[Path]] = {}
        total = 0
        for kind, sha, path in self._files():
            total += _size(path)
            stale = kind == "prepared" and not path.name.endswith(f".{tag}.wav")
            if sha not in keep:
                groups.setdefault(sha, []).append(path)
            elif stale:
                groups.setdefault(f"stale:{path.name}", []).append(path)
        removed = []
        for key in sorted(groups, key=lambda k: (not k.startswith("stale:"), _last_use(groups[k]))):
            if total <= budget_bytes:
                break
            for path in groups[key]:
                total -= _size(path)
                path.unlink(missing_ok=True)
            if not key.startswith("stale:"):
                removed.append(key)
                log.info("media %s evicted (no schedule needs it; cache over its budget)", key[:12])
        return removed

    def _sweep_leftovers(self, sha256: str | None = None, older_than_s: float = LEFTOVER_AGE_S) -> None:
        """Delete temporary files a killed preparation left behind (`.<name>.<random>.tmp`):
        those of `sha256` at once, any other once older than a preparation can take."""
        now = time.time()
        for folder in (self.prepared, self.originals):
            for path in folder.glob(".*.tmp"):
                mine = sha256 is not None and path.name.startswith(f".{sha256}.")
                try:
                    if mine or now - path.stat().st_mtime > older_than_s:
                        path.unlink()
                except OSError:
                    pass

    def _files(self):
        """(kind, sha256, path) for every file in the cache but the built-ins."""
        for kind, folder in (("originals", self.originals), ("prepared", self.prepared),
                             ("partial", self.partials)):
            try:
                entries = list(os.scandir(folder))
            except OSError:
                continue
            for entry in entries:
                if entry.is_file() and not entry.name.startswith("."):
                    yield kind, entry.name.split(".", 1)[0], Path(entry.path)


class _Partial:
    """The partial download file, opened for appending and flock'ed for the duration."""

    def __init__(self, path: Path):
        self.path = path
        self.file = None

    def __enter__(self):
        self.file = open(self.path, "ab+")
        try:
            fcntl.flock(self.file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.file.close()
            raise TransientMediaError(f"{self.path.name}: being downloaded by another loaxa "
                                      "process") from None
        return self

    @property
    def size(self) -> int:
        return os.fstat(self.file.fileno()).st_size

    def restart(self) -> None:
        self.file.seek(0)
        self.file.truncate()

    def hash_so_far(self):
        hasher = hashlib.sha256()
        self.file.seek(0)
        while chunk := self.file.read(CHUNK):
            hasher.update(chunk)
        return hasher

    def commit(self, target: Path) -> None:
        self.file.flush()
        os.fsync(self.file.fileno())
        os.replace(self.path, target)
        fsync_dir(target.parent)

    def __exit__(self, *exc_info) -> None:
        try:
            self.file.flush()
        except OSError:
            pass
        self.file.close()  # closing releases the flock


class _Download:
    """One attempt at one file: continue from what the partial file holds."""

    def __init__(self, cache: MediaCache, url, sha256, size, limit, part: _Partial, progress, cancel):
        self.cache, self.url, self.sha256 = cache, url, sha256
        self.size, self.limit, self.part = size, limit, part
        self.progress, self.cancel = progress or (lambda done, total: None), cancel
        self.watchdog: _Watchdog | None = None
        self.total = size  # what the server says, once it has answered

    def run(self) -> None:
        if self.size is not None and self.part.size > self.size:
            self.part.restart()  # more than the whole file: not a prefix of it
        hasher = self.part.hash_so_far()
        have = self.part.size
        if self.size is not None and have == self.size:
            return self._verify(hasher)
        remaining = None if self.size is None else self.size - have
        self.deadline_s = self.cache.limits.deadline_s(remaining)
        self.watchdog = _Watchdog(time.monotonic() + self.deadline_s, self.cancel).start()
        try:
            self._attempt(have, hasher)
        finally:
            self.watchdog.close()

    def _attempt(self, have: int, hasher) -> None:
        try:
            response = self._open(have)
        except _RangeRefused:
            self.part.restart()
            hasher, have = hashlib.sha256(), 0
            response = self._open(0)
        with response:
            have, hasher = self._start(response, have, hasher)
            self._copy(response, have, hasher)
        self._verify(hasher)

    def _stopped(self, done: int) -> TransientMediaError | None:
        """The error for a download the watchdog stopped (cancel or deadline), or None."""
        why = self.watchdog.check()
        if why == "cancelled":
            return FetchInterrupted(f"{self.url}: download paused at {done} bytes")
        if why == "deadline":
            return DownloadTimedOut(f"{self.url}: download too slow: {done} of {self._total_text()} "
                                    f"bytes within its deadline of {self.deadline_s:.0f} s")
        return None

    def _open(self, have: int):
        stopped = self._stopped(have)
        if stopped is not None:
            raise stopped
        headers = {"User-Agent": USER_AGENT}
        if have:
            headers["Range"] = f"bytes={have}-"
        request = urllib.request.Request(self.url, headers=headers)
        # The per-read timeout also bounds the connect and the headers: never past the deadline.
        timeout = max(0.1, min(self.cache.timeout_s, self.watchdog.left()))
        try:
            return _opener(self.watchdog).open(request, timeout=timeout)
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code == 416 and have:
                raise _RangeRefused() from None
            raise _http_error(self.url, exc.code, exc.reason) from None
        except (OSError, ValueError, http.client.HTTPException) as exc:
            raise self._stopped(have) or TransientMediaError(
                f"{self.url}: cannot connect: {_plain(exc)}") from exc

    def _start(self, response, have: int, hasher):
        """Check the answer fits what we asked for; returns (bytes kept, hasher)."""
        if response.status == 206:
            start, total = _content_range(response.headers.get("Content-Range", ""))
            if start != have:
                raise TransientMediaError(f"{self.url}: server resumed at byte {start}, not {have}")
        else:  # 200: the whole file (a server that ignores Range); start again
            if have:
                self.part.restart()
                hasher, have = hashlib.sha256(), 0
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
        self._check_total(total)
        self.total = total or self.size
        return have, hasher

    def _check_total(self, total: int | None) -> None:
        if total is None:
            return
        if self.size is not None and total != self.size:
            raise MediaError(f"{self.url}: server has {total} bytes, the schedule declares {self.size}")
        if total > self.cache.max_bytes:
            raise MediaError(f"{self.url}: {total} bytes is over the limit of "
                             f"{self.cache.max_bytes // MB} MB")

    def _copy(self, response, have: int, hasher) -> None:
        done = have
        self.progress(done, self.total)
        while True:
            if (stopped := self._stopped(done)) is not None:
                raise stopped
            try:
                # read1: what has arrived, at most CHUNK. On a slow 3G link a full 64 KiB
                # takes seconds; progress and a pause should not wait for it.
                chunk = response.read1(CHUNK)
            except (OSError, ValueError, http.client.HTTPException) as exc:  # dropped, reset, timed out, cut
                raise self._stopped(done) or TransientMediaError(
                    f"{self.url}: connection lost after {done} of {self._total_text()} bytes: "
                    f"{_plain(exc)}") from exc
            if not chunk:
                if (stopped := self._stopped(done)) is not None:
                    raise stopped  # the watchdog shut the socket: not the end of the file
                break
            done += len(chunk)
            if done > self.limit:
                self.part.restart()
                raise MediaError(f"{self.url}: larger than the {self.limit} bytes allowed")
            hasher.update(chunk)
            self.part.file.write(chunk)
            self.progress(done, self.total)
        if self.size is not None and done < self.size:
            raise TransientMediaError(f"{self.url}: connection lost after {done} of {self.size} bytes")

    def _total_text(self) -> str:
        return str(self.total) if self.total else "?"

    def _verify(self, hasher) -> None:
        digest = hasher.hexdigest()
        if digest != self.sha256:
            self.part.restart()
            raise MediaError(f"{self.url}: sha256 mismatch (got {digest[:12]}…, the schedule "
                             f"says {self.sha256[:12]}…)")


class _Watchdog:
    """Cuts a download's connection at its deadline or when `cancel` is set.

    The per-read timeout cannot catch a server that sends a byte every few seconds,
    and a cancel checked between reads waits for the next byte; shutting the socket
    down makes a blocked read return at once."""

    POLL_S = 0.2  # how soon a cancel is noticed

    def __init__(self, deadline: float, cancel):
        self.deadline, self.cancel = deadline, cancel
        self.fired: str | None = None  # "cancelled" or "deadline"
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self._sock = None
        self._lock = threading.Lock()

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def check(self) -> str | None:
        if self.fired is None:
            if self.cancel is not None and self.cancel.is_set():
                self.fired = "cancelled"
            elif self.left() <= 0:
                self.fired = "deadline"
        return self.fired

    def start(self) -> "_Watchdog":
        self._thread = threading.Thread(target=self._run, name="media-watchdog", daemon=True)
        self._thread.start()
        return self

    def attach(self, sock) -> None:
        """The connection's socket, as soon as it is connected (headers included in the watch)."""
        with self._lock:
            self._sock = sock
        if self.fired:
            self._cut()

    def _run(self) -> None:
        while not self._done.wait(max(0.0, min(self.POLL_S, self.left()))):
            if self.check():
                self._cut()
                return

    def _cut(self) -> None:
        with self._lock:
            sock = self._sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes a read blocked in another thread
            except OSError:
                pass

    def close(self) -> None:
        self._done.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()


def _watched(connection_class, watchdog: _Watchdog):
    """`connection_class` that hands its socket to `watchdog` once connected."""
    class Watched(connection_class):
        def connect(self):
            super().connect()
            watchdog.attach(self.sock)
    return Watched


class _WatchedHTTP(urllib.request.HTTPHandler):
    def __init__(self, watchdog: _Watchdog):
        super().__init__()
        self._connection = _watched(http.client.HTTPConnection, watchdog)

    def http_open(self, req):
        return self.do_open(self._connection, req)


class _WatchedHTTPS(urllib.request.HTTPSHandler):
    def __init__(self, watchdog: _Watchdog):
        super().__init__()
        self._connection = _watched(http.client.HTTPSConnection, watchdog)

    def https_open(self, req):
        return self.do_open(self._connection, req, context=self._context)


def _opener(watchdog: _Watchdog):
    """urllib's default opener (proxies, redirects) whose connections the watchdog can cut."""
    return urllib.request.build_opener(_WatchedHTTP(watchdog), _WatchedHTTPS(watchdog))


class _RangeRefused(Exception):
    """416: the server will not resume from where we are."""


def _check_url(url: str) -> None:
    scheme = urlsplit(url).scheme if isinstance(url, str) else ""
    if scheme not in ("http", "https"):
        raise MediaError(f"{url}: only http and https media URLs are fetched")


def _content_range(value: str) -> tuple[int, int | None]:
    """`bytes START-END/TOTAL` -> (START, TOTAL or None)."""
    try:
        unit, _, spec = value.partition(" ")
        span, _, total = spec.partition("/")
        start = int(span.split("-", 1)[0])
        return start, (int(total) if total.isdigit() else None)
    except ValueError:
        return -1, None


def _http_error(url: str, code: int, reason) -> MediaError:
    text = f"{url}: the server answered HTTP {code} {reason}".rstrip()
    # 408 timeout, 425/429 slow down, 5xx the server's own trouble: worth another try.
    if code >= 500 or code in (408, 425, 429):
        return TransientMediaError(text)
    return MediaError(text)


def _plain(exc: Exception) -> str:
    reason = getattr(exc, "reason", None)
    text = str(reason if reason is not None else exc) or type(exc).__name__
    return " ".join(text.split())


def _not_the_media(exc: Exception) -> bool:
    """A failure of the unit's own disk, not of the media: worth another try."""
    return "No space left" in str(exc) or "cannot write" in str(exc)


def _without_name(message: str, path: Path) -> str:
    """An audio error names the cache file (`<sha>`): the sha prefix already says which."""
    return message.removeprefix(f"{path.name}: ")


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _last_use(paths) -> float:
    times = []
    for path in paths:
        try:
            times.append(path.stat().st_mtime)
        except OSError:
            pass
    return max(times, default=0.0)


def _touch(path: Path) -> None:
    try:
        os.utime(path)
    except OSError:
        pass
