"""DESIGN §4 as pure functions: worked examples, and properties checked with hypothesis."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.rules import (
    LIVE,
    RECORDING,
    UserWatch,
    analytics_available,
    engagement_percent,
    has_provider_duration,
    merge_intervals,
    mode_engagement,
    session_numbers,
    union_length,
    user_watch,
    view_threshold,
)
from tests import oracle

S = 1000  # user_watch takes epoch milliseconds
# Timing is not under test, and a busy test machine must not fail a property.
NO_DEADLINE = settings(deadline=None)


def watch(user_id: str, *segments: tuple[str, float, float]) -> UserWatch:
    """A user's watch from (mode, start s, end s), seconds turned into milliseconds."""
    return user_watch(user_id, [(mode, round(a * S), round(b * S)) for mode, a, b in segments])


# --- interval unions (rule 1) ---------------------------------------------------------------


def test_union_of_nothing_is_zero() -> None:
    assert union_length([]) == 0


def test_union_of_one_interval_is_its_length() -> None:
    assert union_length([(10.0, 25.5)]) == 15.5


def test_two_tabs_open_at_once_count_once() -> None:
    assert union_length([(0, 60), (0, 60)]) == 60


def test_overlapping_intervals_count_the_overlap_once() -> None:
    assert union_length([(0, 40), (30, 90)]) == 90


def test_nested_interval_adds_nothing() -> None:
    assert union_length([(0, 100), (20, 30)]) == 100


def test_touching_intervals_add_up() -> None:
    assert union_length([(0, 30), (30, 45)]) == 45


def test_disjoint_intervals_add_up_in_any_order() -> None:
    assert union_length([(100, 110), (0, 5), (50, 70)]) == 35


def test_empty_and_reversed_intervals_add_nothing() -> None:
    assert union_length([(5, 5), (9, 3), (0, 2)]) == 2


def test_watch_per_mode_and_attended_over_both_modes() -> None:
    w = watch("u", (LIVE, 0, 40), (LIVE, 20, 60), (RECORDING, 50, 80), (RECORDING, 200, 210))
    assert (w.live, w.recording, w.attended) == (60, 40, 90)


def test_watching_live_and_recording_at_once_is_attended_once() -> None:
    w = watch("u", (LIVE, 0, 100), (RECORDING, 0, 100))
    assert (w.live, w.recording, w.attended) == (100, 100, 100)


def test_watch_of_milliseconds_since_1970_is_exact() -> None:
    # 2024-05-01T09:00:00.001Z for 12.345 s: float seconds since 1970 would come out short.
    start = 1_714_554_000_001
    w = user_watch("u", [(LIVE, start, start + 12_345)])
    assert w.live == 12.345
    assert session_numbers([w], {}, 12.345, "YOUTUBE").live_views == 1


# --- threshold, engagement, providers, formats (rules 3, 6, 7, 8) ----------------------------


@pytest.mark.parametrize(
    ("duration", "threshold"),
    [
        (None, 30),
        (0, 30),
        (-5, 30),
        (0.5, 0.5),
        (12, 12),
        (29.999, 29.999),
        (30, 30),
        (30.001, 30),
        (3600, 30),
    ],
)
def test_view_threshold_is_30_s_or_a_shorter_known_duration(duration: float | None, threshold: float) -> None:
    assert view_threshold(duration) == threshold


@pytest.mark.parametrize(
    ("watched", "duration", "percent"),
    [(30, 60, 50.0), (60, 60, 100.0), (600, 60, 100.0), (0, 60, 0.0), (5, None, None), (5, 0, None)],
)
def test_engagement_is_capped_share_of_duration_and_null_without_one(
    watched: float, duration: float | None, percent: float | None
) -> None:
    assert engagement_percent(watched, duration) == percent


def test_mode_engagement_averages_viewers_only() -> None:
    # 10 s is under the 30 s threshold: not a viewer, so not in the mean.
    assert mode_engagement([10, 30, 120, 240], 30, 120) == pytest.approx((25 + 100 + 100) / 3)


def test_mode_engagement_is_zero_without_viewers_and_null_without_duration() -> None:
    assert mode_engagement([10, 20], 30, 600) == 0.0
    assert mode_engagement([], 30, 600) == 0.0
    assert mode_engagement([100], 30, None) is None


