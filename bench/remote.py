"""Benchmark: drops through a git remote, against plain git push and fetch of the same refs.

It measures, in one run on one machine (a bare repository on a local path as the remote):

(a) throughput end to end, for 1, 4 and 16 writer clones pushing TOTAL drops between them
    as fast as they can while `squad watch --remote` runs in a coordinator clone: from the
    writers' start until the remote's trunk holds every record (push -> fetch -> commit ->
    push). Baseline: the same writer processes make the same one-file commits with git
    plumbing and `git push` them, while one loop `git fetch`es refs/squad/drops/* and pushes
    one ref back, until it has fetched every commit: the transport floor without squad.
(b) drop-to-commit latency under `squad watch --remote --interval I`: 4 writers push drops at
    a human pace (0.2-1 s apart); a monitor reads the bare remote's trunk ref file every 5 ms
    and, when it moves, notes which drops arrived. Latency = trunk push seen - drop push done.
(c) fetch cost: W writer refs holding K taken drops each (made with `git fast-import`); the
    time of an idle coordinator pass (fetch, walk what is untaken, nothing to commit) against
    a plain no-op `git fetch --prune` of the same refspecs (median of several).

How to read the ratios: (a) squad drops/s over baseline commits/s (1.0 = squad costs no more
than the bare transport; squad adds a record commit, validation and a lease push per pass).
(c) squad idle pass over bare fetch (near 1.0 = the fetch dominates; flat across K = taken
drops cost nothing once taken).

Run: .venv/bin/python bench/remote.py [--total 160] [--interval 2] [--refs 1,16,256]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from isolation import isolate_env  # bench/isolation.py
from rich.console import Console
from rich.table import Table

SQUAD = [sys.executable, "-m", "squad"]

WRITER = """
import random, sys, time
from pathlib import Path
from squad.errors import RemoteError
from squad.remote import push_drops, record_drop
from squad.workspace import Workspace

ws = Workspace.open(Path(sys.argv[1]))
number, count, pace = int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
writer = f"w{number}"
print("ready", flush=True)
sys.stdin.readline()  # start together
for n in range(count):
    name = record_drop(ws, writer, f"---\\ntitle: w{number}-d{n}\\nagent: bench\\n---\\n\\n"
                       f"## Context\\n\\nbench\\n\\n## Decision\\n\\nDrop {n} of {number}.\\n")
    while True:
        try:
            push_drops(ws, "origin", writer)
            break
        except RemoteError:
            time.sleep(0.05)
    print(name, time.time(), flush=True)
    if pace:
        time.sleep(random.uniform(0.2 * pace, pace))
"""

BASELINE_WRITER = """
import subprocess, sys
number, count = int(sys.argv[2]), int(sys.argv[3])
def git(*args, data=None):
    return subprocess.run(["git", *args], cwd=sys.argv[1], input=data, check=True,
                          capture_output=True, text=True).stdout.strip()
ref, parent = f"refs/squad/drops/w{number}", None
print("ready", flush=True)
sys.stdin.readline()
for n in range(count):
    blob = git("hash-object", "-w", "--stdin", data=f"drop {n} of {number}\\n")
    inner = git("mktree", data=f"100644 blob {blob}\\tw{number}-d{n}.md\\n")
    tree = git("mktree", data=f"040000 tree {inner}\\tinbox\\n")
    commit = git("commit-tree", tree, "-m", f"drop {n}", *(["-p", parent] if parent else []))
    git("update-ref", ref, commit)
    git("push", "-q", "origin", f"{ref}:{ref}")
    parent = commit
