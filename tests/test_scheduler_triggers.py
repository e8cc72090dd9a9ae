"""Trigger maths from tables, `now` always passed in; DST in Europe/Berlin; quiet hours."""

import json
from datetime import datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from loaxa.errors import ConfigError, QuietHoursError
from scheduler import (QuietHours, check_quiet_hours, in_quiet_hours, next_occurrence, occurrences,
                       parse_quiet_hours, parse_schedule, quiet_hours_conflicts)

HCM = ZoneInfo("Asia/Ho_Chi_Minh")
BERLIN = ZoneInfo("Europe/Berlin")
UTC = timezone.utc


def schedule(items, valid_from="2026-11-30", valid_until="2026-12-06", tz="Asia/Ho_Chi_Minh",
             schedule_id="dak-lak/2026-w48", version=3):
    doc = {"type": "schedule", "id": schedule_id, "version": version, "targets": ["group:dak-lak"],
           "issued_at": "2026-11-26T08:00:00+07:00", "valid_from": valid_from, "valid_until": valid_until,
           "timezone": tz, "items": items}
    return parse_schedule(json.dumps(doc))


def item(item_id="sang", at="06:00", **extra):
    return {"id": item_id, "play": ["chime"], "at": at, **extra}


def iso(occs):
    return [o.at.isoformat() for o in occs]


# ---- occurrences: (items, validity, tz, window start, window end, expected play times) ----

OCCURRENCE_TABLE = [
    pytest.param([item(days=["mon", "tue", "wed", "thu", "fri"])], ("2026-11-30", "2026-12-06"), "Asia/Ho_Chi_Minh",
                 datetime(2026, 11, 29, tzinfo=HCM), datetime(2026, 12, 8, tzinfo=HCM),
                 ["2026-11-30T06:00:00+07:00", "2026-12-01T06:00:00+07:00", "2026-12-02T06:00:00+07:00",
                  "2026-12-03T06:00:00+07:00", "2026-12-04T06:00:00+07:00"], id="weekdays-only"),
    pytest.param([item(**{"except": ["2026-12-01", "2026-12-03"]})], ("2026-11-30", "2026-12-03"), "Asia/Ho_Chi_Minh",
                 datetime(2026, 11, 1, tzinfo=HCM), datetime(2027, 1, 1, tzinfo=HCM),
                 ["2026-11-30T06:00:00+07:00", "2026-12-02T06:00:00+07:00"], id="except-dates-and-validity"),
    pytest.param([item()], ("2026-11-30", "2026-12-06"), "Asia/Ho_Chi_Minh",
                 datetime(2026, 12, 1, 6, 0, tzinfo=HCM), datetime(2026, 12, 2, 6, 0, tzinfo=HCM),
                 ["2026-12-01T06:00:00+07:00"], id="start-inclusive-end-exclusive"),
    pytest.param([item()], ("2026-11-30", "2026-12-06"), "Asia/Ho_Chi_Minh",
                 datetime(2026, 11, 30, 23, 0, tzinfo=UTC), datetime(2026, 12, 1, 0, 0, tzinfo=UTC),
                 ["2026-12-01T06:00:00+07:00"], id="window-in-utc-across-local-midnight"),
    pytest.param([item(at="06:00:30")], ("2026-11-30", "2026-11-30"), "Asia/Ho_Chi_Minh",
                 datetime(2026, 11, 30, tzinfo=HCM), datetime(2026, 12, 1, tzinfo=HCM),
                 ["2026-11-30T06:00:30+07:00"], id="seconds"),
    pytest.param([item(at="2026-12-01T17:30:00+07:00")], ("2026-11-30", "2026-12-06"), "Asia/Ho_Chi_Minh",
                 datetime(2026, 11, 1, tzinfo=HCM), datetime(2027, 1, 1, tzinfo=HCM),
                 ["2026-12-01T17:30:00+07:00"], id="one-off"),
    pytest.param([item(at="2026-12-01T10:30:00Z")], ("2026-11-30", "2026-12-06"), "Asia/Ho_Chi_Minh",
                 datetime(2026, 11, 1, tzinfo=HCM), datetime(2027, 1, 1, tzinfo=HCM),
                 ["2026-12-01T17:30:00+07:00"], id="one-off-given-in-utc-shown-in-doc-tz"),
    pytest.param([item(at="2026-12-07T08:00:00+07:00")], ("2026-11-30", "2026-12-06"), "Asia/Ho_Chi_Minh",
                 datetime(2026, 11, 1, tzinfo=HCM), datetime(2027, 1, 1, tzinfo=HCM),
                 [], id="one-off-outside-validity-never-plays"),
    pytest.param([item(at="2026-12-06T23:30:00+00:00")], ("2026-11-30", "2026-12-06"), "Asia/Ho_Chi_Minh",
                 datetime(2026, 11, 1, tzinfo=HCM), datetime(2027, 1, 1, tzinfo=HCM),
                 [], id="one-off-whose-doc-tz-date-is-past-validity"),
    pytest.param([item(at="2026-12-01T17:30:00+07:00")], ("2026-11-30", "2026-12-06"), "Asia/Ho_Chi_Minh",
                 datetime(2026, 12, 1, 17, 30, 1, tzinfo=HCM), datetime(2027, 1, 1, tzinfo=HCM),
                 [], id="one-off-already-past"),
    # Europe/Berlin: clocks spring forward 2026-03-29 02:00 -> 03:00, fall back 2026-10-25 03:00 -> 02:00
    pytest.param([item(at="02:30")], ("2026-03-28", "2026-03-30"), "Europe/Berlin",
                 datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC),
                 ["2026-03-28T02:30:00+01:00", "2026-03-29T03:30:00+02:00", "2026-03-30T02:30:00+02:00"],
                 id="berlin-spring-gap-plays-an-hour-later"),
    pytest.param([item(at="02:30")], ("2026-10-24", "2026-10-26"), "Europe/Berlin",
                 datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC),
                 ["2026-10-24T02:30:00+02:00", "2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"],
                 id="berlin-autumn-fold-plays-once-at-the-first"),
    pytest.param([item(at="12:00")], ("2026-03-28", "2026-03-29"), "Europe/Berlin",
                 datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC),
                 ["2026-03-28T12:00:00+01:00", "2026-03-29T12:00:00+02:00"], id="berlin-wall-time-kept"),
]


