"""The media sync worker: urgent media first, resume after pre-emption, backoff,
reporting, eviction, progress, and a worker that never dies."""

import hashlib
import json
import time
from datetime import datetime, timedelta, timezone

import pytest

from device.media_cache import MB, DownloadLimits, MediaCache
from device.media_sync import MediaSync
from scheduler import parse_schedule
from tests.support.http_media import MediaHttpServer
from tests.support.media import make_tone, write_wav
from tests.support.waiting import wait_until

FAST_BACKOFF = (0.05, 0.2)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def at(hours: float) -> str:
    return (datetime.now(timezone.utc) + timedelta(hours=hours)).isoformat(timespec="seconds")


def schedule(media: dict, items: list, *, doc_id="dak-lak/2026-w48", valid_from="2026-01-01",
             valid_until="2099-12-31", areas=None):
    """A parsed schedule; `media` maps id -> (url, data)."""
    doc = {
        "type": "schedule", "id": doc_id, "version": 1, "targets": ["unit:dl-test-01"],
        "issued_at": "2020-01-01T08:00:00+07:00", "valid_from": valid_from,
        "valid_until": valid_until, "timezone": "Asia/Ho_Chi_Minh",
        "media": {mid: {"url": url, "sha256": sha(data), "size": len(data)}
                  for mid, (url, data) in media.items()},
        "items": items,
    }
    if areas:
        doc["areas"] = areas
    return parse_schedule(json.dumps(doc))


def item(item_id, media_ids, priority="normal", when=None):
    return {"id": item_id, "play": list(media_ids), "at": when or at(2), "priority": priority}


@pytest.fixture
def server():
    with MediaHttpServer() as s:
        yield s


@pytest.fixture
def cache(tmp_path):
    return MediaCache(tmp_path / "media", timeout_s=5)