"""


def git(repo: Path, *args: str, data: str | None = None) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True,
                          text=True, input=data).stdout


def setup(root: Path, writers: int) -> tuple[Path, Path, list[Path]]:
    """A bare remote with a squad-initialised main, a coordinator clone, writer clones."""
    seed = root / "seed"
    seed.mkdir(parents=True)
    git(seed, "init", "-q", "-b", "main")
    (seed / "README.md").write_text("bench\n")
    git(seed, "add", "README.md")
    git(seed, "commit", "-q", "-m", "initial")
    subprocess.run([*SQUAD, "init", "--no-agents"], cwd=seed, check=True, capture_output=True)
    bare = root / "remote.git"
    git(root, "clone", "-q", "--bare", str(seed), str(bare))
    coordinator = root / "coordinator"
    git(root, "clone", "-q", str(bare), str(coordinator))
    clones = []
    for n in range(writers):
        git(root, "clone", "-q", str(bare), str(root / f"writer{n}"))
        clones.append(root / f"writer{n}")
    return bare, coordinator, clones


def trunk_count(bare: Path) -> int:
    return int(git(bare, "rev-list", "--count", "--grep=^Squad-Drop: ", "main"))


def start(script: str, clones: list[Path], per: int, pace: float) -> list[subprocess.Popen[str]]:
    procs = [subprocess.Popen([sys.executable, "-c", script, str(where), str(n), str(per),
                               str(pace)], text=True, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for n, where in enumerate(clones)]
    for proc in procs:  # every interpreter has imported before the clock starts
        assert proc.stdout is not None
        proc.stdout.readline()
    return procs


def go(procs: list[subprocess.Popen[str]]) -> float:
    began = time.monotonic()
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.close()
    return began


def finish(procs: list[subprocess.Popen[str]]) -> list[str]:
    lines = []
    for proc in procs:
        assert proc.stdout is not None and proc.stderr is not None
        out, err = proc.stdout.read(), proc.stderr.read()
        proc.wait()
        if proc.returncode != 0:
            raise SystemExit(f"writer failed: {err}")
        lines += out.splitlines()
    return lines


def watch(coordinator: Path, interval: float) -> subprocess.Popen[str]:
    return subprocess.Popen([*SQUAD, "watch", "--remote", "origin", "--interval", str(interval)],
                            cwd=coordinator, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, text=True)


def stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def squad_throughput(root: Path, writers: int, total: int) -> float:
    bare, coordinator, clones = setup(root, writers)
    watcher = watch(coordinator, 0.1)
    try:
        procs = start(WRITER, clones, total // writers, 0)
        began = go(procs)
        while trunk_count(bare) < total:
            time.sleep(0.05)
        elapsed = time.monotonic() - began
        finish(procs)
    finally:
        stop(watcher)
    return total / elapsed


def baseline_throughput(root: Path, writers: int, total: int) -> float:
    _, coordinator, clones = setup(root, writers)
    procs = start(BASELINE_WRITER, clones, total // writers, 0)
    began = go(procs)
    seen = 0
    while seen < total:
        git(coordinator, "fetch", "-q", "--prune", "origin",
            "+refs/squad/drops/*:refs/squad/fetched/drops/*")
        tips = git(coordinator, "for-each-ref", "--format=%(objectname)",
                   "refs/squad/fetched/drops/").split()
        seen = int(git(coordinator, "rev-list", "--count", *tips, "--")) if tips else 0
        git(coordinator, "push", "-q", "origin", "HEAD:refs/heads/bench-trunk")
    elapsed = time.monotonic() - began
    finish(procs)
    return total / elapsed


def latency(root: Path, interval: float, writers: int, per: int) -> list[float]:
    bare, coordinator, clones = setup(root, writers)
    ref_file = bare / "refs" / "heads" / "main"

    def trunk() -> str:  # the loose ref file once a push wrote it: no process per poll
        try:
            return ref_file.read_text().strip()
        except FileNotFoundError:
            return git(bare, "rev-parse", "main").strip()

    arrived: dict[str, float] = {}
    done = threading.Event()

    def monitor() -> None:
        last = trunk()
        while not done.is_set():
            now = time.time()
            current = trunk()
            if current and current != last:
                names = git(bare, "log", "--format=%(trailers:key=Squad-Drop,valueonly,"
                            "separator=)", current, f"^{last}").split()
                for name in names:
                    arrived.setdefault(name, now)
                last = current
            time.sleep(0.005)

    watcher = watch(coordinator, interval)
    thread = threading.Thread(target=monitor, daemon=True)
    try:
        time.sleep(1.0)
        thread.start()
        procs = start(WRITER, clones, per, 1.0)
        go(procs)
        pushed = {name: float(at) for name, at in (line.split() for line in finish(procs))}
        deadline = time.monotonic() + 60
        while len(arrived) < len(pushed) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        done.set()
        stop(watcher)
    missing = set(pushed) - set(arrived)
    if missing:
        raise SystemExit(f"{len(missing)} drops never reached the trunk")
    return [arrived[name] - at for name, at in pushed.items()]


def fill(bare: Path, refs: int, per_ref: int) -> None:
    """W writer refs with K drop commits each, all taken, via one git fast-import."""
    lines, mark = [], 0
    for w in range(refs):
        last = None
        for k in range(per_ref):
            body = f"---\ntitle: w{w}-d{k}\nagent: bench\n---\n\n## Decision\n\nd\n"
            mark += 1
            blob = mark
            lines += ["blob", f"mark :{blob}", f"data {len(body.encode())}", body]
            mark += 1
            message = f"squad drop w{w}-d{k}.md\n"
            lines += [f"commit refs/squad/drops/w{w}", f"mark :{mark}",
                      "committer squad <squad@localhost> 1700000000 +0000",
                      f"data {len(message.encode())}", message]
            if last:
                lines.append(f"from :{last}")
            lines += ["deleteall", f"M 100644 :{blob} inbox/w{w}-d{k}.md", ""]
            last = mark
        lines += [f"reset refs/squad/taken/w{w}", f"from :{last}", ""]
    subprocess.run(["git", "fast-import", "--quiet"], cwd=bare, check=True,
                   input="\n".join(lines) + "\n", text=True)


def fetch_cost(root: Path, refs: int, per_ref: int, repeat: int) -> tuple[float, float]:
    from squad.coordinator import Coordinator
    from squad.remote import RemoteCoordinator
    from squad.workspace import Workspace

    bare, coordinator, _ = setup(root, 0)
    fill(bare, refs, per_ref)
    ws = Workspace.open(coordinator)
    remote = RemoteCoordinator(Coordinator(ws), "origin")
    remote.run_pass()  # the first fetch brings everything; the rest are idle passes
    squad_times, git_times = [], []
    specs = ["+refs/heads/main:refs/squad/fetched/trunk",
             "+refs/squad/drops/*:refs/squad/fetched/drops/*",
             "+refs/squad/taken/*:refs/squad/taken/*"]
    for _ in range(repeat):
        began = time.perf_counter()
        report = remote.run_pass()
        squad_times.append(time.perf_counter() - began)
        assert not report.committed and report.fetched == 0
        began = time.perf_counter()
        git(coordinator, "fetch", "-q", "--prune", "--no-tags", "origin", *specs)
        git_times.append(time.perf_counter() - began)
    ws.repo.close()
    return statistics.median(squad_times), statistics.median(git_times)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--total", type=int, default=160, help="drops per throughput run")
    parser.add_argument("--interval", type=float, default=2.0, help="watch poll interval (b)")
    parser.add_argument("--per-writer", type=int, default=10, help="drops per writer in (b)")
    parser.add_argument("--refs", default="1,16,256", help="writer ref counts for (c)")
    parser.add_argument("--taken", default="1,100", help="taken drops per ref for (c)")
    parser.add_argument("--repeat", type=int, default=5, help="idle passes timed in (c)")
    args = parser.parse_args()
    console = Console()
    with tempfile.TemporaryDirectory(prefix="squad-bench-remote-") as tmp:
        root = Path(tmp)
        isolate_env(root / "home")

        table = Table("writers", "drops", "squad drops/s", "baseline commits/s", "ratio",
                      title="(a) end to end: push -> fetch -> commit -> push")
        for writers in (1, 4, 16):
            total = args.total // writers * writers
            ours = squad_throughput(root / f"a{writers}", writers, total)
            base = baseline_throughput(root / f"b{writers}", writers, total)
            table.add_row(str(writers), str(total), f"{ours:.1f}", f"{base:.1f}",
                          f"{ours / base:.2f}")
        console.print(table)

        waits = latency(root / "latency", args.interval, 4, args.per_writer)
        table = Table("interval s", "drops", "p50 s", "p99 s", "max s",
                      title="(b) drop-to-commit latency under watch --remote, 4 writers")
        table.add_row(f"{args.interval:g}", str(len(waits)), f"{percentile(waits, 0.5):.2f}",
                      f"{percentile(waits, 0.99):.2f}", f"{max(waits):.2f}")
        console.print(table)

        table = Table("writer refs", "taken drops/ref", "squad idle pass ms",
                      "git fetch ms", "ratio", title="(c) fetch cost (median)")
        for refs in (int(x) for x in args.refs.split(",")):
            for taken in (int(x) for x in args.taken.split(",")):
                ours, base = fetch_cost(root / f"c{refs}-{taken}", refs, taken, args.repeat)
                table.add_row(str(refs), str(taken), f"{ours * 1000:.0f}",
                              f"{base * 1000:.0f}", f"{ours / base:.2f}")
        console.print(table)


if __name__ == "__main__":
    main()
