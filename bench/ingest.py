"""Benchmark: how fast squad turns inbox drops into git commits, against plain git plumbing.

It measures, in one run on one machine:

(a) baseline: N commits made with git plumbing through subprocess (`hash-object -w`,
    `update-index --cacheinfo` on a private index, `write-tree`, `commit-tree`, `update-ref`),
    each adding one ~1 KB markdown file under decisions/ and rewriting decisions/README.md;
(b) squad: N valid drops put in the inbox (not timed), then one timed
    `Coordinator(Workspace.open(repo)).ingest()` pass that commits them all, checked afterwards
    with `git rev-list --count` and `squad.verify.verify` (not timed);
(c) latency under `squad watch`: W writer threads each drop M drops at a steady pace; a
    monitor thread polls `inbox/new/` every millisecond and takes the moment a drop's file
    disappears as its commit time. The coordinator removes a drop only after the branch has
    moved and the working tree is written, so this is an upper bound on drop-to-commit time
    (and every drop is checked to be committed, none quarantined).

How to read the ratio: squad/baseline throughput is decisions/s divided by plumbing commits/s.
Near 1.0 means squad's validation, rendering and bookkeeping cost about what spawning git does
per commit; above 1.0 means squad beats a process-per-step shell loop (it writes objects
in-process); well below 1.0 means squad spends more per decision than the plumbing floor.

Run: .venv/bin/python bench/ingest.py [--drops 1000] [--writers 8] [--per-writer 25]
"""

from __future__ import annotations

import argparse
import cProfile
import math
import os
import pstats
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from isolation import isolate_env  # bench/isolation.py
from rich.console import Console
from rich.table import Table

from squad.coordinator import Coordinator
from squad.dropbox import Inbox
from squad.verify import verify
from squad.workspace import Workspace

SQUAD_TOML = {"squad.toml": "[coordinator]\nsettle_seconds = 0\n"}
FILLER = ("We weigh the options against what the team already runs, what it costs to operate "
          "and how easily a newcomer can follow it. ")




def git(repo: Path, *args: str, env: dict[str, str] | None = None) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True,
                          text=True, env=env).stdout


def init_repo(path: Path, files: dict[str, str]) -> Path:
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    for name, text in {"app.py": "print('hello')\n", **files}.items():
        (path / name).write_text(text)
    git(path, "add", ".")
    git(path, "commit", "-q", "-m", "initial")
    return path


def drop_text(i: int, writer: int = 0) -> str:
    """A valid drop of about 1 KB."""
    return (f"---\ntitle: 'Decision {writer}-{i}: use option {i % 7}'\nagent: bench-{writer}\n"
            f"tags: [bench]\n---\n\n## Context\n\n{FILLER * 5}\n\n## Decision\n\n"
            f"We use option {i % 7} for part {i}. {FILLER * 2}\n\n## Consequences\n\n"
            f"Revisit after {i} more decisions.\n")


def run_baseline(root: Path, n: int) -> float:
    repo = init_repo(root / "baseline", {})
    (repo / "decisions").mkdir()
    env = {**os.environ, "GIT_INDEX_FILE": str(root / "baseline.index")}
    git(repo, "read-tree", "HEAD", env=env)
    parent = git(repo, "rev-parse", "HEAD").strip()
    rows = ["# Decision log\n", "| id | title |", "|---:|---|"]
    start = time.perf_counter()
    for i in range(1, n + 1):
        name = f"decisions/{i:04d}-decision-{i}.md"
        (repo / name).write_text(drop_text(i))
        rows.append(f"| [{i:04d}]({name[10:]}) | Decision {i} |")
        (repo / "decisions/README.md").write_text("\n".join(rows) + "\n")
        blob, index = git(repo, "hash-object", "-w", name, "decisions/README.md").split()
        git(repo, "update-index", "--add", "--cacheinfo", f"100644,{blob},{name}",
            "--cacheinfo", f"100644,{index},decisions/README.md", env=env)
        tree = git(repo, "write-tree", env=env).strip()
        commit = git(repo, "commit-tree", tree, "-p", parent, "-m", f"Decision {i}").strip()
        git(repo, "update-ref", "refs/heads/main", commit, parent)
        parent = commit
    elapsed = time.perf_counter() - start
    assert int(git(repo, "rev-list", "--count", "HEAD")) == n + 1
    return elapsed


