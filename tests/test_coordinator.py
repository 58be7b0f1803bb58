"""The coordinator commits drops exactly once, keeps the user's work safe, and recovers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers import drop_text, git, squad

from squad.coordinator import Coordinator, PassReport, trailer_name
from squad.errors import UnsafeRepoError
from squad.records import digest, parse_draft, parse_record
from squad.verify import verify
from squad.workspace import Workspace


def records(repo: Path) -> list[str]:
    return sorted(p.name for p in (repo / "decisions").glob("*/[0-9][0-9][0-9][0-9]-*.md"))


def test_drops_become_numbered_chained_commits_in_name_order(ws: Workspace) -> None:
    for n in (3, 1, 2):
        ws.inbox.drop(drop_text(f"Decision {n}"), name=f"drop-{n}.md")
    report = Coordinator(ws).ingest()
    assert [r.title for r in report.committed] == ["Decision 1", "Decision 2", "Decision 3"]
    assert records(ws.root) == ["0001-decision-1.md", "0002-decision-2.md", "0003-decision-3.md"]
    first, second = (ws.root / "decisions" / "000" / name for name in records(ws.root)[:2])
    assert parse_record(second.read_text()).prev == digest(first.read_bytes())
    assert ws.inbox.ready() == []
    log = git(ws.root, "log", "--format=%s|%(trailers:key=Squad-Drop,valueonly)", "-3")
    assert log.split("\n")[0] == "Decision 3|drop-3.md"
    changed = git(ws.root, "show", "--name-only", "--format=", "HEAD").split()
    assert changed == ["decisions/000/0003-decision-3.md", "decisions/000/README.md",
                       "decisions/README.md"]
    assert git(ws.root, "status", "--porcelain") == ""
    assert verify(ws) == []


def test_dates_come_from_squads_clock_and_commits_reproduce(repo: Path, ws: Workspace) -> None:
    ws.inbox.drop(drop_text("Pinned"), name="a.md")
    record = Coordinator(ws).ingest().committed[0]
    assert record.date.isoformat() == "2026-01-01T00:00:00+00:00"
    assert git(repo, "log", "-1", "--format=%an <%ae> %aI") == \
        "squad <squad@localhost> 2026-01-01T00:00:00+00:00\n"


def test_staged_and_unstaged_user_changes_survive_untouched(repo: Path, ws: Workspace) -> None:
    (repo / "app.py").write_text("print('staged')\n")
    git(repo, "add", "app.py")
    (repo / "app.py").write_text("print('unstaged on top')\n")
    (repo / "notes.txt").write_text("new and staged\n")
    git(repo, "add", "notes.txt")
    (repo / "scratch.txt").write_bytes(b"untracked \x00 bytes")
    before_status = git(repo, "status", "--porcelain")
    staged_diff = git(repo, "diff", "--cached")
    unstaged_diff = git(repo, "diff")

    ws.inbox.drop(drop_text("Safe"), name="a.md")
    assert len(Coordinator(ws).ingest().committed) == 1

    assert git(repo, "diff", "--cached") == staged_diff
    assert git(repo, "diff") == unstaged_diff
    assert git(repo, "status", "--porcelain") == before_status
    assert (repo / "app.py").read_text() == "print('unstaged on top')\n"
    assert (repo / "scratch.txt").read_bytes() == b"untracked \x00 bytes"
    squad_files = git(repo, "log", "--format=", "--name-only", "--grep=^Squad-Decision")
    assert set(squad_files.split()) == {"decisions/000/0001-safe.md", "decisions/000/README.md",
                                          "decisions/README.md"}


@pytest.mark.parametrize(("setup", "reason"), [
    (lambda r: git(r, "checkout", "-q", "--detach"), "detached"),
    (lambda r: (r / ".git" / "MERGE_HEAD").write_text(git(r, "rev-parse", "HEAD")), "merge"),
    (lambda r: (r / ".git" / "rebase-merge").mkdir(), "rebase"),
    (lambda r: (r / ".git" / "CHERRY_PICK_HEAD").write_text(git(r, "rev-parse", "HEAD")),
     "cherry-pick"),
    (lambda r: (r / ".git" / "index.lock").write_text(""), "index is locked"),
])
def test_refuses_unsafe_states_and_keeps_every_drop(repo: Path, setup, reason: str) -> None:
    Path(repo / "decisions/inbox/new").mkdir(parents=True)
    (repo / "decisions/inbox/new/a.md").write_text(drop_text("Kept"))
    head = git(repo, "rev-parse", "HEAD")
    setup(repo)
    result = squad(repo, "ingest", check=False)
    assert result.returncode == 3
    assert reason in result.stderr
    assert "Traceback" not in result.stderr
    assert (repo / "decisions/inbox/new/a.md").exists()
    assert git(repo, "rev-parse", "HEAD") == head


def test_outside_a_repository_is_a_clear_error(tmp_path: Path) -> None:
    result = squad(tmp_path, "ingest", check=False)
    assert result.returncode == 2
    assert "not inside a git repository" in result.stderr
    assert "Traceback" not in result.stderr


def test_init_in_an_empty_repository_makes_the_first_commit(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q", "-b", "main")
    squad(tmp_path, "init")
    assert git(tmp_path, "log", "--format=%s") == "squad init\n"
    assert git(tmp_path, "status", "--porcelain") == ""
    again = squad(tmp_path, "init")
    assert "nothing to do" in again.stdout
    assert git(tmp_path, "rev-list", "--count", "HEAD") == "1\n"


def test_init_never_overwrites_a_users_file(repo: Path) -> None:
    (repo / "AGENTS.md").write_text("mine\n")
    squad(repo, "init")
    assert (repo / "AGENTS.md").read_text() == "mine\n"
    assert "AGENTS.md" not in git(repo, "show", "--name-only", "--format=", "HEAD")


def test_a_loose_file_in_the_inbox_is_taken_once_it_settles(ws: Workspace) -> None:
    ws.inbox.create()
    loose = ws.inbox.path / "my idea.md"
    loose.write_text(drop_text("Loose"))
    report = Coordinator(ws).ingest()
    assert report.committed == [] and report.waiting_for is not None
    old = loose.stat().st_mtime - 5
    os.utime(loose, (old, old))
    report = Coordinator(ws).ingest()
    assert [r.title for r in report.committed] == ["Loose"]
    trailer = git(ws.root, "log", "-1", "--format=%(trailers:key=Squad-Drop,valueonly)")
    assert trailer.strip() == trailer_name("my idea.md") == "my%20idea.md"


def test_a_bad_drop_is_quarantined_with_a_reason_and_the_next_one_commits(ws: Workspace) -> None:
    ws.inbox.drop("---\ntitle: [broken\n", name="1-bad.md")
    ws.inbox.drop(drop_text("Good"), name="2-good.md")
    report = Coordinator(ws).ingest()
    assert [r.title for r in report.committed] == ["Good"]
    assert [name for name, _ in report.quarantined] == ["1-bad.md"]
    reason = (ws.quarantine / "1-bad.md.reason").read_text()
    assert reason.startswith("1-bad.md: front matter is not closed")
    assert (ws.quarantine / "1-bad.md").read_text() == "---\ntitle: [broken\n"


def test_references_must_resolve(ws: Workspace) -> None:
    ws.inbox.drop(drop_text("Replaces nothing", supersedes="[7]"), name="a.md")
    report = Coordinator(ws).ingest()
    assert report.quarantined == [("a.md", "supersedes 7, which is not in the log")]


# ---- crash recovery: each test builds the state a kill at one step leaves behind ----------

def test_killed_after_the_commit_before_files_and_drop_were_handled(ws: Workspace) -> None:
    ws.inbox.drop(drop_text("First"), name="a.md")
    Coordinator(ws).ingest()
    text = drop_text("Second")
    ws.inbox.drop(text, name="b.md")
    # Step 3 for b.md, as a coordinator killed right after moving the branch leaves it:
    # committed, but the working tree and the user's index still show the commit before.
    crashed = Coordinator(Workspace.open(ws.root, clock=ws.clock))
    crashed._load()
    base = crashed._head
    crashed._commit(parse_draft(text), (trailer_name("b.md"), digest(text.encode())))
    assert crashed._head and git(ws.root, "rev-parse", "HEAD").strip() == base
    crashed.ws.repo.move_branch(crashed._head, base, "Second")  # the commit point, then kill
    git(ws.root, "read-tree", "HEAD~1")
    git(ws.root, "checkout", "HEAD~1", "--", "decisions/README.md", "decisions/000/README.md")
    git(ws.root, "read-tree", "HEAD~1")
    assert not (ws.root / "decisions/000/0002-second.md").exists()
    head = git(ws.root, "rev-parse", "HEAD")
    assert git(ws.root, "status", "--porcelain") != ""

    crashed.ws.repo.close()
    report = Coordinator(ws).ingest()
    assert report.committed == [] and report.recovered == 1
    assert git(ws.root, "rev-parse", "HEAD") == head
    assert (ws.root / "decisions/000/0002-second.md").exists()
    assert git(ws.root, "status", "--porcelain") == ""
    assert ws.inbox.ready() == []
    assert verify(ws) == []


def test_a_group_killed_after_its_branch_move_is_finished_not_kept_as_the_users(
        ws: Workspace) -> None:
    """After a group commit the tree still shows the group's base, several commits back,
    not HEAD's parent: its pages are squad's own and are written out, never kept aside."""
    ws.inbox.drop(drop_text("First"), name="a.md")
    Coordinator(ws).ingest()
    crashed = Coordinator(Workspace.open(ws.root, clock=ws.clock))
    crashed._load()
    base = crashed._head
    for name in ("b.md", "c.md", "d.md"):
        text = drop_text(f"Group {name[0]}")
        ws.inbox.drop(text, name=name)
        crashed._commit(parse_draft(text), (trailer_name(name), digest(text.encode())))
    assert crashed._head
    crashed.ws.repo.move_branch(crashed._head, base, "Group d")  # the commit point, then kill
    assert git(ws.root, "status", "--porcelain") != ""
    crashed.ws.repo.close()

    report = Coordinator(ws).ingest()
    assert report.committed == [] and report.recovered == 3 and report.kept == []
    assert git(ws.root, "status", "--porcelain", "--untracked-files=all") == ""
    assert ws.inbox.ready() == [] and verify(ws) == []


def test_killed_between_the_reason_and_the_move_to_quarantine(ws: Workspace) -> None:
    ws.inbox.drop("not a record", name="bad.md")
    ws.quarantine.mkdir(parents=True)
    (ws.quarantine / "bad.md.reason").write_text("bad.md: half done\n")
    Coordinator(ws).ingest()
    assert sorted(p.name for p in ws.quarantine.iterdir()) == ["bad.md", "bad.md.reason"]
    assert "front matter" in (ws.quarantine / "bad.md.reason").read_text()


def test_same_name_with_new_content_is_a_new_drop_not_a_duplicate(ws: Workspace) -> None:
    ws.inbox.drop(drop_text("One"), name="same.md")
    Coordinator(ws).ingest()
    ws.inbox.drop(drop_text("Two"), name="same.md")
    report = Coordinator(ws).ingest()
    assert [r.title for r in report.committed] == ["Two"]


def test_a_user_commit_between_passes_is_built_upon(repo: Path, ws: Workspace) -> None:
    coordinator = Coordinator(ws)
    ws.inbox.drop(drop_text("One"), name="1.md")
    coordinator.ingest()
    (repo / "app.py").write_text("changed\n")
    git(repo, "commit", "-qam", "user work")
    ws.inbox.drop(drop_text("Two"), name="2.md")
    coordinator.ingest()
    assert git(repo, "log", "--format=%s", "-3").split("\n")[:3] == ["Two", "user work", "One"]
    assert verify(ws) == []


def test_unsafe_state_raises_a_squad_error(repo: Path, ws: Workspace) -> None:
    ws.inbox.drop(drop_text("One"), name="1.md")
    git(repo, "checkout", "-q", "--detach")
    with pytest.raises(UnsafeRepoError, match="detached"):
        Coordinator(ws).ingest()


def test_a_hidden_file_in_the_inbox_is_not_a_drop_and_is_left_alone(ws: Workspace) -> None:
    ws.inbox.drop(drop_text("Real"), name="a.md")
    (ws.inbox.new / ".DS_Store").write_bytes(b"\x00\x01finder")
    (ws.inbox.new / ".a.md.swp").write_text("an editor's swap file\n")
    report = Coordinator(ws).ingest()
    assert [r.title for r in report.committed] == ["Real"]
    assert report.quarantined == []
    assert ws.inbox.ready() == []
    assert (ws.inbox.new / ".DS_Store").read_bytes() == b"\x00\x01finder"
    assert not list((ws.root / "decisions").glob("quarantine/*"))


def test_a_backlog_is_one_group_commit_a_commit_per_decision_one_branch_move(
        ws: Workspace) -> None:
    """Each decision keeps its own commit, but the branch moves once for the backlog; squad's
    own README of an earlier commit in the group is never mistaken for the user's."""
    for n in range(1, 6):
        ws.inbox.drop(drop_text(f"Decision {n}"), name=f"drop-{n}.md")
    mine = ws.root / "decisions" / "000" / "0004-decision-4.md"
    mine.parent.mkdir(parents=True)
    mine.write_text("my notes\n")  # the user's, where squad is about to write
    moves_before = len(git(ws.root, "reflog", "show", "main").splitlines())
    report = Coordinator(ws).ingest()
    assert [r.id for r in report.committed] == [1, 2, 3, 4, 5]
    assert report.drops == [f"drop-{n}.md" for n in range(1, 6)]
    assert report.kept == [("decisions/000/0004-decision-4.md",
                            "decisions/000/0004-decision-4.md.mine")]
    assert len(git(ws.root, "reflog", "show", "main").splitlines()) == moves_before + 1
    shas = git(ws.root, "rev-list", "-5", "HEAD").split()
    assert shas[::-1] == report.commits
    for sha, n in zip(shas[::-1], range(1, 6), strict=True):
        changed = git(ws.root, "show", "--name-only", "--format=", sha).split()
        assert changed == [f"decisions/000/000{n}-decision-{n}.md", "decisions/000/README.md",
                           "decisions/README.md"]
    assert git(ws.root, "status", "--porcelain") == "?? decisions/000/0004-decision-4.md.mine\n"
    assert ws.inbox.ready() == []
    assert verify(ws) == []


