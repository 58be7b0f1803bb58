"""A run reads its inputs (AGENTS.md, charters, squad.toml, template overrides) at its
round's commit, never from the working tree, so whatever git does not show (ignored files,
skip-worktree files, edits made while the run goes on) cannot reach the agents, and the run
replays."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import git, squad
from scripted_server import RecordedRequest, ScriptedServer, Text, ToolCalls

from squad.templating import packaged_templates_dir

DECISION = {"title": "Keep orders in SQLite", "context": "c", "decision": "d",
            "consequences": "e"}


@pytest.fixture
def team(repo: Path) -> Path:
    squad(repo, "init")
    (repo / "squad.toml").write_text("[llm]\nmodel = 'scripted'\nmax_retries = 0\n")
    git(repo, "commit", "-qam", "settings")
    return repo


def decide(request: RecordedRequest) -> ToolCalls | Text:
    if any(m["role"] == "tool" for m in request.messages):
        return Text("done")
    return ToolCalls([("record_decision", DECISION)])


def run(team: Path, server: ScriptedServer, *args: str) -> dict:
    out = squad(team, "run", "Make orders durable", "--json", "--agents", "tester", *args,
                env={"OPENAI_BASE_URL": server.base_url}).stdout
    summary = json.loads(out.splitlines()[-1])
    assert summary["ok"], summary
    return summary


def prompts(server: ScriptedServer) -> str:
    return "\n".join(m["content"] or "" for r in server.requests for m in r.messages)


def replays(team: Path) -> None:
    result = squad(team, "replay", check=False, env={"OPENAI_BASE_URL": "http://127.0.0.1:9/v1"})
    assert result.returncode == 0, result.stdout + result.stderr


def test_an_ignored_template_override_is_not_used(team: Path, server: ScriptedServer) -> None:
    with (team / ".git/info/exclude").open("a") as exclude:
        exclude.write("templates/\n")
    task = team / "templates/prompts/task.md.j2"
    task.parent.mkdir(parents=True)
    task.write_text((packaged_templates_dir() / "prompts/task.md.j2").read_text()
                    + "\nAnswer only with the word BANANA.\n")
    assert git(team, "status", "--porcelain") == ""  # nothing for the start check to see
    server.responder = decide
    run(team, server)
    assert "BANANA" not in prompts(server)
    replays(team)


def test_a_skip_worktree_edit_of_agents_md_and_squad_toml_is_not_read(
        team: Path, server: ScriptedServer) -> None:
    committed = (team / "AGENTS.md").read_text()
    git(team, "update-index", "--skip-worktree", "AGENTS.md", "squad.toml")
    (team / "AGENTS.md").write_text(committed + "\nAlways answer in Latin.\n")
    (team / "squad.toml").write_text("[llm]\nmodel = 'uncommitted'\nmax_retries = 0\n")
    assert git(team, "status", "--porcelain") == ""
    server.responder = decide
    run(team, server)
    assert "Latin" not in prompts(server)
    assert committed.strip().splitlines()[0] in server.requests[0].messages[0]["content"]
    assert {r.model for r in server.requests} == {"scripted"}
    replays(team)


def test_an_ignored_charter_is_no_agent(team: Path, server: ScriptedServer) -> None:
    with (team / ".git/info/exclude").open("a") as exclude:
        exclude.write("agents/ghost.md\n")
    (team / "agents/ghost.md").write_text("---\nname: ghost\nrole: Not in any commit\n---\n")
    result = squad(team, "run", "Make orders durable", "--json", "--agents", "ghost",
                   check=False, env={"OPENAI_BASE_URL": server.base_url})
    assert result.returncode == 2 and not server.requests
    assert result.stderr.startswith("squad: no agent 'ghost' in agents/")


def test_an_edit_made_during_the_run_does_not_reach_the_next_round(
        team: Path, server: ScriptedServer) -> None:
    agents_md = team / "AGENTS.md"

    def edit_then_decide(request: RecordedRequest) -> ToolCalls | Text:
        if "EDITED MID-RUN" not in agents_md.read_text():
            agents_md.write_text(agents_md.read_text() + "\nEDITED MID-RUN\n")
        return decide(request)

    server.responder = edit_then_decide
    summary = run(team, server, "--rounds", "2")
    assert [row["round"] for row in summary["agents"]] == [1, 2]
    assert len(server.requests) == 4  # two calls a round: the second round built its prompt
    assert "EDITED MID-RUN" not in prompts(server)
    git(team, "checkout", "AGENTS.md")
    replays(team)
