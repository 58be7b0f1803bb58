"""Benchmark: what recording costs and how fast `squad replay` re-executes a long run offline.

A temp repository gets A charters (`agents/a01.md` ...; tools: list_files, grep,
record_decision) and `[llm] max_turns` raised above the calls per agent, committed. Then
`squad run GOAL --agents a01,... --rounds R --concurrency A --json` runs as a real subprocess
against the scripted OpenAI server with zero latency. Each agent makes C = calls / (A x R)
calls per round: calls 1 .. C-2 answer with a `list_files` or a `grep` tool call (alternating),
call C-1 with `record_decision`, call C with Text("done"). The server is then stopped and
`squad replay RUN` runs as a subprocess with OPENAI_BASE_URL still pointing at the dead port
(replay must not touch the network); its output must say `ok:`.

How to read it: `replay/live` below 1.0 means replay is cheaper than recording, though the
model cost nothing here (zero latency), so live time is squad's own work plus the local HTTP
round trips; against a real model, live time would be dominated by the model and replay would
be far cheaper. Cassette bytes per call grow with the turn number, since every entry holds
the whole request (all earlier messages), so cassette size grows with C squared per agent.
Both timings include process startup (see `--help` startup in the table).
`--profile` reruns the replay in-process with one cProfile per thread (agents run on threads,
which plain `python -m cProfile` would not see) and prints the top functions to stderr; times
are wall time summed over threads, so waiting for a lock or the GIL shows up in the caller.

Run: .venv/bin/python bench/replay.py [--calls 1000] [--agents 10] [--rounds 2] [--profile]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from isolation import isolate_env  # bench/isolation.py
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from scripted_server import RecordedRequest, ScriptedServer, Text, ToolCalls  # noqa: E402

SQUAD = [sys.executable, "-m", "squad"]
CHARTER = ("---\nname: {name}\nrole: Bench specialist number {n}\n"
           "tools: [list_files, grep, record_decision]\n---\n\n## How I work\n"
           "Look around a lot, record one decision, then stop.\n")
SETTINGS = "[llm]\nmodel = 'scripted'\nmax_retries = 0\ntimeout = 60\nmax_turns = {turns}\n"
PROFILE = """
import cProfile, pstats, sys, threading
import squad.run
profiles, lock = [cProfile.Profile()], threading.Lock()
def traced(fn):
    def inner(*args, **kwargs):
        profile = cProfile.Profile()
        with lock:
            profiles.append(profile)
        profile.enable()
        try:
            return fn(*args, **kwargs)
        finally:
            profile.disable()
    return inner
squad.run.Run._agent = traced(squad.run.Run._agent)
squad.run.Run._coordinate = traced(squad.run.Run._coordinate)
from squad.cli import main
profiles[0].enable()
try:
    main(sys.argv[1:], standalone_mode=False)
finally:
    profiles[0].disable()
    stats = pstats.Stats(profiles[0], stream=sys.stderr)
    for profile in profiles[1:]:
        stats.add(profile)
    stats.sort_stats("tottime").print_stats(20)
    stats.sort_stats("cumulative").print_stats(40)
