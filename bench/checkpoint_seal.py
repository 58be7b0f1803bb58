"""Benchmark: putting the verified point on file at the end of a session that committed
(`Coordinator._seal`), at 100, 10,000 and 100,000 records, in-process.

How the points are made: for each size N a point of N records in folders of 1,000 (each
record's path and a blob id, each folder's index page and the summary page, and per record
the sha256 of a parsed-log cache entry) is written whole into a temporary git dir with
`checkpoint.write`, as a full check leaves it. No git repository is needed: the point is one
file.

What is timed: one session that committed 20 records, sealed by `checkpoint.extend` as the
coordinator does it (a delta of the 20 records' paths and checks, their folder's page
and the summary),
against the baseline measured in the same run at each size: writing the whole point with
`checkpoint.write`, which is what every committing session paid before. The whole point is
put back (untimed) before each run. `read ms` is reading the point back after the append
(what the next session's load pays, as before); the read must give the whole point, and the
append must have added one line, or the bench stops. `line KB` is what one seal appends,
`seals/relay` how many fit before a seal writes the point whole again (the lines may not
outweigh the base), and `amortized ms` the seal plus its share of that whole write. Median
of --repeat runs, wall milliseconds; each figure also as a ratio to its 100-record value.

Run: .venv/bin/python bench/checkpoint_seal.py [--sizes 100,10000,100000] [--repeat 7]
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from squad import checkpoint
from squad.checkpoint import Point

COMMITTED = 20  # records per sealed session


def _hex(text: str, size: int = 40) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:size]


def _point(n: int, tree: str) -> Point:
    """A point of records 1..n in folders of 1,000, with their pages and checks."""
    files: dict[str, str] = {}
    checks: dict[str, str] = {}
    for rid in range(1, n + 1):
        blob = _hex(f"record {rid}")
        files[f"{rid // 1000:03d}/{rid:04d}-decision-{rid}.md"] = blob
        checks[blob] = _hex(f"entry {rid}", 64)
    for folder in range(n // 1000 + 1):  # a page changes with the records in its folder
        held = min(n, folder * 1000 + 999) - max(1, folder * 1000) + 1
        files[f"{folder:03d}/README.md"] = _hex(f"page {folder} {held}")
    files["README.md"] = _hex(f"summary {n}")
    return Point(tree, files, checks)


def _median_ms(runs: list[float]) -> float:
    return statistics.median(runs) * 1000


def measure(n: int, repeat: int, tmp: Path) -> dict[str, float]:
    repo: Any = SimpleNamespace(git_dir=tmp / f"git-{n}")
    (tmp / f"git-{n}").mkdir()
    path = checkpoint.path_of(repo)
    base = _point(n, "a" * 40)
    after = _point(n + COMMITTED, "b" * 40)
    changed = [p for p in after.files if base.files.get(p) != after.files[p]]
    delta = Point(after.tree, {p: after.files[p] for p in changed},
                  {b: after.checks[b] for b in after.checks if b not in base.checks})
    seal, whole, read = [], [], []
    for _ in range(repeat):
        checkpoint.write(repo, base)
        size = path.stat().st_size
        t = time.perf_counter()
        checkpoint.extend(repo, base.tree, delta, lambda: after)
        seal.append(time.perf_counter() - t)
        line = path.stat().st_size - size
        t = time.perf_counter()
        found = checkpoint.read(repo, after.tree)
        read.append(time.perf_counter() - t)
        if found != after or not path.read_bytes()[size:].count(b"\n") == 1:
            raise SystemExit(f"the seal at {n} did not append the point it was given")
        t = time.perf_counter()
        checkpoint.write(repo, after)
        whole.append(time.perf_counter() - t)
    return {"seal": _median_ms(seal), "whole": _median_ms(whole), "read": _median_ms(read),
            "mb": size / 1e6, "line": line,
            "between": max(1, max(size, 1 << 16) // max(1, line))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,10000,100000")
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="squad-bench-") as tmp:
        rows = {n: measure(n, args.repeat, Path(tmp)) for n in sizes}
    first = rows[sizes[0]]
    print(f"{'records':>8} {'point MB':>9} {'seal ms':>8} {'x100':>6} "
          f"{'whole write ms':>15} {'x100':>7} {'seal/whole':>11} {'line KB':>8} "
          f"{'seals/relay':>12} {'amortized ms':>13} {'read ms':>8}")
    for n, row in rows.items():
        amortized = row["seal"] + row["whole"] / row["between"]
        print(f"{n:>8} {row['mb']:>9.2f} {row['seal']:>8.2f} "
              f"{row['seal'] / first['seal']:>6.2f} {row['whole']:>15.2f} "
              f"{row['whole'] / first['whole']:>7.1f} {row['seal'] / row['whole']:>11.3f} "
              f"{row['line'] / 1e3:>8.1f} {row['between']:>12} {amortized:>13.2f} "
              f"{row['read']:>8.1f}")


if __name__ == "__main__":
    main()
