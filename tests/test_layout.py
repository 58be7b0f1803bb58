"""Records in folders of 1,000: new logs use them, flat logs keep working until `squad
migrate`, whose one commit `squad verify` checks (only moves, same bytes, chain intact)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from helpers import git, squad

from squad import layout
from squad.ledger import Ledger, entry_for, render_index
from squad.records import Record, render


def decide(repo: Path, title: str) -> None:
    squad(repo, "decide", "--agent", "me", "--title", title, "--decision", f"We {title}.")


def flat_log(repo: Path, titles: list[str]) -> None:
    """A log as squad wrote it before folders: an empty flat index committed first."""
    (repo / "decisions").mkdir()
    (repo / "decisions/README.md").write_text(render_index(Ledger()))
    git(repo, "add", "decisions")
    git(repo, "commit", "-qm", "an older squad's init")
    for title in titles:
        decide(repo, title)


def faults(repo: Path) -> str:
    result = squad(repo, "verify", check=False)
    assert result.returncode == 1, result.stdout
    return result.stderr


def test_a_new_log_uses_folders_with_a_page_each(repo: Path) -> None:
    squad(repo, "init", "--no-agents")
    decide(repo, "use redis")
    decide(repo, "use jwt")
    squad(repo, "accept", "1")
    folder = repo / "decisions/000"
    assert sorted(p.name for p in folder.iterdir()) == [
        "0001-use-redis.md", "0002-use-jwt.md", "0003-accept-0001-use-redis.md", "README.md"]
    page = (folder / "README.md").read_text()
    assert "| [0001](0001-use-redis.md) | use redis | me |" in page
    assert "| accepted |" in page
    summary = (repo / "decisions/README.md").read_text()
    assert "[000/](000/README.md) | 3 | 0001 to 0003" in summary
    assert "| [0002](000/0002-use-jwt.md) |" in summary
    changed = git(repo, "show", "--name-only", "--format=", "HEAD").split()
    assert changed == ["decisions/000/0003-accept-0001-use-redis.md",
                       "decisions/000/README.md", "decisions/README.md"]
    assert "decisions/000/0002-use-jwt.md  (status: proposed)" in squad(repo, "show", "2").stdout
    assert "use jwt" in squad(repo, "log").stdout
    assert squad(repo, "verify").stdout == "ok: 3 records verified\n"
    assert git(repo, "status", "--porcelain") == ""


def test_a_flat_log_keeps_working_then_migrates_in_one_checked_commit(repo: Path) -> None:
    flat_log(repo, ["use redis", "use jwt"])
    assert (repo / "decisions/0002-use-jwt.md").is_file()
    assert squad(repo, "verify").stdout == "ok: 2 records verified\n"
    before = git(repo, "rev-parse", "HEAD").strip()

    out = squad(repo, "migrate").stdout
    assert out.startswith("moved 2 records into folders of 1,000")
    assert git(repo, "rev-list", "--count", f"{before}..HEAD").strip() == "1"
    assert "Squad-Layout: folders-1000" in git(repo, "log", "-1", "--format=%B")
    moves = git(repo, "diff", "--name-status", "-M", "HEAD^", "HEAD").splitlines()
    assert "R100\tdecisions/0001-use-redis.md\tdecisions/000/0001-use-redis.md" in moves
    assert "R100\tdecisions/0002-use-jwt.md\tdecisions/000/0002-use-jwt.md" in moves
    assert git(repo, "status", "--porcelain") == ""
    assert not (repo / "decisions/0001-use-redis.md").exists()
    assert squad(repo, "verify").stdout == "ok: 2 records verified\n"

    decide(repo, "use sqlite")
    assert (repo / "decisions/000/0003-use-sqlite.md").is_file()
    assert "decisions/000/0001-use-redis.md" in squad(repo, "show", "1").stdout
    assert squad(repo, "verify").stdout == "ok: 3 records verified\n"
    assert squad(repo, "migrate").stdout.startswith("the decision log is in folders already")


def test_verify_refuses_a_layout_commit_that_does_more_than_move(repo: Path) -> None:
    flat_log(repo, ["use redis", "use jwt"])
    # by hand, with the trailer: record 1 moved but edited, record 2 dropped
    (repo / "decisions/000").mkdir()
    git(repo, "mv", "decisions/0001-use-redis.md", "decisions/000/0001-use-redis.md")
    path = repo / "decisions/000/0001-use-redis.md"
    path.write_text(path.read_text().replace("We use redis.", "We use memcached."))
    git(repo, "rm", "-q", "decisions/0002-use-jwt.md")
    git(repo, "add", "decisions")
    git(repo, "commit", "-qm", "move\n\nSquad-Layout: folders-1000\n")
    found = faults(repo)
    assert "decisions/000/0001-use-redis.md: changed while the layout commit" in found
    assert "decisions/0002-use-jwt.md: removed by the layout commit" in found


def test_a_record_outside_its_folder_is_a_fault(repo: Path) -> None:
    decide(repo, "use redis")
    decide(repo, "use jwt")
    git(repo, "mv", "decisions/000/0002-use-jwt.md", "decisions/0002-use-jwt.md")
    found = faults(repo)
    # the log now looks flat, so the record left in its folder is the misplaced one
    assert "decisions/000/0001-use-redis.md: in a folder, but this log is flat" in found


def test_an_interrupted_migration_is_finished_by_running_it_again(repo: Path) -> None:
    flat_log(repo, ["use redis"])
    squad(repo, "migrate")
    # as if killed after the commit point: the working tree and index still flat
    git(repo, "read-tree", "HEAD^")
    git(repo, "checkout-index", "-a", "-f")
    (repo / "decisions/000/0001-use-redis.md").unlink()
    (repo / "decisions/000/README.md").unlink()
    assert git(repo, "status", "--porcelain") != ""
    assert squad(repo, "migrate").stdout.startswith("finished")
    assert git(repo, "status", "--porcelain") == ""
    assert squad(repo, "verify").stdout == "ok: 1 record verified\n"


def test_a_flat_branch_merges_a_migrated_trunk(repo: Path) -> None:
    flat_log(repo, ["use redis"])
    git(repo, "switch", "-q", "-c", "feature")
    decide(repo, "use jwt")
    git(repo, "switch", "-q", "main")
    squad(repo, "migrate")
    decide(repo, "use sqlite")
    git(repo, "switch", "-q", "feature")
    squad(repo, "merge", "main")  # the trunk keeps its ids; the branch's record follows
    assert (repo / "decisions/000/0003-use-jwt.md").is_file()
    assert not list((repo / "decisions").glob("0*.md"))
    assert squad(repo, "verify").stdout == "ok: 3 records verified\n"
    # a flat side that keeps its ids cannot take records from folders: migrate it first
    git(repo, "switch", "-q", "-c", "flat", "main~2")
    decide(repo, "use paseto")
    refused = squad(repo, "merge", "feature", check=False)
    assert refused.returncode != 0 and "run `squad migrate` on the flat side" in refused.stderr
    assert (repo / "decisions/0002-use-paseto.md").is_file()
    squad(repo, "migrate")
    squad(repo, "merge", "feature")
    assert squad(repo, "verify").stdout == "ok: 4 records verified\n"


def test_the_thousandth_record_opens_the_next_folder() -> None:
    when = datetime(2026, 1, 1, tzinfo=UTC)
    ledger = Ledger()
    for rid in range(995, 1003):
        record = Record(id=rid, title=f"R{rid}", agent="a", date=when + timedelta(minutes=rid),
                        decision="x", prev=ledger.head_digest)
        folder = layout.folder_of(rid)
        ledger.append(entry_for(record, render(record).encode(), folder))
    assert [e.name for e in ledger.entries][4:6] == ["000/0999-r999.md", "001/1000-r1000.md"]
    pages = layout.pages(ledger, layout.FOLDERS)
    assert sorted(pages) == ["000/README.md", "001/README.md", "README.md"]
    assert b"# Decisions 1000 to 1002" in pages["001/README.md"]
    assert b"[001/](001/README.md) | 3 | 1000 to 1002" in pages["README.md"]
    only = layout.pages(ledger, layout.FOLDERS, folders={"001"})
    assert sorted(only) == ["001/README.md", "README.md"]
    assert only["001/README.md"] == pages["001/README.md"]


def test_a_symlinked_folder_is_refused_before_anything_is_written(repo: Path,
                                                                  tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (repo / "decisions").mkdir()
    (repo / "decisions/000").symlink_to(outside)
    result = squad(repo, "decide", "--agent", "me", "--title", "t", "--decision", "d",
                   check=False)
    assert result.returncode == 3 and "decisions/000: is a symlink" in result.stderr
    assert list(outside.iterdir()) == []
    assert git(repo, "rev-list", "--count", "HEAD").strip() == "1"


def test_a_copied_ledger_folds_as_a_fresh_one_and_grows_apart() -> None:
    """`Ledger.copy` copies the fold instead of folding again: the copy must answer as a
    ledger built from the same entries, and appends to either must not reach the other."""
    when = datetime(2026, 1, 1, tzinfo=UTC)
    ledger = Ledger()

    def add(to: Ledger, rid: int, **fields: object) -> None:
        record = Record(id=rid, title=f"R{rid}", agent="a", date=when + timedelta(minutes=rid),
                        decision="x", prev=to.head_digest, **fields)  # type: ignore[arg-type]
        to.append(entry_for(record, render(record).encode(), layout.folder_of(rid)))

    add(ledger, 1)
    add(ledger, 2, supersedes=(1,))
    add(ledger, 3, kind="accept", target=2)
    twin = ledger.copy()
    fresh = Ledger(list(ledger.entries))
    for other in (twin, fresh):
        assert (other.statuses(), other.counts(), other.superseded_by(), other.last_date) \
            == (ledger.statuses(), ledger.counts(), ledger.superseded_by(), ledger.last_date)
    add(twin, 4, kind="reject", target=2)
    add(fresh, 4, kind="reject", target=2)
    assert twin.statuses() == fresh.statuses() == {1: "proposed", 2: "rejected"}
    assert twin.counts() == fresh.counts() and twin.superseded_by() == fresh.superseded_by()
    add(twin, 5, supersedes=(1,))
    assert twin.superseded_by() == {1: [2, 5]}
    assert len(ledger.entries) == 3 and ledger.statuses() == {1: "superseded", 2: "accepted"}
    assert ledger.superseded_by() == {1: [2]}
    assert ledger.counts() == {"accepted": 1, "superseded": 1}