def _drops_file(repo: Path) -> Path:
    return repo / ".git" / "squad" / "drops"


def test_committed_drops_are_read_from_the_cache_and_the_commits_since(ws: Workspace) -> None:
    text = drop_text("Once")
    ws.inbox.drop(text, name="once.md")
    Coordinator(ws).ingest()
    first = git(ws.root, "rev-parse", "HEAD").strip()
    ws.inbox.drop(drop_text("Twice"), name="twice.md")
    Coordinator(ws).ingest()  # loaded at the first commit: the cache is of it
    assert _drops_file(ws.root).read_bytes().startswith(f"squad-drops 1 {first} 1 ".encode())
    ws.inbox.drop(text, name="once.md")  # found again, as after a kill before its removal
    report = Coordinator(ws).ingest()  # the cached commit and the one since
    assert report.committed == [] and report.recovered == 1 and ws.inbox.ready() == []
    head = git(ws.root, "rev-parse", "HEAD").strip()
    assert _drops_file(ws.root).read_bytes().startswith(f"squad-drops 1 {head} 2 ".encode())


@pytest.mark.parametrize("fault", ["rewound", "damaged", "torn"])
def test_a_cache_of_another_history_or_damaged_is_not_believed(ws: Workspace,
                                                                fault: str) -> None:
    """A pair the cache holds but the branch does not must never get a drop removed."""
    ws.inbox.drop(drop_text("Base"), name="base.md")
    Coordinator(ws).ingest()
    base = git(ws.root, "rev-parse", "HEAD").strip()
    text = drop_text("Kept")
    ws.inbox.drop(text, name="kept.md")
    Coordinator(ws).ingest()
    Coordinator(ws).ingest()  # nothing to take: loads the log, so the cache holds kept.md
    cache = _drops_file(ws.root)
    if fault == "rewound":  # the user moves the branch back; the cache names the later commit
        git(ws.root, "reset", "-q", "--hard", base)
    else:  # the cache claims kept.md for the current commit, but does not check out
        good = cache.read_bytes()
        git(ws.root, "reset", "-q", "--hard", base)
        forged = good.replace(good.split(b" ")[2], base.encode(), 1)
        cache.write_bytes(forged[:-5] if fault == "torn" else forged.replace(b"base", b"bass"))
    assert b"kept.md" in cache.read_bytes()
    ws.inbox.drop(text, name="kept.md")
    report = Coordinator(ws).ingest()
    assert [r.title for r in report.committed] == ["Kept"]


