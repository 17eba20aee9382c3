"""Run every benchmark of docs/BENCHMARKS.md in turn; each prints its figures and the machine."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHMARKS = [
    "bench_list.py",
    "bench_rollup.py",
    "bench_live.py",
    "bench_durations.py",
    "bench_import.py",
    "bench_viewers.py",
    "bench_attendees.py",
    "bench_audience.py",
    "bench_overload.py",
    "bench_dashboard_live.py",
]


def main() -> int:
    failed = 0
    for script in BENCHMARKS:
        print(f"\n=== {script} ===", flush=True)
        failed += subprocess.run([sys.executable, str(HERE / script)], check=False).returncode != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
