"""`squad run`: route a goal to specialists, fan them out in parallel, commit drops as they arrive.

Everything a replay must reproduce passes through one recorded seam:
- every model reply goes through `cassette.Seam` (recorded, or served back on replay);
- record dates come from the run's clock, recorded per commit (`commit` events);
- ids, hashes and commit SHAs follow from the order of commits, which is the order in which
  drops arrived, recorded per commit; a replay commits in the recorded order whatever the
  thread timing;
- drop names are `<run>.r<round>.<agent>.<n>.md`, not random;
- agents read the repository as it was committed when their round started, never the
  working tree, so a sibling's fresh commit cannot change what another agent sees;
- a budget or Ctrl-C refuses a call by its label (agent, round, call), recorded as a `stop`;
  a call that Ctrl-C abandons mid-flight is a `stop` too, and its late reply is never
  recorded.

A run holds the repository's coordinator lock from before it reads its starting commit to
after it commits its log, so a second run waits (saying so) and every run builds on the
commit it records. Only a run's own coordinator commits its drops; a run that decides
nothing leaves no commit.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import queue
import re
import shutil
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from squad import __version__, secrets
from squad.agent import AgentResult, Event, run_agent
from squad.budget import Budget, BudgetLimits, Stop
from squad.charters import Charter, load_team
from squad.clock import Clock, format_instant, parse_instant, system_clock
from squad.coordinator import Coordinator, PassReport
from squad.errors import SquadError, UsageError
from squad.ledger import Ledger
from squad.llm.cassette import Divergence, Label, LabelledBackend, Seam
from squad.llm.messages import ChatReply, ChatRequest
from squad.llm.profiles import PROFILES, Profile
from squad.routing import Plan, Task, route
from squad.safety import check_layout, has_surrogate, scrub
from squad.vcs import Stopped
from squad.workspace import Workspace

RUNS = ".squad/runs"
INPUTS = ("AGENTS.md", "agents", "squad.toml", "templates")


@dataclass(frozen=True)
class RunSettings:
    goal: str
    agents: tuple[str, ...] | None = None  # None: the lead routes
    rounds: int = 1
    concurrency: int = 4
    max_agents: int = 5
    limits: BudgetLimits = field(default_factory=BudgetLimits)
    branch: bool = False


@dataclass(frozen=True)
class Script:
    """What a replay takes from the recorded run instead of from the world."""

    run_id: str
    dates: tuple[datetime, ...]  # each commit's date, in commit order
    order: tuple[str, ...]  # drop names, in the order the coordinator took them
    stops: dict[Label, str]  # calls that a budget or an interrupt refused
    rounds: int


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
    team = load_team(ws.root)
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


class RunLog:
    """`.squad/runs/<id>/events.jsonl`: one JSON object per line, in the order things happened."""

    def __init__(self, path: Path | None, clock: Clock, forward: Event | None) -> None:
        self.path, self._clock, self._forward = path, clock, forward
        self._lock = threading.Lock()
        self._seq = 0

    def __call__(self, kind: str, data: dict[str, Any]) -> None:
        with self._lock:
            self._seq += 1
            event = {"seq": self._seq, "t": format_instant(self._clock()), "event": kind,
                     **{key: _bounded(value) for key, value in data.items()}}
            if self.path is not None:
                line = secrets.redact(json.dumps(event, sort_keys=True, ensure_ascii=False))
                with self.path.open("a", encoding="utf-8", errors="replace") as out:
                    out.write(line + "\n")
        if self._forward:
            self._forward(kind, event)


MAX_LOGGED_CHARS = 2000  # of one string in the run log: a refused 10 MB argument is not kept


def _bounded(value: Any) -> Any:
    """`value` with long strings cut and lone surrogates replaced, for the run log."""
    if isinstance(value, str):
        if len(value) > MAX_LOGGED_CHARS:
            value = value[:MAX_LOGGED_CHARS] + f"... [{len(value) - MAX_LOGGED_CHARS} more " \
                                               "characters not logged]"
        return scrub(value)
    if isinstance(value, list):
        return [_bounded(item) for item in value]
    if isinstance(value, dict):
        return {key: _bounded(item) for key, item in value.items()}
    return value


def new_run_id(now: datetime, goal: str, head: str | None) -> str:
    tag = hashlib.sha256(f"{goal}\0{head}\0{now.isoformat()}".encode()).hexdigest()[:6]
    return f"{now:%Y%m%d-%H%M%S}-{tag}"


class Run:
    def __init__(self, ws: Workspace, settings: RunSettings, seam: Seam, *,
                 script: Script | None = None, on_event: Event | None = None,
                 event_clock: Clock = system_clock, profile: Profile = PROFILES["openai"],
                 model: str | None = None, notice: Callable[[str], None] | None = None) -> None:
        if has_surrogate(settings.goal):  # undecodable bytes from argv
            settings = dataclasses.replace(settings, goal=scrub(settings.goal))
        self.ws, self.settings, self.seam, self.script = ws, settings, seam, script
        self.profile, self.model = profile, model
        self.team: dict[str, Charter] = {}
        self.stopping = threading.Event()
        self.interrupted = False
        self._notice = notice
        self.budget = Budget(settings.limits, ws.config.prices)
        self._on_event, self._event_clock = on_event, event_clock
        self._arrivals: queue.Queue[str | None] = queue.Queue()
        self._coordinator_error: BaseException | None = None
        self._next_in_order = 0

    # ---- the whole run ------------------------------------------------------------------

    def execute(self) -> Outcome:
        """Check every input, wait for any other run here, then run under the repository's
        coordinator lock, so the recorded start is the commit the whole run built on."""
        self.team = check(self.ws, self.settings)
        coordinator = Coordinator(self.ws)
        try:
            with coordinator.session(self.stopping, on_busy=self._busy):
                return self._execute(coordinator)
        except Stopped:
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
        ws, settings, repo = self.ws, self.settings, self.ws.repo
        start = repo.head()
        if start is None:
            raise UsageError("the repository has no commit yet; run `squad init` first")
        run_id = self.script.run_id if self.script else new_run_id(ws.clock(), settings.goal,
                                                                    start)
        folder = ws.root / RUNS / run_id
        check_layout(ws.root)  # never create the run's folder through a link
        if self.script is None:
            folder.mkdir(parents=True, exist_ok=False)
            if self.seam.mode == "record":
                self.seam.record_to(folder / "cassette.jsonl")
        self.log = RunLog(folder / "events.jsonl" if self.script is None else None,
                          self._event_clock, self._on_event)
        if self.script is not None:
            ws = self.ws = dataclasses.replace(ws, clock=iter_clock(self.script.dates))
        coordinator.ws, coordinator.run = ws, run_id
        outcome = Outcome(run_id=run_id, start=start, end=start)
        branch_back = None
        try:
            branch_back = repo.start_branch(f"squad/{run_id}") if settings.branch else None
            self.log("run", {"run": run_id, "goal": settings.goal, "start": start,
                             "squad": __version__, "settings": _settings_json(settings),
                             "profile": self.profile.name, "model": self.model})
            worker = threading.Thread(target=self._coordinate,
                                      args=(coordinator, outcome), daemon=True)
            worker.start()
            try:
                self._rounds(run_id, outcome)
            finally:
                self._arrivals.put(None)
                worker.join()
            if self._coordinator_error:
                raise self._coordinator_error
            if self.script is not None and self._next_in_order < len(self.script.order):
                missing = self.script.order[self._next_in_order]
                raise SquadError(f"replay diverged: the recorded drop {missing} was not "
                                 "made again")
            outcome.stopped = self.budget.stopped
            outcome.interrupted = self.interrupted
            outcome.end = repo.head() or start
            if self.script is None and not outcome.committed:
                outcome.log = self._aside(folder, run_id)
            self.log("summary", summary_json(outcome, ws))
            if self.script is None and outcome.committed:
                self._commit_log(run_id, folder, outcome)
        except BaseException:
            if self.script is None and not outcome.committed and folder.is_dir():
                self._aside(folder, run_id)
            raise
        finally:
            if branch_back:
                repo.switch(branch_back)
        return outcome

    def _aside(self, folder: Path, run_id: str) -> str:
        """A run that decided nothing leaves no commit; its log goes where no `git add .`
        picks it up (committed, it could not be replayed), and the user is told where."""
        target = self.ws.repo.git_dir / "squad" / "runs" / run_id
        target.parent.mkdir(parents=True, exist_ok=True)
        if self.log.path is not None:
            self.log.path = target / "events.jsonl"
        self.seam.record_to(target / "cassette.jsonl")
        shutil.move(str(folder), str(target))
        with contextlib.suppress(OSError):
            folder.parent.rmdir()  # .squad/runs, if this was its only run
        return str(target / "events.jsonl")

    def _rounds(self, run_id: str, outcome: Outcome) -> None:
        settings = self.settings
        rounds = self.script.rounds if self.script else settings.rounds
        for number in range(1, rounds + 1):
            if self.budget.stopped and self.script is None:
                break
            snapshot = self.ws.repo.head()
            ledger = self.ws.ledger(snapshot)
            if number == 1:
                try:
                    outcome.plan = list(self._plan().tasks)
                except Divergence:
                    raise
                except SquadError as exc:  # the lead failed: the run ends, saying why
                    lead = self.team.get("lead")
                    result = AgentResult(agent="lead", model=(lead.model if lead else None) or "",
                                         error=exc.message)
                    outcome.results.append((0, result))
                    self.log("failed", {"agent": "lead", "round": 0, "error": exc.message})
                    return
            self.log("round", {"round": number, "snapshot": snapshot,
                               "agents": [t.agent for t in outcome.plan]})
            with ThreadPoolExecutor(max_workers=max(1, settings.concurrency),
                                    thread_name_prefix="squad-agent") as pool:
                futures = [pool.submit(self._agent, run_id, number, task, ledger, snapshot)
                           for task in outcome.plan]
                for future in futures:
                    outcome.results.append((number, future.result()))
            self._arrivals.join()  # the next round sees this round's decisions committed
            if self._coordinator_error:
                return

    def _plan(self) -> Plan:
        settings = self.settings
        if settings.agents:
            plan = Plan(tasks=tuple(Task(agent=a, task=settings.goal) for a in settings.agents))
        else:
            lead = self.team.get("lead")
            if lead is None:
                raise UsageError("agents/lead.md is missing, so nobody can route the goal; "
                                 "add it (squad init) or pass --agents a,b")
            backend = self._backend("lead", 0)
            plan = route(self.ws.root, settings.goal, lead, self.team, backend,
                         self.model or lead.model or self.ws.config.llm.model,
                         settings.max_agents, self.profile)
            # A weak lead writes tasks like "1.2.3.4": a task with no words is the goal.
            plan = Plan(tasks=tuple(
                t if re.search(r"[^\W\d_]", t.task) else Task(agent=t.agent, task=settings.goal)
                for t in plan.tasks))
        self.log("plan", {"tasks": [t.model_dump() for t in plan.tasks]})
        return plan

    def _backend(self, agent: str, round_: int) -> LabelledBackend:
        return _Guarded(self, agent, round_)

    def _allow(self, label: Label) -> None:
        if self.script is not None:
            if label in self.script.stops:
                raise Stop(self.script.stops[label])
            return
        try:
            self.budget.check()
        except Stop as stop:
            self.log("stop", {"agent": label.agent, "round": label.round, "call": label.call,
                              "reason": stop.message})
            raise

    def _call(self, label: Label, call: Callable[[], ChatReply]) -> ChatReply:
        """Make one model call that Ctrl-C can abandon: the call runs in its own thread and
        the agent stops waiting as soon as the run is interrupted. A replay never waits."""
        if self.script is not None:
            return call()
        box: dict[str, Any] = {}
        done = threading.Event()

        def work() -> None:
            try:
                box["reply"] = call()
            except BaseException as exc:  # handed to the waiting agent
                box["error"] = exc
            finally:
                done.set()

        threading.Thread(target=work, daemon=True, name=f"squad-call-{label}").start()
        while not done.wait(0.05):
            if self.stopping.is_set() and self.seam.abandon(label):
                reason = self.budget.stopped or "interrupted"
                self.log("stop", {"agent": label.agent, "round": label.round,
                                  "call": label.call, "reason": reason})
                raise Stop(reason)
        if "error" in box:
            raise box["error"]
        reply: ChatReply = box["reply"]
        return reply

    def _agent(self, run_id: str, number: int, task: Task, ledger: Ledger,
               snapshot: str | None) -> AgentResult:
        charter: Charter = self.team[task.agent]
        counter = iter(range(1, 10_000))

        def drop_name() -> str:
            return f"{run_id}.r{number}.{task.agent}.{next(counter):03d}.md"

        def on_event(kind: str, data: dict[str, Any]) -> None:
            self.log(kind, {"round": number, **data})

        try:
            return run_agent(self.ws, charter, task.task, self._backend(task.agent, number),
                             ledger=ledger, run=run_id, on_event=on_event, snapshot=snapshot,
                             drop_name=drop_name, on_drop=self._arrivals.put,
                             profile=self.profile, model=self.model)
        except Divergence:
            raise
        except Exception as exc:  # a bug in one agent's path must not take its siblings down
            result = AgentResult(agent=task.agent, model=charter.model or "",
                                 error=f"{type(exc).__name__}: {exc}")
            self.log("failed", {"agent": task.agent, "round": number, "error": result.error})
            return result

    # ---- the coordinator, beside the agents ---------------------------------------------

    def _coordinate(self, coordinator: Coordinator, outcome: Outcome) -> None:
        """Commit drops as they arrive; drops that arrive together (a burst of agents) are
        one group commit: one fsync round, one branch move, one index write."""
        waiting: set[str] = set()
        while True:
            names = [self._arrivals.get()]
            while names[-1] is not None:
                try:
                    names.append(self._arrivals.get_nowait())
                except queue.Empty:
                    break
            try:
                if self._coordinator_error:
                    continue
                ready = [r for name in names if name is not None
                         for r in self._in_order(name, waiting)]
                if ready:
                    self._take(coordinator, ready, outcome)
            except BaseException as exc:  # kept for the main thread; drops stay in the inbox
                self._coordinator_error = exc
                self.budget.interrupt(f"the coordinator stopped: {exc}")
            finally:
                for _ in names:
                    self._arrivals.task_done()
            if names[-1] is None:
                return

    def _in_order(self, name: str, waiting: set[str]) -> Iterator[str]:
        if self.script is None:
            yield name
            return
        order = self.script.order
        if name not in order:
            raise SquadError(f"replay diverged: drop {name} was not in the recorded run")
        waiting.add(name)
        while self._next_in_order < len(order) and order[self._next_in_order] in waiting:
            waiting.discard(order[self._next_in_order])
            yield order[self._next_in_order]
            self._next_in_order += 1

    def _take(self, coordinator: Coordinator, names: list[str], outcome: Outcome) -> None:
        report = PassReport()
        coordinator.take_all(names, report)
        for record, sha, name in zip(report.committed, report.commits, report.drops,
                                     strict=True):
            outcome.committed.append((name, record.id, sha, record.agent))
            self.log("commit", {"drop": name, "id": record.id, "sha": sha,
                                "agent": record.agent, "title": record.title,
                                "date": format_instant(record.date)})
        for drop, reason in report.quarantined:
            outcome.quarantined.append((drop, reason))
            self.log("quarantine", {"drop": drop, "reason": reason})
        for path, kept in report.kept:
            self.log("kept", {"path": path, "kept_as": kept})

    def _commit_log(self, run_id: str, folder: Path, outcome: Outcome) -> None:
        files = {f"{RUNS}/{run_id}/{p.name}": p.read_bytes() for p in sorted(folder.iterdir())}
        repo = self.ws.repo
        message = (f"squad run {run_id}\n\n{self.settings.goal.strip()[:2000]}\n\n"
                   f"Squad-Run: {run_id}\nSquad-Run-Start: {outcome.start}\n")
        repo.commit(files, message, self.ws.clock(), repo.head())  # the run holds the lock
        repo.settle(sorted(files))


class _Guarded(LabelledBackend):
    """An agent's backend in a run: each call is allowed by the budget, then logged."""

    def __init__(self, run: Run, agent: str, round_: int) -> None:
        super().__init__(run.seam, agent, round_)
        self._run = run

    def complete(self, request: ChatRequest) -> ChatReply:
        label = self.next_label()
        self._run._allow(label)
        self.calls += 1
        reply = self._run._call(label, lambda: self._seam.complete(request, label))
        self._run.budget.spend(request.model, reply.usage)
        self._run.log("llm", {"agent": label.agent, "round": label.round, "call": label.call,
                              "key": request.key(), "usage": reply.usage.model_dump(),
                              "tool_calls": [c.name for c in reply.tool_calls]})
        return reply


