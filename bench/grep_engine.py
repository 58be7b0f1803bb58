"""grep's engine: RE2 (squad's) against Python's `re` (the baseline), both measured here.

Prints a table: for ordinary patterns over a synthetic source tree, seconds per engine and the
ratio RE2/re; then for a backtracking pattern, how `re`'s time grows with the line length
while RE2's stays flat. Run: `.venv/bin/python bench/grep_engine.py [--mb 8]`.
"""

from __future__ import annotations

import argparse
import re
import time

from squad.tools import compile_pattern

PATTERNS = [r"def \w+", r"TODO|FIXME", r"import (os|sys)", r"\bsession[s]?\b", r"^\s*class "]


def corpus(megabytes: int) -> list[str]:
    block = ["import os", "def handle_session(request):", "    # TODO: rate limit",
             "    sessions = {}", "class Store:", "    return value  # FIXME"] * 10
    lines: list[str] = []
    while sum(len(line) + 1 for line in lines) < megabytes * 2**20:
        lines += [f"{line} {len(lines)}" for line in block]
    return lines


def timed(search, lines: list[str]) -> tuple[float, int]:
    start = time.perf_counter()
    hits = sum(1 for line in lines if search(line))
    return time.perf_counter() - start, hits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mb", type=int, default=8)
    args = parser.parse_args()
    lines = corpus(args.mb)
    print(f"{len(lines)} lines, {args.mb} MB")
    print(f"{'pattern':24} {'re s':>8} {'RE2 s':>8} {'RE2/re':>7} hits")
    for pattern in PATTERNS:
        base, hits = timed(re.compile(pattern).search, lines)
        ours, hits2 = timed(compile_pattern(pattern).search, lines)
        assert hits == hits2, (pattern, hits, hits2)
        print(f"{pattern:24} {base:8.3f} {ours:8.3f} {ours / base:7.2f} {hits}")
    print(f"\n{'(a+)+$ on a line of n a':24} {'re s':>8} {'RE2 s':>8} {'RE2/re':>7}")
    for n in (16, 18, 20, 22, 24):
        line = ["a" * n + "!"]
        base, _ = timed(re.compile(r"(a+)+$").search, line)
        ours, _ = timed(compile_pattern(r"(a+)+$").search, line)
        print(f"{'n = ' + str(n):24} {base:8.4f} {ours:8.5f} {ours / base:7.4f}")


if __name__ == "__main__":
    main()
