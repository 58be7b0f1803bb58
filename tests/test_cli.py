"""The commands end to end, as a user runs them: real processes in a real repository."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from helpers import SQUAD, drop_text, git, squad, start

from squad.dropbox import Inbox


def test_decide_accept_reject_supersede_and_the_folded_status(initialized_no_agents: Path) -> None:
    repo = initialized_no_agents
    squad(repo, "decide", "--title", "Use SQLite", "--decision", "SQLite it is.",
          "--context", "We need storage.", "--tag", "storage")
    squad(repo, "decide", "--title", "Cache in memory", "--decision", "An LRU dict.")
    squad(repo, "supersede", "1", "--title", "Use Postgres", "--decision", "Postgres.")
    squad(repo, "accept", "3")
    squad(repo, "reject", "2", "--reason", "Not needed yet.")
    log = json.loads(squad(repo, "log", "--json").stdout)
    status = {entry["id"]: entry["current_status"] for entry in log}
    assert status == {1: "superseded", 2: "rejected", 3: "accepted", 4: "accept", 5: "reject"}
    assert log[0]["superseded_by"] == [3]
    assert log[4]["target"] == 2 and "Not needed yet." in log[4]["decision"]
    assert log[0]["agent"] == "Test User"
    shown = squad(repo, "show", "1").stdout
    assert "status: superseded, superseded by 0003" in shown
    assert "## Context\n\nWe need storage." in shown
    index = (repo / "decisions/000/README.md").read_text()
    assert "| [0001](0001-use-sqlite.md) | Use SQLite | Test User |" in index
    assert "| superseded |  | 0003 |" in index
    assert squad(repo, "verify").returncode == 0
    assert git(repo, "status", "--porcelain") == ""


def test_decide_through_editor(repo: Path, tmp_path: Path) -> None:
    editor = tmp_path / "editor.py"
    editor.write_text(
        "import sys, pathlib\n"
        "p = pathlib.Path(sys.argv[1])\n"
        "t = p.read_text().replace(\"title: ''\", 'title: From the editor')\n"
        "t = t.replace('## Decision\\n\\n', '## Decision\\n\\nEdited text.\\n', 1)\n"
        "p.write_text(t)\n")
    squad(repo, "decide", env={"EDITOR": f"{sys.executable} {editor}"})
    record = json.loads(squad(repo, "show", "1", "--json").stdout)
    assert record["title"] == "From the editor"
    assert record["decision"] == "Edited text."


def test_user_errors_are_one_line_with_an_exit_code(repo: Path) -> None:
    result = squad(repo, "decide", "--title", "bad\x01title", "--decision", "x", check=False)
    assert result.returncode == 2
    assert result.stderr.strip().startswith("squad: --title: must be a single line")
    assert "Traceback" not in result.stderr
    missing = squad(repo, "accept", "9", check=False)
    assert (missing.returncode, missing.stderr.strip()) == (2, "squad: no decision 9 in decisions/")
    (repo / "squad.toml").write_text("[coordinator]\nsettle_seconds = 'soon'\n")
    config = squad(repo, "ingest", check=False)
    assert config.returncode == 2
    assert "squad.toml: field coordinator.settle_seconds" in config.stderr


def test_ingest_exits_1_and_names_the_quarantined_drop(repo: Path) -> None:
    Inbox(repo / "decisions/inbox").drop("no front matter", name="oops.md")
    result = squad(repo, "ingest", check=False)
    assert result.returncode == 1
    assert "quarantined decisions/quarantine/oops.md: does not start with" in result.stderr


def test_watch_takes_the_backlog_then_new_drops_and_stops_on_sigint(repo: Path) -> None:
    (repo / "squad.toml").write_text("[coordinator]\nsettle_seconds = 0.2\n")
    inbox = Inbox(repo / "decisions/inbox")
    inbox.drop(drop_text("Piled up while down"), name="0-backlog.md")
    proc = start(repo, "watch", stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: _count(repo) == 1)
        inbox.drop(drop_text("Arrived while watching"), name="1-live.md")
        (repo / "decisions/inbox/by hand.md").write_text(drop_text("Copied in by hand"))
        _wait_for(lambda: _count(repo) == 3)
    finally:
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
    titles = git(repo, "log", "--format=%s", "--grep=^Squad-Decision").splitlines()
    assert titles == ["Copied in by hand", "Arrived while watching", "Piled up while down"]


def test_watch_with_polling_stops_on_sigterm(repo: Path) -> None:
    proc = start(repo, "watch", "--poll", stderr=subprocess.PIPE, text=True)
    try:
        Inbox(repo / "decisions/inbox").drop(drop_text("Polled"))
        _wait_for(lambda: _count(repo) == 1)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=20)
    assert proc.returncode == 0


def test_watch_waits_out_a_held_index_lock(repo: Path) -> None:
    proc = start(repo, "watch", stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stderr.readline, "")))
    reader.start()
    lock = repo / ".git" / "index.lock"
    try:
        lock.write_text("")
        Inbox(repo / "decisions/inbox").drop(drop_text("Waits for the lock"))
        # however slowly watch starts, it must say it waits, stay up and commit nothing
        _wait_for(lambda: any(line.startswith("waiting: ") for line in lines), 60)
        assert proc.poll() is None, "watch must not give up on a transient lock"
        assert _count(repo) == 0
        lock.unlink()
        _wait_for(lambda: _count(repo) == 1)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
        reader.join(timeout=20)
        proc.stderr.close()
    stderr = "".join(lines)
    assert proc.returncode == 0
    assert "index is locked" in stderr and "resumed" in stderr


def _count(repo: Path) -> int:
    return len(list((repo / "decisions").glob("*/[0-9]*.md")))


def _wait_for(condition, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


def test_help_for_every_command(repo: Path) -> None:
    for command in ("init", "decide", "ingest", "watch", "log", "show", "accept", "reject",
                    "supersede", "verify"):
        assert "Usage: squad" in squad(repo, command, "--help").stdout


def test_read_commands_where_squad_is_not_set_up_say_so(repo: Path) -> None:
    """An empty answer would look like a clean log (and a passing CI check)."""
    for command in (["log"], ["log", "--json"], ["show", "1"], ["verify"]):
        result = squad(repo, *command, check=False)
        assert (result.returncode, result.stdout) == (2, ""), command
        assert result.stderr == (f"squad: {repo}: squad is not set up here (no squad.toml or "
                                 "decisions/ committed); `squad init` sets it up\n")
    assert not (repo / ".git" / "squad" / "log-view").exists()


def test_newcomer_mistakes_get_one_line_in_the_words_of_the_command(initialized: Path) -> None:
    repo = initialized
    empty = squad(repo, "log")
    assert empty.stderr == "no decisions yet (`squad decide` or `squad run` records them)\n"
    missing = squad(repo, "decide", "--decision", "no title", check=False)
    assert (missing.returncode, missing.stderr) == (2, "squad: --title is required\n")
    squad(repo, "decide", "--title", "Use SQLite", "--decision", "WAL mode.")
    nothing = squad(repo, "log", "--agent", "nobody")
    assert nothing.stderr == "no matching decisions\n"
    unknown = squad(repo, "report", "--since", "origin/main", "--format", "markdown",
                    check=False)
    assert unknown.returncode == 2
    assert unknown.stderr.startswith("squad: --since origin/main: not a branch or commit")


def test_a_reader_that_closes_the_pipe_ends_the_command_quietly(repo: Path) -> None:
    squad(repo, "decide", "--title", "Long", "--decision", "word " * 19_000)
    shown = subprocess.run(f"{' '.join(SQUAD)} show 1 | head -c 10", shell=True, cwd=repo,
                           capture_output=True, text=True)
    assert shown.stdout == "decisions/" and shown.stderr == ""