@pytest.mark.parametrize("items, validity, tz, start, end, expected", OCCURRENCE_TABLE)
def test_occurrences(items, validity, tz, start, end, expected):
    assert iso(occurrences(schedule(items, *validity, tz=tz), start, end)) == expected


def test_berlin_gap_and_fold_in_utc():
    gap = schedule([item(at="02:30")], "2026-03-29", "2026-03-29", tz="Europe/Berlin")
    fold = schedule([item(at="02:30")], "2026-10-25", "2026-10-25", tz="Europe/Berlin")
    window = (datetime(2026, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))
    assert [o.at.astimezone(UTC).hour for o in occurrences(gap, *window)] == [1]  # 03:30 CEST
    assert [o.at.astimezone(UTC).hour for o in occurrences(fold, *window)] == [0]  # the first 02:30


def test_occurrences_are_sorted_and_carry_the_item():
    sched = schedule([item("toi", at="19:00"), item("sang", at="06:00", priority="priority")])
    occs = occurrences(sched, datetime(2026, 11, 30, tzinfo=HCM), datetime(2026, 12, 1, tzinfo=HCM))
    assert [(o.item.id, o.at.hour) for o in occs] == [("sang", 6), ("toi", 19)]
    assert occs[0].item.priority == "priority"
    assert (occs[0].schedule_id, occs[0].version, occs[0].item_id) == ("dak-lak/2026-w48", 3, "sang")


def test_occurrence_key_is_stable():
    sched = schedule([item()])
    window = (datetime(2026, 11, 30, tzinfo=HCM), datetime(2026, 12, 1, tzinfo=HCM))
    first, again = occurrences(sched, *window)[0], occurrences(sched, *window)[0]
    assert first.key == again.key == "dak-lak/2026-w48|sang|2026-11-30T06:00:00+07:00"
    assert first == again and hash(first) == hash(again)


def test_naive_datetimes_are_a_programming_error():
    with pytest.raises(ValueError, match="no timezone"):
        occurrences(schedule([item()]), datetime(2026, 11, 30), datetime(2026, 12, 1))