def iter_clock(dates: tuple[datetime, ...]) -> Clock:
    readings = iter(dates)

    def read() -> datetime:
        try:
            return next(readings)
        except StopIteration:
            raise SquadError("replay diverged: more commits than the recorded run") from None

    return read


def _settings_json(settings: RunSettings) -> dict[str, Any]:
    return {"agents": list(settings.agents) if settings.agents else None,
            "rounds": settings.rounds, "concurrency": settings.concurrency,
            "max_agents": settings.max_agents, "limits": settings.limits.model_dump(),
            "branch": settings.branch}


def summary_json(outcome: Outcome, ws: Workspace) -> dict[str, Any]:
    prices = ws.config.prices
    return {
        "run": outcome.run_id, "start": outcome.start, "end": outcome.end, "ok": outcome.ok,
        "stopped": outcome.stopped,
        "decisions": [{"id": i, "agent": a, "sha": s, "drop": d}
                      for d, i, s, a in outcome.committed],
        "quarantined": [{"drop": d, "reason": r} for d, r in outcome.quarantined],
        "agents": [{"agent": res.agent, "round": r, "ok": res.ok, "error": res.error,
                    "calls": res.calls, "drops": len(res.drops), **res.usage.model_dump(),
                    "cost": res.cost(prices)} for r, res in outcome.results],
        "review": (f"git log -p {outcome.start[:12]}..{outcome.end[:12]}"
                   if outcome.committed else None),
        "nothing_decided": outcome.why_nothing(),
        "log": outcome.log,
    }


