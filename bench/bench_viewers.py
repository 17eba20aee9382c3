"""Benchmark of what viewers over time (DESIGN §4 rule 9) adds to a rollup: the CPU time of
`viewers_summary` over merged per-user unions, as the rollup calls it for every session it writes.

Two shapes: the rollup benchmark's event (1,000,000 segments over 500 sessions and 50,000 users,
so about 2,000 unions a session) and one large session (50,000 users, three unions each, spread
over a day: 1,440 buckets). No database: the rollup's reads and writes are in bench_rollup.py;
this is the extra work per session, to set beside its full recompute time.

    .venv/bin/python bench/bench_viewers.py [--sessions 500] [--segments 1000000] [--users 50000]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.machine import machine_line
from shared.rules import merge_intervals
from shared.viewers import viewers_summary

MINUTE = 60_000
START = 1_714_554_000_000  # 2024-05-01T09:00:00Z


Unions = dict[str, list[tuple[int, int]]]


def session_unions(rng: random.Random, users: int, segments: int, span_ms: int) -> tuple[Unions, Unions]:
    """Per-user merged LIVE and RECORDING unions of `segments` random segments."""
    live: Unions = {}
    recording: Unions = {}
    for _ in range(segments):
        user = f"u{rng.randrange(users)}"
        start = START + rng.randrange(-10 * MINUTE, span_ms)
        end = start + rng.randint(1_000, 40 * MINUTE)
        if rng.random() < 0.7:
            live.setdefault(user, []).append((start, end))
        else:
            day = start + rng.randrange(0, 7) * 86_400_000
            recording.setdefault(user, []).append((day, day + end - start))
    # merge_intervals keeps the integer milliseconds it is given.
    return (
        {u: [(int(a), int(b)) for a, b in merge_intervals(i)] for u, i in live.items()},
        {u: [(int(a), int(b)) for a, b in merge_intervals(i)] for u, i in recording.items()},
    )


def timed(live: Unions, recording: Unions) -> tuple[float, int]:
    began = time.perf_counter()
    summary = viewers_summary(START, live, recording, "Europe/Berlin")
    return time.perf_counter() - began, len(summary["live"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=500)
    parser.add_argument("--segments", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=50_000)
    args = parser.parse_args()
    rng = random.Random(9)
    print(machine_line())

    per_session = args.segments // args.sessions
    total = 0.0
    points = 0
    for _ in range(args.sessions):
        live, recording = session_unions(rng, min(args.users, per_session * 2), per_session, 2 * 60 * MINUTE)
        seconds, count = timed(live, recording)
        total += seconds
        points += count
    print(
        f"{args.sessions} sessions x {per_session:,} segments: viewers_summary {total:.2f} s in all, "
        f"{1000 * total / args.sessions:.2f} ms a session ({points / args.sessions:.0f} points on average)"
    )

    live, recording = session_unions(rng, args.users, 3 * args.users, 24 * 60 * MINUTE)
    seconds, count = timed(live, recording)
    unions = sum(len(i) for i in live.values()) + sum(len(i) for i in recording.values())
    print(
        f"one session, {args.users:,} users, {unions:,} unions over a day: {seconds:.2f} s ({count} points)"
    )


if __name__ == "__main__":
    main()