"""




def sh(repo: Path, *args: str, env: dict[str, str] | None = None,
       check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, cwd=repo, capture_output=True, text=True,
                            env={**os.environ, **(env or {})})
    if check and result.returncode != 0:
        sys.exit(f"{' '.join(args[:4])} ... exited {result.returncode}:\n"
                 f"{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    return result


def prepare(path: Path, agents: int, turns: int) -> Path:
    path.mkdir()
    sh(path, "git", "init", "-q", "-b", "main")
    (path / "app.py").write_text("def handler(request):\n    return 'hello'\n")
    sh(path, "git", "add", ".")
    sh(path, "git", "commit", "-q", "-m", "initial")
    sh(path, *SQUAD, "init")
    (path / "squad.toml").write_text(SETTINGS.format(turns=turns))
    for n in range(1, agents + 1):
        (path / "agents" / f"a{n:02d}.md").write_text(CHARTER.format(name=f"a{n:02d}", n=n))
    sh(path, "git", "add", ".")
    sh(path, "git", "commit", "-q", "-m", "bench charters and settings")
    return path


def responder(per: int) -> Callable[[RecordedRequest], ToolCalls | Text]:
    def reply(request: RecordedRequest) -> ToolCalls | Text:
        turn = sum(1 for m in request.messages if m["role"] == "assistant") + 1
        if turn < per - 1:
            return ToolCalls([("list_files", {})] if turn % 2 else
                             [("grep", {"pattern": "decision", "path": "agents/**"})])
        if turn == per - 1:
            agent = request.messages[1]["content"].split("# Your charter: ", 1)[1].split()[0]
            return ToolCalls([("record_decision", {
                "title": f"{agent} settles it", "context": f"{agent} read everything.",
                "decision": f"{agent} decides.", "consequences": "None to speak of."})])
        return Text("done")
    return reply


def timed(repo: Path, args: list[str], env: dict[str, str] | None = None,
          check: bool = True) -> tuple[float, subprocess.CompletedProcess[str]]:
    start = time.perf_counter()
    result = sh(repo, *args, env=env, check=check)
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000, help="LLM calls to record, about")
    parser.add_argument("--agents", type=int, default=10, help="A: agents, run all at once")
    parser.add_argument("--rounds", type=int, default=2, help="R: rounds")
    parser.add_argument("--profile", action="store_true",
                        help="also cProfile the replay (all threads) to stderr")
    args = parser.parse_args()
    per = args.calls // (args.agents * args.rounds)
    if not 3 <= per <= 190:
        sys.exit(f"--calls gives {per} calls per agent and round; it must be 3 to 190")
    console = Console(stderr=True)
    with tempfile.TemporaryDirectory(prefix="squad-bench-") as tmp:
        root = Path(tmp)
        isolate_env(root / "home")
        repo = prepare(root / "repo", args.agents, per + 10)
        help_s, _ = timed(repo, [*SQUAD, "--help"])
        agents = ",".join(f"a{n:02d}" for n in range(1, args.agents + 1))
        with ScriptedServer() as server:
            server.responder = responder(per)
            console.print(f"live: {args.agents} agents x {args.rounds} rounds x {per} calls ...")
            url = server.base_url
            live_s, live = timed(repo, [*SQUAD, "run", "Study the repository", "--agents", agents,
                                        "--rounds", str(args.rounds), "--concurrency",
                                        str(args.agents), "--json"],
                                 env={"OPENAI_BASE_URL": url})
            served = len(server.requests)
        run_id = json.loads(live.stdout.splitlines()[-1])["run"]  # the summary event
        folder = repo / ".squad" / "runs" / run_id
        cassette, events = folder / "cassette.jsonl", folder / "events.jsonl"
        calls = len(cassette.read_bytes().splitlines())
        console.print(f"replay of {run_id} with the server stopped ...")
        replay_s, replay = timed(repo, [*SQUAD, "replay", run_id], check=False,
                                 env={"OPENAI_BASE_URL": url})
        verdict = replay.stdout.strip().splitlines()[-1] if replay.stdout.strip() else ""
        if replay.returncode != 0 or not verdict.startswith("ok:"):
            sys.exit(f"replay failed ({replay.returncode}): {replay.stdout[-3000:]}"
                     f"\n{replay.stderr[-2000:]}")
        if args.profile:
            result = sh(repo, sys.executable, "-c", PROFILE, "replay", run_id, check=False,
                        env={"OPENAI_BASE_URL": url})
            print(result.stderr, file=sys.stderr)
        sizes = cassette.stat().st_size, events.stat().st_size
        event_lines = len(events.read_bytes().splitlines())
    table = Table(title=f"record and replay: {args.agents} agents x {args.rounds} rounds x "
                        f"{per} calls, zero model latency")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("calls recorded (cassette lines)", f"{calls:,}")
    table.add_row("requests the server answered", f"{served:,}")
    table.add_row("startup: python -m squad --help s", f"{help_s:.2f}")
    table.add_row("live squad run s", f"{live_s:.2f}")
    table.add_row("live per call ms", f"{live_s / calls * 1000:.1f}")
    table.add_row("replay s", f"{replay_s:.2f}")
    table.add_row("replay per call ms", f"{replay_s / calls * 1000:.1f}")
    table.add_row("ratio replay/live", f"{replay_s / live_s:.2f}")
    table.add_row("cassette bytes", f"{sizes[0]:,}")
    table.add_row("cassette bytes per call", f"{sizes[0] // max(calls, 1):,}")
    table.add_row("events.jsonl bytes (lines)", f"{sizes[1]:,} ({event_lines:,})")
    table.add_row("replay verdict", verdict)
    Console(width=130).print(table)


if __name__ == "__main__":
    main()
