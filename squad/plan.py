"""A run spread over machines: its committed plan, task ids, and which drops belong to it.

`squad run --plan-only` commits `.squad/runs/<run>/plan.json` (and the lead's calls in
`cassette.jsonl` beside it); every machine that has that commit can run a task of it with
`squad agent`. The folder gets its `events.jsonl` only when the coordinator collects the
run, so "plan.json without events.jsonl" means: planned, not collected yet.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from pydantic import ValidationError

from squad import events
from squad.errors import SquadError, UsageError, describe
from squad.events import Event, LoggedSettings
from squad.modes import RUNS
from squad.vcs import Repository

PLAN = "plan.json"
EVENTS = "events.jsonl"
CASSETTE = "cassette.jsonl"
ROUND = 1  # a spread run has one round: a second would need the first one collected
# the drop names `squad run` and `squad agent` give: <run>.r<round>.<agent>.<n>.md
_RUN_DROP = re.compile(r"^(\d{8}-\d{6}-[0-9a-f]{6})\.r\d+\.")
_RUN_ID = re.compile(r"^\d{8}-\d{6}-[0-9a-f]{6}$")


def task_id(agent: str) -> str:
    """A task's id in its run: stable, short, typed by people (`r1.architect`)."""
    return f"r{ROUND}.{agent}"


@dataclass(frozen=True)
class PlannedTask:
    id: str
    agent: str
    task: str


@dataclass(frozen=True)
class RunPlan:
    run: str
    goal: str
    snapshot: str  # the commit every agent of the run reads
    settings: LoggedSettings
    profile: str
    model: str | None
    tasks: tuple[PlannedTask, ...]
    lead: tuple[Event, ...]  # the lead's events (its calls and the plan)
    squad: str

    def task(self, wanted: str) -> PlannedTask:
        for task in self.tasks:
            if wanted in (task.id, task.agent):  # `architect` for `r1.architect`
                return task
        raise UsageError(f"no task {wanted!r} in run {self.run} (tasks: "
                         f"{', '.join(t.id for t in self.tasks)})")

    def to_json(self) -> bytes:
        return (json.dumps({
            "run": self.run, "goal": self.goal, "snapshot": self.snapshot,
            "settings": self.settings.model_dump(mode="json"), "profile": self.profile,
            "model": self.model, "squad": self.squad,
            "tasks": [{"id": t.id, "agent": t.agent, "task": t.task} for t in self.tasks],
            "lead": [events.to_json(e) for e in self.lead]},
            indent=2, sort_keys=True, ensure_ascii=False)
            + "\n").encode("utf-8")


def path(run: str, name: str = PLAN) -> str:
    return f"{RUNS}/{run}/{name}"


def parse_plan(data: bytes, where: str) -> RunPlan:
    """The plan in `data`; a fault is one line naming the file."""
    try:
        raw = json.loads(data.decode("utf-8"))
        tasks = tuple(PlannedTask(str(t["id"]), str(t["agent"]), str(t["task"]))
                      for t in raw["tasks"])
        model = raw.get("model")
        plan = RunPlan(run=str(raw["run"]), goal=str(raw["goal"]),
                       snapshot=str(raw["snapshot"]),
                       settings=LoggedSettings.model_validate(raw["settings"]),
                       profile=str(raw["profile"]), model=None if model is None else str(model),
                       tasks=tasks,
                       lead=tuple(events.parse(e, f"{where} (lead)")
                                  for e in raw.get("lead") or ()),
                       squad=str(raw.get("squad", "")))
    except ValidationError as exc:
        raise SquadError(f"{where}: not a usable run plan (settings: {describe(exc)})"
                         ) from None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise SquadError(f"{where}: not a usable run plan ({' '.join(str(exc).split())[:120]})"
                         ) from None
    if not _RUN_ID.match(plan.run) or not re.fullmatch(r"[0-9a-f]{40}", plan.snapshot) \
            or not tasks:
        raise SquadError(f"{where}: not a usable run plan (run id, snapshot or tasks)")
    return plan


def load(repo: Repository, run: str, commit: str | None = None) -> RunPlan | None:
    """The plan of `run` at `commit` (default HEAD), or None if it has none."""
    if not _RUN_ID.match(run):
        return None
    data = repo.file_at(path(run), commit)
    return None if data is None else parse_plan(data, path(run))


def collected(repo: Repository, run: str, commit: str | None = None) -> bool:
    return repo.file_sha(path(run, EVENTS), commit or repo.head()) is not None


def open_runs(repo: Repository, commit: str | None = None) -> list[str]:
    """Runs planned at `commit` whose log is not collected yet, oldest first."""
    found = []
    for run in sorted(repo.list_dirs(RUNS, commit)):
        listing = repo.list_dir(f"{RUNS}/{run}", commit)
        if PLAN in listing and EVENTS not in listing:
            found.append(run)
    return found


def valid_run(run: str) -> bool:
    return bool(_RUN_ID.match(run))


def run_of_drop(name: str) -> str | None:
    """The run a drop name says it belongs to (`<run>.r1.<agent>.001.md`), or None."""
    match = _RUN_DROP.match(name)
    return match.group(1) if match else None
