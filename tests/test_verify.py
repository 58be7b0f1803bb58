"""`squad verify` passes a sound log and names the file and the fault of a broken one."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from helpers import drop_text, git, squad

from squad.coordinator import Coordinator
from squad.ledger import Ledger, entry_for, render_index
from squad.records import Record, render
from squad.workspace import Workspace


@pytest.fixture
def logged(ws: Workspace) -> Path:
    """A repository with four committed decisions and a clean verify."""
    for n in range(1, 5):
        ws.inbox.drop(drop_text(f"Decision {n}"), name=f"{n}.md")
    Coordinator(ws).ingest()
    assert squad(ws.root, "verify").returncode == 0
    return ws.root


def faults(repo: Path) -> str:
    result = squad(repo, "verify", check=False)
    assert result.returncode == 1, result.stdout
    assert "Traceback" not in result.stderr
    return result.stderr


def test_a_sound_log_verifies(logged: Path) -> None:
    assert "ok: 4 records verified" in squad(logged, "verify").stdout


def test_an_edit_in_the_working_tree(logged: Path) -> None:
    path = logged / "decisions/000/0002-decision-2.md"
    path.write_text(path.read_text().replace("\nd\n", "\nsomething else\n"))
    out = faults(logged)
    assert "decisions/000/0002-decision-2.md: changed since its commit" in out
    assert "decisions/000/0003-decision-3.md: hash chain broken" in out


def test_a_committed_edit_of_the_last_record(logged: Path) -> None:
    path = logged / "decisions/000/0004-decision-4.md"
    path.write_text(path.read_text().replace("\nd\n", "\nrewritten\n"))
    git(logged, "commit", "-qam", "sneaky edit")
    assert "decisions/000/0004-decision-4.md: edited after it was committed" in faults(logged)


def test_a_deleted_record(logged: Path) -> None:
    git(logged, "rm", "-q", "decisions/000/0002-decision-2.md")
    git(logged, "commit", "-qm", "remove one")
    out = faults(logged)
    assert "decisions/000/0003-decision-3.md: numbering gap: id 3 where 2 was due" in out
    assert "decisions/000/0002-decision-2.md: deleted after it was committed" in out


def test_a_forged_chain(logged: Path) -> None:
    path = logged / "decisions/000/0003-decision-3.md"
    text = path.read_text()
    forged = "sha256:" + "0" * 64
    path.write_text(text.replace(text.split("prev: ")[1].split("\n")[0], forged))
    git(logged, "commit", "-qam", "forge")
    assert f"decisions/000/0003-decision-3.md: hash chain broken: prev is {forged}" \
        in faults(logged)


def test_a_stale_index(logged: Path) -> None:
    index = logged / "decisions/README.md"
    index.write_text(index.read_text().replace("Decision 2", "Decision two"))
    git(logged, "commit", "-qam", "edit index")
    assert "decisions/README.md: out of sync with the records" in faults(logged)


def test_a_supersession_cycle(repo: Path) -> None:
    """A log forged by hand (chain intact) where 0001 and 0002 supersede each other."""
    when = datetime(2026, 1, 1, tzinfo=UTC)
    ledger = Ledger()
    for rid, old in ((1, 2), (2, 1)):
        record = Record(id=rid, title=f"R{rid}", agent="a", date=when, decision="x",
                        supersedes=(old,), prev=ledger.head_digest)
        data = render(record).encode()
        ledger.append(entry_for(record, data))
        (repo / "decisions").mkdir(exist_ok=True)
        (repo / "decisions" / ledger.entries[-1].name).write_bytes(data)
    (repo / "decisions/README.md").write_text(render_index(ledger))
    git(repo, "add", "decisions")
    git(repo, "commit", "-qm", "forged log")
    out = faults(repo)
    assert "decisions/0001-r1.md: supersession cycle: 0001 -> 0002 -> 0001" in out
    assert "decisions/0001-r1.md: supersedes names 2, which is not an earlier record" in out


def test_json_output(logged: Path) -> None:
    (logged / "decisions/README.md").unlink()
    result = squad(logged, "verify", "--json", check=False)
    assert result.returncode == 1
    assert '"path": "decisions/README.md"' in result.stdout


def test_a_commit_that_also_changes_files_outside_the_log(logged: Path) -> None:
    """History is diffed without a path limit: what a commit changes outside decisions/
    (here a file named like a record, in a folder named like a thousand's) is no fault,
    and the edit it makes inside is still found."""
    outside = logged / "000"
    outside.mkdir()
    (outside / "0001-decision-1.md").write_text("not a record\n")
    (logged / "notes.md").write_text("notes\n")
    path = logged / "decisions/000/0003-decision-3.md"
    path.write_text(path.read_text().replace("\nd\n", "\nchanged\n"))
    git(logged, "add", "-A")
    git(logged, "commit", "-qm", "notes and an edit")
    out = faults(logged)
    assert "decisions/000/0003-decision-3.md: edited after it was committed" in out
    assert "notes.md" not in out
    assert "\n000/0001" not in "\n" + out
    assert out.count("edited after it was committed") == 1
