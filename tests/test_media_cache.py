"""The media cache against a local HTTP server: resume, limits, verification,
preparation, bad media, eviction. Real ffmpeg, real files, real sockets."""

import hashlib
import os
import subprocess
import sys
import threading
import time

import pytest

from audio import PrepareCancelled
from device.media_cache import (MB, DownloadLimits, DownloadTimedOut, FetchInterrupted, MediaCache,
                                MediaNotReady, TransientMediaError, _Partial)
from loaxa.errors import MediaError
from scheduler import Media
from tests.support import bad_media
from tests.support.http_media import MediaHttpServer
from tests.support.media import make_tone, wav_duration
from tests.support.unit import ROOT


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def server():
    with MediaHttpServer() as s:
        yield s


@pytest.fixture
def cache(tmp_path):
    return MediaCache(tmp_path / "media", timeout_s=5)


@pytest.fixture(scope="module")
def bulletin(tmp_path_factory) -> bytes:
    """A 2 s MP3, about 16 KB: big enough to cut in the middle."""
    return make_tone(tmp_path_factory.mktemp("b") / "bulletin", 2.0, codec_ext="mp3").read_bytes()


# --- fetch, verify, prepare ----------------------------------------------------------

def test_fetch_verify_prepare_and_resolve(cache, server, bulletin):
    url = server.add("bt.mp3", bulletin)
    digest = sha(bulletin)
    progress = []

    path = cache.ensure(url, digest, len(bulletin), progress=lambda done, total: progress.append((done, total)))

    assert path == cache.prepared_path(digest) and cache.has(digest)
    assert wav_duration(path) == pytest.approx(2.0, abs=0.06)
    assert cache.original_path(digest).read_bytes() == bulletin
    assert progress[-1] == (len(bulletin), len(bulletin)) and progress[0][0] == 0
    assert not cache.partial_path(digest).exists()
    # resolve: the same file, no second request; built-ins need no schedule entry.
    media = {"bt": Media("bt", url, digest, len(bulletin))}
    assert cache.resolve("bt", media) == path
    assert len(server.ranges("bt.mp3")) == 1
    assert cache.resolve("chime", media).name.startswith("chime")
    with pytest.raises(MediaError, match="no such media"):
        cache.resolve("other", media)


def test_resumes_after_a_dropped_connection(cache, server, bulletin):
    cut = len(bulletin) * 2 // 5
    url = server.add("bt.mp3", bulletin, drop_after=cut, drops=1)
    digest = sha(bulletin)

    with pytest.raises(TransientMediaError, match=f"connection lost after {cut} of {len(bulletin)}"):
        cache.fetch(url, digest, len(bulletin))
    assert cache.partial_bytes(digest) == cut
    assert not cache.has_original(digest)

    cache.fetch(url, digest, len(bulletin))

    assert server.ranges("bt.mp3") == [None, f"bytes={cut}-"]
    assert cache.original_path(digest).read_bytes() == bulletin
    assert not cache.partial_path(digest).exists()


def test_resumes_again_and_again(cache, server, bulletin):
    url = server.add("bt.mp3", bulletin, drop_after=3000, drops=3)
    digest = sha(bulletin)
    for _ in range(3):
        with pytest.raises(TransientMediaError):
            cache.fetch(url, digest, len(bulletin))
    cache.fetch(url, digest, len(bulletin))
    assert server.ranges("bt.mp3") == [None, "bytes=3000-", "bytes=6000-", "bytes=9000-"]
    assert cache.original_path(digest).read_bytes() == bulletin


def test_a_server_that_ignores_range_starts_again(cache, server, bulletin):
    url = server.add("bt.mp3", bulletin, drop_after=5000, drops=1, ignore_range=True)
    digest = sha(bulletin)
    with pytest.raises(TransientMediaError):
        cache.fetch(url, digest, len(bulletin))
    cache.fetch(url, digest, len(bulletin))
    assert server.ranges("bt.mp3") == [None, "bytes=5000-"]  # asked; got the whole file; fine
    assert cache.original_path(digest).read_bytes() == bulletin


def test_a_complete_partial_needs_no_request(cache, server, bulletin):
    url = server.add("bt.mp3", bulletin)
    digest = sha(bulletin)
    cache.partial_path(digest).write_bytes(bulletin)
    cache.fetch(url, digest, len(bulletin))
    assert server.ranges("bt.mp3") == []
    assert cache.has_original(digest)


