"""What a person or a machine sees of a run: a live table, JSON lines, and the summary."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import Any, TextIO

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text


class JsonLines:
    """One JSON object per event on stdout (off a terminal, or with --json)."""

    def __init__(self, out: TextIO | None = None) -> None:
        self._out = out or sys.stdout

    def __call__(self, kind: str, event: dict[str, Any]) -> None:
        self._out.write(json.dumps(event, sort_keys=True, ensure_ascii=False) + "\n")
        self._out.flush()

    def notice(self, message: str) -> None:
        """A line for the person watching, on stderr: stdout stays JSON."""
        sys.stderr.write(f"squad: {message}\n")
        sys.stderr.flush()

    def __enter__(self) -> JsonLines:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


@dataclass
class _Row:
    state: str = "waiting"
    calls: int = 0
    tools: int = 0
    drops: int = 0
    tokens: int = 0
    last: str = ""
    rounds: set[int] = field(default_factory=set)


class LiveView:
    """A rich table of each agent's state, tool calls, drops and tokens, redrawn as events come."""

    def __init__(self, console: Console) -> None:
        self._rows: dict[str, _Row] = {}
        self._commits: list[str] = []
        self._live = Live(console=console, refresh_per_second=8, transient=False)

    def __enter__(self) -> LiveView:
        self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._live.update(self._render())
        self._live.__exit__(None, None, None)

    def notice(self, message: str) -> None:
        """A line above the live table (rich keeps the table below it)."""
        self._live.console.print(f"squad: {message}")

    def __call__(self, kind: str, event: dict[str, Any]) -> None:
        agent = event.get("agent")
        row = self._rows.setdefault(agent, _Row()) if agent else None
        if kind == "plan":
            for task in event["tasks"]:
                self._rows.setdefault(task["agent"], _Row())
        elif row is not None and kind == "spawn":
            row.state, row.last = "running", f"round {event['round']}"
            row.rounds.add(event["round"])
        elif row is not None and kind == "llm":
            row.calls += 1
            row.tokens += event["usage"]["prompt_tokens"] + event["usage"]["completion_tokens"]
        elif row is not None and kind == "tool":
            row.tools += 1
            row.last = f"{event['tool']} {'ok' if event['ok'] else 'refused'}"
            row.drops += 1 if event.get("drop") else 0
        elif row is not None and kind == "done":
            row.state = "done"
        elif row is not None and kind in ("failed", "stop"):
            row.state, row.last = "failed" if kind == "failed" else "stopped", \
                str(event.get("error") or event.get("reason"))[:60]
        elif kind == "commit":
            self._commits.append(f"{event['id']:04d} {event['agent']}: {event['title']}")
        self._live.update(self._render())

    def _render(self) -> Group:
        table = Table("agent", "state", "calls", "tools", "drops", "tokens", "last",
                      title="squad run", expand=False)
        for name, row in self._rows.items():
            table.add_row(name, row.state, str(row.calls), str(row.tools), str(row.drops),
                          str(row.tokens), row.last)
        recent = Text("\n".join(self._commits[-5:]) or "no decision committed yet",
                      style="dim")
        return Group(table, recent)


def print_summary(console: Console, summary: dict[str, Any], titles: dict[int, str]) -> None:
    decisions = Table("id", "agent", "title", title="decisions committed")
    for d in summary["decisions"]:
        decisions.add_row(f"{d['id']:04d}", d["agent"], titles.get(d["id"], ""))
    if summary["decisions"]:
        console.print(decisions)
    agents = Table("agent", "round", "result", "calls", "prompt", "completion", "cost",
                   title="agents")
    for a in summary["agents"]:
        cost = "-" if a["cost"] is None else f"${a['cost']:.4f}"
        agents.add_row(a["agent"], str(a["round"]), "ok" if a["ok"] else f"FAILED: {a['error']}",
                       str(a["calls"]), str(a["prompt_tokens"]), str(a["completion_tokens"]),
                       cost)
    console.print(agents)
    for q in summary["quarantined"]:
        console.print(f"quarantined {q['drop']}: {q['reason']}")
    if summary["stopped"]:
        console.print(f"stopped early: {summary['stopped']}")
    if summary["review"]:
        console.print(f"review: {summary['review']}")
    else:
        console.print(f"nothing was decided: {summary['nothing_decided']}; nothing was "
                      "committed" + (f" (the run's log: {summary['log']})"
                                     if summary.get("log") else ""))
