"""A run's inputs as committed: read by a commit's id they are kept (a commit never
changes), and a new commit's are its own."""

from __future__ import annotations

from pathlib import Path

from helpers import git

from squad.snapshot import Snapshot
from squad.workspace import Workspace

CHARTER = "---\nname: {name}\nrole: {role}\ntools: [record_decision]\n---\n\n## How I work\nWell.\n"


def _commit_charter(repo: Path, role: str) -> str:
    (repo / "agents").mkdir(exist_ok=True)
    (repo / "agents" / "tester.md").write_text(CHARTER.format(name="tester", role=role))
    git(repo, "add", "agents")
    git(repo, "commit", "-qm", role)
    return git(repo, "rev-parse", "HEAD").strip()


def test_each_commit_has_its_own_inputs_read_once(repo: Path) -> None:
    first = _commit_charter(repo, "First role")
    ws = Workspace.open(repo)
    try:
        assert Snapshot.read(ws.repo, first).team()["tester"].role == "First role"
        second = _commit_charter(repo, "Second role")
        assert ws.repo.head() == second
        assert Snapshot.read(ws.repo, second).team()["tester"].role == "Second role"
        assert Snapshot.read(ws.repo, first).team()["tester"].role == "First role"
        team = Snapshot.read(ws.repo, first).team()
        team.clear()  # the caller's copy: the kept snapshot's team is untouched
        assert list(Snapshot.read(ws.repo, first).team()) == ["tester"]
    finally:
        ws.repo.close()
