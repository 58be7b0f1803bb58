"""What a recorded run did, folded from its event log: agents, calls, commits and problems.

Reports read a run only through `read_events` (the log as committed at HEAD, as the typed
events of `squad.events`) and `fold`.

Event times are recorded to the second; events that share a second are spread evenly across
it in the order they happened, so quick calls still show as distinct, ordered bars.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from squad import events
from squad.clock import parse_instant
from squad.errors import UsageError
from squad.events import (
    Committed,
    Event,
    Failed,
    ModelCalled,
    Planned,
    Quarantined,
    RoundStarted,
    Spawned,
    Stopped,
    Summary,
    ToolUsed,
)
from squad.vcs import Repository

RUNS = ".squad/runs"


def read_events(repo: Repository, run_id: str, commit: str | None = None) -> list[Event]:
    """The run's events as committed at `commit` (default HEAD), in the order they happened."""
    path = f"{RUNS}/{run_id}/events.jsonl"
    data = repo.file_at(path, commit)
    if data is None:
        raise UsageError(f"no recorded run {run_id} in {RUNS}/ at HEAD")
    return events.read(data, path)


@dataclass
class Call:
    """One bar of the timeline: a model call or a tool call, from start to end (seconds)."""

    kind: str  # "llm" or "tool"
    agent: str
    round: int
    start: float
    end: float
    name: str
    ok: bool
    detail: str


@dataclass
class Mark:
    """A point on the timeline: a commit, a failure, a budget stop or a quarantined drop."""

    kind: str  # "commit", "failed", "stop", "quarantine"
    agent: str | None
    at: float
    text: str


@dataclass
class AgentFacts:
    name: str
    model: str = ""
    rounds: list[int] = field(default_factory=list)
    calls: int = 0
    tools: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cost: float | None = None
    wall: float = 0.0
    files_read: list[str] = field(default_factory=list)
    decisions: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    stops: list[str] = field(default_factory=list)

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def ok(self) -> bool:
        return not self.errors and not self.stops


@dataclass
class Commit:
    id: int
    sha: str
    agent: str
    drop: str
    title: str
    at: float


@dataclass
class RunFacts:
    run_id: str
    goal: str
    start: str  # commit the run started from
    end: str | None  # last commit of the run (None: the log has no summary)
    started_at: datetime
    span: float  # seconds from the first to the last event
    squad_version: str
    profile: str
    model: str | None
    settings: dict[str, Any]
    plan: list[events.PlannedTask] = field(default_factory=list)
    rounds: list[float] = field(default_factory=list)  # when each round started
    agents: dict[str, AgentFacts] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    marks: list[Mark] = field(default_factory=list)
    commits: list[Commit] = field(default_factory=list)
    quarantined: list[tuple[str, str]] = field(default_factory=list)
    stopped: str | None = None
    finished: bool = False  # the log ends with a summary

    @property
    def ok(self) -> bool:
        return (self.finished and not self.stopped and not self.quarantined
                and all(a.ok for a in self.agents.values()))

    @property
    def failures(self) -> list[Mark]:
        return [m for m in self.marks if m.kind != "commit"]

    def total(self, name: str) -> int:
        return sum(getattr(a, name) for a in self.agents.values())

    @property
    def cost(self) -> float | None:
        costs = [a.cost for a in self.agents.values() if a.calls]
        return None if not costs or any(c is None for c in costs) else sum(
            c for c in costs if c is not None)


def positions(log: list[Event]) -> list[float]:
    """Seconds since the first event; events within one second spread in their order."""
    seconds = [parse_instant(e.t).timestamp() if e.t else None for e in log]
    known = [s for s in seconds if s is not None]
    origin = known[0] if known else 0.0
    filled: list[float] = []
    last = origin
    for s in seconds:
        last = max(last, s) if s is not None else last
        filled.append(last)
    result: list[float] = []
    i = 0
    while i < len(filled):
        j = i
        while j < len(filled) and filled[j] == filled[i]:
            j += 1
        for k in range(i, j):
            result.append(filled[i] - origin + (k - i) / (j - i))
        i = j
    return result


def _agent_of_drop(drop: str) -> str | None:
    parts = drop.split(".")
    return parts[2] if len(parts) >= 5 else None