def run_squad(root: Path, n: int, profile: bool) -> float:
    repo = init_repo(root / "squad", SQUAD_TOML)
    setup = Workspace.open(repo)
    inbox = Inbox(setup.inbox.path)
    for i in range(1, n + 1):
        inbox.drop(drop_text(i))
    profiler = cProfile.Profile() if profile else None
    start = time.perf_counter()
    if profiler:
        profiler.enable()
    ws = Workspace.open(repo)
    report = Coordinator(ws).ingest()
    if profiler:
        profiler.disable()
    elapsed = time.perf_counter() - start
    if profiler:
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative").print_stats(30)
    commits = int(git(repo, "rev-list", "--count", "HEAD")) - 1
    faults = verify(Workspace.open(repo))
    if len(report.committed) != n or commits != n or report.quarantined or faults:
        sys.exit(f"squad: committed {len(report.committed)}, {commits} commits, "
                 f"quarantined {report.quarantined[:3]}, faults {[str(f) for f in faults[:3]]}")
    ws.repo.close()
    setup.repo.close()
    return elapsed


def run_watch(root: Path, writers: int, per_writer: int, interval: float) -> list[float]:
    """Seconds from each drop's rename into new/ until its file is gone (committed)."""
    repo = init_repo(root / "watch", SQUAD_TOML)
    inbox = Inbox(repo / "decisions" / "inbox")
    inbox.create()
    log = root / "watch.log"
    with log.open("w") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "squad", "watch"], cwd=repo,
                                stdout=subprocess.DEVNULL, stderr=stderr)
    pending: dict[str, float] = {}
    latencies: dict[str, float] = {}
    lock = threading.Lock()
    finished = threading.Event()

    def monitor() -> None:
        while not finished.is_set():
            present = set(os.listdir(inbox.new))
            now = time.monotonic()
            with lock:
                for name in [name for name in pending if name not in present]:
                    latencies[name] = now - pending.pop(name)
            time.sleep(0.001)

    def writer(k: int) -> None:
        start = begin + k * interval / writers  # writers staggered across one interval
        for j in range(per_writer):
            time.sleep(max(0.0, start + j * interval - time.monotonic()))
            name = inbox.drop(drop_text(j, writer=k))
            stamp = time.monotonic()  # the rename into new/ is the last step of drop()
            with lock:
                pending[name] = stamp

    try:
        deadline = time.monotonic() + 30
        while "watching" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        warm = inbox.drop(drop_text(0, writer=99))  # wait for the first pass to finish
        while (inbox.new / warm).exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        threading.Thread(target=monitor, daemon=True).start()
        begin = time.monotonic()
        threads = [threading.Thread(target=writer, args=(k,)) for k in range(writers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        deadline = time.monotonic() + 120
        while pending and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        finished.set()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
    expected = writers * per_writer
    commits = int(git(repo, "rev-list", "--count", "HEAD")) - 2  # initial and warm-up
    quarantined = (repo / "decisions" / "quarantine").exists()
    if len(latencies) != expected or commits != expected or quarantined or code != 0:
        sys.exit(f"watch: {len(latencies)} seen, {commits} commits, quarantine={quarantined}, "
                 f"exit {code}:\n{log.read_text()[-2000:]}")
    return list(latencies.values())


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drops", type=int, default=1000, help="N for (a) and (b)")
    parser.add_argument("--writers", type=int, default=8, help="concurrent writers for (c)")
    parser.add_argument("--per-writer", type=int, default=25, help="drops per writer for (c)")
    parser.add_argument("--interval", type=float, default=0.5,
                        help="seconds between one writer's drops in (c)")
    parser.add_argument("--profile", action="store_true",
                        help="cProfile the squad ingest pass (b) and print it to stderr")
    args = parser.parse_args()
    console = Console(stderr=True)
    with tempfile.TemporaryDirectory(prefix="squad-bench-") as tmp:
        root = Path(tmp)
        isolate_env(root / "home")
        n = args.drops
        console.print(f"(a) baseline: {n} plumbing commits ...")
        base = run_baseline(root, n)
        console.print(f"(b) squad: one ingest pass over {n} drops ...")
        squad = run_squad(root, n, args.profile)
        console.print(f"(c) watch: {args.writers} writers x {args.per_writer} drops ...")
        lat = run_watch(root, args.writers, args.per_writer, args.interval)
        version = git(root, "version").split()[-1]
    rate = args.writers / args.interval
    table = Table(title=f"squad ingest benchmark (git {version})")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("N (drops / commits)", str(n))
    table.add_row("baseline plumbing seconds", f"{base:.2f}")
    table.add_row("baseline commits/s", f"{n / base:.1f}")
    table.add_row("squad ingest seconds", f"{squad:.2f}")
    table.add_row("squad decisions/s", f"{n / squad:.1f}")
    table.add_row("throughput ratio squad/baseline", f"{base / squad:.2f}")
    table.add_row(f"watch latency samples ({rate:g} drops/s offered)", str(len(lat)))
    table.add_row("watch latency p50 ms", f"{percentile(lat, 50) * 1000:.1f}")
    table.add_row("watch latency p99 ms", f"{percentile(lat, 99) * 1000:.1f}")
    Console().print(table)


if __name__ == "__main__":
    main()
