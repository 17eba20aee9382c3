"""Rule 9 (viewers over time) against a brute-force count over the raw segments."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.viewers import MAX_POINTS, bucket_ms, live_series, recording_days, viewers_answer

MINUTE = 60_000
HOUR = 60 * MINUTE
# 2024-03-31 00:00 UTC: Europe's clocks go forward an hour later, so local days of 23 h are drawn.
BASE = int(datetime(2024, 3, 30, tzinfo=UTC).timestamp() * 1000)
ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Pacific/Chatham"]


def segments(max_offset: int, max_length: int) -> st.SearchStrategy[dict[str, list[tuple[int, int]]]]:
    """Raw segments of up to 5 users, overlapping tabs and exact boundaries included."""
    segment = st.tuples(st.integers(-2 * HOUR, max_offset), st.integers(1, max_length)).map(
        lambda s: (BASE + s[0], BASE + s[0] + s[1])
    )
    return st.dictionaries(st.sampled_from("abcde"), st.lists(segment, min_size=1, max_size=6), max_size=5)


def brute_live(start: int, live: dict[str, list[tuple[int, int]]]) -> tuple[int, int, list[int], int, int]:
    spans = [s for segs in live.values() for s in segs]
    earliest, latest_end = min(a for a, _ in spans), max(e for _, e in spans)
    size = MINUTE
    while True:
        first = math.floor((earliest - start) / size)
        last = math.ceil((latest_end - start) / size) - 1
        if last - first + 1 <= MAX_POINTS:
            break
        size += MINUTE
    counts = []
    for k in range(first - 1, last + 2):
        t0, t1 = start + k * size, start + (k + 1) * size
        counts.append(sum(any(max(a, t0) < min(e, t1) for a, e in segs) for segs in live.values()))
    # The buckets just outside the range are empty, the ones at its ends are not.
    assert counts[0] == counts[-1] == 0 and counts[1] > 0 and counts[-2] > 0
    instants = sorted({a for a, _ in spans})
    covering = [sum(any(a <= x < e for a, e in segs) for segs in live.values()) for x in instants]
    peak = max(covering)
    return size, start + first * size, counts[1:-1], peak, instants[covering.index(peak)]


def brute_days(recording: dict[str, list[tuple[int, int]]], zone_name: str) -> list[tuple[date, int]]:
    zone = ZoneInfo(zone_name)

    def midnight(day: date) -> int:
        return int(datetime(day.year, day.month, day.day, tzinfo=zone).timestamp() * 1000)

    spans = [s for segs in recording.values() for s in segs]
    if not spans:
        return []
    day = datetime.fromtimestamp(min(a for a, _ in spans) / 1000, zone).date() - timedelta(days=1)
    end_day = datetime.fromtimestamp(max(e for _, e in spans) / 1000, zone).date() + timedelta(days=1)
    days = []
    while day <= end_day:
        d0, d1 = midnight(day), midnight(day + timedelta(days=1))
        days.append((day, sum(any(max(a, d0) < min(e, d1) for a, e in segs) for segs in recording.values())))
        day += timedelta(days=1)
    while days and days[0][1] == 0:
        days.pop(0)
    while days and days[-1][1] == 0:
        days.pop()
    return days


@settings(max_examples=150, deadline=None)
@given(live=segments(6 * HOUR, 3 * HOUR), start_offset=st.integers(-HOUR, 2 * HOUR))
def test_live_series_matches_a_count_over_raw_segments(
    live: dict[str, list[tuple[int, int]]], start_offset: int
) -> None:
    start = BASE + start_offset
    series = live_series(start, live)
    if not live:
        assert series.viewers == [] and series.peak_concurrent == 0 and series.peak_at is None
        return
    size, first_t, counts, peak, peak_at = brute_live(start, live)
    assert (series.bucket_ms, series.first_t, series.viewers) == (size, first_t, counts)
    assert (series.peak_concurrent, series.peak_at) == (peak, peak_at)


@settings(max_examples=40, deadline=None)
@given(live=segments(5 * 24 * HOUR, 24 * HOUR), start_offset=st.integers(-HOUR, 2 * HOUR))
def test_long_series_take_the_smallest_bucket_that_keeps_1440_points(
    live: dict[str, list[tuple[int, int]]], start_offset: int
) -> None:
    start = BASE + start_offset
    series = live_series(start, live)
    if live:
        size, first_t, counts, peak, _ = brute_live(start, live)
        assert (series.bucket_ms, series.first_t, series.viewers, series.peak_concurrent) == (
            size,
            first_t,
            counts,
            peak,
        )
        assert len(series.viewers) <= MAX_POINTS


@settings(max_examples=150, deadline=None)
@given(recording=segments(4 * 24 * HOUR, 24 * HOUR), zone=st.sampled_from(ZONES))
def test_recording_days_match_a_count_per_local_date(
    recording: dict[str, list[tuple[int, int]]], zone: str
) -> None:
    assert recording_days(recording, zone) == brute_days(recording, zone)


def test_overlapping_tabs_count_once_and_a_user_counts_in_each_bucket_watched() -> None:
    start = BASE
    live = {
        "u1": [(start, start + 90_000), (start + 30_000, start + 100_000)],  # two tabs
        "u2": [(start + 60_000, start + 120_000)],  # ends exactly on a boundary
    }
    series = live_series(start, live)
    assert series.viewers == [1, 2]
    assert (series.peak_concurrent, series.peak_at) == (2, start + 60_000)


def test_half_open_segments_meeting_at_an_instant_do_not_overlap() -> None:
    live = {"u1": [(BASE, BASE + MINUTE)], "u2": [(BASE + MINUTE, BASE + 2 * MINUTE)]}
    series = live_series(BASE, live)
    assert series.viewers == [1, 1]
    assert (series.peak_concurrent, series.peak_at) == (1, BASE)


def test_watching_before_the_start_time_lands_in_buckets_with_negative_k() -> None:
    start = BASE + 10 * MINUTE
    live = {"u1": [(start - 90_000, start + 30_000)]}
    answer = viewers_answer("s1", start, live, {}, "UTC")
    assert answer["bucketSeconds"] == 60
    assert answer["live"]["points"] == [
        {"t": "2024-03-30T00:08:00Z", "viewers": 1},
        {"t": "2024-03-30T00:09:00Z", "viewers": 1},
        {"t": "2024-03-30T00:10:00Z", "viewers": 1},
    ]
    assert answer["live"]["peakAt"] == "2024-03-30T00:08:30Z"
    assert answer["recording"] == {"days": []}


def test_a_session_without_live_watching_has_an_empty_series() -> None:
    answer = viewers_answer("s1", BASE, {}, {"u1": [(BASE, BASE + MINUTE)]}, "Asia/Kolkata")
    assert answer["live"] == {"points": [], "peakConcurrent": 0, "peakAt": None}
    assert answer["recording"]["days"] == [{"date": "2024-03-30", "viewers": 1}]


def test_recording_days_follow_the_event_zone_and_keep_empty_days() -> None:
    # 23:30 UTC on 30 March is already 31 March in Berlin; 2 April has no one.
    late = BASE + 23 * HOUR + 30 * MINUTE
    recording = {"u1": [(late, late + MINUTE)], "u2": [(late + 3 * 24 * HOUR, late + 3 * 24 * HOUR + MINUTE)]}
    answer = viewers_answer("s1", BASE, {}, recording, "Europe/Berlin")
    assert answer["recording"]["days"] == [
        {"date": "2024-03-31", "viewers": 1},
        {"date": "2024-04-01", "viewers": 0},
        {"date": "2024-04-02", "viewers": 0},
        {"date": "2024-04-03", "viewers": 1},
    ]


def test_a_day_long_span_doubles_the_bucket_to_stay_under_1440_points() -> None:
    live = {"u1": [(BASE, BASE + 24 * HOUR + MINUTE)]}
    assert bucket_ms(BASE, BASE, BASE + 24 * HOUR) == MINUTE
    series = live_series(BASE, live)
    assert series.bucket_ms == 2 * MINUTE and len(series.viewers) == 721