@pytest.mark.parametrize("where", ["packed", "linked worktree", "nested branch"])
def test_head_and_branch_follow_git_whether_the_ref_is_loose_or_packed(
        repo: Path, tmp_path: Path, where: str) -> None:
    """squad reads a loose branch ref itself and leaves every other shape to GitPython: a
    commit must land on the branch git says HEAD is on, whichever way it is stored."""
    root = repo
    if where == "packed":
        git(repo, "pack-refs", "--all")
        assert not (repo / ".git/refs/heads/main").exists()
    elif where == "linked worktree":
        root = tmp_path / "other"
        git(repo, "worktree", "add", "-q", str(root), "-b", "side")
    else:
        git(repo, "checkout", "-q", "-b", "team/x.y")
    ws = Workspace.open(root)
    try:
        assert ws.repo.head() == git(root, "rev-parse", "HEAD").strip()
        assert ws.repo.branch() == git(root, "symbolic-ref", "HEAD").strip()
        ws.inbox.drop(drop_text("Lands"), name="a.md")
        assert [r.title for r in Coordinator(ws).ingest().committed] == ["Lands"]
        assert ws.repo.head() == git(root, "rev-parse", "HEAD").strip()
        assert git(root, "log", "-1", "--format=%s", ws.repo.branch()).strip() == "Lands"
        if where == "linked worktree":
            assert git(repo, "log", "-1", "--format=%s").strip() != "Lands"  # main did not move
    finally:
        ws.repo.close()