def load_script(events: list[dict[str, Any]], where: str = "events.jsonl",
                ) -> tuple[RunSettings, Script, dict[str, Any]]:
    """The settings, replay script and run event (start commit, profile, model) of a run;
    a field missing or of the wrong type is a one-line SquadError naming the file."""
    try:
        return _load_script(events)
    except SquadError as exc:
        raise SquadError(f"{where}: {exc.message}") from None
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        what = f"missing field {exc}" if isinstance(exc, KeyError) else \
            " ".join(str(exc).split())[:200]
        raise SquadError(f"{where}: not a usable run log ({what})") from None


def _load_script(events: list[dict[str, Any]]) -> tuple[RunSettings, Script, dict[str, Any]]:
    if not events:
        raise SquadError("the event log is empty")
    head = events[0]
    if head.get("event") != "run":
        raise SquadError("the event log does not start with a run event")
    s = head["settings"]
    settings = RunSettings(goal=head["goal"], agents=tuple(s["agents"]) if s["agents"] else None,
                           rounds=s["rounds"], concurrency=s["concurrency"],
                           max_agents=s["max_agents"], limits=BudgetLimits(**s["limits"]))
    commits = [e for e in events if e["event"] == "commit"]
    script = Script(
        run_id=head["run"],
        dates=tuple(parse_instant(e["date"]) for e in commits),
        order=tuple(e["drop"] for e in events if e["event"] in ("commit", "quarantine")),
        stops={Label(e["agent"], e["round"], e["call"]): e["reason"]
               for e in events if e["event"] == "stop"},
        rounds=sum(1 for e in events if e["event"] == "round"))
    return settings, script, head
