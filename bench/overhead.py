"""Benchmark: squad's per-call overhead over the bare `openai` client, in-process.

N agents in parallel, each making T = 2 calls (a `record_decision` tool call, then "done"),
against the scripted OpenAI server running in a child process (so the server does not
compete with the client for the GIL), with a reply latency L.

- **bare openai**: N threads, each sending the very request bodies squad sent (captured in a
  warm-up run) with one shared `openai.OpenAI` client: the floor any agent framework pays.
- **squad**: `Run.execute()` in this process on a fresh copy of a prepared repository, on
  tmpfs (/dev/shm) and on disk; it includes routing-free fan-out, the tools, the drop-box, the
  coordinator's N commits and the run-log commit.

Δ ms/call = (squad wall - bare wall) / (N x T); efficiency = ideal / wall with ideal = T x L.
Medians of --repeat interleaved runs; files created by squad per run are counted (file
creation is slow on this disk). CPU ms/call is user+sys time of this process and the git
processes it waited for, over the runs at L=0, per call: on a machine busy with other work,
wall times swing with the load; CPU time much less.

The second table is the command a user types: `squad run GOAL --agents ... --json` as a
process against the same server: Popen to the server receiving the first model request
(against a bare `python -c "import openai; ...create(...)"` process doing one call), the
end: from the last line on stdout (squad's `summary` event; the bare call's one line after its
reply) to the process's exit, and the efficiency at L (ideal T x L over the whole process's
wall time). CPU s to it: user+sys time of each process (and the git processes it waited for)
from its start to its first model request, where it is killed: a figure that a machine busy
with other work moves much less than the wall times. Both processes run with their
bytecode compiled (as an installed squad has it), after an untimed warm-up.

Run: .venv/bin/python bench/overhead.py [--repeat 9] [--agents 16]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from functools import partial
from multiprocessing.connection import Connection as Pipe
from pathlib import Path
from typing import Any

from fanout import prepare, responder  # bench/fanout.py: the same repository and replies
from isolation import isolate_env
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from scripted_server import ScriptedServer  # noqa: E402

from squad.budget import BudgetLimits  # noqa: E402
from squad.config import load_config  # noqa: E402
from squad.connection import connect  # noqa: E402
from squad.run import Run, RunSettings  # noqa: E402
from squad.workspace import Workspace  # noqa: E402

TURNS = 2


def _serve(latency: float, pipe: Pipe, stamp: bool) -> None:
    """With `stamp`, the moment each request arrives (the shared monotonic clock) is sent."""
    with ScriptedServer() as server:
        reply = responder(latency)

        def stamped(request: Any) -> Any:
            pipe.send(time.monotonic())
            return reply(request)

        server.responder = stamped if stamp else reply
        pipe.send(server.base_url)
        pipe.recv()  # until told to stop


class ServerProcess:
    """The scripted server in a forked child: its HTTP work runs on the other core."""

    def __init__(self, latency: float, stamp: bool = False) -> None:
        ctx = multiprocessing.get_context("fork")
        self._pipe, there = ctx.Pipe()
        self._proc = ctx.Process(target=_serve, args=(latency, there, stamp), daemon=True)
        self._proc.start()
        self.base_url: str = self._pipe.recv()

    def first_request(self) -> float:
        """When the first request arrived (a server made with `stamp`)."""
        stamp: float = self._pipe.recv()
        return stamp

    def arrived(self, seconds: float) -> bool:
        """Whether a request arrives within `seconds` (a server made with `stamp`)."""
        return self._pipe.poll(seconds)

    def close(self) -> None:
        self._pipe.send("stop")
        self._proc.join(5)
        if self._proc.is_alive():
            self._proc.kill()


CPU: dict[str, list[float]] = {}  # CPU seconds per run (this process + its git children)


def _cpu() -> float:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(
        resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def squad_run(template: Path, where: Path, base_url: str, n: int) -> tuple[float, int]:
    """Wall seconds of one in-process run of n agents, and the files it created."""
    repo = where / f"run-{time.monotonic_ns()}"
    shutil.copytree(template, repo, symlinks=True)
    before = _count_files(repo)
    os.environ["OPENAI_BASE_URL"] = base_url
    ws = Workspace.open(repo, env=os.environ)
    connection = connect(ws.config)
    agents = tuple(f"a{i:02d}" for i in range(1, n + 1))
    settings = RunSettings(goal="Pick an option", agents=agents, concurrency=n,
                           limits=BudgetLimits())
    try:
        start, cpu = time.perf_counter(), _cpu()
        outcome = Run(ws, settings, connection).execute()
        wall = time.perf_counter() - start
        CPU.setdefault(f"squad {where}", []).append(_cpu() - cpu)
    finally:
        connection.close()
        ws.repo.close()
    if len(outcome.committed) != n:
        errors = sorted({str(r.error) for _, r in outcome.results if not r.ok})
        sys.exit(f"squad run committed {len(outcome.committed)} of {n}: "
                 f"{outcome.why_nothing() or errors or outcome.quarantined}")
    created = _count_files(repo) - before
    shutil.rmtree(repo)
    return wall, created


def squad_wall(template: Path, where: Path, base_url: str, n: int, files: dict[str, int],
               key: str) -> float:
    wall, files[key] = squad_run(template, where, base_url, n)
    return wall


def first_call(args: list[str], cwd: Path, latency: float) -> tuple[float, float, float]:
    """(Popen to the first request, Popen to exit, its last stdout line to exit) of a
    command, seconds: with `--json` the last line is `squad run`'s summary, so the third is
    its end (the run log's commit, closing, exit); the bare call prints one line after its
    reply, so there it is the interpreter's exit."""
    server = ServerProcess(latency, stamp=True)
    try:
        start = time.monotonic()
        proc = subprocess.Popen(args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env={**os.environ, "OPENAI_BASE_URL": server.base_url})
        assert proc.stdout is not None and proc.stderr is not None
        last, lines = start, []
        for line in proc.stdout:
            last = time.monotonic()
            lines.append(line)
        err = proc.stderr.read()
        code = proc.wait()
        end = time.monotonic()
        if code != 0:
            sys.exit(f"{args[:4]} exited {code}: {err[-1500:]} {''.join(lines)[-1500:]}")
        return server.first_request() - start, end - start, end - last
    finally:
        server.close()


def cpu_to_first(args: list[str], cwd: Path) -> float:
    """CPU seconds a command spends (with the git processes it has waited for) from its
    start to its first model request: it is killed as the request arrives. Unlike wall
    times, this hardly moves when other work shares the machine."""
    server = ServerProcess(60.0, stamp=True)  # no reply comes: nothing runs past the request
    try:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        proc = subprocess.Popen(args, cwd=cwd, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL,
                                env={**os.environ, "OPENAI_BASE_URL": server.base_url})
        if not server.arrived(120):
            proc.kill()
            proc.wait()
            sys.exit(f"{args[:4]}: no model request within 120 s")
        proc.kill()
        proc.wait()
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    finally:
        server.close()


BARE = ("import os, openai; c = openai.OpenAI(base_url=os.environ['OPENAI_BASE_URL'], "
        "api_key='x'); c.chat.completions.create(model='m', messages=[{'role': 'user', "
        "'content': 'hi'}, {'role': 'assistant', 'content': 'hello'}]); print('done')")


def _count_files(repo: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(repo))


def capture(template: Path, where: Path, n: int) -> list[list[dict[str, Any]]]:
    """The request bodies squad sends, per agent, in order (a warm-up run, server in-process)."""
    with ScriptedServer() as server:
        server.responder = responder(0.0)
        squad_run(template, where, server.base_url, n)
        per_agent: dict[str, list[dict[str, Any]]] = {}
        for request in server.requests:
            content = request.messages[1]["content"]
            agent = content.split("# Your charter: ", 1)[1].split(" ", 1)[0]
            per_agent.setdefault(agent, []).append(request.body)
    return list(per_agent.values())


def bare_run(bodies: list[list[dict[str, Any]]], base_url: str) -> float:
    """Wall seconds of N threads sending the same bodies with one bare openai client."""
    import openai

    client = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=60)
    barrier = threading.Barrier(len(bodies) + 1)

    def agent(calls: list[dict[str, Any]]) -> None:
        barrier.wait()
        for body in calls:
            client.chat.completions.create(**body)

    threads = [threading.Thread(target=agent, args=(calls,)) for calls in bodies]
    for thread in threads:
        thread.start()
    barrier.wait()
    start, cpu = time.perf_counter(), _cpu()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    CPU.setdefault("bare", []).append(_cpu() - cpu)
    client.close()
    return wall


