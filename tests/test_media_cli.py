"""`loaxa media prepare` and `loaxa media sync` as a technician runs them: real processes."""

import hashlib
import json
import os
import pty
import subprocess
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from scheduler import ScheduleStore, generate_key, load_trusted_keys, public_key_b64, sign_document
from tests.support import bad_media
from tests.support.http_media import MediaHttpServer
from tests.support.media import make_tone, wav_duration
from tests.support.unit import ROOT, loaxa_cmd
from tests.support.unit import run_loaxa as _run_loaxa
from tests.test_audio_prepare import ebur128

UNIT = "dl-test-01"
KEY = generate_key()
ENGLISH = {**os.environ, "LOAXA_LANG": "en"}  # the assertions read English messages


def run_loaxa(*args):
    return _run_loaxa(*args, env=ENGLISH)


def assert_one_line_failure(result, *words):
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("loaxa: error: ") and "Traceback" not in result.stderr
    for word in words:
        assert word in lines[0]


# --- prepare ---------------------------------------------------------------------------

def test_prepare_writes_the_wav_and_says_what_it_did(tmp_path):
    src = make_tone(tmp_path / "bt", 2.0, codec_ext="m4a", level_dbfs=-25)
    out = tmp_path / "out" / "bt.wav"
    result = run_loaxa("media", "prepare", str(src), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"prepared {out}: ") and "LUFS" in result.stdout
    assert ebur128(out)[0] == pytest.approx(-16.0, abs=1.0)


