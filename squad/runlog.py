"""The run log: `.squad/runs/<id>/events.jsonl` written line by line, the settings as logged,
and the summary that ends it (see `squad.events` for the lines themselves)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO

from squad import events
from squad.clock import Clock, format_instant
from squad.events import (
    AgentRow,
    DecisionRow,
    Event,
    Listener,
    LoggedSettings,
    QuarantineRow,
    Summary,
)
from squad.llm.messages import Price
from squad.outcome import Outcome, RunSettings


class RunLog:
    """`.squad/runs/<id>/events.jsonl`: one typed event per line, in the order things happened.

    The file stays open for the run (one open, not one per line) and every line is flushed
    as it is written, so a crash loses nothing that was logged. Each event is stamped with
    its sequence number and time here, then handed to `forward` (the live view)."""

    def __init__(self, clock: Clock, forward: Listener | None = None) -> None:
        self._clock, self._forward = clock, forward
        # A listener that prints the very line the log gets (`progress.JsonLines`) is
        # handed that line: formatting an event is most of its cost, once is enough.
        self._forward_line: Callable[[str], None] | None = getattr(forward, "line", None)
        self.path: Path | None = None  # None: events are only forwarded (a replay)
        self._lock = threading.Lock()  # the sequence number and the file
        self._seq = 0
        self._written = 0  # the last seq in the file: lines go there in seq order
        self._ready: dict[int, str] = {}  # formatted lines waiting for an earlier one
        self._out: IO[str] | None = None

    def write_to(self, path: Path) -> None:
        """From now on, write every event to `path` too."""
        self.path = path

    def __call__(self, event: Event) -> None:
        # Only numbering and writing hold the lock; the JSON work (most of the cost) runs
        # in the caller's thread beside the others', and lines still land in seq order.
        with self._lock:
            self._seq += 1
            seq, now = self._seq, self._clock()
        line = ""  # should formatting fail, the lines after this one still go out
        stamp = {"seq": seq, "t": format_instant(now)}
        try:
            if self.path is not None or self._forward_line is not None:
                line = events.to_line(event, stamp) + "\n"
        finally:
            self._write(seq, line if self.path is not None else "")
        if self._forward_line is not None:
            self._forward_line(line)
        elif self._forward:
            self._forward(event.model_copy(update=stamp))

    def _write(self, seq: int, line: str) -> None:
        with self._lock:
            self._ready[seq] = line
            lines = []
            while self._written + 1 in self._ready:
                self._written += 1
                lines.append(self._ready.pop(self._written))
            text = "".join(lines)
            if text and self.path is not None:
                if self._out is None:
                    self._out = self.path.open("a", encoding="utf-8", errors="replace")
                self._out.write(text)
                self._out.flush()

    def move_to(self, path: Path) -> None:
        """Write on at `path` (the caller moves the file there after this returns)."""
        with self._lock:
            self.close_file()
            if self.path is not None:
                self.path = path

    def close_file(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None


def logged_settings(settings: RunSettings) -> LoggedSettings:
    return LoggedSettings(agents=list(settings.agents) if settings.agents else None,
                          rounds=settings.rounds, concurrency=settings.concurrency,
                          max_agents=settings.max_agents, limits=settings.limits,
                          branch=settings.branch)


def summarize(outcome: Outcome, prices: dict[str, Price]) -> Summary:
    """The run's last event: what `squad run` prints, and what a report reads back."""
    return Summary(
        run=outcome.run_id, start=outcome.start, end=outcome.end, ok=outcome.ok,
        stopped=outcome.stopped,
        decisions=[DecisionRow(id=i, agent=a, sha=s, drop=d)
                   for d, i, s, a in outcome.committed],
        quarantined=[QuarantineRow(drop=d, reason=r) for d, r in outcome.quarantined],
        agents=[AgentRow(agent=res.agent, round=r, ok=res.ok, error=res.error,
                         calls=res.calls, drops=len(res.drops),
                         prompt_tokens=res.usage.prompt_tokens,
                         completion_tokens=res.usage.completion_tokens,
                         cached_tokens=res.usage.cached_tokens, cost=res.cost(prices))
                for r, res in outcome.results],
        review=(f"git log -p {outcome.start[:12]}..{outcome.end[:12]}"
                if outcome.committed else None),
        nothing_decided=outcome.why_nothing(),
        log=outcome.log)