def test_a_refused_range_starts_again(cache, server, bulletin):
    url = server.add("bt.mp3", bulletin)
    digest = sha(bulletin)
    cache.partial_path(digest).write_bytes(bulletin + b"junk")  # longer than the file: 416
    cache.fetch(url, digest, None)
    assert server.ranges("bt.mp3") == [f"bytes={len(bulletin) + 4}-", None]
    assert cache.original_path(digest).read_bytes() == bulletin


# --- what is refused ------------------------------------------------------------------

def test_wrong_sha256(cache, server, bulletin):
    url = server.add("bt.mp3", bulletin)
    wrong = sha(b"another file")
    with pytest.raises(MediaError) as caught:
        cache.ensure(url, wrong, len(bulletin))
    assert not isinstance(caught.value, TransientMediaError)
    assert "sha256 mismatch" in str(caught.value) and "\n" not in str(caught.value)
    assert not cache.has_original(wrong) and cache.partial_bytes(wrong) == 0


def test_declared_size_over_the_limit_is_refused_without_a_request(tmp_path, server, bulletin):
    cache = MediaCache(tmp_path / "media", max_bytes=1 * MB)
    url = server.add("big.mp3", bulletin)
    with pytest.raises(MediaError, match="over the limit of 1 MB"):
        cache.fetch(url, sha(bulletin), 5 * MB)
    assert server.ranges("big.mp3") == []


def test_more_bytes_than_declared(cache, server, bulletin):
    url = server.add("bt.mp3", bulletin)
    with pytest.raises(MediaError, match="the schedule declares 1000"):
        cache.fetch(url, sha(bulletin), 1000)


def test_a_body_without_length_stops_at_the_limit(tmp_path, server):
    cache = MediaCache(tmp_path / "media", max_bytes=1 * MB)
    url = server.add("endless", os.urandom(2 * MB), stream=True)
    with pytest.raises(MediaError, match="larger than"):
        cache.fetch(url, sha(b"x"), None)
    assert cache.partial_bytes(sha(b"x")) == 0


def test_http_errors(cache, server, bulletin):
    with pytest.raises(MediaError, match="HTTP 404") as caught:
        cache.fetch(server.url("missing.mp3"), sha(bulletin), None)
    assert not isinstance(caught.value, TransientMediaError)
    url = server.add("busy.mp3", bulletin, status=503, statuses=1)
    with pytest.raises(TransientMediaError, match="HTTP 503"):
        cache.fetch(url, sha(bulletin), None)
    cache.fetch(url, sha(bulletin), None)  # the server is back


def test_no_server(cache, bulletin):
    with pytest.raises(TransientMediaError, match="cannot connect"):
        cache.fetch("http://127.0.0.1:9/bt.mp3", sha(bulletin), None)


@pytest.mark.parametrize("url", ["ftp://media.example.vn/bt.mp3", "file:///etc/passwd", "bt.mp3"])
def test_only_http_urls(cache, url):
    with pytest.raises(MediaError, match="only http and https"):
        cache.fetch(url, sha(b"x"), None)


def test_another_process_downloading_the_same_file(cache, bulletin):
    digest = sha(bulletin)
    with _Partial(cache.partial_path(digest)):  # flock held, as by `loaxa media sync`
        with pytest.raises(TransientMediaError, match="being downloaded by another"):
            cache.fetch("http://127.0.0.1:9/bt.mp3", digest, None)


def test_disk_space_reserve(tmp_path, server, bulletin):
    cache = MediaCache(tmp_path / "media", min_free_bytes=1 << 60)
    url = server.add("bt.mp3", bulletin)
    with pytest.raises(TransientMediaError, match="not enough disk space"):
        cache.fetch(url, sha(bulletin), len(bulletin))


# --- slow servers: an overall deadline, and a cancel that does not wait for the next byte --