def test_prepare_json_and_another_target(tmp_path):
    src = make_tone(tmp_path / "bt", 1.0, codec_ext="flac", level_dbfs=-10)
    result = run_loaxa("media", "prepare", str(src), "--out", str(tmp_path / "o.wav"), "--lufs", "-23",
                       "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["output_lufs"] == pytest.approx(-23.0, abs=0.5)
    assert report["seconds"] == pytest.approx(1.0, abs=0.05)
    assert set(report) >= {"input_lufs", "gain_db", "true_peak_dbtp", "limited_s"}


BAD = bad_media.REASONS


@pytest.mark.parametrize("case", sorted(BAD))
def test_prepare_bad_input_is_one_line_and_exit_1(tmp_path, case):
    make, expected = BAD[case]
    src = make(tmp_path)
    out = tmp_path / "out.wav"
    result = run_loaxa("media", "prepare", str(src), "--out", str(out))
    assert_one_line_failure(result, src.name, expected)
    assert not out.exists()


def test_prepare_missing_file_and_bad_target(tmp_path):
    assert_one_line_failure(run_loaxa("media", "prepare", str(tmp_path / "nope.mp3"), "--out",
                                      str(tmp_path / "o.wav")), "not found")
    src = make_tone(tmp_path / "bt", 0.5, codec_ext="wav")
    assert_one_line_failure(run_loaxa("media", "prepare", str(src), "--out", str(tmp_path / "o.wav"),
                                      "--lufs", "3"), "between -40 and -5")


def test_prepare_usage_errors_exit_2(tmp_path):
    assert run_loaxa("media", "prepare", "x.mp3").returncode == 2  # no --out
    assert run_loaxa("media", "prepare", "x.mp3", "--out", "o.wav", "--lufs", "loud").returncode == 2
    assert run_loaxa("media").returncode == 2
    assert run_loaxa("media", "--help").returncode == 0


# --- sync --------------------------------------------------------------------------------

@pytest.fixture
def server():
    with MediaHttpServer() as s:
        yield s


def unit_config(tmp_path) -> Path:
    path = tmp_path / "unit.toml"
    path.write_text(f"""
[unit]
id = "{UNIT}"
state_dir = "{tmp_path / 'state'}"
quiet_hours = ""

[broker]
url = "mqtt://127.0.0.1:1"

[trust]
keys = {{ "op" = "{public_key_b64(KEY)}" }}

[hardware]
mode = "mock"
""")
    return path


def store_schedule(tmp_path, media: dict):
    """Accept a signed schedule into the unit's store, as the daemon would have."""
    doc = {"type": "schedule", "id": "dak-lak/2026-w48", "version": 1, "targets": [f"unit:{UNIT}"],
           "issued_at": "2026-01-01T08:00:00+07:00", "valid_from": "2026-01-01",
           "valid_until": "2099-12-31", "timezone": "Asia/Ho_Chi_Minh",
           "media": {mid: {"url": url, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
                     for mid, (url, data) in media.items()},
           "items": [{"id": "sang", "play": ["chime", *media], "at": "06:00"}]}
    context = dict(trusted=load_trusted_keys({"op": public_key_b64(KEY)}), unit_id=UNIT, groups=[],
                   prefix="loaxa", quiet_hours="", unit_tz=ZoneInfo("Asia/Ho_Chi_Minh"))
    store = ScheduleStore(tmp_path / "state" / "schedules", **context)
    offer = store.offer(f"loaxa/unit/{UNIT}/schedule", sign_document(json.dumps(doc), KEY, "op"), **context)
    assert offer.status == "accepted"


def test_sync_fetches_and_prepares_with_plain_lines(tmp_path, server):
    a = make_tone(tmp_path / "a", 1.0, codec_ext="mp3").read_bytes()
    b = make_tone(tmp_path / "b", 1.5, codec_ext="ogg").read_bytes()
    store_schedule(tmp_path, {"bt-a": (server.add("a.mp3", a), a), "bt-b": (server.add("b.ogg", b), b)})

    result = run_loaxa("media", "sync", "--config", str(unit_config(tmp_path)))

    assert result.returncode == 0, result.stdout + result.stderr
    assert "bt-a: prepared" in result.stdout and "bt-b: prepared" in result.stdout
    assert "2 of 2 media ready, 0 failed" in result.stdout
    prepared = sorted((tmp_path / "state" / "media" / "prepared").glob("*.wav"))
    assert sorted(round(wav_duration(p), 1) for p in prepared) == [1.0, 1.5]


def test_sync_reports_failures_and_exits_1(tmp_path, server):
    a = make_tone(tmp_path / "a", 1.0, codec_ext="mp3").read_bytes()
    store_schedule(tmp_path, {"bt-a": (server.add("a.mp3", a), a),
                              "bt-x": (server.add("x.mp3", a), b"not what the server has")})
    result = run_loaxa("media", "sync", "--config", str(unit_config(tmp_path)), "--json")
    assert result.returncode == 1
    status = json.loads(result.stdout[result.stdout.index("{"):])
    states = {m["id"]: (m["state"], m["error"]) for m in status["media"]}
    assert states["bt-a"] == ("prepared", None)
    assert states["bt-x"][0] == "failed" and "server has" in states["bt-x"][1]


def test_sync_shows_a_progress_bar_on_a_terminal(tmp_path, server):
    a = make_tone(tmp_path / "a", 1.0, codec_ext="mp3").read_bytes()
    store_schedule(tmp_path, {"bt-a": (server.add("a.mp3", a, rate=20_000), a)})
    master, slave = pty.openpty()
    process = subprocess.Popen(loaxa_cmd("media", "sync", "--config", str(unit_config(tmp_path))),
                               stdout=slave, stderr=slave, cwd=ROOT, env=ENGLISH)
    os.close(slave)
    output = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # the terminal closed: the process is done
            break
        if not chunk:
            break
        output += chunk
    os.close(master)
    assert process.wait(60) == 0
    text = output.decode()
    assert "\r[" in text and "#" in text and "1/1 ready" in text
    assert "1 of 1 media ready" in text


def test_sync_without_schedules_or_config(tmp_path):
    result = run_loaxa("media", "sync", "--config", str(unit_config(tmp_path)))
    assert result.returncode == 0 and "no schedules in force" in result.stdout
    assert_one_line_failure(run_loaxa("media", "sync", "--config", str(tmp_path / "none.toml")), "none.toml")
