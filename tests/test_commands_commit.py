"""Every command that commits says so and names the commit; a person's decisions are theirs.

Real `squad` processes in real repositories; the person is the git identity the test's
HOME configures (Test User <test@example.com>).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from helpers import DECIDE, drop_text, git, squad
from scripted_server import ScriptedServer, Text, ToolCalls

PERSON = "Test User <test@example.com>"
SQUAD_ID = "squad <squad@localhost>"


def author(repo: Path, rev: str = "HEAD") -> str:
    return git(repo, "log", "-1", "--format=%an <%ae>", rev).strip()


def head(repo: Path) -> str:
    return git(repo, "rev-parse", "HEAD").strip()


def decide(repo: Path, title: str, *args: str, **kw: object) -> object:
    return squad(repo, "decide", "--title", title, "--decision", "We do it.", *args, **kw)


def test_init_and_a_persons_decisions_are_said_named_and_authored_by_them(repo: Path) -> None:
    init = squad(repo, "init")
    assert f"committed {head(repo)[:12]} squad init" in init.stdout
    assert author(repo) == PERSON
    made = decide(repo, "Use SQLite")
    assert made.stdout == f"0001  Use SQLite  (committed {head(repo)[:12]})\n"
    assert "inbox" not in made.stderr  # no internal drop names
    assert author(repo) == PERSON
    assert git(repo, "log", "-1", "--format=%cn <%ce>").strip() == SQUAD_ID
    assert json.loads(squad(repo, "show", "1", "--json").stdout)["agent"] == "Test User"
    accepted = squad(repo, "accept", "1")
    assert f"(committed {head(repo)[:12]})" in accepted.stdout
    assert author(repo) == PERSON
    assert squad(repo, "verify").returncode == 0


def test_without_a_git_identity_squad_authors(repo: Path, tmp_path: Path) -> None:
    nobody = tmp_path / "nobody"
    nobody.mkdir()
    squad(repo, "init", env={"HOME": str(nobody)})
    decide(repo, "Use SQLite", env={"HOME": str(nobody)})
    assert author(repo) == SQUAD_ID
    assert json.loads(squad(repo, "show", "1", "--json").stdout)["agent"] == "human"


def test_init_leaves_waiting_drops_alone_and_says_so(repo: Path) -> None:
    squad(repo, "init")
    decide(repo, "Waits", "--no-ingest")
    before = head(repo)
    again = squad(repo, "init")
    assert "nothing to do" in again.stdout
    assert "1 drop(s) wait in decisions/inbox/new/" in again.stderr
    assert head(repo) == before


def test_status_changes_that_make_no_sense_need_force(initialized: Path) -> None:
    repo = initialized
    decide(repo, "First")
    squad(repo, "reject", "1", "--reason", "No.")
    refused = squad(repo, "accept", "1", check=False)
    assert refused.returncode == 2 and "0001 is already rejected" in refused.stderr
    squad(repo, "accept", "1", "--force")
    decide(repo, "Second")  # 0004
    squad(repo, "supersede", "4", "--title", "Third", "--decision", "Better.")
    twice = squad(repo, "supersede", "4", "--title", "Fourth", "--decision", "x.", check=False)
    assert twice.returncode == 2 and "0004 is already superseded by 0005" in twice.stderr
    assert squad(repo, "verify").returncode == 0


def test_supersede_without_flags_and_without_a_terminal_is_a_usage_error(initialized: Path) -> None:
    repo = initialized
    decide(repo, "First")
    result = squad(repo, "supersede", "1", check=False,
                   env={"EDITOR": "", "VISUAL": ""}, stdin=subprocess.DEVNULL)
    assert result.returncode == 2 and "no terminal" in result.stderr


def test_short_help_and_quarantine_out_of_git_status(repo: Path) -> None:
    assert "Usage: squad" in squad(repo, "-h").stdout
    squad(repo, "init")
    inbox = repo / "decisions/inbox/new"
    (inbox / "bad.md").write_text("---\ntitle: [broken\n")
    assert squad(repo, "ingest", check=False).returncode == 1
    assert (repo / "decisions/quarantine/bad.md").exists()
    assert git(repo, "status", "--porcelain") == ""
    (inbox / "good.md").write_text(drop_text("Fine"))
    assert "(committed " in squad(repo, "ingest").stdout


@pytest.fixture
def team(initialized: Path) -> Path:
    repo = initialized
    (repo / "squad.toml").write_text("[llm]\nmodel = 'scripted'\nmax_retries = 0\n")
    git(repo, "commit", "-qam", "settings")
    return repo


def test_ask_prints_the_answer_and_commits_it(team: Path, server: ScriptedServer) -> None:
    server.enqueue(ToolCalls([("record_decision", DECIDE)]), Text("I recorded it."))
    result = squad(team, "ask", "architect", "Where do sessions live?",
                   env={"OPENAI_BASE_URL": server.base_url})
    assert "I recorded it." in result.stdout
    assert "Store sessions in SQLite (WAL)." in result.stdout
    assert f"0001  Use SQLite for sessions  (committed {head(team)[:12]})" in result.stdout
    assert author(team) == SQUAD_ID  # an agent's decision
    assert list((team / "decisions/inbox/new").iterdir()) == []


def test_ask_no_ingest_leaves_it_in_the_inbox_and_says_so(
        team: Path, server: ScriptedServer) -> None:
    server.enqueue(ToolCalls([("record_decision", DECIDE)]), Text("Done."))
    before = head(team)
    result = squad(team, "ask", "architect", "Where?", "--no-ingest",
                   env={"OPENAI_BASE_URL": server.base_url})
    assert "(--no-ingest)" in result.stderr and head(team) == before
    assert len(list((team / "decisions/inbox/new").iterdir())) == 1


def test_a_piped_run_says_it_writes_json(team: Path, server: ScriptedServer) -> None:
    server.enqueue(ToolCalls([("record_decision", DECIDE)]), Text("Done."))
    result = squad(team, "run", "Sessions", "--agents", "architect",
                   env={"OPENAI_BASE_URL": server.base_url})
    assert "one JSON event per line" in result.stderr
    assert json.loads(result.stdout.splitlines()[-1])["event"] == "summary"
    assert "decisions committed" in result.stderr  # the human summary, on stderr
    assert author(team, "HEAD~1") == SQUAD_ID  # agents keep the replayable identity
