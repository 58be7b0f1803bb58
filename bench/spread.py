"""Benchmark: a 4-agent run spread over 4 clones against the same run on one machine.

A bare repository on a local path is the remote; the scripted OpenAI server (tests/) answers
every call after a fixed latency L: an agent's first call gets a `record_decision` tool call,
its second "done" (2 turns per agent). The agents are given with --agents (no lead call).

- baseline: `squad run GOAL --agents a,b,c,d --concurrency 4` in one clone (wall of the
  process, which commits the 4 records and the run log);
- spread: `squad run GOAL --agents ... --plan-only` and `git push`, then 4 `squad agent
  r1.<x> --push origin` at once in 4 clones, then `squad ingest --remote origin` in a fifth;
  wall from the plan to the records and the log on the remote's trunk, and each phase;
- replay: `squad replay` of each run in a fresh clone, the server stopped.

The ratio column is spread over baseline. Extra cost in the spread run is per-process startup
(5 more squad processes), a worktree checkout per agent, the pushes and the fetch.
Each figure is the median of --repeat runs.

Run: .venv/bin/python bench/spread.py [--latency 0.5] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from isolation import isolate_env  # bench/isolation.py
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from scripted_server import RecordedRequest, ScriptedServer, Text, ToolCalls  # noqa: E402

SQUAD = [sys.executable, "-m", "squad"]
AGENTS = ("architect", "security", "tester", "docs")
GOAL = "Add rate limiting"


def git(where: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=where, check=True, capture_output=True,
                          text=True).stdout


def squad(where: Path, *args: str, env: dict[str, str] | None = None) -> str:
    import os

    out = subprocess.run([*SQUAD, *args], cwd=where, capture_output=True, text=True,
                         env={**os.environ, **(env or {})})
    if out.returncode != 0:
        raise SystemExit(f"squad {' '.join(args)} failed: {out.stderr}")
    return out.stdout


def responder(latency: float):  # type: ignore[no-untyped-def]
    def answer(request: RecordedRequest) -> ToolCalls | Text:
        if any(m["role"] == "assistant" for m in request.messages):
            return Text("done", delay=latency)
        agent = request.messages[1]["content"].split("# Your charter: ", 1)[1].split(" ")[0]
        return ToolCalls([("record_decision", {
            "title": f"{agent} decides", "context": "c", "decision": "d",
            "consequences": "e"})], delay=latency)
    return answer


def setup(root: Path) -> Path:
    seed = root / "seed"
    seed.mkdir()
    git(seed, "init", "-q", "-b", "main")
    (seed / "app.py").write_text("print('hello')\n")
    git(seed, "add", "app.py")
    git(seed, "commit", "-qm", "initial")
    squad(seed, "init")
    (seed / "squad.toml").write_text("[llm]\nmodel = 'scripted'\nmax_retries = 0\n")
    git(seed, "commit", "-qam", "settings")
    bare = root / "remote.git"
    git(root, "clone", "-q", "--bare", str(seed), str(bare))
    return bare


def clone(bare: Path, where: Path) -> Path:
    git(bare.parent, "clone", "-q", str(bare), str(where))
    return where


def one_machine(root: Path, bare: Path, url: str) -> tuple[float, str]:
    here = clone(bare, root / "solo")
    began = time.perf_counter()
    out = squad(here, "run", GOAL, "--agents", ",".join(AGENTS), "--concurrency", "4", "--json",
                env={"OPENAI_BASE_URL": url})
    wall = time.perf_counter() - began
    git(here, "push", "-q", "origin", "main")
    return wall, json.loads(out.splitlines()[-1])["run"]


def spread(root: Path, bare: Path, url: str) -> tuple[dict[str, float], str]:
    planner = clone(bare, root / "planner")
    machines = [clone(bare, root / f"m{n}") for n in range(len(AGENTS))]
    coordinator = clone(bare, root / "coordinator")
    phases: dict[str, float] = {}
    began = time.perf_counter()
    run_id = json.loads(squad(planner, "run", GOAL, "--agents", ",".join(AGENTS),
                              "--plan-only", "--json"))["run"]
    git(planner, "push", "-q", "origin", "main")
    phases["plan + push"] = time.perf_counter() - began
    import os

    mark = time.perf_counter()
    for machine in machines:
        git(machine, "pull", "-q")
    running = [subprocess.Popen([*SQUAD, "agent", f"r1.{a}", "--run", run_id, "--push",
                                 "origin", "--writer", f"m{n}"], cwd=m,
                                env={**os.environ, "OPENAI_BASE_URL": url},
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for n, (a, m) in enumerate(zip(AGENTS, machines, strict=True))]
    for process in running:
        _, errs = process.communicate()
        if process.returncode != 0:
            raise SystemExit(f"squad agent failed: {errs}")
    phases["4 agents (pull, run, push)"] = time.perf_counter() - mark
    mark = time.perf_counter()
    git(coordinator, "pull", "-q")
    squad(coordinator, "ingest", "--remote", "origin")
    phases["collect (ingest --remote)"] = time.perf_counter() - mark
    phases["total"] = time.perf_counter() - began
    return phases, run_id


def replay(root: Path, bare: Path, run_id: str, name: str) -> float:
    here = clone(bare, root / name)
    began = time.perf_counter()
    out = squad(here, "replay", run_id, env={"OPENAI_BASE_URL": "http://127.0.0.1:9/v1"})
    assert out.startswith("ok:"), out
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--latency", type=float, default=0.5)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rows: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="squad-bench-spread-") as tmp:
        isolate_env(Path(tmp) / "home")
        for n in range(args.repeat):
            root = Path(tmp) / f"r{n}"
            root.mkdir()
            bare = setup(root)
            with ScriptedServer() as server:
                server.responder = responder(args.latency)
                solo, solo_run = one_machine(root, bare, server.base_url)
                phases, spread_run = spread(root, bare, server.base_url)
            rows.setdefault("one machine: squad run", []).append(solo)
            for phase, seconds in phases.items():
                rows.setdefault(f"spread: {phase}", []).append(seconds)
            rows.setdefault("replay one-machine run", []).append(
                replay(root, bare, solo_run, "fresh-solo"))
            rows.setdefault("replay spread run", []).append(
                replay(root, bare, spread_run, "fresh-spread"))
    median = {name: statistics.median(values) for name, values in rows.items()}
    base, base_replay = median["one machine: squad run"], median["replay one-machine run"]
    table = Table(title=f"4 agents, 2 turns each, reply latency {args.latency:g} s, "
                        f"median of {args.repeat}")
    table.add_column("what")
    table.add_column("seconds", justify="right")
    table.add_column("ratio", justify="right")
    for name, seconds in median.items():
        ref = base_replay if name.startswith("replay") else base
        table.add_row(name, f"{seconds:.2f}", f"{seconds / ref:.2f}")
    Console().print(table)
    print("ratio: against the one-machine run (replays: against its replay); "
          f"ideal agent time = 2 x {args.latency:g} s = {2 * args.latency:g} s")


if __name__ == "__main__":
    main()