@pytest.fixture(scope="module")
def tones(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tones")
    return [make_tone(folder / f"t{i}", 0.5, freq=300 + 50 * i, codec_ext="mp3").read_bytes()
            for i in range(4)]


@pytest.fixture
def syncs():
    made = []

    def make(cache, **kwargs):
        kwargs.setdefault("backoff_s", FAST_BACKOFF)
        sync = MediaSync(cache, **kwargs)
        made.append(sync)
        return sync

    yield make
    for sync in made:
        sync.close()


def requested(server):
    return [path.lstrip("/") for path, _ in server.requests]


def by_id(status):
    return {m["id"]: m for m in status["media"]}


# --- order ---------------------------------------------------------------------------

def test_emergency_first_then_priority_then_the_soonest(cache, server, tones, syncs):
    urls = {name: server.add(f"{name}.mp3", data)
            for name, data in zip(["later", "sooner", "prio", "bao"], tones)}
    doc = schedule({n: (urls[n], d) for n, d in zip(["later", "sooner", "prio", "bao"], tones)}, [
        item("a", ["later"], when=at(5)),
        item("b", ["sooner"], when=at(1)),
        item("c", ["prio"], "priority", when=at(6)),
        item("d", ["chime", "bao"], "emergency", when=at(7)),
    ])
    sync = syncs(cache)
    sync.want([doc])  # before start: the worker sees all four at once
    sync.start()
    assert sync.wait_idle(60)
    assert requested(server) == ["bao.mp3", "prio.mp3", "sooner.mp3", "later.mp3"]
    status = sync.status()
    assert status["counts"]["prepared"] == 4
    assert [m["priority"] for m in status["media"]] == ["emergency", "priority", "normal", "normal"]
    assert all(cache.has(sha(d)) for d in tones)


def test_emergency_media_interrupts_a_download_which_then_resumes(tmp_path, cache, server, tones, syncs):
    big = write_wav(tmp_path / "long.wav", 2.0).read_bytes()  # 192 KB, sent at 150 KB/s
    slow = server.add("long.wav", big, rate=150_000)
    bao = server.add("bao.mp3", tones[0])
    normal = schedule({"long": (slow, big)}, [item("sang", ["long"])])
    sync = syncs(cache).start()
    sync.want([normal])
    wait_until(lambda: 30_000 < by_id(sync.status())["long"]["bytes_done"], timeout=20,
               interval=0.02, what="the long download under way")

    sync.want([normal, schedule({"bao": (bao, tones[0])}, [item("bao", ["bao"], "emergency")],
                                doc_id="dak-lak/bao")])
    assert sync.wait_idle(60)

    order = [(path.lstrip("/"), rng) for path, rng in server.requests]
    assert order[0] == ("long.wav", None) and order[1] == ("bao.mp3", None)
    assert order[2][0] == "long.wav" and order[2][1].startswith("bytes=")
    resumed_from = int(order[2][1][6:-1])
    assert 30_000 < resumed_from < len(big)
    assert cache.original_path(sha(big)).read_bytes() == big
    assert sync.status()["counts"] == {"queued": 0, "downloading": 0, "preparing": 0,
                                       "prepared": 2, "failed": 0}


# --- failures --------------------------------------------------------------------------

def test_passing_faults_are_retried_with_backoff_and_reported_late(cache, server, tones, syncs):
    reports = []
    url = server.add("bt.mp3", tones[0], status=503, statuses=2)
    sync = syncs(cache, on_failed=lambda mid, why: reports.append((mid, why)), report_after=3)
    sync.want([schedule({"bt": (url, tones[0])}, [item("sang", ["bt"])])])
    sync.start()
    wait_until(lambda: by_id(sync.status())["bt"]["state"] == "prepared", timeout=20,
               what="prepared after retries")
    assert cache.has(sha(tones[0]))
    assert len(server.ranges("bt.mp3")) == 3
    assert reports == []  # two passing failures: not yet worth an event
    media = by_id(sync.status())["bt"]
    assert media["state"] == "prepared" and media["attempts"] == 2 and media["error"] is None


def test_a_passing_fault_that_lasts_is_reported_once(cache, server, tones, syncs):
    reports = []
    url = server.add("bt.mp3", tones[0], status=503, statuses=1000)
    sync = syncs(cache, on_failed=lambda mid, why: reports.append((mid, why)), report_after=3)
    sync.want([schedule({"bt": (url, tones[0])}, [item("sang", ["bt"])])])
    sync.start()
    wait_until(lambda: len(server.ranges("bt.mp3")) >= 6, timeout=20, what="six attempts")
    assert len(reports) == 1
    assert reports[0][0] == "bt" and "HTTP 503" in reports[0][1]
    # Backoff: the gaps between attempts grow (0.05 s doubling, capped at 0.2 s, +-20 %).
    media = by_id(sync.status())["bt"]
    assert media["state"] in ("failed", "downloading") and media["attempts"] >= 5


def test_a_lasting_fault_is_reported_at_once_and_retried_rarely(cache, server, tones, syncs):
    reports = []
    url = server.add("bt.mp3", tones[0])
    wrong = schedule({"bt": (url, tones[1])}, [item("sang", ["bt"])])  # sha256 of another file
    sync = syncs(cache, on_failed=lambda mid, why: reports.append((mid, why)), backoff_s=(0.05, 60))
    sync.want([wrong])
    sync.start()
    assert sync.wait_idle(20)
    assert [mid for mid, _ in reports] == ["bt"] and "sha256 mismatch" in reports[0][1]
    media = by_id(sync.status())["bt"]
    assert media["state"] == "failed" and "sha256 mismatch" in media["error"]
    assert 40 < media["retry_in_s"] <= 72
    time.sleep(0.3)
    assert len(server.ranges("bt.mp3")) == 1


def test_retry_now_skips_the_wait(cache, server, tones, syncs):
    url = server.add("bt.mp3", tones[0], status=503, statuses=1)
    sync = syncs(cache, backoff_s=(600, 3600))
    sync.want([schedule({"bt": (url, tones[0])}, [item("sang", ["bt"])])])
    sync.start()
    assert sync.wait_idle(20)
    assert by_id(sync.status())["bt"]["retry_in_s"] > 400
    sync.retry_now()
    wait_until(lambda: by_id(sync.status())["bt"]["state"] == "prepared", timeout=20,
               what="prepared once retried")


def test_media_that_does_not_decode_is_not_retried(tmp_path, cache, server, syncs):
    reports = []
    text = ("không phải âm thanh\n" * 100).encode()
    url = server.add("x.mp3", text)
    sync = syncs(cache, on_failed=lambda mid, why: reports.append((mid, why)))
    sync.want([schedule({"x": (url, text)}, [item("sang", ["x"])])])
    sync.start()
    assert sync.wait_idle(20)
    time.sleep(0.5)
    media = by_id(sync.status())["x"]
    assert media["state"] == "failed" and media["retry_in_s"] is None
    assert len(server.ranges("x.mp3")) == 1 and len(reports) == 1


def test_a_failing_report_callback_does_not_stop_the_worker(cache, server, tones, syncs):
    def explode(media_id, reason):
        raise RuntimeError("broker gone")

    bad = server.add("bad.mp3", tones[0])
    good = server.add("good.mp3", tones[1])
    doc = schedule({"bad": (bad, tones[2]), "good": (good, tones[1])},
                   [item("a", ["bad"], "emergency"), item("b", ["good"])])
    sync = syncs(cache, on_failed=explode)
    sync.want([doc])
    sync.start()
    assert sync.wait_idle(20)
    assert by_id(sync.status())["good"]["state"] == "prepared"


def test_one_failure_never_holds_up_the_rest(tmp_path, cache, server, tones, syncs):
    url = server.add("good.mp3", tones[0])
    doc = schedule({"gone": (server.url("gone.mp3"), tones[1]), "good": (url, tones[0])},
                   [item("a", ["gone"], "emergency"), item("b", ["good"])])
    sync = syncs(cache)
    sync.want([doc])
    sync.start()
    assert sync.wait_idle(20)
    states = {m["id"]: m["state"] for m in sync.status()["media"]}
    assert states == {"gone": "failed", "good": "prepared"}


# --- what is wanted, and eviction ---------------------------------------------------------

def test_expired_schedules_are_not_wanted(cache, server, tones, syncs):
    url = server.add("old.mp3", tones[0])
    sync = syncs(cache)
    sync.want([schedule({"old": (url, tones[0])}, [item("a", ["old"], when="06:00")],
                        valid_from="2020-01-01", valid_until="2020-01-31")])
    sync.start()
    assert sync.wait_idle(5)
    assert sync.status()["media"] == [] and server.requests == []


def test_media_no_schedule_needs_is_evicted_over_budget(cache, server, tones, syncs):
    first = schedule({"a": (server.add("a.mp3", tones[0]), tones[0])}, [item("x", ["a"])], doc_id="w47")
    second = schedule({"b": (server.add("b.mp3", tones[1]), tones[1])}, [item("y", ["b"])], doc_id="w48")
    sync = syncs(cache, budget_bytes=1).start()  # every byte is over budget: only what is wanted stays
    sync.want([first])
    assert sync.wait_idle(20)
    assert cache.has(sha(tones[0]))

    sync.want([second])  # w47 left force
    assert sync.wait_idle(20)
    wait_until(lambda: not cache.has_original(sha(tones[0])), timeout=10, what="a evicted")
    assert cache.has(sha(tones[1]))
    assert sync.status()["cache"]["over_budget"] is True  # b alone is over a 1-byte budget: kept


def test_within_budget_nothing_is_evicted(cache, server, tones, syncs):
    first = schedule({"a": (server.add("a.mp3", tones[0]), tones[0])}, [item("x", ["a"])], doc_id="w47")
    sync = syncs(cache, budget_bytes=100 * MB).start()
    sync.want([first])
    assert sync.wait_idle(20)
    sync.want([])
    time.sleep(0.3)
    assert cache.has(sha(tones[0]))  # a week's bulletin may come back: kept while there is room
    assert sync.status()["cache"]["over_budget"] is False


def test_already_prepared_media_is_not_fetched_again(cache, server, tones, syncs):
    url = server.add("a.mp3", tones[0])
    cache.ensure(url, sha(tones[0]), len(tones[0]))
    sync = syncs(cache)
    sync.want([schedule({"a": (url, tones[0])}, [item("x", ["a"])])])
    sync.start()
    assert sync.wait_idle(5)
    assert len(server.ranges("a.mp3")) == 1
    assert by_id(sync.status())["a"]["state"] == "prepared"


# --- progress and shutdown ------------------------------------------------------------------

def test_status_shows_progress_while_downloading(tmp_path, cache, server, syncs):
    big = write_wav(tmp_path / "long.wav", 1.5).read_bytes()
    url = server.add("long.wav", big, rate=150_000)
    sync = syncs(cache).start()
    sync.want([schedule({"long": (url, big)}, [item("sang", ["long"])])])
    media = wait_until(lambda: (m := by_id(sync.status())["long"])["bytes_done"] > 0 and m, timeout=20,
                       interval=0.02, what="progress")
    assert media["state"] == "downloading" and media["bytes_total"] == len(big)
    assert 0 < media["bytes_done"] < len(big)
    assert media["schedules"] == ["dak-lak/2026-w48"] and media["sha256"] == sha(big)
    assert sync.wait_idle(30)
    media = by_id(sync.status())["long"]
    assert media["state"] == "prepared" and media["bytes_done"] == len(big)


def test_close_is_prompt_keeps_the_partial_and_is_safe_twice(tmp_path, cache, server, syncs):
    big = write_wav(tmp_path / "long.wav", 10.0).read_bytes()
    url = server.add("long.wav", big, rate=100_000)
    sync = syncs(cache).start()
    sync.want([schedule({"long": (url, big)}, [item("sang", ["long"])])])
    wait_until(lambda: cache.partial_bytes(sha(big)) > 0, timeout=20, interval=0.02,
               what="download started")
    started = time.monotonic()
    sync.close()
    sync.close()
    assert time.monotonic() - started < 2
    assert 0 < cache.partial_bytes(sha(big)) < len(big)
    sync.want([])  # after close: ignored, no error
    assert not sync._thread.is_alive()


# --- slow servers and requested media ----------------------------------------------------

def test_a_trickling_server_is_cut_off_reported_at_once_and_retried_with_backoff(tmp_path, server, tones, syncs):
    cache = MediaCache(tmp_path / "media", timeout_s=30, limits=DownloadLimits(min_s=0.5, max_s=0.5))
    reports = []
    url = server.add("slow.mp3", tones[0], trickle_s=0.2)
    sync = syncs(cache, on_failed=lambda mid, why: reports.append((mid, why)), report_after=3,
                 backoff_s=(0.3, 1.0)).start()
    sync.want([schedule({"slow": (url, tones[0])}, [item("sang", ["slow"])])])
    wait_until(lambda: reports, timeout=10, interval=0.02, what="a media.failed report")
    assert reports == [("slow", reports[0][1])] and "too slow" in reports[0][1]
    media = by_id(sync.status())["slow"]
    assert media["state"] in ("failed", "downloading") and media["attempts"] >= 1
    server.resources["/slow.mp3"].trickle_s = None
    assert wait_until(lambda: cache.has(sha(tones[0])), timeout=20, interval=0.05, what="prepared")
    ranges = server.ranges("slow.mp3")
    assert len(ranges) >= 2 and ranges[-1] is not None and ranges[-1].startswith("bytes=")
    assert len(reports) == 1  # once per failure streak


def test_requested_media_is_fetched_and_kept_wanted_for_its_time(cache, server, tones, syncs):
    url = server.add("cmd.mp3", tones[1])
    sync = syncs(cache).start()
    sync.want([])
    sync.request("cmd-1", url, sha(tones[1]), None, priority="emergency", for_s=60)
    assert wait_until(lambda: cache.has(sha(tones[1])), timeout=20, interval=0.05, what="prepared")
    media = by_id(sync.status())["cmd-1"]
    assert media["priority"] == "emergency" and media["schedules"] == ["command"]
    sync.want([])  # a new schedule set does not drop a request still in its time
    assert "cmd-1" in by_id(sync.status())


def test_a_trickling_download_no_longer_wanted_stops_at_once(tmp_path, server, tones, syncs):
    cache = MediaCache(tmp_path / "media", timeout_s=30)
    url = server.add("slow.mp3", tones[2], trickle_s=3.0)  # the next byte is always seconds away
    sync = syncs(cache).start()
    sync.want([schedule({"slow": (url, tones[2])}, [item("sang", ["slow"])])])
    wait_until(lambda: by_id(sync.status())["slow"]["bytes_done"] > 0, timeout=10, interval=0.02,
               what="a first byte")
    started = time.monotonic()
    sync.want([])  # the schedule was replaced: nothing needs it now
    wait_until(lambda: sync._current is None, timeout=5, interval=0.02, what="the download stopped")
    assert time.monotonic() - started < 2  # not at the next byte, nor at any timeout
    assert sync.status()["media"] == []


def test_an_area_items_window_counts_as_its_next_play(cache, server, tones, syncs):
    """A vehicle's area item plays from its window's start (SPEC "Mobile units"): its media
    come before those of a clock item later on, not last as media that never play."""
    urls = {name: server.add(f"{name}.mp3", data) for name, data in zip(["gio", "vung"], tones)}
    local = datetime.now(timezone(timedelta(hours=7)))
    area_item = {"id": "luat-dat", "play": ["vung"], "where": "bong-krang", "from": "00:00", "until": "23:59"}
    if local.hour == 23 and local.minute >= 58:  # the window is over for today: tomorrow's counts
        pytest.skip("within the last minutes of the local day")
    doc = schedule({n: (urls[n], d) for n, d in zip(["gio", "vung"], tones)},
                   [item("sang", ["gio"], when=at(3)), area_item],
                   areas={"bong-krang": {"circle": {"lat": 12.7, "lon": 108.1, "r_m": 500}}})
    sync = syncs(cache)
    sync.want([doc])
    sync.start()
    assert sync.wait_idle(60)
    assert requested(server) == ["vung.mp3", "gio.mp3"]
    assert by_id(sync.status())["vung"]["next_play"] <= time.time()
