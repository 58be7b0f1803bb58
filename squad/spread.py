"""A run spread over machines: plan here, run each agent anywhere, replay it all offline.

- `plan_only` (`squad run --plan-only`) routes the goal (the lead's calls recorded to the
  run's cassette, as in a run) and commits `.squad/runs/<run>/plan.json`: the run id, goal,
  settings, the snapshot commit every agent reads, and tasks `r1.<agent>`.
- `run_task` (`squad agent TASK-ID --push REMOTE`) runs one planned agent against the plan's
  snapshot, checked out in a throwaway worktree (never the working tree), records its calls
  to its own cassette, then commits its drops and its delivery (squad.collect) on this
  clone's writer ref and pushes them; offline, they wait there for `squad push`.
- `replay` re-executes a collected run: the lead and every agent against the snapshot, their
  replies from the cassette, then the recorded drops committed in the recorded order with
  the recorded dates, writers and hashes on the recorded parent; the SHAs must match.

Budgets apply per agent (each machine counts its own calls); a refused call is a `stop`
event in that agent's log, refused again on replay.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from squad import __version__
from squad import events as ev
from squad import plan as plans
from squad.agent import AgentResult, run_agent
from squad.budget import Budget
from squad.clock import system_clock
from squad.collect import CASSETTE, DELIVERY, EVENTS, MANIFEST
from squad.connection import Connection, Offline, offline
from squad.coordinator import Coordinator, PassReport, trailer_name
from squad.errors import SquadError, UsageError
from squad.events import AgentEvent, Committed, Delivered, Listener, ModelCalled, Planned
from squad.llm.cassette import Divergence, LabelledBackend, Seam, read_cassette
from squad.llm.messages import ChatReply, ChatRequest
from squad.llm.profiles import PROFILES, Profile
from squad.modes import Mode, Record, Replay, Script, iter_clock, load_script, new_run_id
from squad.outcome import RunSettings
from squad.records import digest
from squad.remote import DROPS, PushReport, commit_on_writer_ref, push_drops, record_drop
from squad.routing import Task, route
from squad.run import check
from squad.runlog import RunLog, logged_settings
from squad.workspace import Workspace


class Calls(LabelledBackend):
    """One agent's (or the lead's) calls, as `squad run` guards them: each allowed by the
    mode first (the budget when recording, the recorded stops on replay), then logged."""

    def __init__(self, seam: Seam, agent: str, round_: int, mode: Mode, budget: Budget,
                 log: RunLog) -> None:
        super().__init__(seam, agent, round_)
        self._mode, self._budget, self._log = mode, budget, log

    def complete(self, request: ChatRequest) -> ChatReply:
        label = self.next_label()
        self._mode.allow(label, self._budget, self._log)
        self.calls += 1
        reply = self._seam.complete(request, label)
        self._budget.spend(request.model, reply.usage)
        self._log(ModelCalled(agent=label.agent, round=label.round, call=label.call,
                              key=request.key(), usage=reply.usage,
                              tool_calls=[c.name for c in reply.tool_calls]))
        return reply


def _tasks(ws: Workspace, settings: RunSettings, connection: Connection | None,
           ) -> tuple[Task, ...]:
    """The run's tasks, as `squad run` chooses them (`--agents`, or the lead's plan);
    `ws` reads its inputs at the snapshot (`Workspace.at`)."""
    if settings.agents:
        return tuple(Task(agent=a, task=settings.goal) for a in settings.agents)
    assert ws.snapshot is not None and connection is not None
    team = ws.snapshot.team()
    lead = team["lead"]
    plan = route(ws.inputs, settings.goal, lead, team, connection.backend,
                 connection.model or lead.model or ws.config.llm.model, settings.max_agents,
                 connection.profile)
    # As in `squad run`: a weak lead writes tasks like "1.2.3.4"; a task with no words is
    # the goal.
    return tuple(t if re.search(r"[^\W\d_]", t.task) else Task(agent=t.agent, task=settings.goal)
                 for t in plan.tasks)


# ---- plan -------------------------------------------------------------------------------


def plan_only(ws: Workspace, settings: RunSettings, connection: Connection,
              on_busy: Callable[[], None] | None = None) -> plans.RunPlan:
    """Route the goal and commit the plan on the current branch; returns the plan. With
    `--agents` nobody routes, and `connection` only names the profile (it may be offline)."""
    if settings.rounds != 1:
        raise UsageError("a run spread over machines has one round; leave out --rounds "
                         "(or set [run] rounds = 1)")
    if settings.branch:
        raise UsageError("--branch does not go with --plan-only; plan on the branch you "
                         "want the records on")
    check(ws, settings)
    repo = ws.repo
    with Coordinator(ws).session(on_busy=on_busy), \
            tempfile.TemporaryDirectory(prefix="squad-plan-") as tmp:
        snapshot = repo.head()
        assert snapshot is not None  # check() refuses a repository without a commit
        run_id = new_run_id(ws.clock(), settings.goal, snapshot)
        lead_events: list[ev.Event] = []
        log = RunLog(system_clock, lead_events.append)  # kept in the plan, not in a file
        lead = None
        if not settings.agents:  # the lead routes: its calls are recorded
            seam = Seam("record", connection.backend)
            seam.record_to(Path(tmp) / CASSETTE)
            lead = dataclasses.replace(connection, backend=Calls(
                seam, "lead", 0, Record(), Budget(settings.limits, ws.config.prices), log))
        tasks = _tasks(ws.at(snapshot), settings, lead)
        log(Planned(tasks=[ev.PlannedTask(agent=t.agent, task=t.task) for t in tasks]))
        plan = plans.RunPlan(
            run=run_id, goal=settings.goal, snapshot=snapshot,
            settings=logged_settings(settings), profile=connection.profile.name,
            model=connection.model,
            tasks=tuple(plans.PlannedTask(plans.task_id(t.agent), t.agent, t.task)
                        for t in tasks),
            lead=tuple(lead_events), squad=__version__)
        files = {plans.path(run_id): plan.to_json()}
        cassette = Path(tmp) / CASSETTE
        if cassette.exists():
            files[plans.path(run_id, CASSETTE)] = cassette.read_bytes()
        message = (f"squad plan {run_id}\n\n{settings.goal.strip()[:2000]}\n\n"
                   f"Squad-Run: {run_id}\nSquad-Plan: {len(tasks)} tasks\n")
        repo.commit(files, message, ws.clock(), snapshot)
        repo.settle(sorted(files))
    return plan


def settings_of(plan: plans.RunPlan) -> RunSettings:
    s = plan.settings
    return RunSettings(goal=plan.goal, agents=tuple(s.agents) if s.agents else None,
                       rounds=1, concurrency=s.concurrency, max_agents=s.max_agents,
                       limits=s.limits)


def find_plan(ws: Workspace, task: str, run: str | None) -> plans.RunPlan:
    """The plan at HEAD that `task` belongs to (the only open one with it, unless `run`)."""
    repo = ws.repo
    if run is not None:
        found = plans.load(repo, run)
        if found is None:
            raise UsageError(f"no run plan {plans.path(run)} at HEAD; `git pull` the commit "
                             "`squad run --plan-only` made, or check the run id")
        found.task(task)
        return found
    planned = [p for p in (plans.load(repo, r) for r in plans.open_runs(repo)) if p]
    candidates = [p for p in planned if any(task in (t.id, t.agent) for t in p.tasks)]
    if not candidates and len(planned) == 1:
        planned[0].task(task)  # says which tasks there are
    if not candidates:
        raise UsageError(f"no planned run at HEAD has a task {task!r}; `git pull` the plan "
                         "(squad run --plan-only) or pass --run RUN")
    if len(candidates) > 1:
        raise UsageError(f"task {task!r} is in {len(candidates)} planned runs ("
                         f"{', '.join(p.run for p in candidates)}); pass --run RUN")
    return candidates[0]


# ---- one agent, anywhere ----------------------------------------------------------------


@dataclass
class Delivery:
    run: str
    task: str
    agent: str
    drops: list[str] = field(default_factory=list)
    result: AgentResult | None = None


def run_task(ws: Workspace, plan: plans.RunPlan, task_id: str, writer: str,
             connect: Callable[[Workspace], Connection],
             on_event: Listener | None = None) -> Delivery:
    """Run one task of `plan` against its snapshot and commit its drops and delivery on
    this clone's writer ref (not pushed here: see `deliver`)."""
    task = plan.task(task_id)
    repo = ws.repo
    if repo.resolve(plan.snapshot) is None:
        raise UsageError(f"the plan's snapshot {plan.snapshot[:12]} is not in this clone; "
                         "`git fetch` it")
    settings = settings_of(plan)
    done = Delivery(plan.run, task.id, task.agent)
    with tempfile.TemporaryDirectory(prefix=f"squad-agent-{task.agent}-") as tmp, \
            repo.temporary_worktree(plan.snapshot, Path(tmp)) as path:
        opened = Workspace.open(path, env=os.environ)
        try:
            there = opened.at(plan.snapshot)  # the inputs as committed, as in `squad run`
            connection = connect(there)
            try:
                result = _run_one(there, plan, task, settings, connection, Path(tmp),
                                  on_event)
                drops = [(name, (there.inbox.new / name).read_bytes())
                         for name in result.drops]
                cassette = Path(tmp) / CASSETTE
                log = (Path(tmp) / EVENTS).read_bytes() if (Path(tmp) / EVENTS).exists() \
                    else b""
                recorded = cassette.read_bytes() if cassette.exists() else b""
                profile = connection.profile.name
            finally:
                connection.close()
        finally:
            opened.repo.close()
    manifest = {"run": plan.run, "task": task.id, "agent": task.agent, "writer": writer,
                "snapshot": plan.snapshot, "profile": profile, "model": result.model,
                "squad": __version__, "calls": result.calls,
                "usage": result.usage.model_dump(), "error": result.error,
                "drops": [{"name": name, "hash": digest(data)} for name, data in drops]}
    for name, data in drops:
        record_drop(ws, writer, data.decode("utf-8"), name)
    commit_on_writer_ref(ws, writer, {
        DELIVERY + MANIFEST: (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode(),
        DELIVERY + EVENTS: log, DELIVERY + CASSETTE: recorded},
        f"squad agent {task.id} of run {plan.run}\n\nSquad-Run: {plan.run}\n"
        f"Squad-Task: {task.id}\nSquad-Writer: {writer}\n")
    done.drops, done.result = [name for name, _ in drops], result
    return done


def _run_one(ws: Workspace, plan: plans.RunPlan, task: plans.PlannedTask,
             settings: RunSettings, connection: Connection, folder: Path,
             on_event: Listener | None) -> AgentResult:
    """The agent of `task`, its calls recorded to `folder`'s cassette and its events to
    `folder`'s log, both stamped with the run's one round."""
    assert ws.snapshot is not None
    team = ws.snapshot.team()
    if task.agent not in team:
        raise UsageError(f"agents/{task.agent}.md is not in the plan's snapshot "
                         f"{plan.snapshot[:12]}")
    seam = Seam("record", connection.backend)
    seam.record_to(folder / CASSETTE)
    log = RunLog(system_clock, on_event)
    log.write_to(folder / EVENTS)
    try:
        calls = Calls(seam, task.agent, plans.ROUND, Record(),
                      Budget(settings.limits, ws.config.prices), log)
        counter = iter(range(1, 10_000))

        def emit(event: AgentEvent) -> None:
            log(event.model_copy(update={"round": plans.ROUND}))

        return run_agent(
            ws, team[task.agent], task.task, dataclasses.replace(connection, backend=calls),
            ledger=ws.ledger(plan.snapshot), run=plan.run, on_event=emit,
            snapshot=plan.snapshot,
            drop_name=lambda: f"{plan.run}.r{plans.ROUND}.{task.agent}.{next(counter):03d}.md")
    finally:
        log.close_file()


def delivered_here(ws: Workspace, writer: str, run: str, task: str) -> bool:
    """Whether this clone's writer ref already holds a delivery of that task."""
    tip = ws.repo.ref(DROPS + writer)
    if tip is None:
        return False
    return any(trailers.get("Squad-Run") == [run] and trailers.get("Squad-Task") == [task]
               for _, _, trailers in ws.repo.walk([tip], []))


def deliver(ws: Workspace, remote: str, writer: str,
            log: Callable[[str], None] | None = None) -> PushReport:
    return push_drops(ws, remote, writer, log=log)


# ---- replay -----------------------------------------------------------------------------


def replay(ws: Workspace, run_id: str) -> Any:
    """Re-execute a collected spread run offline; a `squad.replay.Verdict`."""
    from squad.replay import Verdict, judge, read_events

    verdict = Verdict(run_id)
    repo = ws.repo
    where = plans.path(run_id, EVENTS)
    try:
        plan = plans.load(repo, run_id)
        data = repo.file_at(where)
        if plan is None or data is None:
            raise SquadError(f"{plans.path(run_id)}: run {run_id} is planned but not "
                             "collected yet (`squad ingest --remote REMOTE` collects it)")
        log = read_events(data, where)
        _, script, head = load_script(log, where)
        recorded = [(e.drop, e.id, e.sha) for e in log if isinstance(e, Committed)]
        delivered = {e.task: e for e in log if isinstance(e, Delivered)}
        for task in plan.tasks:
            if task.id not in delivered:
                raise SquadError(f"{where}: no delivery of {task.id}")
    except SquadError as exc:
        verdict.problem = exc.message
        return verdict
    with tempfile.TemporaryDirectory(prefix=f"squad-replay-{run_id}-") as tmp:
        cassette = Path(tmp) / CASSETTE
        cassette.write_bytes(repo.file_at(plans.path(run_id, CASSETTE)) or b"")
        try:
            mode = Replay(script, read_cassette(cassette))
            seam = mode.seam(Offline())
            made = _agents(ws, plan, mode, seam, delivered, Path(tmp) / "snapshot")
            replayed = _commit(ws, script, head.start, made, delivered, Path(tmp) / "start")
        except SquadError as exc:
            verdict.problem = exc.message.replace(str(cassette), plans.path(run_id, CASSETTE))
            if isinstance(exc, Divergence):
                verdict.where, verdict.diff = str(exc.label), exc.diff
            return verdict
    return judge(verdict, repo, head.start, recorded, replayed, seam.unused())


def _agents(ws: Workspace, plan: plans.RunPlan, mode: Replay, seam: Seam,
            delivered: dict[str, Delivered], folder: Path) -> dict[str, bytes]:
    """Run the lead and every agent again against the snapshot; the drops they make."""
    folder.mkdir()
    made: dict[str, bytes] = {}
    with ws.repo.temporary_worktree(plan.snapshot, folder) as path:
        opened = Workspace.open(path)
        try:
            there = opened.at(plan.snapshot)
            assert there.snapshot is not None
            quiet = RunLog(system_clock)  # a replay writes no log
            settings = settings_of(plan)
            budget = Budget(settings.limits, there.config.prices)
            lead = None
            if not settings.agents:
                lead = offline(_profile(plan.profile), plan.model, "the run's cassette")
                lead.backend = Calls(seam, "lead", 0, mode, budget, quiet)
            tasks = _tasks(there, settings, lead)
            if [(t.agent, t.task) for t in tasks] != [(t.agent, t.task) for t in plan.tasks]:
                raise SquadError("replay diverged: the lead planned other tasks than "
                                 f"{plans.path(plan.run)} holds")
            team = there.snapshot.team()
            ledger = there.ledger(plan.snapshot)
            for task in plan.tasks:
                delivery = delivered[task.id]
                counter = iter(range(1, 10_000))

                def name(agent: str = task.agent, numbers: Any = counter) -> str:
                    return f"{plan.run}.r{plans.ROUND}.{agent}.{next(numbers):03d}.md"

                connection = offline(_profile(delivery.profile), delivery.model,
                                     "the run's cassette")
                connection.backend = Calls(seam, task.agent, plans.ROUND, mode, budget, quiet)
                result = run_agent(there, team[task.agent], task.task, connection,
                                   ledger=ledger, run=plan.run, snapshot=plan.snapshot,
                                   drop_name=name)
                for drop in result.drops:
                    made[drop] = (there.inbox.new / drop).read_bytes()
        finally:
            opened.repo.close()
    return made


def _commit(ws: Workspace, script: Script, start: str, made: dict[str, bytes],
            delivered: dict[str, Delivered], folder: Path) -> list[tuple[str, int, str]]:
    """Commit the replayed drops on the recorded parent, in the recorded order and dates,
    each with the writer that delivered it."""
    folder.mkdir()
    extra = sorted(set(made) - set(script.order))
    if extra:
        raise SquadError(f"replay diverged: drop {extra[0]} was not in the recorded run")
    writer = {drop: d.writer for d in delivered.values() for drop in d.drops}
    replayed: list[tuple[str, int, str]] = []
    with ws.repo.temporary_worktree(start, folder) as path:
        there = Workspace.open(path, clock=iter_clock(script.dates))
        try:
            coordinator = Coordinator(there, run=script.run_id)
            coordinator.writers = {(trailer_name(drop), digest(data)): writer[drop]
                                   for drop, data in made.items() if drop in writer}
            there.inbox.create()
            with coordinator.session():
                for drop in script.order:
                    if drop not in made:
                        raise SquadError(f"replay diverged: the recorded drop {drop} was not "
                                         "made again")
                    (there.inbox.new / drop).write_bytes(made[drop])
                    report = PassReport()
                    coordinator.take(drop, report)
                    replayed += [(drop, r.id, sha)
                                 for r, sha in zip(report.committed, report.commits,
                                                   strict=True)]
        finally:
            there.repo.close()
    return replayed


def _profile(name: str) -> Profile:
    profile = PROFILES.get(name)
    if profile is None:
        raise SquadError(f"unknown model profile {name!r} in the run's log")
    return profile