def test_a_trickling_server_is_cut_off_at_the_deadline_and_the_next_try_resumes(tmp_path, server, bulletin):
    limits = DownloadLimits(min_rate_kbps=64, min_s=1.5, max_s=1.5)
    cache = MediaCache(tmp_path / "media", timeout_s=30, limits=limits)
    url = server.add("slow.mp3", bulletin, trickle_s=0.3)  # a byte every 0.3 s: no read ever times out
    digest = sha(bulletin)
    started = time.monotonic()
    with pytest.raises(DownloadTimedOut, match="too slow.*deadline of 2 s") as caught:
        cache.fetch(url, digest, len(bulletin))
    assert time.monotonic() - started < 5  # not the 30 s per-read timeout, nor the whole file
    assert isinstance(caught.value, TransientMediaError)  # retried later, with backoff
    kept = cache.partial_bytes(digest)
    assert 1 <= kept < len(bulletin)
    server.resources["/slow.mp3"].trickle_s = None  # the server recovers
    cache.fetch(url, digest, len(bulletin))
    assert server.ranges("slow.mp3")[-1] == f"bytes={kept}-"
    assert cache.original_path(digest).read_bytes() == bulletin


def test_a_server_trickling_its_headers_is_cut_off_too(tmp_path, server, bulletin):
    cache = MediaCache(tmp_path / "media", timeout_s=30, limits=DownloadLimits(min_s=1.0, max_s=1.0))
    url = server.add("slow-head.mp3", bulletin, trickle_s=0.3, trickle_head=True)
    started = time.monotonic()
    with pytest.raises(DownloadTimedOut, match="too slow"):
        cache.fetch(url, sha(bulletin), len(bulletin))
    assert time.monotonic() - started < 4


def test_the_deadline_follows_the_size_between_a_floor_and_a_cap():
    limits = DownloadLimits(min_rate_kbps=64, min_s=120, max_s=3600)
    assert limits.deadline_s(1000) == 120  # small files: the minimum
    assert limits.deadline_s(8 * MB) == pytest.approx(8 * MB * 8 / 1000 / 64)  # 8 MB at 64 kbit/s
    assert limits.deadline_s(200 * MB) == 3600 and limits.deadline_s(None) == 3600


def test_a_cancel_cuts_a_trickling_download_at_once(tmp_path, server, bulletin):
    cache = MediaCache(tmp_path / "media", timeout_s=30)
    url = server.add("slow.mp3", bulletin, trickle_s=5.0)  # the next byte is seconds away
    cancel = threading.Event()
    threading.Timer(0.5, cancel.set).start()
    started = time.monotonic()
    with pytest.raises(FetchInterrupted):
        cache.fetch(url, sha(bulletin), len(bulletin), cancel=cancel)
    assert time.monotonic() - started < 2.5


def test_resolve_never_fetches(cache, server, bulletin):
    url = server.add("bt.mp3", bulletin)
    with pytest.raises(MediaNotReady, match="media not ready: bt"):
        cache.resolve("bt", {"bt": Media("bt", url, sha(bulletin), len(bulletin))})
    assert server.ranges("bt.mp3") == []


# --- bad media: verified, but never playable -------------------------------------------

BAD = bad_media.REASONS


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_media_fails_once_with_a_plain_reason(tmp_path, cache, server, case):
    make, expected = BAD[case]
    data = make(tmp_path).read_bytes()
    url = server.add("x", data)
    digest = sha(data)

    with pytest.raises(MediaError) as caught:
        cache.ensure(url, digest, len(data) or None)
    message = str(caught.value)
    assert expected in message and "\n" not in message and digest[:12] in message
    assert not cache.has(digest) and not cache.has_original(digest)
    assert list(cache.prepared.iterdir()) == []
    assert cache.failure(digest) == message
    # Known bad: the player's resolve fails at once, without fetching it again.
    requests = len(server.ranges("x"))
    with pytest.raises(MediaError, match=expected):
        cache.resolve("x", {"x": Media("x", url, digest, len(data) or 1)})
    assert len(server.ranges("x")) == requests


