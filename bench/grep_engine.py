"""grep's engine: RE2 as the grep tool uses it against Python's `re` line by line (what
grep did before), both measured here.

Prints a table: for ordinary patterns over a synthetic source tree, seconds per engine and the
ratio RE2/re, both stopping after 200 matches as the tool does (RE2 searches the whole text
once per matching line, as the tool does); then for a backtracking pattern, how `re`'s
time grows with the line length while RE2's stays flat.
Run: `.venv/bin/python bench/grep_engine.py [--mb 8]`.
"""

from __future__ import annotations

import argparse
import re
import time

from squad.tools import compile_pattern, matching_lines

PATTERNS = [r"def \w+", r"TODO|FIXME", r"import (os|sys)", r"\bsession[s]?\b", r"^\s*class ",
            r"handle_session\(request\): 31680\b", r"no_such_name", r"\d{7}$"]
LIMIT = 201  # the tool stops after 200 matches; both engines stop there too


def corpus(megabytes: int) -> list[str]:
    block = ["import os", "def handle_session(request):", "    # TODO: rate limit",
             "    sessions = {}", "class Store:", "    return value  # FIXME"] * 10
    lines: list[str] = []
    while sum(len(line) + 1 for line in lines) < megabytes * 2**20:
        lines += [f"{line} {len(lines)}" for line in block]
    return lines


def timed(search, lines: list[str]) -> tuple[float, int]:
    start = time.perf_counter()
    hits = 0
    for line in lines:
        if search(line):
            hits += 1
            if hits == LIMIT:
                break
    return time.perf_counter() - start, hits


def timed_re2(pattern: str, lines: list[str]) -> tuple[float, int]:
    text = "\n".join(lines)
    start = time.perf_counter()
    hits = 0
    for _ in matching_lines(compile_pattern(pattern), text):
        hits += 1
        if hits == LIMIT:
            break
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
        ours, hits2 = timed_re2(pattern, lines)
        assert hits == hits2, (pattern, hits, hits2)
        print(f"{pattern:24} {base:8.3f} {ours:8.3f} {ours / base:7.2f} {hits}")
    print(f"\n{'(a+)+$ on a line of n a':24} {'re s':>8} {'RE2 s':>8} {'RE2/re':>7}")
    for n in (16, 18, 20, 22, 24):
        line = ["a" * n + "!"]
        base, _ = timed(re.compile(r"(a+)+$").search, line)
        ours, _ = timed_re2(r"(a+)+$", line)
        print(f"{'n = ' + str(n):24} {base:8.4f} {ours:8.5f} {ours / base:7.4f}")


if __name__ == "__main__":
    main()
