"""Area items in schedule documents (SPEC "Mobile units"): `areas`, `where`, `from`/`until`,
`every_s`, `max_plays`; what is refused, in one line naming the field; clock-time plans
and quiet hours leave area items alone."""

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from loaxa.errors import QuietHoursError
from scheduler import check_quiet_hours, next_occurrence, occurrences, parse_schedule, quiet_hours_conflicts
from scheduler.areas import Circle, Polygon
from scheduler.triggers import ItemTrigger
from tests.test_scheduler_document import dump, example_doc, refusal

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
SQUARE = [[12.69, 108.04], [12.69, 108.06], [12.71, 108.06], [12.71, 108.04]]


def area_doc(**item_changes) -> dict:
    doc = example_doc()
    doc["areas"] = {"bong-krang": {"polygon": SQUARE},
                    "yang-tao": {"circle": {"lat": 12.75, "lon": 108.10, "r_m": 800}}}
    item = {"id": "luat-dat", "play": ["chime", "bt-giam-ngheo"], "where": "bong-krang",
            "from": "07:00", "until": "11:00", "every_s": 900, "max_plays": 4}
    item.update(item_changes)
    doc["items"].append({k: v for k, v in item.items() if v is not None})
    return doc


def test_areas_and_an_area_item_parse():
    schedule = parse_schedule(dump(area_doc(days=["mon", "wed"], priority="priority")))
    assert isinstance(schedule.areas["bong-krang"], Polygon) and isinstance(schedule.areas["yang-tao"], Circle)
    item = schedule.item("luat-dat")
    assert item.is_area and item.where == "bong-krang" and item.at is None
    assert (item.window_from, item.window_until) == (time(7), time(11))
    assert (item.every_s, item.max_plays, item.days, item.priority) == (900, 4, frozenset({0, 2}), "priority")
    assert not item.is_recurring and item.once_at is None and item.time_of_day is None
    clock = schedule.item("sang")
    assert not clock.is_area and clock.where is None and clock.is_recurring


def test_defaults_every_15_minutes_4_plays():
    item = parse_schedule(dump(area_doc(every_s=None, max_plays=None))).item("luat-dat")
    assert (item.every_s, item.max_plays) == (900, 4)


def test_a_document_without_areas_still_parses():
    schedule = parse_schedule(dump(example_doc()))
    assert schedule.areas == {}


@pytest.mark.parametrize("changes, expected", [
    ({"where": "bon-dong"}, "items[2].where: unknown area id 'bon-dong' (areas: bong-krang, yang-tao)"),
    ({"where": "Bong Krang"}, "items[2].where: area id must match"),
    ({"at": "07:00"}, "items[2].at: an area item (with where) plays in its from-until window, not at a time"),
    ({"from": None}, "items[2].from: required with where"),
    ({"until": None}, "items[2].until: required with where"),
    ({"from": "7h"}, "items[2].from: expected a time of day HH:MM"),
    ({"until": "24:00"}, "items[2].until: expected a time of day HH:MM"),
    ({"from": "11:00", "until": "07:00"}, "items[2].until: 07:00 must be after from 11:00 (a window cannot cross midnight"),
    ({"from": "22:00", "until": "02:00"}, "a window cannot cross midnight"),
    ({"from": "07:00", "until": "07:00"}, "items[2].until: 07:00 must be after from 07:00"),
    ({"every_s": 0}, "items[2].every_s: must be 1-86400 seconds, got 0"),
    ({"every_s": -60}, "items[2].every_s: must be 1-86400 seconds"),
    ({"every_s": 1.5}, "items[2].every_s: expected an integer"),
    ({"max_plays": 0}, "items[2].max_plays: must be 1-1440, got 0"),
    ({"max_plays": True}, "items[2].max_plays: expected an integer"),
    ({"days": []}, "items[2].days: must not be empty"),
    ({"except": ["2026-13-01"]}, "items[2].except[0]: expected a date"),
    ({"priority": "urgent"}, "items[2].priority: must be one of normal, priority, emergency"),
    ({"wher": "x"}, "items[2].wher: unknown field (did you mean 'where'?)"),
])
def test_area_item_refusals(changes, expected):
    assert expected in refusal(area_doc(**changes))


def test_area_fields_on_a_clock_item_are_refused():
    doc = example_doc()
    doc["items"][0]["every_s"] = 600
    assert refusal(doc) == 'items[0].every_s: only for an area item (one with "where")'
    doc = example_doc()
    doc["items"][0]["from"] = "07:00"
    assert "items[0].from: only for an area item" in refusal(doc)


def test_an_item_with_neither_at_nor_where_needs_at():
    doc = example_doc()
    del doc["items"][0]["at"]
    assert refusal(doc) == "items[0].at: required"


def test_where_in_a_document_without_areas():
    doc = area_doc()
    del doc["areas"]
    assert "items[2].where: unknown area id 'bong-krang' (the document has no areas)" in refusal(doc)


@pytest.mark.parametrize("areas, expected", [
    ({"Bong": {"polygon": SQUARE}}, "areas.Bong: area id must match"),
    ({"bong-krang": {"polygon": [[12.69, 108.04], [12.71, 108.06], [12.69, 108.06], [12.71, 108.04]]}},
     "areas.bong-krang.polygon: sides 1 and 3 cross"),
    ({"bong-krang": {"circle": {"lat": 12.7, "lon": 108.0, "r_m": 0}}}, "areas.bong-krang.circle.r_m: must be more"),
    ([], "areas: expected an object"),
])
def test_bad_areas_are_refused(areas, expected):
    doc = area_doc()
    doc["areas"] = areas
    assert expected in refusal(doc)


def test_duplicate_area_ids_are_refused():
    text = dump(area_doc()).replace('"yang-tao"', '"bong-krang"', 1)
    assert refusal(text) == "document is not valid JSON: field 'bong-krang' appears twice in one object"


def test_clock_time_plans_leave_area_items_out():
    schedule = parse_schedule(dump(area_doc()))
    start = datetime(2026, 11, 30, tzinfo=TZ)
    plays = occurrences(schedule, start, start + timedelta(days=7))
    assert plays and all(o.item.id != "luat-dat" for o in plays)
    assert next_occurrence([schedule], start).item.id == "sang"
    trigger = ItemTrigger(schedule, schedule.item("luat-dat"))
    assert trigger.get_next_fire_time(None, start) is None  # the planner never fires it by the clock


def test_quiet_hours_do_not_refuse_a_window_that_overlaps_them():
    schedule = parse_schedule(dump(area_doc(**{"from": "04:00", "until": "23:00"})))
    assert quiet_hours_conflicts(schedule, "22:00-05:00", TZ) == []
    check_quiet_hours(schedule, "22:00-05:00", TZ)  # no QuietHoursError
    clock = area_doc()
    clock["items"][0]["at"] = "22:30"
    with pytest.raises(QuietHoursError):  # a clock item still is refused
        check_quiet_hours(parse_schedule(dump(clock)), "22:00-05:00", TZ)
