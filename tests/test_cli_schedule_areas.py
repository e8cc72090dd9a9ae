"""`loaxa schedule check` with areas and area items: windows and areas listed, quiet hours not
held against a window, every invalid case one error line naming the field."""

import json

import pytest

from tests.test_cli_schedule import assert_one_line_failure, loaxa, out, write_doc
from tests.test_scheduler_area_items import area_doc


def test_check_lists_areas_and_windows(tmp_path):
    doc = area_doc(days=["mon", "tue"], **{"from": "04:30", "until": "11:00"})  # overlaps 22:00-05:00
    doc["areas"]["spare"] = {"circle": {"lat": 12.8, "lon": 108.2, "r_m": 100}}
    path = write_doc(tmp_path, doc)
    result = loaxa("schedule", "check", path, "--from", "2026-11-30", "--days", "3", cwd=tmp_path)
    text = out(result)
    assert result.returncode == 0, result.stderr
    assert ("luat-dat (normal; in area bong-krang 04:30-11:00 on mon, tue, every 15 min, at most 4 a day; "
            "chime, bt-giam-ngheo)") in text
    assert "\n  bong-krang: polygon of 4 points, 4.82 km2\n" in text
    assert "\n  yang-tao: circle of 800 m around 12.75000, 108.10000\n" in text
    assert "luat-dat in bong-krang: Mon 2026-11-30 04:30-11:00 +0700" in text
    assert "luat-dat in bong-krang: Tue 2026-12-01 04:30-11:00 +0700" in text
    assert "Wed 2026-12-02 04:30" not in text
    assert "warning: area spare is not used by any item" in text
    assert "quiet hours" not in text  # a window overlapping them is not refused


def test_check_json_has_areas_and_windows(tmp_path):
    path = write_doc(tmp_path, area_doc(every_s=600, max_plays=2))
    result = loaxa("schedule", "check", path, "--from", "2026-11-30", "--days", "1", "--json", cwd=tmp_path)
    report = json.loads(out(result))
    assert report["areas"]["yang-tao"] == {"circle": {"lat": 12.75, "lon": 108.1, "r_m": 800.0}}
    assert report["windows"] == [{"item": "luat-dat", "area": "bong-krang", "from": "2026-11-30T07:00:00+07:00",
                                  "until": "2026-11-30T11:00:00+07:00", "priority": "normal", "every_s": 600,
                                  "max_plays": 2}]
    assert all(p["item"] != "luat-dat" for p in report["plays"])


@pytest.mark.parametrize("changes, areas, expected", [
    ({"where": "bon-dong"}, None, "items[2].where: unknown area id 'bon-dong'"),
    ({"from": "22:00", "until": "02:00"}, None, "items[2].until: 02:00 must be after from 22:00"),
    ({"at": "07:00"}, None, "items[2].at: an area item (with where) plays in its from-until window"),
    ({"every_s": 0}, None, "items[2].every_s: must be 1-86400 seconds, got 0"),
    ({}, {"bong-krang": {"polygon": [[12.69, 108.04], [12.71, 108.06], [12.69, 108.06], [12.71, 108.04]]}},
     "areas.bong-krang.polygon: sides 1 and 3 cross or touch"),
    ({}, {"bong-krang": {"polygon": [[12.69, 108.04], [12.70, 108.05], [12.71, 108.06]]}},
     "areas.bong-krang.polygon: encloses no area"),
    ({}, {"bong-krang": {"circle": {"lat": 12.7, "lon": 108.05, "r_m": -1}}}, "areas.bong-krang.circle.r_m"),
])
def test_check_refuses_bad_areas_in_one_line(tmp_path, changes, areas, expected):
    doc = area_doc(**changes)
    if areas is not None:
        doc["areas"] = areas
    assert_one_line_failure(loaxa("schedule", "check", write_doc(tmp_path, doc), cwd=tmp_path), expected)
