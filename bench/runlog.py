"""Benchmark: the run log's cost per event, file kept open against reopened per line.

`squad.runlog.RunLog` writes each event of a run to `events.jsonl` under one lock. It keeps
the file open for the run and flushes every line (a crash loses nothing logged). The
baseline, measured here in the same run, is what it did before: open the file in append
mode, write the line and close it, per line, under the lock. Both write the same typed
events (`llm` and `tool` lines, as an agent makes them) from T threads at once, E events
each; every line is serialized the same way (`squad.events.to_line`), so the difference is
the open/close. Columns: seconds, microseconds per event, events/s, and the ratio to the
baseline (below 1.0 is faster).

Run: .venv/bin/python bench/runlog.py [--threads 16] [--events 2000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from squad import events  # noqa: E402
from squad.clock import format_instant  # noqa: E402
from squad.events import Event, ModelCalled, ToolUsed  # noqa: E402
from squad.llm.messages import Usage  # noqa: E402
from squad.runlog import RunLog  # noqa: E402

NOW = datetime(2026, 1, 1, tzinfo=UTC)


class ReopenPerLine:
    """The run log as it was: one open, write and close per line, under the lock."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._seq = 0

    def __call__(self, event: Event) -> None:
        with self._lock:
            self._seq += 1
            event = event.model_copy(update={"seq": self._seq, "t": format_instant(NOW)})
            with self.path.open("a", encoding="utf-8", errors="replace") as out:
                out.write(events.to_line(event) + "\n")


def _agent_events(agent: str, count: int) -> list[Event]:
    made: list[Event] = []
    for n in range(count):
        if n % 2:
            made.append(ToolUsed(agent=agent, round=1, tool="read_file", ok=True,
                                 arguments='{"path": "src/app.py"}'))
        else:
            made.append(ModelCalled(agent=agent, round=1, call=n // 2 + 1, key="0" * 64,
                                    usage=Usage(prompt_tokens=900, completion_tokens=40),
                                    tool_calls=["read_file"]))
    return made


def _measure(log: Callable[[Event], None], threads: int, per_thread: int) -> float:
    batches = [_agent_events(f"a{t:02d}", per_thread) for t in range(threads)]
    start = threading.Barrier(threads + 1)

    def work(batch: list[Event]) -> None:
        start.wait()
        for event in batch:
            log(event)

    workers = [threading.Thread(target=work, args=(b,)) for b in batches]
    for w in workers:
        w.start()
    began = time.perf_counter()
    start.wait()
    for w in workers:
        w.join()
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=16, help="T: writers at once")
    parser.add_argument("--events", type=int, default=2000, help="E: events per writer")
    parser.add_argument("--repeat", type=int, default=5, help="runs per variant (median)")
    args = parser.parse_args()
    total = args.threads * args.events
    results: dict[str, list[float]] = {"reopen per line (before)": [],
                                       "open once, flush per line": []}
    with tempfile.TemporaryDirectory(prefix="squad-bench-runlog-") as tmp:
        for n in range(args.repeat):
            old = Path(tmp) / f"old-{n}.jsonl"
            results["reopen per line (before)"].append(
                _measure(ReopenPerLine(old), args.threads, args.events))
            new = Path(tmp) / f"new-{n}.jsonl"
            log = RunLog(lambda: NOW)
            log.write_to(new)
            results["open once, flush per line"].append(
                _measure(log, args.threads, args.events))
            log.close_file()
            assert len(new.read_bytes().splitlines()) == len(old.read_bytes().splitlines()) \
                == total
    baseline = statistics.median(results["reopen per line (before)"])
    table = Table("run log", "seconds", "µs/event", "events/s", "ratio",
                  title=f"{args.threads} threads x {args.events} events, median of "
                        f"{args.repeat}")
    for name, times in results.items():
        median = statistics.median(times)
        table.add_row(name, f"{median:.3f}", f"{median / total * 1e6:.1f}",
                      f"{total / median:,.0f}", f"{median / baseline:.2f}")
    Console().print(table)


if __name__ == "__main__":
    main()