def interleaved(repeat: int, runs: dict[str, Callable[[], float]]) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeat):
        for name, run in runs.items():
            times[name].append(run())
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=9, help="runs per point (median)")
    parser.add_argument("--agents", type=int, default=16, help="N")
    parser.add_argument("--latency", type=float, default=0.2, help="L of the second table")
    parser.add_argument("--command-only", action="store_true", help="only the second table")
    args = parser.parse_args()
    console, n = Console(stderr=True), args.agents
    med = statistics.median
    with tempfile.TemporaryDirectory(prefix="squad-bench-") as tmp, \
            tempfile.TemporaryDirectory(prefix="squad-bench-", dir="/dev/shm") as shm:
        isolate_env(Path(tmp) / "home")
        template = prepare(Path(tmp) / "template")
        load_config(template)  # fail early on a bad settings file
        if args.command_only:
            return command_table(args.repeat, n, args.latency, console, template)
        console.print(f"capturing the requests of N={n} ...")
        bodies = capture(template, Path(tmp), n)
        calls = sum(len(b) for b in bodies)
        files: dict[str, int] = {}
        rows = []
        cpu_runs: dict[str, list[float]] = {}
        for latency in (0.0, args.latency):
            CPU.clear()
            server = ServerProcess(latency)
            try:
                console.print(f"L={latency:g}: {args.repeat} interleaved runs of each ...")
                times = interleaved(args.repeat, {
                    "bare openai": partial(bare_run, bodies, server.base_url),
                    "squad, in-process, tmpfs": partial(squad_wall, template, Path(shm),
                                                        server.base_url, n, files, "tmpfs"),
                    "squad, in-process, disk": partial(squad_wall, template, Path(tmp),
                                                       server.base_url, n, files, "disk"),
                })
            finally:
                server.close()
            rows.append((latency, {name: med(t) for name, t in times.items()}))
            cpu_runs = cpu_runs or dict(CPU)  # those at L=0
        command_table(args.repeat, n, args.latency, console, template)
    table = Table(title=f"per-call overhead over bare openai, N={n}, T={TURNS} calls per "
                        f"agent ({calls} calls), median of {args.repeat}")
    for name in ("", "wall s at L=0", "Δ ms/call", "ratio", "CPU ms/call",
                 f"wall s at L={args.latency:g}", "efficiency", "files/run"):
        table.add_column(name, justify="right")
    cpu = {"bare openai": med(cpu_runs["bare"]),
           "squad, in-process, tmpfs": med(cpu_runs[f"squad {shm}"]),
           "squad, in-process, disk": med(cpu_runs[f"squad {tmp}"])}
    (_, zero), (_, slow) = rows
    ideal = TURNS * args.latency
    for name in zero:
        delta = (zero[name] - zero["bare openai"]) / calls * 1000
        table.add_row(name, f"{zero[name]:.3f}", f"{delta:+.1f}",
                      f"{zero[name] / zero['bare openai']:.2f}",
                      f"{cpu[name] / calls * 1000:.2f}", f"{slow[name]:.3f}",
                      f"{ideal / slow[name]:.2f}",
                      str(files.get(name.rsplit(", ", 1)[-1], "-")))
    Console(width=130).print(table)


