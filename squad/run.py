"""`squad run`: route a goal to specialists, fan them out in parallel, commit drops as they arrive.

Everything a replay must reproduce passes through one recorded seam:
- every model reply goes through `cassette.Seam` (recorded, or served back on replay);
- record dates come from the run's clock, recorded per commit (`commit` events);
- ids, hashes and commit SHAs follow from the order of commits, which is the order in which
  drops arrived, recorded per commit; a replay commits in the recorded order whatever the
  thread timing;
- drop names are `<run>.r<round>.<agent>.<n>.md`, not random;
- agents read the repository as it was committed when their round started, never the
  working tree, so a sibling's fresh commit cannot change what another agent sees; the
  run's inputs (AGENTS.md, charters, squad.toml, template overrides) are read at that
  commit too (`squad.snapshot`), so what git does not show cannot reach a run;
- a budget or Ctrl-C refuses a call by its label (agent, round, call), recorded as a `stop`;
  a call that Ctrl-C abandons mid-flight is a `stop` too, and its late reply is never
  recorded.

A run holds the repository's coordinator lock from before it reads its starting commit to
after it commits its log, so a second run waits (saying so) and every run builds on the
commit it records. Only a run's own coordinator commits its drops; a run that decides
nothing leaves no commit.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import threading
from collections.abc import Callable

from squad import __version__, events, heap, workers
from squad.agent import AgentResult, run_agent
from squad.arrivals import Arrivals
from squad.budget import Budget, Stop
from squad.charters import Charter
from squad.clock import Clock, system_clock
from squad.connection import Connection
from squad.coordinator import Coordinator
from squad.errors import SquadError, UsageError
from squad.events import (
    AgentEvent,
    Failed,
    Listener,
    ModelCalled,
    Planned,
    PlannedTask,
    RoundStarted,
    RunStarted,
    Stopped,
)
from squad.ledger import Ledger
from squad.llm.cassette import Divergence, Label, LabelledBackend
from squad.llm.messages import ChatReply, ChatRequest
from squad.modes import RUNS, Mode, Record, Replay, Script, iter_clock, load_script, new_run_id
from squad.outcome import Outcome, RunSettings
from squad.routing import Plan, Task, route
from squad.runlog import RunLog, logged_settings, summarize
from squad.safety import check_layout, has_surrogate, scrub
from squad.snapshot import Snapshot
from squad.vcs import Stopped as LockWaitStopped
from squad.workspace import Workspace

# The run's parts live in their own modules; the CLI, replay and tests import them from here.
__all__ = ["RUNS", "Interrupted", "Mode", "Outcome", "Record", "Replay", "Run", "RunLog",
           "RunSettings", "Script", "check", "iter_clock", "load_script", "logged_settings",
           "new_run_id", "summarize"]

INPUTS = ("AGENTS.md", "agents", "squad.toml", "templates")


class Interrupted(SquadError):
    exit_code = 130


def check(ws: Workspace, settings: RunSettings) -> dict[str, Charter]:
    """Every input of a run, checked before anything is started or written; returns the
    team. Faults are usage errors, so the user fixes them before paying for a model."""
    if not settings.goal.strip():
        raise UsageError('the goal is empty; say what the team should work on, e.g. '
                         'squad run "Add rate limiting to the API"')
    if settings.agents is not None and not settings.agents:
        raise UsageError("--agents names no agent; pass e.g. --agents architect,tester, or "
                         "leave it out to let the lead choose")
    if ws.repo.head() is None:
        raise UsageError("the repository has no commit yet; run `squad init` first")
    ws.repo.ensure_safe()
    dirty = sorted(ws.repo.uncommitted_any(list(INPUTS)))
    if dirty:
        raise UsageError(
            f"{dirty[0]} has uncommitted changes; commit the team's inputs "
            f"({', '.join(INPUTS)}) first, so the run can be replayed from its commit")
    # The team as committed: what the run will read (see squad.snapshot).
    team = Snapshot.read(ws.repo, ws.repo.head() or "HEAD").team()
    if settings.agents:
        unknown = [a for a in settings.agents if a not in team]
        if unknown:
            raise UsageError(f"no agent {unknown[0]!r} in agents/ (agents: "
                             f"{', '.join(sorted(team)) or 'none'})")
        if len(set(settings.agents)) != len(settings.agents):
            raise UsageError("--agents names an agent twice; give each one once")
    elif "lead" not in team:
        raise UsageError("agents/lead.md is missing, so nobody can route the goal; "
                         "add it (squad init) or pass --agents a,b")
    elif len(team) < 2:
        raise UsageError("agents/ has no specialist besides the lead; add one (squad init)")
    return team


class Run:
    """One run: the rounds, each fanning its agents out in parallel, with the coordinator
    committing their drops beside them (`arrivals`), all logged (`runlog`). Whether it is
    recorded or replayed is the `mode` it is handed (`modes.Record`, `modes.Replay`)."""

    def __init__(self, ws: Workspace, settings: RunSettings, connection: Connection, *,
                 mode: Mode | None = None, on_event: Listener | None = None,
                 event_clock: Clock = system_clock,
                 notice: Callable[[str], None] | None = None) -> None:
        if has_surrogate(settings.goal):  # undecodable bytes from argv
            settings = dataclasses.replace(settings, goal=scrub(settings.goal))
        self.ws, self.settings, self.connection = ws, settings, connection
        self.mode: Mode = mode or Record()
        self.seam = self.mode.seam(connection.backend)
        self.team: dict[str, Charter] = {}
        self.stopping = threading.Event()
        self.interrupted = False
        self._notice = notice
        self.budget = Budget(settings.limits, ws.config.prices)
        self.log = RunLog(event_clock, on_event)
        self._arrivals: Arrivals | None = None

    # ---- the whole run ------------------------------------------------------------------

    def execute(self, team: dict[str, Charter] | None = None) -> Outcome:
        """Check every input, wait for any other run here, then run under the repository's
        coordinator lock, so the recorded start is the commit the whole run built on.
        `team`: what `check` returned for these settings just before (the command checks
        before it connects to a model), so the inputs are not read from git twice."""
        self.team = team if team is not None else check(self.ws, self.settings)
        coordinator = Coordinator(self.ws)
        try:
            with heap.quiet(), coordinator.session(self.stopping, on_busy=self._busy):
                return self._execute(coordinator)
        except LockWaitStopped:
            raise Interrupted("interrupted while waiting for the other run; nothing was "
                              "started") from None

    def interrupt(self, reason: str = "interrupted (Ctrl-C)") -> None:
        """Stop the run soon: no new model call, and calls in flight are abandoned."""
        self.interrupted = True
        self.budget.interrupt(reason)
        self.stopping.set()

    def _busy(self) -> None:
        if self._notice is not None:
            self._notice("another squad run or command holds this repository; waiting for "
                         "it to finish (Ctrl-C to give up)")

    def _execute(self, coordinator: Coordinator) -> Outcome:
        settings, repo = self.settings, self.ws.repo
        start = repo.head()
        if start is None:
            raise UsageError("the repository has no commit yet; run `squad init` first")
        check_layout(self.ws.root)  # never create the run's folder through a link
        run_id, self.ws = self.mode.begin(self.ws, settings, start, self.log)
        coordinator.ws, coordinator.run = self.ws, run_id
        outcome = Outcome(run_id=run_id, start=start, end=start)
        branch_back = None
        try:
            branch_back = repo.start_branch(f"squad/{run_id}") if settings.branch else None
            self.log(RunStarted(version=events.VERSION, run=run_id, goal=settings.goal,
                                start=start, squad=__version__,
                                settings=logged_settings(settings),
                                profile=self.connection.profile.name,
                                model=self.connection.model))
            arrivals = self._arrivals = Arrivals(coordinator, outcome, self.log,
                                                 self.mode.in_order, self._coordinator_stopped)
            arrivals.start()
            try:
                self._rounds(run_id, outcome, coordinator, arrivals)
            finally:
                arrivals.stop()
            if arrivals.error:
                raise arrivals.error
            outcome.stopped = self.budget.stopped
            outcome.interrupted = self.interrupted
            outcome.end = repo.head() or start
            self.mode.finish(outcome, lambda: self.log(summarize(outcome, self.budget.prices)))
        except BaseException:
            self.mode.abort(outcome)
            raise
        finally:
            self.log.close_file()
            if branch_back:
                repo.switch(branch_back)
        return outcome

    def _rounds(self, run_id: str, outcome: Outcome, coordinator: Coordinator,
                arrivals: Arrivals) -> None:
        settings = self.settings
        for number in range(1, self.mode.rounds(settings) + 1):
            if not self.mode.goes_on(self.budget):
                break
            snapshot = self.ws.repo.head() or ""
            ledger = coordinator.ledger_at(snapshot) or self.ws.ledger(snapshot)
            # Everything the round's agents and its commits read comes from its snapshot.
            ws = self.ws.at(snapshot)
            self.team = ws.snapshot.team() if ws.snapshot else self.team
            coordinator.ws = ws  # between rounds: every drop of the last one is taken
            if number == 1:
                self.budget.prices = ws.config.prices  # the start commit's, as the charters
                try:
                    outcome.plan = list(self._plan(ws).tasks)
                except Divergence:
                    raise
                except SquadError as exc:  # the lead failed: the run ends, saying why
                    lead = self.team.get("lead")
                    result = AgentResult(agent="lead", model=(lead.model if lead else None) or "",
                                         error=exc.message)
                    outcome.results.append((0, result))
                    self.log(Failed(agent="lead", round=0, error=exc.message))
                    return
            self.log(RoundStarted(round=number, snapshot=snapshot,
                                  agents=[t.agent for t in outcome.plan]))
            # the agents' threads and their calls' (see `modes.Record.call`), started now
            workers.CALLS.reserve(2 * min(max(1, settings.concurrency), len(outcome.plan)))
            futures = workers.CALLS.fan_out(
                [functools.partial(self._agent, ws, run_id, number, task, ledger, snapshot,
                                   arrivals) for task in outcome.plan],
                settings.concurrency)
            for future in futures:
                outcome.results.append((number, future.result()))
            arrivals.settle()  # the next round sees this round's decisions committed
            if arrivals.error:
                return

    def _plan(self, ws: Workspace) -> Plan:
        settings = self.settings
        if settings.agents:
            plan = Plan(tasks=tuple(Task(agent=a, task=settings.goal) for a in settings.agents))
        else:
            lead = self.team.get("lead")
            if lead is None:
                raise UsageError("agents/lead.md is missing, so nobody can route the goal; "
                                 "add it (squad init) or pass --agents a,b")
            backend = _Guarded(self, "lead", 0)
            plan = route(ws.inputs, settings.goal, lead, self.team, backend,
                         self.connection.model or lead.model or ws.config.llm.model,
                         settings.max_agents, self.connection.profile)
            # A weak lead writes tasks like "1.2.3.4": a task with no words is the goal.
            plan = Plan(tasks=tuple(
                t if re.search(r"[^\W\d_]", t.task) else Task(agent=t.agent, task=settings.goal)
                for t in plan.tasks))
        self.log(Planned(tasks=[PlannedTask(agent=t.agent, task=t.task) for t in plan.tasks]))
        return plan

    def _call(self, label: Label, call: Callable[[], ChatReply]) -> ChatReply:
        """One model call (already allowed), abandoned once the run is interrupted: then
        the agent stops waiting and a `stop` event says so."""

        def watch() -> None:
            if self.stopping.is_set() and self.seam.abandon(label):
                reason = self.budget.stopped or "interrupted"
                self.log(Stopped(agent=label.agent, round=label.round, call=label.call,
                                 reason=reason))
                raise Stop(reason)

        return self.mode.call(label, call, watch)

    def _agent(self, ws: Workspace, run_id: str, number: int, task: Task, ledger: Ledger,
               snapshot: str, arrivals: Arrivals) -> AgentResult:
        charter: Charter = self.team[task.agent]
        counter = iter(range(1, 10_000))

        def drop_name() -> str:
            return f"{run_id}.r{number}.{task.agent}.{next(counter):03d}.md"

        def on_event(event: AgentEvent) -> None:
            self.log(event.model_copy(update={"round": number}))

        connection = dataclasses.replace(self.connection,
                                         backend=_Guarded(self, task.agent, number))
        try:
            return run_agent(ws, charter, task.task, connection, ledger=ledger,
                             run=run_id, on_event=on_event, snapshot=snapshot,
                             drop_name=drop_name, on_drop=arrivals.put)
        except Divergence:
            raise
        except Exception as exc:  # a bug in one agent's path must not take its siblings down
            error = f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
            self.log(Failed(agent=task.agent, round=number, error=error))
            return AgentResult(agent=task.agent, model=charter.model or "", error=error)

    def _coordinator_stopped(self, exc: BaseException) -> None:
        self.budget.interrupt(f"the coordinator stopped: {exc}")


class _Guarded(LabelledBackend):
    """An agent's backend in a run: each call is allowed by the budget, then logged."""

    def __init__(self, run: Run, agent: str, round_: int) -> None:
        super().__init__(run.seam, agent, round_)
        self._run = run

    def complete(self, request: ChatRequest) -> ChatReply:
        label = self.next_label()
        self._run.mode.allow(label, self._run.budget, self._run.log)
        self.calls += 1
        reply = self._run._call(label, lambda: self._seam.complete(request, label))
        self._run.budget.spend(request.model, reply.usage)
        self._run.log(ModelCalled(agent=label.agent, round=label.round, call=label.call,
                                  key=request.key(), usage=reply.usage,
                                  tool_calls=[c.name for c in reply.tool_calls]))
        return reply