def test_a_crash_while_preparing_is_a_passing_fault(tmp_path, cache, server, bulletin, monkeypatch):
    url, digest = server.add("bt.mp3", bulletin), sha(bulletin)
    cache.fetch(url, digest, len(bulletin))
    (tmp_path / "crash").mkdir()  # the preparing child dies as it starts, as if out of memory
    (tmp_path / "crash" / "sitecustomize.py").write_text("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "crash"))
    with pytest.raises(TransientMediaError, match="preparation crashed"):
        cache.prepare(digest)
    assert cache.has_original(digest) and cache.failure(digest) is None  # kept for the next try
    monkeypatch.delenv("PYTHONPATH")
    assert cache.prepare(digest) == cache.prepared_path(digest)


def test_a_cancelled_preparation_leaves_no_temporary_files(tmp_path, cache):
    src = make_tone(tmp_path / "long", 20.0, codec_ext="flac")
    digest = sha(src.read_bytes())
    cache.seed(src, digest)
    leftover = cache.prepared / f".{cache.prepared_path(digest).name}.abc123.tmp"
    leftover.write_bytes(b"half a wav")  # as a killed preparation leaves it
    old = cache.prepared / ".someone-else.wav.zzz.tmp"
    old.write_bytes(b"x")
    os.utime(old, (time.time() - 7 * 3600, time.time() - 7 * 3600))
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(PrepareCancelled):
        cache.prepare(digest, cancel=cancel)
    assert not leftover.exists() and not cache.has(digest)
    cache.evict({digest}, 1 << 40)
    assert not old.exists()


def test_the_unit_never_loads_numpy_to_prepare(tmp_path):
    # The daemon's cache prepares in a child process: its own memory stays at its idle size.
    code = ("import sys, hashlib; from pathlib import Path; from device.media_cache import MediaCache; "
            "src = Path(sys.argv[1]); c = MediaCache(Path(sys.argv[2])); "
            "d = hashlib.sha256(src.read_bytes()).hexdigest(); c.seed(src, d); c.ensure('http://x/y', d); "
            "print('numpy' in sys.modules)")
    src = make_tone(tmp_path / "t", 0.5, codec_ext="mp3")
    result = subprocess.run([sys.executable, "-c", code, str(src), str(tmp_path / "media")],
                            capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.stdout.strip() == "False", result.stderr


def test_a_schedule_declaring_an_empty_file(cache, server):
    with pytest.raises(MediaError, match="empty file"):
        cache.fetch(server.add("e", b""), sha(b""), 0)


# --- seeding, settings, eviction ------------------------------------------------------

def test_seed_then_prepare(tmp_path, cache):
    src = make_tone(tmp_path / "demo", 1.0, codec_ext="ogg")
    digest = sha(src.read_bytes())
    cache.seed(src, digest)
    cache.seed(src, digest)
    assert cache.ensure("http://127.0.0.1:9/never-fetched.ogg", digest, None) == cache.prepared_path(digest)


def test_another_loudness_target_prepares_again(tmp_path, server, bulletin):
    url, digest = server.add("bt.mp3", bulletin), sha(bulletin)
    first = MediaCache(tmp_path / "media").ensure(url, digest, None)
    other = MediaCache(tmp_path / "media", lufs=-23.0)
    assert not other.has(digest)
    second = other.ensure(url, digest, None)
    assert second != first and first.exists() and second.exists()
    assert len(server.ranges("bt.mp3")) == 1  # the original was kept: no second download


def fill(cache, server, count, tmp_path):
    digests = []
    for i in range(count):
        data = make_tone(tmp_path / f"m{i}", 1.0, freq=300 + 100 * i, codec_ext="mp3").read_bytes()
        digests.append(sha(data))
        cache.ensure(server.add(f"m{i}.mp3", data), digests[-1], len(data))
        os.utime(cache.prepared_path(digests[-1]), (time.time() - 100 + i, time.time() - 100 + i))
    return digests


def test_eviction_removes_unneeded_media_oldest_first(tmp_path, cache, server):
    a, b, c = fill(cache, server, 3, tmp_path)
    per_media = cache.usage()["total"] // 3
    assert cache.evict({a, b, c}, 0) == []  # everything needed: nothing goes, budget or not

    removed = cache.evict({c}, per_media * 2 + per_media // 2)

    assert removed == [a]  # the least recently used of the unneeded
    assert not cache.has(a) and not cache.has_original(a)
    assert cache.has(b) and cache.has(c)
    assert cache.evict({c}, 0) == [b]
    assert cache.has(c)


def test_eviction_takes_prepared_files_of_other_settings_first(tmp_path, server):
    old = MediaCache(tmp_path / "media", lufs=-23.0)
    [a] = fill(old, server, 1, tmp_path)
    new = MediaCache(tmp_path / "media")
    new.ensure(server.url("m0.mp3"), a, None)
    before = new.usage()["total"]
    assert new.evict({a}, before - 1) == []  # nothing of `a` itself goes...
    assert not old.has(a) and new.has(a) and new.has_original(a)  # ...but its stale copy did