def command_table(repeat: int, n: int, latency: float, console: Console, template: Path,
                  ) -> None:
    with tempfile.TemporaryDirectory(prefix="squad-bench-") as tmp:
        agents = ",".join(f"a{i:02d}" for i in range(1, n + 1))
        firsts, walls, ends, bares, bare_walls, bare_ends = [], [], [], [], [], []
        cpus, bare_cpus = [], []
        # Time what a user runs: an installed squad has its bytecode compiled, so let the
        # children write theirs; the first round compiles and is not timed.
        os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
        console.print(f"the command: {repeat} runs after a warm-up ...")
        for index in range(repeat + 1):
            repo = Path(tmp) / f"run-{time.monotonic_ns()}"
            shutil.copytree(template, repo, symlinks=True)
            first, wall, end = first_call([sys.executable, "-m", "squad", "run", "Pick an option",
                                           "--agents", agents, "--concurrency", str(n), "--json"],
                                          repo, latency)
            bare, bare_wall, bare_end = first_call([sys.executable, "-c", BARE], Path(tmp),
                                                   latency)
            shutil.rmtree(repo)
            shutil.copytree(template, repo, symlinks=True)
            cpu = cpu_to_first([sys.executable, "-m", "squad", "run", "Pick an option",
                                "--agents", agents, "--concurrency", str(n), "--json"], repo)
            bare_cpu = cpu_to_first([sys.executable, "-c", BARE], Path(tmp))
            shutil.rmtree(repo, ignore_errors=True)  # killed: a git helper may still be ending
            if index:
                cpus.append(cpu)
                bare_cpus.append(bare_cpu)
                firsts.append(first)
                walls.append(wall)
                ends.append(end)
                bares.append(bare)
                bare_walls.append(bare_wall)
                bare_ends.append(bare_end)
    med = statistics.median
    table = Table(title=f"the `squad run` command, N={n}, L={latency:g}, median of {repeat}")
    for name in ("", "Popen to first model request s", "ratio", "CPU s to it", "ratio",
                 "last line to exit s", "wall s", "efficiency"):
        table.add_column(name, justify="right")
    table.add_row("bare python + openai, one call", f"{med(bares):.3f}", "1.00",
                  f"{med(bare_cpus):.3f}", "1.00", f"{med(bare_ends):.3f}",
                  f"{med(bare_walls):.3f}", "-")
    table.add_row("squad run", f"{med(firsts):.3f}", f"{med(firsts) / med(bares):.2f}",
                  f"{med(cpus):.3f}", f"{med(cpus) / med(bare_cpus):.2f}", f"{med(ends):.3f}",
                  f"{med(walls):.3f}", f"{TURNS * latency / med(walls):.2f}")
    Console(width=130).print(table)


if __name__ == "__main__":
    main()
