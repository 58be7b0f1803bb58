"""`squad replay`: re-execute a recorded run offline and check that it reproduces.

The run's event log and cassette are read from HEAD. Its starting commit is checked out in a
throwaway worktree, and the run is executed again there by the same code as `squad run`,
with the recorded run id, commit dates, order of commits and refused calls, and every model
reply served from the cassette (the network is never touched; an unrecorded request fails
closed). Passing means the same records and the same commit SHAs, in the same order.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from squad import verdicts
from squad.errors import SquadError, UsageError
from squad.llm.cassette import Divergence, Seam, read_cassette
from squad.llm.profiles import PROFILES
from squad.run import RUNS, Run, load_script
from squad.workspace import Workspace


@dataclass
class Verdict:
    run_id: str
    ok: bool = False
    commits: int = 0
    problem: str | None = None
    where: str | None = None  # agent (round, call) of the first diverging call
    diff: str = ""
    details: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"run": self.run_id, "ok": self.ok, "commits": self.commits,
                "problem": self.problem, "where": self.where, "diff": self.diff}


def recorded_runs(ws: Workspace, since: str | None = None) -> list[str]:
    runs = sorted(ws.repo.list_dirs(RUNS))
    if since is not None:
        touched = {path.split("/")[2] for path in ws.repo.changed_since(since, RUNS)
                   if path.count("/") >= 3}
        runs = [run for run in runs if run in touched]
    return runs


def replay(ws: Workspace, run_id: str) -> Verdict:
    """Replay the run and remember the verdict on this machine for `squad report`."""
    verdict = _replay(ws, run_id)
    verdicts.remember(ws.repo, verdict.as_json())
    return verdict


def _replay(ws: Workspace, run_id: str) -> Verdict:
    verdict = Verdict(run_id)
    repo = ws.repo
    events_data = repo.file_at(f"{RUNS}/{run_id}/events.jsonl")
    cassette_data = repo.file_at(f"{RUNS}/{run_id}/cassette.jsonl")
    if events_data is None:
        raise UsageError(f"no recorded run {run_id} in {RUNS}/ at HEAD")
    events = [json.loads(line) for line in events_data.decode().splitlines() if line]
    settings, script, head = load_script(events)
    start = head["start"]
    recorded = [(e["drop"], e["id"], e["sha"]) for e in events if e["event"] == "commit"]
    with tempfile.TemporaryDirectory(prefix=f"squad-replay-{run_id}-") as tmp:
        cassette = Path(tmp) / "cassette.jsonl"
        cassette.write_bytes(cassette_data or b"")
        try:
            entries = read_cassette(cassette)
        except SquadError as exc:
            verdict.problem = exc.message.replace(str(cassette),
                                                  f"{RUNS}/{run_id}/cassette.jsonl")
            return verdict
        with repo.temporary_worktree(start, Path(tmp)) as path:
            copy = Workspace.open(path)
            seam = Seam("replay", entries=entries)
            try:
                outcome = Run(copy, settings, seam, script=script,
                              profile=PROFILES[head.get("profile", "openai")],
                              model=head.get("model")).execute()
            except Divergence as exc:
                verdict.problem, verdict.where, verdict.diff = exc.message, str(exc.label), exc.diff
                return verdict
            except SquadError as exc:
                verdict.problem = exc.message
                return verdict
            finally:
                copy.repo.close()
            replayed = [(d, i, s) for d, i, s, _ in outcome.committed]
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
    unused = seam.unused()
    if unused:
        verdict.problem = f"the recorded call {unused[0]} was not made again"
        return verdict
    verdict.ok = True
    return verdict