def test_a_person_committing_during_a_session_keeps_the_records_committed(
        ws: Workspace) -> None:
    """Each group's index entries are written with its branch move: a person who commits
    while a run still holds the session commits on top of the run's records, never a tree
    that deletes them."""
    coordinator = Coordinator(ws)
    ws.inbox.drop(drop_text("One"), name="one.md")
    (ws.root / "app.py").write_text("mine\n")
    with coordinator.session():
        coordinator.take_all(ws.inbox.ready(), PassReport())
        assert git(ws.root, "status", "--porcelain", "--", "decisions") == ""
        git(ws.root, "add", "app.py")
        git(ws.root, "commit", "-q", "-m", "mine")
    tracked = git(ws.root, "ls-tree", "-r", "--name-only", "HEAD").split()
    assert "decisions/000/0001-one.md" in tracked and "app.py" in tracked
    assert verify(ws) == []


def test_a_drop_refused_at_its_folder_leaves_no_phantom_in_the_log(ws: Workspace) -> None:
    """A refusal after the record was numbered (its folder is a file) must not leave that
    record in the coordinator's log in memory: a watcher that retries after the person
    fixes the folder numbers and chains the drop from git, not after a record never
    committed."""
    coordinator = Coordinator(ws)
    ws.inbox.drop(drop_text("First"), name="first.md")
    (ws.root / "decisions/000").write_text("a file where squad's folder goes\n")
    for _ in range(2):  # a watcher tries again before the person has fixed it
        with pytest.raises(UnsafeRepoError, match="decisions/000: is a file"):
            coordinator.ingest()
    (ws.root / "decisions/000").unlink()
    report = coordinator.ingest()
    assert [record.id for record in report.committed] == [1]
    assert records(ws.root) == ["0001-first.md"]
    assert verify(ws) == []