@pytest.mark.parametrize("provider", ["ZOOM", "FACEBOOK", "WISTIA"])
def test_providers_without_analytics(provider: str | None) -> None:
    assert analytics_available(provider) is False


@pytest.mark.parametrize("provider", ["YOUTUBE", "VIMEO", "VOXEET", "TOKBOX", None])
def test_providers_with_analytics(provider: str | None) -> None:
    assert analytics_available(provider) is True


@pytest.mark.parametrize("provider", ["YOUTUBE", "VIMEO", "VOXEET", "TOKBOX", "WISTIA"])
@pytest.mark.parametrize("session_format", ["MAINSTAGE_SESSION", "BREAKOUT_SESSION"])
def test_video_providers_give_a_duration(provider: str | None, session_format: str) -> None:
    assert has_provider_duration(provider, session_format) is True


@pytest.mark.parametrize("provider", ["ZOOM", "FACEBOOK", None])
def test_zoom_facebook_and_no_stream_have_no_duration(provider: str | None) -> None:
    assert has_provider_duration(provider, "MAINSTAGE_SESSION") is False


@pytest.mark.parametrize("session_format", ["WORKSHOP_SESSION", "NETWORKING_SESSION"])
@pytest.mark.parametrize("provider", ["YOUTUBE", "WISTIA", None])
def test_formats_without_video_have_no_duration(provider: str | None, session_format: str) -> None:
    assert has_provider_duration(provider, session_format) is False


# --- one session's numbers (rules 2 to 7) -------------------------------------------------------


def _three_viewers() -> list[UserWatch]:
    return [
        watch("ann", (LIVE, 0, 20), (LIVE, 10, 40)),  # live 40 s
        watch("bob", (LIVE, 0, 29.999), (RECORDING, 100, 700)),  # live just short of 30 s
        watch("cat", (RECORDING, 0, 12)),  # recording exactly 12 s
    ]


def test_numbers_of_a_session_over_30_s() -> None:
    numbers = session_numbers(_three_viewers(), {"ann": "t1", "dan": "t2"}, 600, "YOUTUBE")
    assert numbers.registered_user_count == 2
    assert numbers.attendee_count == 3
    assert (numbers.live_views, numbers.recording_views) == (1, 1)
    assert numbers.watch_total == pytest.approx(40 + 629.999 + 12)
    assert numbers.watch_live == pytest.approx(69.999)
    assert numbers.watch_recording == pytest.approx(612)
    assert numbers.avg_attended_duration == pytest.approx((40 + 629.999 + 12) / 3)
    assert numbers.avg_live_watch == pytest.approx(69.999 / 2)
    assert numbers.avg_recording_watch == pytest.approx(612 / 2)
    assert numbers.engagement_live == pytest.approx(40 / 600 * 100)
    assert numbers.engagement_recording == pytest.approx(100.0)  # 600 of 600 s; cat is no viewer


def test_numbers_of_a_session_under_30_s_use_its_duration_as_threshold() -> None:
    numbers = session_numbers(_three_viewers(), {}, 12, "VIMEO")
    assert (numbers.live_views, numbers.recording_views) == (2, 2)
    assert numbers.engagement_live == 100.0
    assert numbers.engagement_recording == 100.0


def test_numbers_of_a_session_of_unknown_duration_use_30_s_and_no_engagement() -> None:
    numbers = session_numbers(_three_viewers(), {}, None, "VOXEET")
    assert (numbers.live_views, numbers.recording_views) == (1, 1)
    assert numbers.engagement_live is None
    assert numbers.engagement_recording is None


def test_nobody_attended_gives_zero_averages_and_views() -> None:
    numbers = session_numbers([], {"ann": "t1"}, 600, "TOKBOX")
    assert numbers.registered_user_count == 1
    assert numbers.attendee_count == 0
    assert numbers.avg_attended_duration == 0.0
    assert (numbers.live_views, numbers.recording_views) == (0, 0)
    assert (numbers.avg_live_watch, numbers.avg_recording_watch) == (0.0, 0.0)
    assert (numbers.engagement_live, numbers.engagement_recording) == (0.0, 0.0)


