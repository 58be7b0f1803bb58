"""Record a run against the scripted server, then replay it offline from its cassette."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import AGENTS, OFFLINE, agent_of, decide, git, squad
from scripted_server import Error, ScriptedServer


@pytest.fixture
def recorded(four_agent_run: tuple[Path, str]) -> tuple[Path, str]:
    """A repository holding one recorded 4-agent, 2-round run; the server is gone."""
    return four_agent_run


def replay(repo: Path, *args: str) -> dict:
    result = squad(repo, "replay", "--json", *args, check=False, env=OFFLINE)
    assert "Traceback" not in result.stderr
    verdicts = [json.loads(line) for line in result.stdout.splitlines()]
    assert result.returncode == (0 if all(v["ok"] for v in verdicts) else 1)
    return verdicts[0]


def test_replay_reproduces_the_commits_offline_every_time(recorded: tuple[Path, str]) -> None:
    repo, run_id = recorded
    branches = git(repo, "branch", "--list")
    # Separate processes (each with its own hash seed and thread timing), each replaying the
    # run three times over: twelve replays for four process starts.
    for _ in range(4):
        result = squad(repo, "replay", "--json", run_id, run_id, run_id, env=OFFLINE)
        assert "Traceback" not in result.stderr
        verdicts = [json.loads(line) for line in result.stdout.splitlines()]
        assert verdicts == 3 * [{"run": run_id, "ok": True, "commits": 8, "problem": None,
                                 "where": None, "diff": ""}]
    assert git(repo, "branch", "--list") == branches
    assert git(repo, "worktree", "list").count("\n") == 1
    assert git(repo, "status", "--porcelain") == ""


def _rewrite_start(repo: Path, run_id: str, path: str, edit) -> None:
    """Make the run claim a start commit where `path` differs by `edit`."""
    events_path = repo / f".squad/runs/{run_id}/events.jsonl"
    lines = events_path.read_text().splitlines()
    head = json.loads(lines[0])
    tree_dir = repo.parent / "alt"
    git(repo, "worktree", "add", "-q", "--detach", str(tree_dir), head["start"])
    target = tree_dir / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(edit(target.read_text() if target.exists() else ""))
    git(tree_dir, "add", path)
    git(tree_dir, "commit", "-qm", "changed input")
    head["start"] = git(tree_dir, "rev-parse", "HEAD").strip()
    git(repo, "worktree", "remove", "--force", str(tree_dir))
    events_path.write_text("\n".join([json.dumps(head, sort_keys=True), *lines[1:]]) + "\n")
    git(repo, "commit", "-qam", "claim another start")


@pytest.mark.parametrize(("path", "edit", "shows"), [
    ("AGENTS.md", lambda t: t.replace("Every squad agent", "Every squad agenT"),
     "+Every squad agenT"),
    ("agents/tester.md", lambda t: t.replace("Test engineer", "Test engineeR"),
     "+# Your charter: tester (Test engineeR"),
    ("templates/prompts/task.md.j2",
     lambda _: (Path(__file__).parent.parent / "templates/prompts/task.md.j2").read_text()
     .replace("# Your task", "# Your Task"), "+# Your Task"),
])
def test_a_changed_input_is_a_divergence_with_a_diff(recorded: tuple[Path, str], path: str,
                                                     edit, shows: str) -> None:
    repo, run_id = recorded
    _rewrite_start(repo, run_id, path, edit)
    verdict = replay(repo, run_id)
    assert not verdict["ok"]
    assert verdict["problem"].startswith("replay diverged at ")
    assert verdict["problem"].endswith("the request differs from the recorded one")
    assert "(round 1, call 1)" in verdict["where"]
    assert shows in verdict["diff"] and "--- recorded request" in verdict["diff"]


def test_a_deleted_cassette_line_fails_closed(recorded: tuple[Path, str]) -> None:
    repo, run_id = recorded
    cassette = repo / f".squad/runs/{run_id}/cassette.jsonl"
    lines = cassette.read_text().splitlines()
    labels = [json.loads(line)["label"] for line in lines]
    # the last call of an agent: nothing later in the cassette builds on it
    last = max(n for n, label in enumerate(labels) if label[:2] == labels[0][:2])
    gone = labels[last]
    cassette.write_text("\n".join(lines[:last] + lines[last + 1:]) + "\n")
    git(repo, "commit", "-qam", "lose a line")
    verdict = replay(repo, run_id)
    assert verdict["problem"] == (f"replay diverged at {gone[0]} (round {gone[1]}, call "
                                  f"{gone[2]}): the recorded run made no such call")


def test_a_deleted_line_that_others_build_on_is_named(recorded: tuple[Path, str]) -> None:
    repo, run_id = recorded
    cassette = repo / f".squad/runs/{run_id}/cassette.jsonl"
    lines = cassette.read_text().splitlines()
    first = json.loads(lines[0])["label"]
    after = next(n for n, line in enumerate(lines) if json.loads(line)["label"] ==
                 [first[0], first[1], first[2] + 1])
    cassette.write_text("\n".join(lines[1:]) + "\n")
    git(repo, "commit", "-qam", "lose the first line")
    verdict = replay(repo, run_id)
    assert verdict["problem"] == (
        f".squad/runs/{run_id}/cassette.jsonl:{after}: not a usable cassette entry (it builds "
        "on the same agent's previous call, which is missing)")


def test_an_edited_reply_changes_the_commits(recorded: tuple[Path, str]) -> None:
    repo, run_id = recorded
    cassette = repo / f".squad/runs/{run_id}/cassette.jsonl"
    lines = cassette.read_text().splitlines()
    entries = [json.loads(line) for line in lines]
    n, entry = next((n, e) for n, e in enumerate(entries)
                    if [c["name"] for c in e["reply"]["tool_calls"]] == ["record_decision"])
    call = entry["reply"]["tool_calls"][0]
    call["arguments"] = call["arguments"].replace("decides.", "decides otherwise.")
    lines[n] = json.dumps(entry)
    cassette.write_text("\n".join(lines) + "\n")
    git(repo, "commit", "-qam", "forge a reply")
    verdict = replay(repo, run_id)
    # the forged reply is served, so the agent's next request (which quotes it) diverges
    agent = entry["label"][0]
    assert verdict["problem"] == (f"replay diverged at {agent} (round 1, call 3): "
                                  "the request differs from the recorded one")
    assert "decides otherwise." in verdict["diff"]


def test_an_edited_request_is_caught_by_its_key(recorded: tuple[Path, str]) -> None:
    repo, run_id = recorded
    cassette = repo / f".squad/runs/{run_id}/cassette.jsonl"
    cassette.write_text(cassette.read_text().replace("Add rate limiting", "Add rate limitinG", 1))
    git(repo, "commit", "-qam", "forge a request")
    verdict = replay(repo, run_id)
    assert verdict["problem"].startswith(f".squad/runs/{run_id}/cassette.jsonl:")
    assert verdict["problem"].endswith("the key does not match the request (edited?)")


def test_an_edited_record_fails_verify(recorded: tuple[Path, str]) -> None:
    repo, _ = recorded
    record = next((repo / "decisions").glob("*/0003-*.md"))
    record.write_text(record.read_text().replace("decides.", "decided."))
    git(repo, "commit", "-qam", "edit")
    result = squad(repo, "verify", check=False)
    assert result.returncode == 1 and "edited after it was committed" in result.stderr


def test_since_selects_runs_touched_after_a_ref(recorded: tuple[Path, str]) -> None:
    repo, run_id = recorded
    assert replay(repo, "--since", "HEAD~1")["run"] == run_id
    none = squad(repo, "replay", "--since", "HEAD")
    assert none.stdout == "" and "no recorded run" in none.stderr


def test_a_run_with_a_failed_agent_replays(team: Path) -> None:
    with ScriptedServer() as server:
        server.responder = lambda r: Error(500, "down") if agent_of(r) == "docs" else decide(r)
        result = squad(team, "run", "goal", "--json", "--agents", ",".join(AGENTS), check=False,
                       env={"OPENAI_BASE_URL": server.base_url})
    assert result.returncode == 1
    verdict = replay(team)
    assert verdict["ok"] and verdict["commits"] == 3