def fold(log: list[Event]) -> RunFacts:
    """The facts of one run from its events (see `read_events`)."""
    head = events.head(log, "the run log")
    at = positions(log)
    facts = RunFacts(
        run_id=head.run, goal=head.goal, start=head.start, end=None,
        started_at=parse_instant(head.t) if head.t else datetime.fromtimestamp(0),
        span=max(at[-1], 1.0), squad_version=head.squad, profile=head.profile,
        model=head.model, settings=head.settings.model_dump(mode="json"))
    last: dict[str, float] = {}  # each agent's latest event: where its next call starts
    spawned: dict[tuple[str, int], float] = {}
    ended: dict[tuple[str, int], float] = {}
    unpriced: set[str] = set()

    def agent(name: str) -> AgentFacts:
        return facts.agents.setdefault(name, AgentFacts(name))

    for event, now in zip(log, at, strict=True):
        who: str | None = getattr(event, "agent", None)
        rnd: int = getattr(event, "round", 0)
        if isinstance(event, Planned):
            facts.plan = list(event.tasks)
            for task in facts.plan:
                agent(task.agent)
        elif isinstance(event, RoundStarted):
            facts.rounds.append(now)
        elif isinstance(event, Spawned):
            a = agent(event.agent)
            a.model = event.model or a.model
            if rnd not in a.rounds:
                a.rounds.append(rnd)
            spawned[(event.agent, rnd)] = now
        elif isinstance(event, ModelCalled):
            a = agent(event.agent)
            usage = event.usage
            a.calls += 1
            a.prompt_tokens += usage.prompt_tokens
            a.completion_tokens += usage.completion_tokens
            a.cached_tokens += usage.cached_tokens
            start = last.get(event.agent, spawned.get((event.agent, rnd), 0.0))
            tools = ", ".join(event.tool_calls) or "no tool call"
            facts.calls.append(Call(
                "llm", event.agent, rnd, start, now, f"call {event.call}", True,
                f"{event.agent} round {rnd} model call {event.call}: "
                f"{usage.prompt_tokens} prompt + {usage.completion_tokens} "
                f"completion tokens, {now - start:.1f} s; asked for {tools}"))
        elif isinstance(event, ToolUsed):
            a = agent(event.agent)
            a.tools += 1
            name, ok = event.tool, event.ok
            if name == "read_file" and ok:
                path = _path_argument(event.arguments)
                if path and path not in a.files_read:
                    a.files_read.append(path)
            start = last.get(event.agent, spawned.get((event.agent, rnd), 0.0))
            facts.calls.append(Call(
                "tool", event.agent, rnd, start, now, name, ok,
                f"{event.agent} round {rnd} {name}({event.arguments[:80]}) "
                f"{'ok' if ok else 'refused'}" + (f", dropped {event.drop}"
                                                  if event.drop else "")))
        elif isinstance(event, Failed) and event.error in agent(event.agent).stops:
            pass  # a version 1 log: the agent ended because of its budget stop, already marked
        elif isinstance(event, Failed):
            agent(event.agent).errors.append(event.error)
            facts.marks.append(Mark("failed", event.agent, now,
                                    f"{event.agent} failed: {event.error}"))
        elif isinstance(event, Stopped):
            agent(event.agent).stops.append(event.reason)
            facts.marks.append(Mark("stop", event.agent, now, f"{event.agent} stopped before "
                                    f"call {event.call}: {event.reason}"))
        elif isinstance(event, Committed):
            commit = Commit(event.id, event.sha, event.agent, event.drop, event.title, now)
            facts.commits.append(commit)
            agent(event.agent).decisions.append(commit.id)
            facts.marks.append(Mark("commit", event.agent, now, f"{commit.id:04d} "
                                    f"{commit.sha[:12]} {event.agent}: {commit.title}"))
        elif isinstance(event, Quarantined):
            facts.quarantined.append((event.drop, event.reason))
            facts.marks.append(Mark("quarantine", _agent_of_drop(event.drop), now,
                                    f"quarantined {event.drop}: {event.reason}"))
        elif isinstance(event, Summary):
            facts.finished = True
            facts.stopped = event.stopped
            facts.end = event.end
            for row in event.agents:
                a = agent(row.agent)
                if row.cost is None:
                    unpriced.add(a.name)
                else:
                    a.cost = (a.cost or 0.0) + row.cost
        if who and event.event in ("spawn", "llm", "reply", "tool", "done", "failed", "stop"):
            last[who] = now
            ended[(who, rnd)] = now
    for (who, rnd), begin in spawned.items():
        facts.agents[who].wall += ended.get((who, rnd), begin) - begin
    lead = facts.agents.get("lead")
    if lead is not None and not lead.rounds and lead.calls:
        lead.wall = max((c.end for c in facts.calls if c.agent == "lead"), default=0.0)
    for name in unpriced:
        facts.agents[name].cost = None  # a partial sum would understate what it cost
    return facts


def _path_argument(arguments: str) -> str | None:
    try:
        value = json.loads(arguments)
    except json.JSONDecodeError:
        return None
    path = value.get("path") if isinstance(value, dict) else None
    return path if isinstance(path, str) else None