def test_a_long_window_over_far_validity_stays_bounded():
    sched = schedule([item()], "2026-01-01", "9999-12-31")
    occs = occurrences(sched, datetime(2026, 1, 1, tzinfo=HCM), datetime(2027, 1, 1, tzinfo=HCM))
    assert len(occs) == 365


# ---- next_occurrence ----

NEXT_TABLE = [
    pytest.param(datetime(2026, 11, 30, 5, 59, tzinfo=HCM), "2026-11-30T06:00:00+07:00", id="same-day"),
    pytest.param(datetime(2026, 11, 30, 6, 0, tzinfo=HCM), "2026-12-02T06:00:00+07:00", id="strictly-after-skips-except"),
    pytest.param(datetime(2026, 1, 1, tzinfo=UTC), "2026-11-30T06:00:00+07:00", id="before-validity"),
    pytest.param(datetime(2026, 12, 6, 6, 0, tzinfo=HCM), None, id="after-the-last"),
]


@pytest.mark.parametrize("after, expected", NEXT_TABLE)
def test_next_occurrence(after, expected):
    sched = schedule([item(**{"except": ["2026-12-01"]})])
    found = next_occurrence([sched], after)
    assert (found.at.isoformat() if found else None) == expected


def test_next_occurrence_across_schedules():
    early = schedule([item("toi", at="19:00")], schedule_id="a")
    one_off = schedule([item("bao", at="2026-12-01T17:30:00+07:00")], schedule_id="b")
    found = next_occurrence([early, one_off], datetime(2026, 12, 1, 12, 0, tzinfo=HCM))
    assert (found.schedule_id, found.item.id, found.at.hour) == ("b", "bao", 17)
    assert next_occurrence([], datetime(2026, 12, 1, tzinfo=HCM)) is None


def test_next_occurrence_at_the_end_of_the_calendar_does_not_crash():
    sched = schedule([item()], "9999-12-01", "9999-12-31", tz="Pacific/Kiritimati")
    assert next_occurrence([sched], datetime(9999, 12, 31, 12, tzinfo=UTC)) is None


# ---- quiet hours ----

@pytest.mark.parametrize("spec, expected", [
    ("22:00-05:00", QuietHours(time(22), time(5))),
    ("13:00-14:30", QuietHours(time(13), time(14, 30))),
    ("", None), ("  ", None), (None, None),
])
def test_parse_quiet_hours(spec, expected):
    assert parse_quiet_hours(spec) == expected


@pytest.mark.parametrize("spec", ["22-05", "22:00-24:00", "25:00-05:00", "22:00 - 05:00", "22:00-22:00",
                                  "22:00", 5])
def test_parse_quiet_hours_refusals(spec):
    with pytest.raises(ConfigError, match="unit.quiet_hours"):
        parse_quiet_hours(spec)


@pytest.mark.parametrize("spec, local, quiet", [
    ("22:00-05:00", time(21, 59), False), ("22:00-05:00", time(22, 0), True),
    ("22:00-05:00", time(23, 59, 59), True), ("22:00-05:00", time(0, 0), True),
    ("22:00-05:00", time(4, 59), True), ("22:00-05:00", time(5, 0), False),
    ("22:00-05:00", time(12, 0), False),
    ("13:00-14:00", time(12, 59), False), ("13:00-14:00", time(13, 0), True),
    ("13:00-14:00", time(14, 0), False),
    ("22:00-05:00", datetime(2026, 12, 1, 23, 0, tzinfo=HCM), True),
    ("", time(23, 0), False),
])
def test_in_quiet_hours(spec, local, quiet):
    assert in_quiet_hours(local, spec) is quiet