@pytest.mark.parametrize("provider", ["ZOOM", "FACEBOOK", "WISTIA"])
def test_providers_without_analytics_give_counts_but_no_views_or_averages(provider: str | None) -> None:
    numbers = session_numbers(_three_viewers(), {"ann": "t1", "dan": "t2"}, 600, provider)
    assert numbers.registered_user_count == 2
    assert numbers.attendee_count == 3
    assert numbers.avg_attended_duration is None
    assert (numbers.live_views, numbers.recording_views) == (None, None)
    assert (numbers.avg_live_watch, numbers.avg_recording_watch) == (None, None)
    assert (numbers.engagement_live, numbers.engagement_recording) == (None, None)
    assert all(row["engagement"] is None for row in numbers.attendee_rows)


def test_attendee_rows_cover_registered_and_attending_users_by_user_id() -> None:
    numbers = session_numbers(_three_viewers(), {"dan": "t2", "ann": "t1"}, 80, "YOUTUBE")
    assert [row["userId"] for row in numbers.attendee_rows] == ["ann", "bob", "cat", "dan"]
    ann, bob, _, dan = numbers.attendee_rows
    assert ann == {
        "userId": "ann",
        "attended": True,
        "attendedSeconds": 40,
        "liveSeconds": 40,
        "recordingSeconds": 0,
        "engagement": 50.0,
        "completion": 50.0,
        "registeredAt": "t1",
    }
    assert bob["engagement"] == 100.0 and bob["registeredAt"] is None
    assert dan == {
        "userId": "dan",
        "attended": False,
        "attendedSeconds": 0,
        "liveSeconds": 0,
        "recordingSeconds": 0,
        "engagement": 0.0,
        "completion": 0.0,
        "registeredAt": "t2",
    }


# --- properties --------------------------------------------------------------------------

intervals_st = st.lists(
    st.tuples(st.integers(0, 60), st.integers(1, 30)).map(lambda p: (p[0], p[0] + p[1])),
    max_size=12,
)
float_intervals_st = st.lists(
    st.tuples(st.floats(0, 1e6, allow_nan=False), st.floats(1e-3, 1e5, allow_nan=False)).map(
        lambda p: (p[0], p[0] + p[1])
    ),
    min_size=1,
    max_size=12,
)


@NO_DEADLINE
@given(float_intervals_st)
def test_union_is_at_most_the_sum_and_at_least_the_longest(intervals: list[tuple[int, int]]) -> None:
    total = union_length(intervals)
    lengths = [b - a for a, b in intervals]
    assert total <= sum(lengths) * (1 + 1e-9)
    assert total >= max(lengths) * (1 - 1e-9)


