"""Benchmark: how close `squad run` comes to perfect fan-out of its agents.

A temp repository gets N identical charters (`agents/a01.md` ...; tools: [record_decision]),
and `squad run GOAL --agents a01,...,aN --rounds R --concurrency N --json` runs as a real
subprocess against the scripted OpenAI server (tests/scripted_server.py). The server answers
EVERY call after a fixed latency L: an agent's first call gets a `record_decision` tool call,
its second gets Text("done"), so each agent makes T = 2 turns per round. Each measurement uses
a fresh copy of one prepared repository and is the median of --repeat runs.

Columns of the first table:
- wall: Popen to exit of `squad run` (python import, config, git, the run, the run-log commit);
- -startup: wall minus the median time of `python -m squad --help`, measured in this run;
- span: first to last JSON event on stdout (the `run` event to the `summary` event), stamped
  on arrival by this script (the events' own "t" has 1 s resolution);
- ideal = R x T x L: every agent's calls overlapped perfectly, zero overhead;
- wall/ideal and span/ideal: 1.0 is perfect; the excess is overhead (fixed, or growing with N);
- serial = N x R x T x L: what running the agents one after another would cost at least.

The second table runs with L = 0: overhead per agent is (wall(N=16) - wall(N=1)) / 15, the
extra time one more agent costs when the model is free; per commit is the median gap between
consecutive `commit` events at N=16 (the coordinator commits drops one at a time). It also
splits the fixed cost of one `squad run`: `--help` startup; importing what `run` needs
(squad.cli, squad.run, the openai backend) in a fresh interpreter that exits with os._exit;
Popen to the first event; the last event to exit (run-log commit plus interpreter teardown).
`cpu s` is user+sys of the squad process and its git children: near wall means CPU-bound.

Run: .venv/bin/python bench/fanout.py [--latency 0.2] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from isolation import isolate_env  # bench/isolation.py
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from scripted_server import RecordedRequest, ScriptedServer, Text, ToolCalls  # noqa: E402

SQUAD = [sys.executable, "-m", "squad"]
TURNS = 2
MAX_AGENTS = 16
CHARTER = ("---\nname: {name}\nrole: Bench specialist number {n}\ntools: [record_decision]\n"
           "---\n\n## How I work\nRecord one decision, then stop.\n")
SETTINGS = "[llm]\nmodel = 'scripted'\nmax_retries = 0\ntimeout = 60\n"


@dataclass
class Sample:
    wall: float
    span: float
    cpu: float  # user + sys seconds of squad and its (reaped) git children
    first: float  # Popen to the first event
    tail: float  # last event to exit
    commits: list[float] = field(default_factory=list)  # arrival times of commit events




def sh(repo: Path, *args: str) -> str:
    return subprocess.run(args, cwd=repo, check=True, capture_output=True, text=True).stdout


def prepare(path: Path) -> Path:
    """A repository after `squad init`, with MAX_AGENTS bench charters and settings committed."""
    path.mkdir()
    sh(path, "git", "init", "-q", "-b", "main")
    (path / "app.py").write_text("print('hello')\n")
    sh(path, "git", "add", ".")
    sh(path, "git", "commit", "-q", "-m", "initial")
    sh(path, *SQUAD, "init")
    (path / "squad.toml").write_text(SETTINGS)
    for n in range(1, MAX_AGENTS + 1):
        (path / "agents" / f"a{n:02d}.md").write_text(CHARTER.format(name=f"a{n:02d}", n=n))
    sh(path, "git", "add", ".")
    sh(path, "git", "commit", "-q", "-m", "bench charters and settings")
    return path


def agent_of(request: RecordedRequest) -> str:
    return request.messages[1]["content"].split("# Your charter: ", 1)[1].split(" ", 1)[0]


def responder(latency: float) -> Callable[[RecordedRequest], ToolCalls | Text]:
    def reply(request: RecordedRequest) -> ToolCalls | Text:
        if any(m["role"] == "assistant" for m in request.messages):
            return Text("done", delay=latency)
        agent = agent_of(request)
        return ToolCalls([("record_decision", {
            "title": f"{agent} picks option A", "context": f"{agent} looked at the goal.",
            "decision": f"{agent} decides A.", "consequences": "None to speak of."})],
            delay=latency)
    return reply


def run_once(template: Path, work: Path, server: ScriptedServer, n: int, rounds: int) -> Sample:
    repo = work / f"run-{time.monotonic_ns()}"
    shutil.copytree(template, repo, symlinks=True)
    agents = ",".join(f"a{i:02d}" for i in range(1, n + 1))
    args = [*SQUAD, "run", "Pick an option", "--agents", agents, "--rounds", str(rounds),
            "--concurrency", str(n), "--json"]
    stamps: list[tuple[float, dict]] = []
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.Popen(args, cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "OPENAI_BASE_URL": server.base_url})
    assert proc.stdout is not None
    for line in proc.stdout:
        stamps.append((time.perf_counter(), json.loads(line)))
    err = proc.stderr.read() if proc.stderr else ""
    code = proc.wait()
    end = time.perf_counter()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    summary = stamps[-1][1] if stamps else {}
    if code != 0 or not summary.get("ok") or len(summary.get("decisions", [])) != n * rounds:
        sys.exit(f"squad run N={n} R={rounds} exited {code}: {summary}\n{err[-2000:]}")
    shutil.rmtree(repo)
    return Sample(end - start, stamps[-1][0] - stamps[0][0], cpu, stamps[0][0] - start,
                  end - stamps[-1][0], [t for t, e in stamps if e["event"] == "commit"])


def timed(args: list[str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(args, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


IMPORTS = ("import os, squad.cli, squad.run, squad.progress, squad.connection, "
           "squad.llm.openai_backend; os._exit(0)")


def measure(template: Path, work: Path, server: ScriptedServer, n: int, rounds: int,
            repeat: int) -> list[Sample]:
    return [run_once(template, work, server, n, rounds) for _ in range(repeat)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.2, help="L: seconds per reply")
    parser.add_argument("--repeat", type=int, default=5, help="runs per point (median)")
    args = parser.parse_args()
    console = Console(stderr=True)
    cases = [(1, 1), (4, 1), (16, 1), (4, 2)]
    with tempfile.TemporaryDirectory(prefix="squad-bench-") as tmp:
        root = Path(tmp)
        isolate_env(root / "home")
        console.print("preparing the repository ...")
        template = prepare(root / "template")
        base = timed([*SQUAD, "--help"], args.repeat * 2)
        imports = timed([sys.executable, "-c", IMPORTS], args.repeat * 2)
        with ScriptedServer() as server:
            results = {}
            for latency in (args.latency, 0.0):
                server.responder = responder(latency)
                for n, rounds in cases if latency else [(1, 1), (16, 1)]:
                    console.print(f"N={n} R={rounds} L={latency:g} x{args.repeat} ...")
                    results[n, rounds, latency] = measure(template, root, server, n, rounds,
                                                          args.repeat)
        version = sh(root, "git", "version").split()[-1]
    med = statistics.median
    lat, out = args.latency, Console(width=130)
    table = Table(title=f"squad run fan-out, L = {lat:g} s per reply, T = {TURNS} turns per "
                        f"agent per round, median of {args.repeat} (git {version})")
    for name in ("N", "R", "wall s", "-startup s", "span s", "cpu s", "ideal s", "wall/ideal",
                 "span/ideal", "serial s"):
        table.add_column(name, justify="right")
    for n, rounds in cases:
        samples = results[n, rounds, lat]
        wall, span = med(s.wall for s in samples), med(s.span for s in samples)
        ideal = rounds * TURNS * lat
        table.add_row(str(n), str(rounds), f"{wall:.2f}", f"{wall - base:.2f}", f"{span:.2f}",
                      f"{med(s.cpu for s in samples):.2f}", f"{ideal:.2f}",
                      f"{wall / ideal:.2f}", f"{span / ideal:.2f}",
                      f"{n * rounds * TURNS * lat:.2f}")
    out.print(table)
    one, many = results[1, 1, 0.0], results[MAX_AGENTS, 1, 0.0]
    every = [s for samples in results.values() for s in samples]
    gaps = [b - a for s in many for a, b in zip(s.commits, s.commits[1:], strict=False)]
    zero = Table(title="fixed cost and orchestration overhead (L = 0 unless said)")
    zero.add_column("measure")
    zero.add_column("ms", justify="right")
    rows = [
        ("startup: python -m squad --help", base),
        ("imports of `squad run` (cli, run, openai backend), os._exit", imports),
        ("Popen to first event, median of every run", med(s.first for s in every)),
        ("last event to exit (run-log commit, teardown), median", med(s.tail for s in every)),
        ("N=1: wall", med(s.wall for s in one)),
        ("N=1: span (first to last event)", med(s.span for s in one)),
        (f"N={MAX_AGENTS}: wall", med(s.wall for s in many)),
        (f"N={MAX_AGENTS}: span", med(s.span for s in many)),
        (f"N={MAX_AGENTS}: cpu (squad + git children)", med(s.cpu for s in many)),
        (f"overhead per agent: (wall{MAX_AGENTS} - wall1) / {MAX_AGENTS - 1}",
         (med(s.wall for s in many) - med(s.wall for s in one)) / (MAX_AGENTS - 1)),
        (f"same from spans: (span{MAX_AGENTS} - span1) / {MAX_AGENTS - 1}",
         (med(s.span for s in many) - med(s.span for s in one)) / (MAX_AGENTS - 1)),
    ]
    for name, seconds in rows:
        zero.add_row(name, f"{seconds * 1000:.1f}")
    zero.add_row(f"per decision commit: median gap of commit events, N={MAX_AGENTS}",
                 f"{med(gaps) * 1000:.1f}" if gaps else "-")
    out.print(zero)

if __name__ == "__main__":
    main()
