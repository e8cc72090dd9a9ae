"""NMEA 0183 parsing on what real receivers send: several talkers, good and bad checksums,
cut lines, binary garbage, cold starts without a fix, a GPS week-number rollover."""

from datetime import date, datetime, time, timezone
from functools import reduce

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hw import nmea


def framed(body: str) -> str:
    """An NMEA line with its checksum, computed here independently of hw.nmea."""
    return f"${body}*{reduce(lambda a, c: a ^ ord(c), body, 0):02X}"


# Published examples with their published checksums: the algorithm against outside truth.
CLASSIC_GGA = "$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47"
CLASSIC_RMC = "$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W*6A"
DUBLIN_GGA = "$GPGGA,092750.000,5321.6802,N,00630.3372,W,1,8,1.03,61.7,M,55.2,M,,*76"

# One second of a u-blox M8 (NMEA 4.10, multi-GNSS) fixed near Buôn Ma Thuột.
UBLOX_EPOCH = [framed(b) for b in (
    "GNRMC,020135.00,A,1240.78210,N,10802.67564,E,0.034,,261126,,,A,V",
    "GNVTG,,T,,M,0.034,N,0.063,K,A",
    "GNGGA,020135.00,1240.78210,N,10802.67564,E,1,12,0.62,512.3,M,-2.1,M,,",
    "GNGSA,A,3,05,13,15,18,20,24,29,,,,,,1.12,0.62,0.93,1",
    "GPGSV,3,1,11,02,18,312,22,05,41,112,38,10,11,040,,13,60,024,42,1",
    "GLGSV,2,1,06,65,33,250,30,66,71,322,35,72,12,190,,81,45,045,28,1",
    "GNGLL,1240.78210,N,10802.67564,E,020135.00,A,A",
)]


def test_published_sentences_verify_and_decode():
    gga = nmea.parse(CLASSIC_GGA)
    assert isinstance(gga, nmea.GGA) and gga.talker == "GP"
    assert gga.utc_time == time(12, 35, 19)
    assert gga.lat == pytest.approx(48 + 7.038 / 60) and gga.lon == pytest.approx(11 + 31 / 60)
    assert (gga.quality, gga.satellites, gga.hdop, gga.altitude_m) == (1, 8, 0.9, 545.4)
    assert gga.has_fix

    rmc = nmea.parse(CLASSIC_RMC)
    assert isinstance(rmc, nmea.RMC) and rmc.valid
    assert rmc.utc == datetime(1994, 3, 23, 12, 35, 19, tzinfo=timezone.utc)
    assert (rmc.speed_kn, rmc.course_deg) == (22.4, 84.4)

    west = nmea.parse(DUBLIN_GGA)
    assert west.lat == pytest.approx(53.361337, abs=1e-6) and west.lon == pytest.approx(-6.50562, abs=1e-6)


def test_a_ublox_epoch_gives_position_time_and_quality():
    decoded = [nmea.parse(line) for line in UBLOX_EPOCH]
    assert all(d is not None for d in decoded)
    rmc, gga = decoded[0], decoded[2]
    assert rmc.utc == datetime(2026, 11, 26, 2, 1, 35, tzinfo=timezone.utc) and rmc.valid
    assert gga.lat == pytest.approx(12.679702, abs=1e-6)
    assert gga.lon == pytest.approx(108.044594, abs=1e-6)
    assert gga.satellites == 12 and nmea.FIX_QUALITY[gga.quality] == "gps"
    # Sentences loaxa does not decode are still recognised as valid, with their talker.
    assert isinstance(decoded[1], nmea.Sentence) and decoded[1].kind == "VTG"
    assert decoded[5].talker == "GL"


@pytest.mark.parametrize("talker", ["GP", "GN", "GL", "GA", "BD", "GB", "GQ"])
def test_any_talker(talker):
    gga = nmea.parse(framed(f"{talker}GGA,101500.00,2101.50000,N,10551.20000,E,2,07,1.1,12.0,M,,M,,"))
    rmc = nmea.parse(framed(f"{talker}RMC,101500.00,A,2101.50000,N,10551.20000,E,0.1,,010226,,,D"))
    assert gga.talker == rmc.talker == talker
    assert gga.quality == 2 and nmea.FIX_QUALITY[2] == "dgps"
    assert rmc.utc == datetime(2026, 2, 1, 10, 15, tzinfo=timezone.utc)
    assert (gga.lat, gga.lon) == (pytest.approx(21.025), pytest.approx(105.853333, abs=1e-6))


def test_sirf_nmea_2_2_rmc_without_mode_field():
    rmc = nmea.parse(framed("GPRMC,020135.000,A,1240.7821,N,10802.6756,E,0.13,309.62,261126,,"))
    assert rmc.valid and rmc.course_deg == 309.62


