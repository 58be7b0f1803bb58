"""Guided mode shows a weak model what matters, and placeholder records are refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import git, squad
from scripted_server import RecordedRequest, ScriptedServer, Text

from squad import guide
from squad.charters import Charter
from squad.tools import ToolBox
from squad.workspace import Workspace

CHARTER = Charter(name="architect", role="Software architect",
                  body="## Expertise\nx\n\n## What I own\ny\n")


def test_survey_puts_readme_and_named_files_first_and_leaves_squad_out() -> None:
    listing = [".squad/runs/r/events.jsonl", "AGENTS.md", "README.md", "agents/lead.md",
               "decisions/0001-x.md", "src/app.py", "src/orders.py", "squad.toml",
               "tests/test_app.py", "... and 3 more (narrow with a glob)"]
    shown, read = guide.survey(listing, "Make orders survive a restart")
    assert shown == ["README.md", "src/orders.py", "AGENTS.md", "src/app.py",
                     "tests/test_app.py"]
    assert read == ["README.md", "src/orders.py"]
    _, read = guide.survey(listing, "Speed it up")
    assert read == ["README.md", "src/app.py", "src/orders.py"]


def test_clip_keeps_whole_lines_and_says_what_it_left_out() -> None:
    text = "\n".join(f"line {n}" for n in range(100))
    clipped = guide.clip(text, 40)
    assert clipped.startswith("line 0\nline 1") and "more characters not shown" in clipped
    assert guide.clip("short", 40) == "short"


@pytest.mark.parametrize("title", ["Title of Decision", "title", "What I own", "1.2.3.4",
                                   "Software architect", "  Expertise. "])
def test_placeholder_titles_are_refused_as_tool_errors(ws: Workspace, title: str) -> None:
    box = ToolBox(ws, Charter(name="architect", role="Software architect",
                              body=CHARTER.body, tools=("record_decision",)))
    result = box.call("record_decision", json.dumps(
        {"title": title, "context": "c", "decision": "d", "consequences": "e"}))
    assert not result.ok
    assert "placeholder" in result.content or "no words" in result.content
    assert box.drops == []


def test_a_real_title_is_not_a_placeholder() -> None:
    assert guide.placeholder("Persist orders in SQLite", CHARTER) is None


def test_guided_mode_end_to_end_shows_own_files_and_reads_them(
        initialized: Path, server: ScriptedServer) -> None:
    """The llama-cpp profile is guided; squad.toml selects it for an endpoint too."""
    repo = initialized
    (repo / "README.md").write_text("# Shop\nA shop.\n")
    (repo / "orders.py").write_text("ORDERS = {}\n")
    (repo / "squad.toml").write_text("[llm]\nmodel = 'm'\nprofile = 'llama-cpp'\n")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "app")
    tries = iter([{"title": "Title of Decision", "context": "c", "decision": "d",
                   "consequences": "e"},
                  {"title": "Persist orders in SQLite", "context": "c", "decision": "d",
                   "consequences": "e"}])

    def responder(request: RecordedRequest) -> Text:
        return Text(json.dumps(next(tries)))

    server.responder = responder
    result = squad(repo, "ask", "architect", "Make orders survive a restart",
                   env={"OPENAI_BASE_URL": server.base_url})
    assert "0001  Persist orders in SQLite" in result.stdout
    first = "\n".join(m["content"] for m in server.requests[0].messages)
    listing = next(m["content"] for m in server.requests[0].messages
                   if m["content"].startswith("Files in the repository:\n"))
    assert listing.splitlines()[1:3] == ["README.md", "orders.py"]
    assert "decisions/" not in listing and "agents/" not in listing
    assert "orders.py:\n```\nORDERS = {}" in first and "# Shop" in first
    retry = server.requests[1].messages[-1]["content"]
    assert "placeholder" in retry
