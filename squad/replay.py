"""`squad replay`: re-execute a recorded run offline and check that it reproduces.

The run's event log and cassette are read from HEAD. Its starting commit is checked out in a
throwaway worktree, and the run is executed again there by the same code as `squad run`,
with the recorded run id, commit dates, order of commits and refused calls, and every model
reply served from the cassette (the network is never touched; an unrecorded request fails
closed). Passing means the same records and the same commit SHAs, in the same order.
"""

from __future__ import annotations

import contextlib
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from squad import events, verdicts
from squad.connection import offline
from squad.errors import SquadError
from squad.events import Committed, Event
from squad.llm.cassette import Divergence, Label, read_cassette
from squad.llm.profiles import PROFILES
from squad.modes import Replay
from squad.plan import open_runs
from squad.plan import path as plan_path
from squad.run import RUNS, Run, load_script
from squad.vcs import Repository
from squad.workspace import Workspace


@dataclass
class Verdict:
    run_id: str
    ok: bool = False
    commits: int = 0
    problem: str | None = None
    where: str | None = None  # agent (round, call) of the first diverging call
    diff: str = ""

    def as_json(self) -> dict[str, Any]:
        return {"run": self.run_id, "ok": self.ok, "commits": self.commits,
                "problem": self.problem, "where": self.where, "diff": self.diff}


def recorded_runs(ws: Workspace, since: str | None = None) -> list[str]:
    """The runs at HEAD; with `since`, those added, changed or removed since that ref (a
    removed run is listed too, so its replay fails instead of being silently skipped)."""
    runs = sorted(ws.repo.list_dirs(RUNS))
    if since is not None:
        touched = {path.split("/")[2] for path in ws.repo.changed_since(since, RUNS)
                   if path.count("/") >= 3}
        runs = sorted(touched)
    planned = set(open_runs(ws.repo))  # spread over machines, not collected yet: no log
    return [run for run in runs if run not in planned]


def read_events(data: bytes, where: str) -> list[Event]:
    """The typed events of a run log; a fault is a one-line SquadError naming the file and
    the line (see `squad.events.read`)."""
    return events.read(data, where)


def replay(ws: Workspace, run_id: str) -> Verdict:
    """Replay the run and remember the verdict on this machine for `squad report`."""
    verdict = _replay(ws, run_id)
    verdicts.remember(ws.repo, verdict.as_json())
    return verdict


def _replay(ws: Workspace, run_id: str) -> Verdict:
    if ws.repo.file_at(plan_path(run_id)) is not None:  # a run spread over machines
        from squad import spread

        spread_verdict: Verdict = spread.replay(ws, run_id)
        return spread_verdict
    verdict = Verdict(run_id)
    repo = ws.repo
    events_data = repo.file_at(f"{RUNS}/{run_id}/events.jsonl")
    cassette_data = repo.file_at(f"{RUNS}/{run_id}/cassette.jsonl")
    if events_data is None:  # a failure, not a skip: `--since` lists removed runs too
        verdict.problem = (f"no recorded run {run_id} at HEAD: {RUNS}/{run_id}/events.jsonl "
                           "is missing (removed, or never committed)")
        return verdict
    where = f"{RUNS}/{run_id}/events.jsonl"
    try:
        log = read_events(events_data, where)
        settings, script, head = load_script(log, where)
        start = head.start
        recorded = [(e.drop, e.id, e.sha) for e in log if isinstance(e, Committed)]
        profile = PROFILES.get(head.profile)
        if profile is None:
            raise SquadError(f"{where}: unknown profile {head.profile!r}")
    except SquadError as exc:
        verdict.problem = exc.message
        return verdict
    with tempfile.TemporaryDirectory(prefix=f"squad-replay-{run_id}-") as tmp:
        cassette = Path(tmp) / "cassette.jsonl"
        cassette.write_bytes(cassette_data or b"")
        try:
            entries = read_cassette(cassette)
        except SquadError as exc:
            verdict.problem = exc.message.replace(str(cassette),
                                                  f"{RUNS}/{run_id}/cassette.jsonl")
            return verdict
        try:
            worktree = repo.temporary_worktree(start, Path(tmp))
            path = worktree.__enter__()
        except SquadError as exc:
            verdict.problem = f"{where}: {exc.message}"
            return verdict
        with contextlib.ExitStack() as stack:
            stack.push(worktree)
            copy = Workspace.open(path)
            mode = Replay(script, entries)
            connection = offline(profile, head.model, f"the cassette of run {run_id}")
            run = Run(copy, settings, connection, mode=mode)
            try:
                outcome = run.execute()
            except Divergence as exc:
                verdict.problem, verdict.where, verdict.diff = exc.message, str(exc.label), exc.diff
                return verdict
            except SquadError as exc:
                verdict.problem = exc.message
                return verdict
            finally:
                copy.repo.close()
            replayed = [(d, i, s) for d, i, s, _ in outcome.committed]
    return judge(verdict, repo, start, recorded, replayed, run.seam.unused())


Commit = tuple[str, int, str]  # drop, record id, commit sha


def judge(verdict: Verdict, repo: Repository, start: str, recorded: list[Commit],
          replayed: list[Commit], unused: list[Label]) -> Verdict:
    """The verdict of a replay (one machine or spread): the same commits in the same order,
    each still in HEAD's history, and every recorded call made again."""
    verdict.commits = len(replayed)
    for n, (want, got) in enumerate(zip(recorded, replayed, strict=False), start=1):
        if want != got:
            verdict.problem = (f"commit {n} differs: recorded {want[1]:04d} {want[2][:12]} from "
                               f"{want[0]}, replayed {got[1]:04d} {got[2][:12]} from {got[0]}")
            return verdict
    if len(recorded) != len(replayed):
        verdict.problem = f"recorded {len(recorded)} commits, replayed {len(replayed)}"
        return verdict
    history = set(repo.commits_between(start, "HEAD"))
    stray = [sha for _, _, sha in recorded if sha not in history]
    if stray:
        verdict.problem = (f"recorded commit {stray[0][:12]} is not in the history of HEAD "
                           "(rebased or edited after the run?)")
        return verdict
    if unused:
        verdict.problem = f"the recorded call {unused[0]} was not made again"
        return verdict
    verdict.ok = True
    return verdict