@pytest.mark.parametrize("line", [
    "$GPGGA,,,,,,0,00,99.99,,,,,,*48",  # u-blox cold start
    framed("GNGGA,020135.00,,,,,0,03,25.5,,,,,,"),
    framed("GNGGA,020135.00,1240.78210,N,10802.67564,E,6,00,,512.3,M,,M,,"),  # dead reckoning
])
def test_no_fix(line):
    gga = nmea.parse(line)
    assert isinstance(gga, nmea.GGA) and not gga.has_fix


@pytest.mark.parametrize("line", [
    "$GPRMC,,V,,,,,,,,,,N*53",
    framed("GNRMC,020135.00,V,,,,,,,261126,,,N,V"),
    framed("GNRMC,020135.00,A,1240.78210,N,10802.67564,E,0.0,,261126,,,N"),  # mode N overrides A
])
def test_invalid_rmc(line):
    rmc = nmea.parse(line)
    assert isinstance(rmc, nmea.RMC) and not rmc.valid


@pytest.mark.parametrize("line", [
    CLASSIC_GGA[:-2] + "48",  # wrong checksum
    CLASSIC_GGA.replace("4807.038", "4807.039"),  # one digit hit by noise
    CLASSIC_GGA[:-3],  # no checksum at all
    CLASSIC_GGA[:40],  # cut short
    "$GNGGA,020136.00,1240.78",
    "GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47",  # no $
    framed("PUBX,00,020135.00,1240.78210,N,10802.67564,E,512.3,G3,2.1,3.4,0.1,0,0.0,1.1,0.6,0.9,12,0,0"),
    framed("PMTK011,MTKGPS"),  # proprietary
    "\xb5b\x01\x07\\\x00garbage at 115200 read at 9600 \xf0\x8c",
    "",
    framed("GPGGA,123519,4807.038,X,01131.000,E,1,08,0.9,545.4,M,46.9,M,,"),  # bad hemisphere
    framed("GPGGA,253519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,"),  # hour 25
    framed("GPGGA,123519,4875.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,"),  # 75 minutes
    framed("GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,320394,003.1,W"),  # 32 March
    "$GPGGA," + "1," * 60 + "*00",  # longer than NMEA allows
])
def test_bad_lines_are_ignored(line):
    assert nmea.parse(line) is None


def test_lowercase_checksum_and_line_ends_are_accepted():
    assert nmea.parse(CLASSIC_RMC[:-2] + "6a\r\n") is not None
    assert nmea.parse(CLASSIC_GGA.encode() + b"\r\n").quality == 1


def test_a_cut_line_followed_by_a_whole_one_keeps_the_whole_one():
    # The receiver restarted mid-sentence: the tail of the old line and a new line share one.
    gga = nmea.parse("$GNGGA,020136.00,1240.7" + UBLOX_EPOCH[2])
    assert isinstance(gga, nmea.GGA) and gga.utc_time == time(2, 1, 35)


def test_leap_second_and_fractions():
    gga = nmea.parse(framed("GPGGA,235960.50,1240.78210,N,10802.67564,E,1,08,0.9,1.0,M,,M,,"))
    assert gga.utc_time == time(23, 59, 59, 999_999)
    rmc = nmea.parse(framed("GPRMC,101500.25,A,1240.78210,N,10802.67564,E,0.1,,010226,,,A"))
    assert rmc.utc.microsecond == 250_000


def test_week_rollover_dates_are_not_plausible():
    # A 2006 receiver firmware reporting 2026-11-26 as 1024 weeks earlier: 2007-04-12.
    rolled = nmea.parse(framed("GPRMC,020135.00,A,1240.78210,N,10802.67564,E,0.0,,120407,,,A"))
    assert rolled.utc.date() == date(2007, 4, 12)
    assert not nmea.plausible_utc(rolled.utc)
    assert nmea.plausible_utc(nmea.parse(UBLOX_EPOCH[0]).utc)
    assert not nmea.plausible_utc(None)


STREAM = ("\r\n".join(UBLOX_EPOCH) + "\r\n").encode()


def test_decoder_counts_what_it_drops():
    decoder = nmea.NmeaDecoder()
    noise = b"\xb5b\x01\x07\x5c\x00\x10\x20" + CLASSIC_GGA[:-2].encode() + b"00\r\n$GNGGA,0201\n"
    out = decoder.feed(noise + STREAM + b"\xff" * 500)
    assert len(out) == len(UBLOX_EPOCH)
    assert decoder.dropped == 3  # bad checksum, cut line, 500 bytes without a line end


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=len(STREAM) - 1), max_size=12))
def test_decoder_is_indifferent_to_how_bytes_arrive(cuts):
    decoder = nmea.NmeaDecoder()
    bounds = [0, *sorted(set(cuts)), len(STREAM)]
    out = []
    for start, end in zip(bounds, bounds[1:]):
        out += decoder.feed(STREAM[start:end])
    assert [type(d).__name__ for d in out] == ["RMC", "Sentence", "GGA", "Sentence", "Sentence",
                                               "Sentence", "Sentence"]
    assert decoder.dropped == 0


def test_with_checksum_frames_like_a_receiver():
    assert nmea.with_checksum(CLASSIC_GGA[1:-3]) == CLASSIC_GGA