QUIET_TABLE = [
    # (items, doc tz, validity, unit tz, refused?)
    pytest.param([item(at="06:00")], "Asia/Ho_Chi_Minh", ("2026-11-30", "2026-12-06"), HCM, None, id="morning-ok"),
    pytest.param([item(at="22:30")], "Asia/Ho_Chi_Minh", ("2026-11-30", "2026-12-06"), HCM,
                 "items[0].at: 22:30 (sang) is inside the quiet hours 22:00-05:00", id="night-refused"),
    pytest.param([item(at="04:59:59")], "Asia/Ho_Chi_Minh", ("2026-11-30", "2026-12-06"), HCM,
                 "items[0].at: 04:59:59", id="just-before-the-end"),
    pytest.param([item(at="05:00")], "Asia/Ho_Chi_Minh", ("2026-11-30", "2026-12-06"), HCM, None, id="end-is-not-quiet"),
    pytest.param([item(at="23:00", priority="emergency")], "Asia/Ho_Chi_Minh", ("2026-11-30", "2026-12-06"), HCM,
                 None, id="emergency-may-sound"),
    pytest.param([item(at="23:00", priority="priority")], "Asia/Ho_Chi_Minh", ("2026-11-30", "2026-12-06"), HCM,
                 "items[0].at", id="priority-may-not"),
    pytest.param([item(at="2026-12-01T16:30:00Z")], "Asia/Ho_Chi_Minh", ("2026-11-30", "2026-12-06"), HCM,
                 "is 23:30 in Asia/Ho_Chi_Minh", id="one-off-in-utc"),
    pytest.param([item(at="16:00")], "UTC", ("2026-11-30", "2026-12-06"), HCM,
                 "items[0].at: 16:00 in UTC on 2026-11-30 is 23:00 in Asia/Ho_Chi_Minh", id="doc-utc-unit-hcm"),
    pytest.param([item(at="10:00")], "UTC", ("2026-11-30", "2026-12-06"), HCM, None, id="doc-utc-daytime"),
    # 17:00 Berlin is 23:00 in Hanoi in winter (UTC+1) but 22:00 in summer (UTC+2)
    pytest.param([item(at="17:00")], "Europe/Berlin", ("2026-01-05", "2026-01-11"), HCM,
                 "is 23:00 in Asia/Ho_Chi_Minh", id="berlin-winter-refused"),
    pytest.param([item(at="17:00")], "Europe/Berlin", ("2026-06-01", "2026-06-07"), HCM, None, id="berlin-summer-ok"),
    pytest.param([item(at="17:00", days=["sun"])], "Europe/Berlin", ("2026-03-23", "2026-03-28"), HCM, None,
                 id="berlin-no-sunday-in-winter-part"),
    pytest.param([item(at="17:00", days=["sun"])], "Europe/Berlin", ("2026-03-23", "2026-03-29"), HCM, None,
                 id="berlin-sunday-after-switch"),
    pytest.param([item(at="17:00", days=["sat"])], "Europe/Berlin", ("2026-03-23", "2026-03-29"), HCM,
                 "on 2026-03-28 is 23:00", id="berlin-saturday-before-switch"),
]


@pytest.mark.parametrize("items, tz, validity, unit_tz, refused", QUIET_TABLE)
def test_check_quiet_hours(items, tz, validity, unit_tz, refused):
    sched = schedule(items, *validity, tz=tz)
    spec = "22:30-05:00" if tz == "Europe/Berlin" else "22:00-05:00"
    if refused is None:
        check_quiet_hours(sched, spec, unit_tz)
        return
    with pytest.raises(QuietHoursError) as info:
        check_quiet_hours(sched, spec, unit_tz)
    assert refused in str(info.value)
    assert "only emergency items may sound then" in str(info.value)


def test_no_quiet_hours_allows_everything():
    sched = schedule([item(at="23:00")])
    check_quiet_hours(sched, "", HCM)
    check_quiet_hours(sched, None, "Asia/Ho_Chi_Minh")
    assert quiet_hours_conflicts(sched, "") == []


def test_conflicts_list_every_item():
    sched = schedule([item("a", at="23:00"), item("b", at="12:00"), item("c", at="2026-12-01T01:00:00+07:00")])
    conflicts = quiet_hours_conflicts(sched, "22:00-05:00", "Asia/Ho_Chi_Minh")
    assert [c.split(":")[0] for c in conflicts] == ["items[0].at", "items[2].at"]


def test_quiet_check_of_far_validity_in_another_zone_is_quick():
    sched = schedule([item(f"i{h}", at=f"{h:02d}:00") for h in range(6, 17)], "2026-01-01", "9999-12-31", tz="Europe/Berlin")
    started = datetime.now()
    check_quiet_hours(sched, "23:30-04:00", HCM)
    assert datetime.now() - started < timedelta(seconds=5)
