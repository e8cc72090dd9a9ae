"""Live relay items on a running unit: a stream that plays, one that drops (fallback)."""

import json
from datetime import datetime, timedelta

from tests.support.http_media import MediaHttpServer
from tests.support.media import make_tone
from tests.support.unit import MediaServer, OperatorKey, UnitProcess, run_loaxa, write_unit_config
from tests.test_e2e_unit import GROUP, TZ, UNIT, schedule_doc

MP3_BYTES_PER_S = 16_000  # 128 kbit/s


def test_stream_items_relay_and_fall_back(tmp_path, broker):
    (tmp_path / "www").mkdir()
    make_tone(tmp_path / "www" / "fallback.mp3", 2.0, freq=600)
    make_tone(tmp_path / "radio.mp3", 30.0, freq=300)
    radio = (tmp_path / "radio.mp3").read_bytes()
    files = MediaServer(tmp_path / "www")
    live = MediaHttpServer()
    steady = live.add("vov1.mp3", radio, stream=True, rate=2 * MP3_BYTES_PER_S)
    dropping = live.add("vov2.mp3", radio, stream=True, rate=2 * MP3_BYTES_PER_S,
                        drop_after=3 * MP3_BYTES_PER_S, drops=100)
    key = OperatorKey(tmp_path / "keys")
    config = write_unit_config(tmp_path / "unit", unit_id=UNIT, groups=[GROUP], broker_url=broker.url,
                               trust={key.name: key.public}, warmup_s=0.3, cooldown_s=0.5)
    watch = broker.collector(f"loaxa/unit/{UNIT}/playlog")
    unit = UnitProcess(config)
    try:
        unit.wait_console("connected to broker")
        start = datetime.now(TZ).replace(microsecond=0) + timedelta(seconds=5)
        doc = schedule_doc(files, media={"du-phong": files.media_entry("fallback.mp3")}, items=[
            {"id": "vov-sang", "stream": steady, "duration_s": 3, "at": start.isoformat()},
            {"id": "vov-chieu", "stream": dropping, "duration_s": 20, "fallback": "du-phong",
             "at": (start + timedelta(seconds=6)).isoformat()}])
        (tmp_path / "doc.json").write_text(json.dumps(doc))
        pushed = run_loaxa("schedule", "push", str(tmp_path / "doc.json"), "--key", str(key.key_path),
                           "--broker", broker.url)
        assert pushed.returncode == 0, pushed.stderr
        watch.wait_for(lambda t, p: json.loads(p)["item"] == "vov-chieu", 60)
        records = {json.loads(p)["item"]: json.loads(p) for p in watch.payloads(f"loaxa/unit/{UNIT}/playlog")}
        full, fell_back = records["vov-sang"], records["vov-chieu"]
        assert full["source"] == "stream" and full["outcome"] == "completed", full
        assert abs(full["played_s"] - 3.0) < 0.3
        assert fell_back["source"] == "fallback" and fell_back["outcome"] == "completed", fell_back
        assert "stream" in fell_back["reason"]
        assert 2.0 + 1.0 <= fell_back["played_s"] < 20.0  # some radio, then the 2 s fallback
        assert list((tmp_path / "unit" / "mock-output").glob("*_vov-chieu-fallback.wav"))
    finally:
        unit.stop()
        watch.close()
        live.close()
        files.close()
