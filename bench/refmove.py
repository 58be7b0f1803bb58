"""Benchmark: what one commit point's branch move costs, squad's kept `git update-ref --stdin`
against a `git update-ref` process per move (what squad did before; plain git plumbing).

Both move the same branch of one repository (on tmpfs, so no disk flush hides the process
cost) from commit to commit, compare-and-swap each time, --moves times, interleaved in
rounds of 10. The baseline also writes its commits with squad's writer, so the two differ
only in how the ref moves. Wall is the median per move; CPU is user+sys of this process and
its git children over all moves (the kept git's share counted once it exits).

Run: .venv/bin/python bench/refmove.py [--moves 200]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from isolation import isolate_env  # bench/isolation.py
from rich.console import Console
from rich.table import Table

from squad.vcs import open_repo


def _cpu() -> float:
    me, kids = (resource.getrusage(resource.RUSAGE_SELF),
                resource.getrusage(resource.RUSAGE_CHILDREN))
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--moves", type=int, default=200, help="branch moves per way")
    args = parser.parse_args()
    walls: dict[str, list[float]] = {"git update-ref per move": [], "squad, kept process": []}
    cpu = dict.fromkeys(walls, 0.0)
    with tempfile.TemporaryDirectory(prefix="squad-bench-") as tmp, \
            tempfile.TemporaryDirectory(prefix="squad-bench-", dir="/dev/shm") as shm:
        isolate_env(Path(tmp) / "home")
        subprocess.run(["git", "init", "-q", shm], check=True)
        subprocess.run(["git", "-C", shm, "commit", "-q", "--allow-empty", "-m", "start"],
                       check=True)
        repo = open_repo(Path(shm))
        branch, head, when = repo.branch(), repo.head(), datetime.now(UTC)
        for start in range(0, args.moves, 10):
            for way in walls:
                began = _cpu()
                for n in range(start, min(start + 10, args.moves)):
                    sha = repo.make_commit_on(head, {f"{way[:3]}{n}": b"%d" % n}, f"{n}", when)
                    repo._sync_objects()  # both ways: the objects durable first
                    tick = time.perf_counter()
                    if way.startswith("git"):
                        subprocess.run(["git", "update-ref", "-m", "bench", branch, sha,
                                        head or ""], cwd=shm, check=True)
                    else:
                        repo.move_branch(sha, head, f"{n}")
                    walls[way].append(time.perf_counter() - tick)
                    head = sha
                cpu[way] += _cpu() - began
        began = _cpu()
        repo.close()  # the kept git exits: its CPU time is counted now
        cpu["squad, kept process"] += _cpu() - began
    base = statistics.median(walls["git update-ref per move"])
    table = Table(title=f"one commit point's branch move, {args.moves} moves each")
    for name in ("", "wall ms/move (median)", "ratio", "CPU ms/move"):
        table.add_column(name, justify="right")
    for way, times in walls.items():
        wall = statistics.median(times)
        table.add_row(way, f"{wall * 1000:.2f}", f"{wall / base:.2f}",
                      f"{cpu[way] / args.moves * 1000:.2f}")
    Console(width=100).print(table)


if __name__ == "__main__":
    sys.exit(main())