@NO_DEADLINE
@given(intervals_st, st.randoms(use_true_random=False))
def test_union_ignores_order_and_duplicates(intervals: list[tuple[int, int]], rng: random.Random) -> None:
    shuffled = intervals + intervals[: len(intervals) // 2]
    rng.shuffle(shuffled)
    assert union_length(shuffled) == union_length(intervals)


@NO_DEADLINE
@given(intervals_st, st.data())
def test_union_is_unchanged_by_splitting_an_interval_into_touching_pieces(
    intervals: list[tuple[int, int]], data: st.DataObject
) -> None:
    if not intervals:
        return
    i = data.draw(st.integers(0, len(intervals) - 1))
    start, end = intervals[i]
    cut = data.draw(st.integers(start, end))
    pieces = [*intervals[:i], (start, cut), (cut, end), *intervals[i + 1 :]]
    assert union_length(pieces) == union_length(intervals)


@NO_DEADLINE
@given(intervals_st)
def test_union_equals_the_covered_cells_of_an_integer_grid(intervals: list[tuple[int, int]]) -> None:
    covered = {cell for a, b in intervals for cell in range(a, b)}
    assert union_length(intervals) == len(covered)


@NO_DEADLINE
@given(intervals_st, intervals_st)
def test_adding_intervals_never_shrinks_the_union(
    intervals: list[tuple[int, int]], more: list[tuple[int, int]]
) -> None:
    assert union_length(intervals + more) >= union_length(intervals)


@NO_DEADLINE
@given(intervals_st)
def test_merged_intervals_are_sorted_disjoint_and_as_long_as_the_union(
    intervals: list[tuple[int, int]],
) -> None:
    merged = merge_intervals(intervals)
    assert all(a < b for a, b in merged)
    assert all(left[1] < right[0] for left, right in itertools.pairwise(merged))
    assert sum(b - a for a, b in merged) == union_length(intervals)


@NO_DEADLINE
@given(intervals_st, intervals_st)
def test_merging_new_intervals_into_a_merged_union_equals_merging_all_at_once(
    stored: list[tuple[float, float]], new: list[tuple[float, float]]
) -> None:
    # What lets a rollup fold new segments into stored unions, and repeat a fold after a crash.
    folded = merge_intervals(merge_intervals(stored) + new)
    assert folded == merge_intervals(stored + new)
    assert merge_intervals(folded + new) == folded


def test_merging_joins_touching_and_drops_empty_intervals() -> None:
    assert merge_intervals([(30, 45), (5, 5), (0, 30), (50, 60), (9, 3)]) == [(0, 45), (50, 60)]


segments_st = st.lists(
    st.tuples(st.sampled_from([LIVE, RECORDING]), st.integers(0, 10**6), st.integers(1, 10**5)).map(
        lambda t: (t[0], t[1], t[1] + t[2])
    ),
    min_size=1,
    max_size=10,
)


@NO_DEADLINE
@given(segments_st)
def test_attended_lies_between_the_longer_mode_and_both_modes_together(
    segments: list[tuple[str, int, int]],
) -> None:
    w = user_watch("u", segments)
    live, recording, attended = (round(t * S) for t in (w.live, w.recording, w.attended))
    assert max(live, recording) <= attended <= live + recording


@NO_DEADLINE
@given(st.one_of(st.none(), st.floats(-1e6, 1e9, allow_nan=False)))
def test_view_threshold_is_min_of_30_and_a_positive_duration(duration: float | None) -> None:
    expected = min(30.0, duration) if duration is not None and duration > 0 else 30.0
    assert view_threshold(duration) == expected
    assert 0 < view_threshold(duration) <= 30


@NO_DEADLINE
@given(st.floats(0, 1e7, allow_nan=False), st.one_of(st.none(), st.floats(1e-3, 1e7)))
def test_engagement_lies_between_0_and_100(watched: float, duration: float | None) -> None:
    percent = engagement_percent(watched, duration)
    assert (percent is None) == (duration is None)
    assert percent is None or 0 <= percent <= 100


@NO_DEADLINE
@given(st.lists(st.floats(0, 1e6, allow_nan=False), max_size=20), st.floats(1e-3, 1e6))
def test_mode_engagement_lies_between_0_and_100(watched: list[float], duration: float) -> None:
    percent = mode_engagement(watched, view_threshold(duration), duration)
    assert percent is not None and 0 <= percent <= 100


PROVIDER_ST = st.sampled_from(["YOUTUBE", "VIMEO", "VOXEET", "TOKBOX", "WISTIA", "ZOOM", "FACEBOOK", None])
DURATION_ST = st.one_of(
    st.none(),
    st.just(0.0),
    st.sampled_from([0.5, 12.0, 12.345, 29.999, 30.0, 30.001, 600.0]),
    st.integers(1, 4000).map(lambda ms: ms / 100),
)
BASE_MS = oracle.to_ms("2024-05-01T09:00:00Z")


@st.composite
def session_st(draw: st.DrawFn) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """Segments (as ingested) of a few users, some around the threshold, and registrations."""
    users = [f"u{n}" for n in range(draw(st.integers(0, 6)))]
    segments: list[dict[str, str]] = []
    for user in users:
        for _ in range(draw(st.integers(0, 4))):
            start = draw(st.integers(0, 120_000))
            length = draw(
                st.one_of(st.integers(1, 90_000), st.sampled_from([12_000, 12_345, 29_999, 30_000]))
            )
            segments.append(
                {
                    "segmentId": f"g{len(segments)}",
                    "sessionId": "s",
                    "userId": user,
                    "mode": draw(st.sampled_from([LIVE, RECORDING])),
                    "start": oracle.iso(BASE_MS + start),
                    "end": oracle.iso(BASE_MS + start + length),
                }
            )
    registered = draw(st.lists(st.sampled_from([*users, "r1", "r2"]), unique=True)) if users else []
    registrations = [
        {"sessionId": "s", "userId": u, "registeredAt": oracle.iso(BASE_MS - 3600_000)} for u in registered
    ]
    return segments, registrations


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(session_st(), DURATION_ST, PROVIDER_ST)
def test_session_numbers_agree_with_the_plain_reading_of_the_design(
    session: tuple[list[dict[str, str]], list[dict[str, str]]], duration: float | None, provider: str | None
) -> None:
    segments, registrations = session
    by_user: dict[str, list[tuple[str, int, int]]] = {}
    for s in segments:
        by_user.setdefault(s["userId"], []).append(
            (s["mode"], oracle.to_ms(s["start"]), oracle.to_ms(s["end"]))
        )
    watches = [user_watch(user, segs) for user, segs in by_user.items()]
    registered = {r["userId"]: r["registeredAt"] for r in registrations}

    # Rule 8 (which sessions have a duration at all) is the rollup's to apply, not this rule's.
    duration = oracle.effective_duration(duration, provider, "BREAKOUT_SESSION")
    numbers = session_numbers(watches, registered, duration, provider)
    expected = oracle.expected_session(
        segments, registrations, duration, provider, session_format="BREAKOUT_SESSION"
    )

    assert numbers.registered_user_count == expected["registeredUserCount"]
    assert numbers.attendee_count == expected["attendeeCount"]
    assert numbers.live_views == expected["liveViews"]
    assert numbers.recording_views == expected["recordingViews"]
    assert numbers.avg_attended_duration == pytest.approx(expected["avgAttendedDuration"])
    assert numbers.watch_total == pytest.approx(expected["watchTime"]["total"])
    assert numbers.watch_live == pytest.approx(expected["watchTime"]["live"])
    assert numbers.watch_recording == pytest.approx(expected["watchTime"]["recording"])
    assert numbers.avg_live_watch == pytest.approx(expected["avgLiveWatchDuration"])
    assert numbers.avg_recording_watch == pytest.approx(expected["avgRecordingWatchDuration"])
    assert numbers.engagement_live == pytest.approx(expected["liveEngagement"])
    assert numbers.engagement_recording == pytest.approx(expected["recordingEngagement"])
    rows = oracle.expected_attendees(
        segments, registrations, duration, provider, session_format="BREAKOUT_SESSION"
    )
    journey = ("firstJoinedAt", "lastLeftAt", "joins")  # rule 11's journey comes with the rows' unions
    assert numbers.attendee_rows == [
        pytest.approx({k: v for k, v in row.items() if k not in journey}) for row in rows
    ]


@NO_DEADLINE
@given(st.lists(segments_st, max_size=8), DURATION_ST, PROVIDER_ST)
def test_session_numbers_stay_within_their_bounds(
    users_segments: list[list[tuple[str, int, int]]], duration: float | None, provider: str | None
) -> None:
    watches = [user_watch(f"u{i}", segs) for i, segs in enumerate(users_segments)]
    numbers = session_numbers(watches, {}, duration, provider)
    assert numbers.attendee_count == len(watches)
    assert max(numbers.watch_live, numbers.watch_recording) <= numbers.watch_total * (1 + 1e-12)
    assert numbers.watch_total <= (numbers.watch_live + numbers.watch_recording) * (1 + 1e-12)
    if not analytics_available(provider):
        assert numbers.live_views is None and numbers.avg_attended_duration is None
        return
    assert numbers.live_views is not None and numbers.recording_views is not None
    assert 0 <= numbers.live_views <= numbers.attendee_count
    assert 0 <= numbers.recording_views <= numbers.attendee_count
    assert numbers.avg_attended_duration == pytest.approx(
        numbers.watch_total / numbers.attendee_count if watches else 0.0
    )
    for percent in (numbers.engagement_live, numbers.engagement_recording):
        assert (percent is None) == (duration is None or duration <= 0)
        assert percent is None or 0 <= percent <= 100
