"""What a run is asked to do (`RunSettings`) and what it did (`Outcome`), as plain values."""

from __future__ import annotations

from dataclasses import dataclass, field

from squad.agent import AgentResult
from squad.budget import BudgetLimits
from squad.routing import Task


@dataclass(frozen=True)
class RunSettings:
    goal: str
    agents: tuple[str, ...] | None = None  # None: the lead routes
    rounds: int = 1
    concurrency: int = 4
    max_agents: int = 5
    limits: BudgetLimits = field(default_factory=BudgetLimits)
    branch: bool = False


@dataclass
class Outcome:
    run_id: str
    start: str
    end: str
    plan: list[Task] = field(default_factory=list)
    results: list[tuple[int, AgentResult]] = field(default_factory=list)
    committed: list[tuple[str, int, str, str]] = field(default_factory=list)  # drop, id, sha, agent
    quarantined: list[tuple[str, str]] = field(default_factory=list)
    stopped: str | None = None
    interrupted: bool = False  # a person stopped it (Ctrl-C, SIGTERM): the CLI exits 130
    log: str | None = None  # where the log of a run that committed nothing was put

    @property
    def failures(self) -> list[tuple[int, AgentResult]]:
        return [(r, res) for r, res in self.results if not res.ok]

    @property
    def ok(self) -> bool:
        return (not self.failures and not self.stopped and not self.quarantined
                and bool(self.committed))

    def why_nothing(self) -> str | None:
        """Why no decision was committed, in one line; None if some were."""
        if self.committed:
            return None
        if self.stopped:
            return self.stopped
        for _, result in self.failures:
            return f"{result.agent}: {result.error}"
        for drop, reason in self.quarantined:
            return f"{drop} was quarantined: {reason}"
        return "no agent recorded a decision"
