"""Benchmark: `squad report` of a large recorded run (100 agents, ~1,000 calls): seconds, bytes.

A temp repository gets A charters and records one real `squad run` against the scripted
OpenAI server at zero latency (the same setup as bench/replay.py: each agent makes C calls,
mostly tool calls, and records one decision), so the report reads a genuine run log and
decision log from git. Then, each as a subprocess and the best of `--repeat`:
- baseline: `squad log --json` (process start plus reading the decision log from git, which
  every report does too), and `squad --help` (process start alone);
- `squad report RUN -o page.html` (one self-contained page) and `--format markdown`;
- with Playwright and a `chromium` on PATH: the page loaded in headless Chromium, to `load`.
Ratios are against the `squad log --json` baseline measured in the same run.

Run: .venv/bin/python bench/report.py [--calls 1000] [--agents 100] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from isolation import isolate_env  # bench/isolation.py
from replay import SQUAD, prepare, responder, timed  # bench/replay.py
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from scripted_server import ScriptedServer


def best(repo: Path, args: list[str], repeat: int) -> float:
    return min(timed(repo, args)[0] for _ in range(repeat))


def load_in_chromium(page: Path, repeat: int) -> float | None:
    browser_path = shutil.which("chromium") or shutil.which("chromium-browser")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    if browser_path is None:
        return None
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=browser_path, args=["--no-sandbox"])
        try:
            times = []
            for _ in range(repeat):
                tab = browser.new_page()
                start = time.perf_counter()
                tab.goto(page.resolve().as_uri(), wait_until="load")
                tab.evaluate("() => document.querySelectorAll('rect.bar').length")
                times.append(time.perf_counter() - start)
                tab.close()
        finally:
            browser.close()
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000, help="model calls to record, about")
    parser.add_argument("--agents", type=int, default=100, help="A: agents in the run")
    parser.add_argument("--repeat", type=int, default=3, help="timings keep the best of N")
    args = parser.parse_args()
    per = args.calls // args.agents
    if not 3 <= per <= 190:
        sys.exit(f"--calls gives {per} calls per agent; it must be 3 to 190")
    console = Console(stderr=True)
    with tempfile.TemporaryDirectory(prefix="squad-bench-") as tmp:
        root = Path(tmp)
        isolate_env(root / "home")
        repo = prepare(root / "repo", args.agents, per + 10)
        agents = ",".join(f"a{n:02d}" for n in range(1, args.agents + 1))
        console.print(f"recording {args.agents} agents x {per} calls ...")
        with ScriptedServer() as server:
            server.responder = responder(per)
            _, live = timed(repo, [*SQUAD, "run", "Study the repository", "--agents", agents,
                                   "--concurrency", "32", "--json"],
                            env={"OPENAI_BASE_URL": server.base_url})
        run_id = json.loads(live.stdout.splitlines()[-1])["run"]
        events = (repo / ".squad/runs" / run_id / "events.jsonl").read_text().splitlines()
        kinds = [json.loads(line)["event"] for line in events]
        calls, tools = kinds.count("llm"), kinds.count("tool")
        console.print("timing ...")
        page, md = root / "page.html", root / "report.md"
        help_s = best(repo, [*SQUAD, "--help"], args.repeat)
        log_s = best(repo, [*SQUAD, "log", "--json"], args.repeat)
        html_s = best(repo, [*SQUAD, "report", run_id, "-o", str(page)], args.repeat)
        md_s = best(repo, [*SQUAD, "report", run_id, "--format", "markdown", "-o", str(md)],
                    args.repeat)
        load_s = load_in_chromium(page, args.repeat)
        page_bytes, md_bytes = page.stat().st_size, md.stat().st_size
    table = Table(title=f"squad report: {args.agents} agents, {calls:,} model calls, "
                        f"{tools:,} tool calls, {kinds.count('commit')} decisions")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_column("x baseline", justify="right")
    table.add_row("startup: squad --help s", f"{help_s:.2f}", f"{help_s / log_s:.2f}")
    table.add_row("baseline: squad log --json s", f"{log_s:.2f}", "1.00")
    table.add_row("squad report (html page) s", f"{html_s:.2f}", f"{html_s / log_s:.2f}")
    table.add_row("squad report --format markdown s", f"{md_s:.2f}", f"{md_s / log_s:.2f}")
    table.add_row("html page bytes", f"{page_bytes:,}", "")
    table.add_row("html bytes per call (model + tool)", f"{page_bytes // (calls + tools):,}", "")
    table.add_row("markdown bytes", f"{md_bytes:,}", "")
    table.add_row("page load in headless chromium s",
                  "n/a" if load_s is None else f"{load_s:.2f}", "")
    Console(width=130).print(table)


if __name__ == "__main__":
    main()
