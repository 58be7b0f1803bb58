"""A model that attacks: patterns that backtrack forever, hundreds of calls in one reply,
invalid Unicode, huge arguments, misleading titles. Real `squad` processes against the
scripted server, in real repositories."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from helpers import drop_text, git, squad
from hypothesis import given, settings
from hypothesis import strategies as st
from scripted_server import ScriptedServer, Text, ToolCalls

from squad.tools import compile_pattern, matching_lines

DECISION = {"title": "Keep it", "context": "c", "decision": "d", "consequences": "e"}


@pytest.fixture
def team(initialized: Path) -> Path:
    repo = initialized
    (repo / "squad.toml").write_text("[llm]\nmodel = 'scripted'\nmax_retries = 0\ntimeout = 30\n")
    (repo / "src").mkdir()
    (repo / "src/data.txt").write_text(("a" * 40 + "!\n") * 50)
    git(repo, "add", "squad.toml", "src")
    git(repo, "commit", "-qm", "team")
    return repo


def run(team: Path, server: ScriptedServer, *args: str) -> dict:
    result = squad(team, "run", "goal", "--json", "--agents", "tester", *args, check=False,
                   env={"OPENAI_BASE_URL": server.base_url}, timeout=300)
    assert "Traceback" not in result.stderr, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def tool_answers(server: ScriptedServer, request: int) -> list[str]:
    return [m["content"] for m in server.requests[request].messages if m["role"] == "tool"]


def test_hostile_patterns_are_answered_in_bounded_time(team: Path,
                                                       server: ScriptedServer) -> None:
    patterns = [r"(a+)+$", r"(a|aa)+$", r"(.*a){25}", "a{4294967295}", "a{1001}",
                r"(?<=x)y", r"(\w)\1", "[", "", "x" * 501]
    server.enqueue(ToolCalls([("grep", {"pattern": p}) for p in patterns]),
                   ToolCalls([("record_decision", DECISION)]), Text("done"))
    summary = run(team, server)
    assert summary["ok"] and len(summary["decisions"]) == 1
    answers = tool_answers(server, 1)
    assert len(answers) == len(patterns)
    assert answers[0].startswith("no matches") and answers[1].startswith("no matches")
    assert answers[2].startswith("src/data.txt:1: ")  # RE2 finds it, linear time
    for answer in answers[3:]:
        assert answer.startswith("error: "), answer


def test_hundreds_of_calls_in_one_reply_are_capped(team: Path, server: ScriptedServer) -> None:
    calls = [("record_decision", {**DECISION, "title": f"Decision {n}"}) for n in range(300)]
    server.enqueue(ToolCalls(calls), Text("done"))
    summary = run(team, server, "--max-calls", "1", "--max-tokens", "1")
    assert len(summary["decisions"]) == 5  # the default cap on drops per agent and round
    log = team / ".squad/runs" / summary["run"] / "events.jsonl"
    tools = [e for e in map(json.loads, log.read_text().splitlines()) if e["event"] == "tool"]
    assert len(tools) == 64  # calls beyond what a reply may hold are not kept at all
    assert sum(e["ok"] for e in tools) == 5


def test_the_caps_come_from_squad_toml_and_the_charter(team: Path,
                                                      server: ScriptedServer) -> None:
    with (team / "squad.toml").open("a") as out:
        out.write("[agents]\nmax_tool_calls_per_reply = 3\n")
    charter = team / "agents/tester.md"
    charter.write_text(charter.read_text().replace("name: tester", "name: tester\nmax_drops: 2"))
    git(team, "commit", "-qam", "caps")
    calls = [("record_decision", {**DECISION, "title": f"Decision {n}"}) for n in range(10)]
    server.enqueue(ToolCalls(calls), Text("done"))
    summary = run(team, server)
    assert len(summary["decisions"]) == 2
    answers = tool_answers(server, 1)
    assert sum(a.startswith("dropped ") for a in answers) == 2
    assert sum("the most one agent may record" in a for a in answers) == 1
    assert sum("only 3 tool calls per reply" in a for a in answers) == 7


SURROGATE_ARGS = ('{"title": "Lone \\ud800 surrogate", "context": "\\udfff", '
                  '"decision": "d \\ud83d", "consequences": "e", "tags": ["ok"]}')


def test_lone_surrogates_never_kill_an_agent_a_run_or_its_replay(team: Path,
                                                                 server: ScriptedServer) -> None:
    (team / "src/bytes").mkdir()
    (team / os.fsdecode(b"src/bytes/caf\xe9.txt")).write_text("x")  # a name that is not UTF-8
    git(team, "add", "src")
    git(team, "commit", "-qm", "a file name that is not UTF-8")
    server.enqueue(ToolCalls([("record_decision", SURROGATE_ARGS),
                              ("read_file\ud800", "{}"), ("list_files", {}),
                              ("grep", '{"pattern": "\\ud800"}')], content="think \ud800"),
                   Text("done \udc80"))
    result = squad(team, "run", "goal \udcff from argv", "--json", "--agents", "tester",
                   check=False, env={"OPENAI_BASE_URL": server.base_url})
    assert "Traceback" not in result.stderr, result.stderr
    summary = json.loads(result.stdout.splitlines()[-1])
    assert summary["ok"] and len(summary["decisions"]) == 1, summary
    record = next((team / "decisions").glob("*/0001-*.md")).read_text(encoding="utf-8")
    assert "Lone \ufffd surrogate" in record
    replayed = squad(team, "replay", check=False, env={"OPENAI_BASE_URL": "http://127.0.0.1:9/v1"})
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr


def test_lone_surrogates_never_crash_ask(team: Path, server: ScriptedServer) -> None:
    server.enqueue(ToolCalls([("record_decision", SURROGATE_ARGS)], content="\ud800"),
                   Text("final \udc80 words"))
    result = squad(team, "ask", "tester", "task \udcff", "--ingest", check=False,
                   env={"OPENAI_BASE_URL": server.base_url})
    assert result.returncode == 0, result.stderr
    assert "final \ufffd words" in result.stdout
    assert squad(team, "verify").returncode == 0


def test_a_refused_huge_argument_is_not_kept_in_the_run(team: Path,
                                                        server: ScriptedServer) -> None:
    huge = json.dumps({**DECISION, "context": "x" * 10_000_000})
    server.enqueue(ToolCalls([("record_decision", huge), ("grep", {"pattern": "y" * 4_000_000})]),
                   ToolCalls([("record_decision", DECISION)]), Text("done"))
    summary = run(team, server)
    assert summary["ok"] and len(summary["decisions"]) == 1
    answers = tool_answers(server, 1)
    assert answers[0].startswith("error: dropped arguments of 10000") and "send less" in answers[0]
    assert answers[1].startswith("error: ")
    folder = team / ".squad/runs" / summary["run"]
    kept = sum(p.stat().st_size for p in folder.iterdir())
    assert kept < 600_000, f"the run keeps {kept} bytes"


def test_repeated_references_and_misleading_titles_are_refused(team: Path,
                                                               server: ScriptedServer) -> None:
    squad(team, "decide", "--title", "First", "--decision", "d", "--agent", "me")
    titles = ["Approve \u202eevil\u202c", "Zero\u200bwidth", "Isolate \u2066x\u2069",
              "Soft\u00adhyphen"]
    server.enqueue(ToolCalls([("record_decision", {**DECISION, "supersedes": [1, 1]}),
                              *[("record_decision", {**DECISION, "title": t}) for t in titles],
                              ("record_decision", {**DECISION, "decision": "a \u202e b"})]),
                   Text("done"))
    summary = run(team, server)
    assert summary["decisions"] == []
    answers = tool_answers(server, 1)
    assert "supersedes: lists 1 more than once" in answers[0]
    for answer, code in zip(answers[1:], ["202E", "200B", "2066", "00AD", "202E"], strict=True):
        assert f"U+{code}" in answer, answer
    bad = squad(team, "decide", "--title", "Approve \u202eevil", "--decision", "d",
                check=False)
    assert bad.returncode == 2 and "U+202E" in bad.stderr
    twice = squad(team, "decide", "--title", "T", "--decision", "d", "--supersedes", "1",
                  "--supersedes", "1", check=False)
    assert twice.returncode == 2 and "more than once" in twice.stderr
    (team / "decisions/inbox/x.md").write_text(
        drop_text("Hidden title").replace("Hidden", "Hidden \u202e"), encoding="utf-8")
    result = squad(team, "ingest", check=False)
    assert result.returncode == 1 and "U+202E" in result.stderr


@settings(max_examples=200, deadline=None)
@given(text=st.text(st.sampled_from("ab \n\tx1é_"), max_size=60),
       pattern=st.sampled_from([r"a\s+b", r"[^x]*1", r"^a", r"b$", r"^$", r"x?", r"\w+ \w",
                                r"(?i)A", "é"]))
def test_grep_matches_line_by_line_though_it_searches_the_whole_text(text: str,
                                                                     pattern: str) -> None:
    import re2

    one = re2.compile(pattern)
    lines = text.replace("\r\n", "\n").split("\n")
    expected = [(n, line) for n, line in enumerate(lines, 1) if one.search(line)]
    assert list(matching_lines(compile_pattern(pattern), text)) == expected
