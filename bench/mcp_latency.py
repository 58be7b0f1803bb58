"""Benchmark: what `squad mcp` costs a coding agent per call, against squad without MCP.

For logs of 1,000 and 10,000 records it measures, in one run on one machine:

- `search_decisions` and `get_decision` through the MCP SDK's own client, over stdio, to a
  real `squad mcp` subprocess (one session, warmed up first; the server's first call, which
  parses the whole log, is shown separately as "cold");
- the same operations done in-process by `squad.service.DecisionService` (what the tool runs
  under the protocol) with the same arguments: the baseline the ratio is taken against;
- `squad show ID --json` as a subprocess: what an agent without MCP would run (start-up
  dominated; fewer samples);
- `propose_decision` until the tool returns, that is until the coordinator has committed the
  record, against `DecisionService.propose` in-process and `squad decide` as a subprocess.

(Named mcp_latency.py, not mcp.py: a script named mcp.py would shadow the SDK.)

How the logs are built: writing 10,000 records one commit at a time would take most of an
hour, so the records are made with squad's own functions (`Record`, `records.render`, the
hash chain via `records.digest`, `ledger.render_index`) and written in one commit through
`Repository.commit`, carrying every `Squad-Decision` trailer; `git reset --hard` then fills
the working tree, and `squad.verify` checks the log before anything is timed.

Run: .venv/bin/python bench/mcp_latency.py [--sizes 1000,10000] [--calls 200] [--proposals 30]
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
from isolation import isolate_env  # bench/isolation.py
from mcp import Client, StdioServerParameters
from mcp.types import Implementation
from rich.console import Console
from rich.table import Table

from squad.ledger import Ledger, _row, entry_for, render_index
from squad.records import Record, render
from squad.service import DecisionService
from squad.verify import verify
from squad.workspace import DECISIONS, INDEX, Workspace

SQUAD = [sys.executable, "-m", "squad"]
WORDS = ("cache", "queue", "schema", "session", "token", "retry", "index", "shard", "audit",
         "billing", "search", "upload", "export", "locale", "metrics", "backup", "tenant")
PARTS = ("api", "storage", "auth", "frontend", "jobs", "payments", "reports", "infra")
FILLER = ("We weigh the options against what the team already runs, what it costs to operate "
          "and how easily a newcomer can follow it. ")


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True,
                          text=True).stdout


def build_log(root: Path, n: int) -> Path:
    """A repository whose decisions/ holds `n` valid, chained records in one commit."""
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    (root / "AGENTS.md").write_text("# Bench\n")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "initial")
    rng = random.Random(n)
    ws = Workspace.open(root)
    ledger, files = Ledger(), {}
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for i in range(1, n + 1):
        word, part = rng.choice(WORDS), rng.choice(PARTS)
        record = Record(
            id=i, title=f"Decision {i}: {word} for the {part} layer", agent=f"agent-{i % 7}",
            date=start + timedelta(minutes=i), tags=(part, word), prev=ledger.head_digest,
            supersedes=(i - 1,) if i % 50 == 0 else (),
            context=f"{FILLER * 3}The {part} layer needs a {word} policy (case {i}).",
            decision=f"Use {rng.choice(WORDS)} with {word} in {part}. {FILLER}",
            consequences=f"Revisit the {word} choice after {i % 90} days.")
        data = render(record, root).encode()
        entry = entry_for(record, data)
        ledger.append(entry)
        files[f"{DECISIONS}/{entry.name}"] = data
    files[INDEX] = render_index(ledger, root).encode()
    trailers = "".join(f"Squad-Decision: {i:04d}\n" for i in range(1, n + 1))
    ws.repo.commit(files, f"{n} records for the bench\n\n{trailers}", start, ws.repo.head())
    git(root, "reset", "-q", "--hard")
    faults = verify(ws)
    ws.repo.close()
    if faults:
        raise SystemExit(f"the bench log does not verify: {faults[0]}")
    # the in-process baseline shares this process: do not leave it a heap the server lacks
    _row.cache_clear()
    del ledger, files
    gc.collect()
    return root


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def timed(work: Callable[[], Any]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def proposal(tag: str, i: int) -> dict[str, Any]:
    return {"title": f"Bench proposal {tag} {i}", "context": FILLER,
            "decision": f"Option {i}. {FILLER}", "consequences": "None.", "tags": ["bench"]}


def over_mcp(repo: Path, queries: list[str], ids: list[int], proposals: int
             ) -> dict[str, list[float]]:
    async def main() -> dict[str, list[float]]:
        times: dict[str, list[float]] = {"search": [], "get": [], "propose": [], "cold": []}
        target = StdioServerParameters(command=SQUAD[0], args=[*SQUAD[1:], "mcp"],
                                       cwd=str(repo), env=dict(os.environ))
        async with Client(target, client_info=Implementation(name="bench", version="1")) as c:
            started = time.perf_counter()
            await c.call_tool("get_decision", {"id": 1})
            times["cold"].append(time.perf_counter() - started)
            for query in queries[:5]:  # warm-up: not timed
                await c.call_tool("search_decisions", {"query": query})
            for name, key, values in (("search", "query", queries), ("get", "id", ids)):
                tool = "search_decisions" if name == "search" else "get_decision"
                for value in values:
                    started = time.perf_counter()
                    result = await c.call_tool(tool, {key: value})
                    times[name].append(time.perf_counter() - started)
                    assert not result.is_error, result.content
            for i in range(proposals):
                started = time.perf_counter()
                result = await c.call_tool("propose_decision", proposal("mcp", i))
                times["propose"].append(time.perf_counter() - started)
                assert not result.is_error, result.content
        return times

    return anyio.run(main)


def in_process(repo: Path, queries: list[str], ids: list[int], proposals: int
               ) -> dict[str, list[float]]:
    service = DecisionService(Workspace.open(repo))
    try:
        cold = [timed(lambda: service.get(1))]
        for query in queries[:5]:
            service.search(query)
        return {"cold": cold,
                "search": [timed(lambda q=q: service.search(q)) for q in queries],
                "get": [timed(lambda i=i: service.get(i)) for i in ids],
                "propose": [timed(lambda i=i: service.propose("bench", **{
                    k: v for k, v in proposal("in-process", i).items()}))
                    for i in range(proposals)]}
    finally:
        service.close()


def over_cli(repo: Path, ids: list[int], proposals: int) -> dict[str, list[float]]:
    def run(*args: str) -> None:
        subprocess.run([*SQUAD, *args], cwd=repo, check=True, capture_output=True)

    return {"get": [timed(lambda i=i: run("show", str(i), "--json")) for i in ids],
            "propose": [timed(lambda i=i: run("decide", "--title", f"Bench cli {i}",
                                              "--decision", "Option.", "--tag", "bench"))
                        for i in range(proposals)]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--calls", type=int, default=200, help="searches and gets per size")
    parser.add_argument("--proposals", type=int, default=30, help="proposals per way")
    parser.add_argument("--cli-calls", type=int, default=10)
    args = parser.parse_args()
    console = Console(highlight=False, width=150)
    table = Table("operation", "records", "MCP p50 ms", "MCP p99 ms", "in-process p50 ms",
                  "in-process p99 ms", "MCP/in-process p50", "CLI p50 ms", title="squad mcp")
    with tempfile.TemporaryDirectory(prefix="squad-bench-mcp-") as tmp:
        isolate_env(Path(tmp) / "home")
        for n in (int(size) for size in args.sizes.split(",")):
            started = time.perf_counter()
            repo = build_log(Path(tmp) / f"log-{n}", n)
            console.print(f"built and verified a log of {n} records in "
                          f"{time.perf_counter() - started:.1f} s")
            rng = random.Random(7)
            queries = [" ".join(rng.sample(WORDS, 2)) if i % 2 else rng.choice(WORDS)
                       for i in range(args.calls)]
            ids = [rng.randint(1, n) for _ in range(args.calls)]
            mcp = over_mcp(repo, queries, ids, args.proposals)
            local = in_process(repo, queries, ids, args.proposals)
            cli = over_cli(repo, ids[: args.cli_calls], min(args.cli_calls, args.proposals))
            for name, label in (("cold", "first call (parses the log)"),
                                ("search", "search_decisions"), ("get", "get_decision"),
                                ("propose", "propose_decision → commit")):
                a, b = mcp[name], local[name]
                ref = cli.get(name)
                table.add_row(label, f"{n:,}", f"{percentile(a, 50) * 1e3:.1f}",
                              f"{percentile(a, 99) * 1e3:.1f}", f"{percentile(b, 50) * 1e3:.1f}",
                              f"{percentile(b, 99) * 1e3:.1f}",
                              f"{percentile(a, 50) / percentile(b, 50):.1f}x",
                              f"{percentile(ref, 50) * 1e3:.0f}" if ref else "")
    console.print(table)
    console.print("CLI: `squad show ID --json` for get_decision, `squad decide` for "
                  "propose_decision (a new process per call). p99 of a column with fewer than "
                  "100 samples is its maximum.")


if __name__ == "__main__":
    main()
