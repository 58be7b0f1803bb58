"""Collecting a run spread over machines: the coordinator's side of `squad agent`.

Each `squad agent` delivers, on its writer's ref, one commit per drop and then one delivery
commit (trailers `Squad-Run`, `Squad-Task`) whose tree is `delivery/agent.json` (which drops
it made, with their hashes), `delivery/events.jsonl` and `delivery/cassette.jsonl`.

The coordinator holds every drop of a planned run back until each task of the plan has a
delivery; then, in one pass, it commits the run's drops one after another in plan order
(nothing else between them, so a replay can rebuild them on the same parent), assembles the
run's log (the plan's events, each agent's events, the commits with their dates, writers and
hashes) and its cassette (the lead's calls, then each agent's), and commits them in
`.squad/runs/<run>/`, all before the one atomic push of the trunk. A task delivered twice
counts once: the first delivery the coordinator sees wins, the others are passed over.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from squad import events as ev
from squad import plan as plans
from squad.agent import AgentResult
from squad.clock import format_instant, system_clock
from squad.coordinator import PassReport, trailer_name
from squad.errors import SquadError
from squad.events import (
    Committed,
    Delivered,
    Done,
    Event,
    Failed,
    ModelCalled,
    Quarantined,
    RoundStarted,
    RunStarted,
    Spawned,
    Stopped,
    ToolUsed,
)
from squad.llm.messages import Usage
from squad.outcome import Outcome
from squad.runlog import summarize
from squad.vcs import Commit

if TYPE_CHECKING:
    from squad.remote import Drop, RemoteCoordinator

DELIVERY = "delivery/"
MANIFEST, EVENTS, CASSETTE = "agent.json", "events.jsonl", "cassette.jsonl"


def read_delivery(drop: Drop, files: dict[str, str], trailers: dict[str, list[str]]) -> Drop:
    """Classify a delivery commit; its contents are read only when its run is collected."""
    run, task = trailers.get("Squad-Run", [""])[0], trailers["Squad-Task"][0]
    wanted = {DELIVERY + name for name in (MANIFEST, EVENTS, CASSETTE)}
    if set(files) != wanted or not all(files.values()) or not plans.valid_run(run):
        drop.problem = "a delivery commit holds delivery/agent.json, events.jsonl and " \
                       "cassette.jsonl, with Squad-Run naming a run id"
        return drop
    drop.delivery, drop.blob = (run, task), files[DELIVERY + MANIFEST]
    return drop


@dataclass
class _Run:
    deliveries: list[Drop] = field(default_factory=list)
    drops: dict[tuple[str, str], Drop] = field(default_factory=dict)


class Collector:
    """The spread runs of one coordinator: which drops wait for their run, and collection."""

    def __init__(self, remote: RemoteCoordinator) -> None:
        self.remote = remote
        self.runs: dict[str, _Run] = {}
        self._said: dict[str, str] = {}  # run -> what we last said about it (said once)

    @property
    def _repo(self) -> Any:
        return self.remote.ws.repo

    def sort(self, drops: list[Drop]) -> None:
        self.runs = {}
        for drop in drops:
            if drop.delivery is not None:
                self.runs.setdefault(drop.delivery[0], _Run()).deliveries.append(drop)
            elif drop.name is not None and drop.key is not None:
                run = plans.run_of_drop(drop.name)
                if run is not None:
                    self.runs.setdefault(run, _Run()).drops[drop.key] = drop

    def holds(self, drop: Drop) -> bool:
        """Whether the drop is the collector's: a delivery, or a drop of some run (only
        `squad agent` pushes those)."""
        return drop.delivery is not None or (
            drop.name is not None and plans.run_of_drop(drop.name) is not None)

    def holds_name(self, name: str) -> bool:
        """Whether an inbox file is a drop of a planned run not collected yet (left by a
        pass that was killed mid-collection): only the collector may commit it."""
        run = plans.run_of_drop(name)
        return run is not None and self._open(run)

    def _open(self, run: str, commit: str | None = None) -> bool:
        repo = self._repo
        return repo.file_sha(plans.path(run), commit or repo.head()) is not None \
            and not plans.collected(repo, run, commit)

    def handled(self, drop: Drop) -> bool | None:
        """For the taken refs: whether a drop or delivery of a run is done with (None: not
        the collector's)."""
        if not self.holds(drop):
            return None
        if drop.key is not None and self.remote.coordinator.is_done(drop.key):
            return True
        run = drop.delivery[0] if drop.delivery else plans.run_of_drop(drop.name or "")
        return run is not None and plans.collected(self._repo, run)

    def half_collected(self, local: list[Commit]) -> bool:
        """Whether local commits hold records of a run whose log is not committed (a pass
        killed mid-collection): they are dropped and the run is collected again."""
        runs = {run for commit in local if "Squad-Drop" in commit.trailers
                for run in commit.trailers.get("Squad-Run", [])}
        return any(self._open(run) for run in runs if plans.valid_run(run))

    # ---- collection ---------------------------------------------------------------------

    def collect(self, report: PassReport) -> None:
        """Collect every planned run whose tasks are all delivered (in the coordinator's
        session)."""
        for run in sorted(self.runs):
            if not self._open(run):
                continue
            plan = plans.load(self._repo, run)
            assert plan is not None
            chosen = self._chosen(plan)
            missing = [t.id for t in plan.tasks if t.id not in chosen]
            if missing:
                self._say(run, f"run {run}: waiting for {', '.join(missing)} "
                               f"({len(plan.tasks) - len(missing)} of {len(plan.tasks)} "
                               "tasks delivered)")
                continue
            lacking = [name for d in chosen.values() for name, sha in _drops(d)
                       if (trailer_name(name), sha) not in self.runs[run].drops
                       and not self.remote.coordinator.is_done((trailer_name(name), sha))]
            if lacking:
                self._say(run, f"run {run}: waiting for drop {lacking[0]}")
                continue
            self._collect(plan, chosen, report)

    def _say(self, run: str, message: str) -> None:
        if self._said.get(run) != message:
            self._said[run] = message
            self.remote.log(message)

    def _chosen(self, plan: plans.RunPlan) -> dict[str, Drop]:
        """The first usable delivery of each task, in the order the drops were walked."""
        ids = {t.id: t.agent for t in plan.tasks}
        chosen: dict[str, Drop] = {}
        for drop in self.runs[plan.run].deliveries:
            task = drop.delivery[1] if drop.delivery else ""
            manifest = _manifest(self._repo, drop)
            if task not in ids or manifest is None or manifest.get("agent") != ids[task]:
                self._say(f"{plan.run}/{drop.sha}", f"run {plan.run}: passed over delivery "
                          f"{drop.sha[:12]} of {drop.writer} (not a task of the plan, or "
                          "not a usable agent.json)")
                continue
            if task in chosen:
                self._say(f"{plan.run}/{drop.sha}", f"run {plan.run}: {task} was delivered "
                          f"again by {drop.writer} ({drop.sha[:12]}); the first delivery "
                          "counts")
                continue
            drop.manifest = manifest
            chosen[task] = drop
        return chosen

    def _collect(self, plan: plans.RunPlan, chosen: dict[str, Drop],
                 report: PassReport) -> None:
        repo, coordinator = self._repo, self.remote.coordinator
        ws, run = self.remote.ws, plan.run
        start = repo.head()
        held = self.runs[run].drops
        log: list[Event] = []
        outcome = Outcome(run_id=run, start=start or "", end=start or "")
        inbox = ws.inbox
        inbox.create()
        saved, coordinator.run = coordinator.run, run
        try:
            for task in plan.tasks:
                delivery = chosen[task.id]
                manifest = delivery.manifest or {}
                outcome.results.append((plans.ROUND, _result(manifest)))
                for name, sha in _drops(delivery):
                    key = (trailer_name(name), sha)
                    drop = held.get(key)
                    if drop is None or drop.blob is None or coordinator.is_done(key):
                        continue  # an earlier pass of this run: rebuilt from scratch
                    coordinator.writers[key] = delivery.writer
                    inbox.place(name, repo.blob(drop.blob))  # may replace a killed pass's
                    step = PassReport()
                    coordinator.take(name, step)
                    _merge(report, step)
                    for record, commit in zip(step.committed, step.commits, strict=True):
                        outcome.committed.append((name, record.id, commit, record.agent))
                        log.append(Committed(drop=name, id=record.id, sha=commit,
                                             agent=record.agent, title=record.title,
                                             date=format_instant(record.date)))
                    for dropped, reason in step.quarantined:
                        outcome.quarantined.append((dropped, reason))
                        log.append(Quarantined(drop=dropped, reason=reason))
        finally:
            coordinator.run = saved
        outcome.end = repo.head() or outcome.start
        outcome.plan = []
        self._commit_log(plan, chosen, outcome, log)
        self.remote.log(f"collected run {run}: {len(outcome.committed)} record(s) from "
                        f"{len(chosen)} agent(s)")

    def _commit_log(self, plan: plans.RunPlan, chosen: dict[str, Drop], outcome: Outcome,
                    commits: list[Event]) -> None:
        """The run's log, as `squad replay` and `squad report` read it: the run event, the
        lead's events from the plan, the round, each agent's delivery and its events, the
        commits and the summary."""
        repo, ws = self._repo, self.remote.ws
        now = format_instant(system_clock())
        log: list[Event] = [RunStarted(
            version=ev.VERSION, run=plan.run, goal=plan.goal, start=outcome.start,
            squad=plan.squad, settings=plan.settings, profile=plan.profile, model=plan.model,
            t=now)]
        log += plan.lead
        log.append(RoundStarted(round=plans.ROUND, snapshot=plan.snapshot,
                                agents=[t.agent for t in plan.tasks], t=now))
        cassette = repo.file_at(plans.path(plan.run, plans.CASSETTE)) or b""
        for task in plan.tasks:
            delivery = chosen[task.id]
            manifest = delivery.manifest or {}
            files = repo.commit_files(delivery.sha)
            log.append(Delivered(task=task.id, agent=task.agent, writer=delivery.writer,
                                 commit=delivery.sha, profile=manifest["profile"],
                                 model=manifest["model"],
                                 drops=[name for name, _ in _drops(delivery)], t=now))
            log += manifest["events"]
            part = repo.blob(files[DELIVERY + CASSETTE])
            cassette += part if not part or part.endswith(b"\n") else part + b"\n"
        log += [e.model_copy(update={"t": now}) for e in commits]
        prices = ws.at(plan.snapshot).config.prices  # the run's, as its agents had them
        log.append(summarize(outcome, prices).model_copy(update={"t": now}))
        lines = [ev.to_line(e.model_copy(update={"seq": seq}))
                 for seq, e in enumerate(log, start=1)]
        files = {plans.path(plan.run, plans.EVENTS): ("\n".join(lines) + "\n").encode("utf-8"),
                 plans.path(plan.run, plans.CASSETTE): cassette}
        head = repo.head()
        message = (f"squad run {plan.run}\n\n{plan.goal.strip()[:2000]}\n\n"
                   f"Squad-Run: {plan.run}\nSquad-Run-Start: {outcome.start}\n")
        repo.commit(files, message, ws.clock(), head)  # under the coordinator's lock
        repo.settle(sorted(files))


# What a delivery's log may hold: one agent's own events, never a commit or a run event (a
# pushed delivery is untrusted, and a replay takes its commits and stops from the log).
_AGENT_EVENTS = (Spawned, ModelCalled, ToolUsed, Done, Failed, Stopped)


def _manifest(repo: Any, drop: Drop) -> dict[str, Any] | None:
    """The delivery's agent.json, its typed events in it; None if any part is unusable
    (a pushed delivery is untrusted input: it must not stop the coordinator)."""
    try:
        manifest = json.loads(repo.blob(drop.blob))
        drops = manifest["drops"]
        if not isinstance(manifest, dict) or not isinstance(drops, list) or not all(
                isinstance(d["name"], str) and isinstance(d["hash"], str) for d in drops):
            return None
        agent, profile, model = manifest["agent"], manifest["profile"], manifest["model"]
        if not isinstance(profile, str) or not (model is None or isinstance(model, str)):
            return None
        files = repo.commit_files(drop.sha)
        data = repo.blob(files[DELIVERY + EVENTS])
        lines = [json.loads(line) for line in data.decode("utf-8").splitlines()
                 if line.strip()]
        events = [ev.parse(line, DELIVERY + EVENTS) for line in lines]
        if not all(isinstance(e, _AGENT_EVENTS) and e.agent == agent
                   and e.round == plans.ROUND for e in events):
            return None
        for line in repo.blob(files[DELIVERY + CASSETTE]).decode("utf-8").splitlines():
            if line.strip() and not isinstance(json.loads(line), dict):
                return None
    except (ValueError, KeyError, TypeError, RecursionError, SquadError):
        return None
    manifest["events"] = events
    return manifest


def _drops(delivery: Drop) -> list[tuple[str, str]]:
    manifest = delivery.manifest or {"drops": []}
    return [(d["name"], d["hash"]) for d in manifest["drops"]]


def _result(manifest: dict[str, Any]) -> AgentResult:
    usage = manifest.get("usage") or {}
    try:
        spent = Usage(**usage)
    except (TypeError, ValueError):
        spent = Usage()
    return AgentResult(agent=str(manifest.get("agent")), model=str(manifest.get("model") or ""),
                       drops=[d["name"] for d in manifest.get("drops", [])], usage=spent,
                       calls=int(manifest.get("calls") or 0), error=manifest.get("error"))


def _merge(report: PassReport, step: PassReport) -> None:
    report.committed += step.committed
    report.commits += step.commits
    report.quarantined += step.quarantined
    report.recovered += step.recovered
    report.kept += step.kept
    report.drops += step.drops
