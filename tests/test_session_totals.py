"""A session's numbers and viewers kept as sums (shared/session_totals.py) equal rules 2–9 computed
from every user at once (shared/rules.py, shared/viewers.py), however the users' unions grew."""

from __future__ import annotations

import random
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.audience import Person, RowView, moved, person_of
from shared.rules import UserWatch, merge_intervals, session_numbers, union_length
from shared.session_totals import Totals, ViewersState, contribution, numbers_of
from shared.viewers import recording_days, viewers_summary

START = 1_714_554_000_000  # 2024-05-01T09:00Z
intervals = st.lists(
    st.tuples(st.integers(-3_600_000, 30 * 3_600_000), st.integers(1, 2 * 3_600_000)).map(
        lambda p: (START + p[0], START + p[0] + p[1])
    ),
    max_size=4,
)
user = st.tuples(st.booleans(), intervals, intervals)  # registered, live, recording


def _ms(union: list[tuple[float, float]]) -> int:
    return int(sum(e - s for s, e in union))


@settings(max_examples=150, deadline=None)
@given(
    users=st.lists(user, min_size=1, max_size=12),
    duration=st.sampled_from([None, 0.0, 12.345, 30.0, 600.0, 1800.5]),
    provider=st.sampled_from(["YOUTUBE", "ZOOM", "WISTIA", None]),
    seed=st.integers(0, 1000),
)
def test_sums_moved_user_by_user_give_the_numbers_of_all_users_at_once(
    users: list[tuple[bool, list[tuple[int, int]], list[tuple[int, int]]]],
    duration: float | None,
    provider: str | None,
    seed: int,
) -> None:
    rng = random.Random(seed)
    watches, registered, totals = [], {}, Totals()
    for n, (is_registered, live, recording) in enumerate(users):
        live_u, rec_u = merge_intervals(live), merge_intervals(recording)
        attended = int(union_length([*live_u, *rec_u]))
        # The user arrives in two steps: an earlier, smaller part moved out again later.
        part = merge_intervals(live[: rng.randint(0, len(live))])
        earlier = contribution(False, _ms(part), 0, _ms(part), duration)
        totals.add(earlier)
        totals.add(earlier, -1)
        totals.add(contribution(is_registered, _ms(live_u), _ms(rec_u), attended, duration))
        if attended:
            watches.append(UserWatch(f"u{n}", _ms(live_u) / 1000, _ms(rec_u) / 1000, attended / 1000))
        if is_registered:
            registered[f"u{n}"] = "t"
    want = session_numbers(watches, registered, duration, provider)
    got = numbers_of(totals, duration, provider)
    for name in (
        "registered_user_count",
        "attendee_count",
        "avg_attended_duration",
        "live_views",
        "recording_views",
        "watch_total",
        "watch_live",
        "watch_recording",
        "avg_live_watch",
        "avg_recording_watch",
        "engagement_live",
        "engagement_recording",
    ):
        assert getattr(got, name) == pytest.approx(getattr(want, name)), name


def _ints(union: list[tuple[float, float]]) -> list[tuple[int, int]]:
    return [(int(s), int(e)) for s, e in union]


@settings(max_examples=150, deadline=None)
@given(users=st.lists(st.tuples(intervals, intervals, intervals), min_size=1, max_size=10))
def test_viewers_counts_moved_as_unions_grow_give_the_series_of_all_unions(
    users: list[tuple[list[tuple[int, int]], list[tuple[int, int]], list[tuple[int, int]]]],
) -> None:
    """Each user arrives, then watches more; a span needing a larger bucket recounts everyone
    from an empty state, as a rollup then sums every row again."""
    zone = ZoneInfo("America/New_York")
    state = ViewersState()
    live: dict[str, list[tuple[int, int]]] = {}
    recording: dict[str, list[tuple[int, int]]] = {}
    for n, (first, more, watched) in enumerate(users):
        steps = [
            (_ints(merge_intervals(first)), []),
            (_ints(merge_intervals([*first, *more])), _ints(merge_intervals(watched))),
        ]
        for new_live, new_recording in steps:
            key = f"u{n}"
            old = (live.get(key, []), recording.get(key, []))
            live[key], recording[key] = new_live, new_recording
            if state.widened(START, [new_live]):
                state.move(START, zone, old, (new_live, new_recording))
                continue
            state = ViewersState()
            assert state.widened(START, live.values())
            for k in live:
                state.move(START, zone, ([], []), (live[k], recording[k]))
    want = viewers_summary(START, live, recording, "America/New_York")
    got = state.summary(START, "America/New_York", (want["peak"], want["peakAt"]))
    assert got == want
    assert len(got["days"]) == len(recording_days(recording, "America/New_York"))


@settings(max_examples=150, deadline=None)
@given(
    steps=st.lists(
        st.tuples(
            st.sampled_from(["s1", "s2", "s3"]),
            st.booleans(),
            intervals,
            intervals,
            st.one_of(st.none(), st.floats(0, 100)),
        ),
        min_size=1,
        max_size=12,
    )
)
def test_a_person_moved_row_by_row_is_the_person_of_all_its_rows(
    steps: list[tuple[str, bool, list[tuple[int, int]], list[tuple[int, int]], float | None]],
) -> None:
    """Rows only grow between recomputes: each step adds segments (and maybe a registration) to
    one session's row; moving the person by the old and new row equals rule 13 over every row."""
    zone = ZoneInfo("Asia/Tokyo")
    rows: dict[str, RowView] = {}
    person = Person()
    for session, registers, live, recording, completion in steps:
        old = rows.get(session)
        new = RowView(
            session,
            registers or bool(old and old.registered),
            tuple(_ints(merge_intervals([*(old.live if old else ()), *live]))),
            tuple(_ints(merge_intervals([*(old.recording if old else ()), *recording]))),
            completion,
        )
        rows[session] = new
        person = moved(person, old, new, zone)
    want = person_of(rows.values(), zone)
    assert (person.rows, person.registered, person.attended_sessions) == (
        want.rows,
        want.registered,
        want.attended_sessions,
    )
    assert (person.attended_ms, person.live_ms, person.recording_ms) == (
        want.attended_ms,
        want.live_ms,
        want.recording_ms,
    )
    assert (person.first, person.last, person.live, person.days) == (
        want.first,
        want.last,
        want.live,
        want.days,
    )
    assert person.completion == pytest.approx(want.completion)
