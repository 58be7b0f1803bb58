"""What a recorded run did, folded from its event log: agents, calls, commits and problems.

Reports read a run only through `read_events` (the log as committed at HEAD) and `fold`, so
a typed form of the events can replace the raw dictionaries here without touching the rest.

Event times are recorded to the second; events that share a second are spread evenly across
it in the order they happened, so quick calls still show as distinct, ordered bars.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from squad.clock import parse_instant
from squad.errors import SquadError, UsageError
from squad.vcs import Repository

RUNS = ".squad/runs"


def read_events(repo: Repository, run_id: str, commit: str | None = None) -> list[dict[str, Any]]:
    """The run's events as committed at `commit` (default HEAD), in the order they happened."""
    path = f"{RUNS}/{run_id}/events.jsonl"
    data = repo.file_at(path, commit)
    if data is None:
        raise UsageError(f"no recorded run {run_id} in {RUNS}/ at HEAD")
    events = []
    for number, line in enumerate(data.decode("utf-8", "replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SquadError(f"{path}:{number}: not a JSON event: {exc.msg}") from None
        if not isinstance(event, dict) or "event" not in event:
            raise SquadError(f"{path}:{number}: not an event object")
        events.append(event)
    if not events or events[0].get("event") != "run":
        raise SquadError(f"{path}: does not start with a run event")
    return events


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
    plan: list[dict[str, Any]] = field(default_factory=list)
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


def positions(events: list[dict[str, Any]]) -> list[float]:
    """Seconds since the first event; events within one second spread in their order."""
    seconds = [parse_instant(e["t"]).timestamp() if "t" in e else None for e in events]
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


def fold(events: list[dict[str, Any]]) -> RunFacts:
    """The facts of one run from its events (see `read_events`)."""
    head = events[0]
    at = positions(events)
    facts = RunFacts(
        run_id=str(head.get("run", "")), goal=str(head.get("goal", "")),
        start=str(head.get("start", "")), end=None,
        started_at=parse_instant(head["t"]) if "t" in head else datetime.fromtimestamp(0),
        span=max(at[-1], 1.0), squad_version=str(head.get("squad", "")),
        profile=str(head.get("profile", "")), model=head.get("model"),
        settings=dict(head.get("settings") or {}))
    last: dict[str, float] = {}  # each agent's latest event: where its next call starts
    spawned: dict[tuple[str, int], float] = {}
    ended: dict[tuple[str, int], float] = {}
    unpriced: set[str] = set()

    def agent(name: str) -> AgentFacts:
        return facts.agents.setdefault(name, AgentFacts(name))

    for event, now in zip(events, at, strict=True):
        kind = event["event"]
        who = event.get("agent")
        rnd = int(event.get("round") or 0)
        if kind == "plan":
            facts.plan = list(event.get("tasks") or [])
            for task in facts.plan:
                agent(str(task.get("agent")))
        elif kind == "round":
            facts.rounds.append(now)
        elif kind == "spawn" and who:
            a = agent(who)
            a.model = str(event.get("model") or a.model)
            if rnd not in a.rounds:
                a.rounds.append(rnd)
            spawned[(who, rnd)] = now
        elif kind == "llm" and who:
            a = agent(who)
            usage = event.get("usage") or {}
            a.calls += 1
            a.prompt_tokens += int(usage.get("prompt_tokens", 0))
            a.completion_tokens += int(usage.get("completion_tokens", 0))
            a.cached_tokens += int(usage.get("cached_tokens", 0))
            start = last.get(who, spawned.get((who, rnd), 0.0))
            tools = ", ".join(event.get("tool_calls") or []) or "no tool call"
            facts.calls.append(Call(
                "llm", who, rnd, start, now, f"call {event.get('call', a.calls)}", True,
                f"{who} round {rnd} model call {event.get('call', a.calls)}: "
                f"{usage.get('prompt_tokens', 0)} prompt + {usage.get('completion_tokens', 0)} "
                f"completion tokens, {now - start:.1f} s; asked for {tools}"))
        elif kind == "tool" and who:
            a = agent(who)
            a.tools += 1
            name = str(event.get("tool", "?"))
            ok = bool(event.get("ok"))
            if name == "read_file" and ok:
                path = _path_argument(event.get("arguments"))
                if path and path not in a.files_read:
                    a.files_read.append(path)
            start = last.get(who, spawned.get((who, rnd), 0.0))
            arguments = str(event.get("arguments", ""))
            facts.calls.append(Call(
                "tool", who, rnd, start, now, name, ok,
                f"{who} round {rnd} {name}({arguments[:80]}) "
                f"{'ok' if ok else 'refused'}" + (f", dropped {event['drop']}"
                                                  if event.get("drop") else "")))
        elif kind == "failed" and who and event.get("error") in agent(who).stops:
            pass  # the agent ended because of its budget stop, already marked
        elif kind == "failed" and who:
            agent(who).errors.append(str(event.get("error", "")))
            facts.marks.append(Mark("failed", who, now, f"{who} failed: {event.get('error')}"))
        elif kind == "stop" and who:
            agent(who).stops.append(str(event.get("reason", "")))
            facts.marks.append(Mark("stop", who, now, f"{who} stopped before call "
                                    f"{event.get('call')}: {event.get('reason')}"))
        elif kind == "commit":
            name = str(who or "")
            commit = Commit(int(event["id"]), str(event.get("sha", "")), name,
                            str(event.get("drop", "")), str(event.get("title", "")), now)
            facts.commits.append(commit)
            agent(name).decisions.append(commit.id)
            facts.marks.append(Mark("commit", name, now,
                                    f"{commit.id:04d} {commit.sha[:12]} {name}: {commit.title}"))
        elif kind == "quarantine":
            drop, reason = str(event.get("drop", "")), str(event.get("reason", ""))
            facts.quarantined.append((drop, reason))
            facts.marks.append(Mark("quarantine", _agent_of_drop(drop), now,
                                    f"quarantined {drop}: {reason}"))
        elif kind == "summary":
            facts.finished = True
            facts.stopped = event.get("stopped")
            facts.end = event.get("end")
            for row in event.get("agents") or []:
                a = agent(str(row.get("agent")))
                if row.get("cost") is None:
                    unpriced.add(a.name)
                else:
                    a.cost = (a.cost or 0.0) + float(row["cost"])
        if who and kind in ("spawn", "llm", "reply", "tool", "done", "failed", "stop"):
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


def _path_argument(arguments: Any) -> str | None:
    try:
        value = json.loads(arguments) if isinstance(arguments, str) else arguments
    except json.JSONDecodeError:
        return None
    path = value.get("path") if isinstance(value, dict) else None
    return path if isinstance(path, str) else None
