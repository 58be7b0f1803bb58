"""What a person or a machine sees of a run: a live table, JSON lines, and the summary."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TextIO

from squad import events
from squad.events import (
    Committed,
    Done,
    Event,
    Failed,
    ModelCalled,
    Planned,
    Spawned,
    Stopped,
    Summary,
    ToolUsed,
)

if TYPE_CHECKING:  # rich is imported by the views that draw: `run --json` never loads it
    from rich.console import Console, Group


class JsonLines:
    """One JSON object per event on stdout (off a terminal, or with --json): the same line
    the run log gets."""

    def __init__(self, out: TextIO | None = None) -> None:
        self._out = out or sys.stdout

    def __call__(self, event: Event) -> None:
        self.line(events.to_line(event) + "\n")

    def line(self, text: str) -> None:
        """A line as the run log formatted it (see `RunLog`), newline included."""
        self._out.write(text)
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
        from rich.live import Live

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

    def __call__(self, event: Event) -> None:
        self.show(event)
        self._live.update(self._render())

    def show(self, event: Event) -> None:
        """Fold one event into the table (without redrawing it)."""
        if isinstance(event, Planned):
            for task in event.tasks:
                self._rows.setdefault(task.agent, _Row())
        elif isinstance(event, Committed):
            self._commits.append(f"{event.id:04d} {event.agent}: {event.title}")
        agent = getattr(event, "agent", None)
        if not isinstance(agent, str) or isinstance(event, Committed):
            return
        row = self._rows.setdefault(agent, _Row())
        if isinstance(event, Spawned):
            row.state, row.last = "running", f"round {event.round}"
            row.rounds.add(event.round)
        elif isinstance(event, ModelCalled):
            row.calls += 1
            row.tokens += event.usage.total
        elif isinstance(event, ToolUsed):
            row.tools += 1
            row.last = f"{event.tool} {'ok' if event.ok else 'refused'}"
            row.drops += 1 if event.drop else 0
        elif isinstance(event, Done):
            row.state = "done"
        elif isinstance(event, Failed):
            row.state, row.last = "failed", event.error[:60]
        elif isinstance(event, Stopped):
            row.state, row.last = "stopped", event.reason[:60]

    def _render(self) -> Group:
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        table = Table("agent", "state", "calls", "tools", "drops", "tokens", "last",
                      title="squad run", expand=False)
        for name, row in self._rows.items():
            table.add_row(name, row.state, str(row.calls), str(row.tools), str(row.drops),
                          str(row.tokens), row.last)
        recent = Text("\n".join(self._commits[-5:]) or "no decision committed yet",
                      style="dim")
        return Group(table, recent)


def print_summary(console: Console, summary: Summary, titles: dict[int, str]) -> None:
    from rich.table import Table

    decisions = Table("id", "agent", "title", title="decisions committed")
    for d in summary.decisions:
        decisions.add_row(f"{d.id:04d}", d.agent, titles.get(d.id, ""))
    if summary.decisions:
        console.print(decisions)
    agents = Table("agent", "round", "result", "calls", "prompt", "completion", "cost",
                   title="agents")
    for a in summary.agents:
        cost = "-" if a.cost is None else f"${a.cost:.4f}"
        agents.add_row(a.agent, str(a.round), "ok" if a.ok else f"FAILED: {a.error}",
                       str(a.calls), str(a.prompt_tokens), str(a.completion_tokens), cost)
    console.print(agents)
    for q in summary.quarantined:
        console.print(f"quarantined {q.drop}: {q.reason}")
    if summary.stopped:
        console.print(f"stopped early: {summary.stopped}")
    if summary.review:
        console.print(f"review: {summary.review}")
    else:
        console.print(f"nothing was decided: {summary.nothing_decided}; nothing was "
                      "committed" + (f" (the run's log: {summary.log})" if summary.log else ""))
