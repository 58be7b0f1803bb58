"""Every file squad reads back may be broken: a one-line error naming file and line, never a
traceback; a drop that trips the validator is quarantined and the coordinator goes on."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
from helpers import OFFLINE, drop_text, git, squad, start

DECISION = {"title": "Keep it", "context": "c", "decision": "d", "consequences": "e"}


@pytest.fixture
def recorded(two_agent_run: tuple[Path, str]) -> tuple[Path, str]:
    return two_agent_run


def replay(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    result = squad(repo, "replay", *args, check=False, env=OFFLINE)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def test_replay_since_notices_a_removed_run(recorded: tuple[Path, str]) -> None:
    repo, run_id = recorded
    assert replay(repo, "--since", "HEAD~1").returncode == 0
    git(repo, "rm", "-rq", f".squad/runs/{run_id}")
    git(repo, "commit", "-qm", "remove the run")
    result = replay(repo, "--since", "HEAD~2")
    assert result.returncode == 1
    assert f"FAILED: run {run_id}: no recorded run {run_id} at HEAD" in result.stdout
    assert "removed" in result.stdout
    assert replay(repo, run_id).returncode == 1


def _events(lines: list[str]) -> list[str]:
    out = []
    for line in lines:
        event = json.loads(line)
        if event["event"] == "commit":
            event["id"] = str(event["id"])
        out.append(json.dumps(event))
    return out


BROKEN = {
    "events.jsonl": [
        ("not JSON", lambda lines: ["{not json", *lines[1:]], "events.jsonl:1: not JSON"),
        ("empty", lambda lines: [], "events.jsonl: empty"),
        ("truncated", lambda lines: [*lines[:-1], lines[-1][:20]], "events.jsonl:"),
        ("a list", lambda lines: ["[1, 2]", *lines[1:]], "events.jsonl:1: not an event"),
        ("no run event", lambda lines: lines[1:], "does not start with a run event"),
        ("wrong types", _events, "(commit event: field id: Input should be a valid integer)"),
        ("settings missing", lambda lines: [json.dumps({**json.loads(lines[0]),
                                                        "settings": 3}), *lines[1:]],
         "events.jsonl:1: not a usable run log (run event: field settings"),
        ("not UTF-8", lambda lines: ["\udcff", *lines], "events.jsonl:1: not JSON"),
    ],
    "cassette.jsonl": [
        ("not JSON", lambda lines: ["{", *lines[1:]], "cassette.jsonl:1: not a usable"),
        ("empty", lambda lines: [], "the recorded run made no such call"),
        ("truncated", lambda lines: [lines[0][: len(lines[0]) // 2]], "cassette.jsonl:1: "),
        ("bad label", lambda lines: [json.dumps({**json.loads(lines[0]), "label": ["a", "1"]})],
         "label must be [agent, round, call]"),
        ("bad reply", lambda lines: [json.dumps({**json.loads(lines[0]), "reply": [3]}),
                                     *lines[1:]], "cassette.jsonl:1: not a usable"),
        ("not UTF-8", lambda lines: ["\udcff", *lines], "cassette.jsonl:1: not a usable"),
    ],
}


@pytest.mark.parametrize(("name", "how", "expected"),
                         [(name, how, expected) for name, cases in BROKEN.items()
                          for _, how, expected in cases],
                         ids=[f"{name}-{case}" for name, cases in BROKEN.items()
                              for case, _, _ in cases])
def test_a_broken_run_file_is_one_line_naming_file_and_line(
        recorded: tuple[Path, str], name: str, how, expected: str) -> None:
    repo, run_id = recorded
    path = repo / ".squad/runs" / run_id / name
    lines = path.read_text().splitlines()
    text = "\n".join(how(lines))
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    git(repo, "commit", "-qam", f"break {name}")
    result = replay(repo)
    assert result.returncode == 1, result.stdout
    assert result.stdout.startswith(f"FAILED: run {run_id}: ")
    assert expected in result.stdout, result.stdout


IMPOSSIBLE = ["when: 2024-02-30", "when: 2024-02-30T10:00:00Z", "when: 2023-13-01",
              "tags: [!!timestamp 2024-02-31]", "when: 2024-04-31 25:61:00"]


def test_a_drop_that_trips_the_validator_is_quarantined_and_ingest_goes_on(repo: Path) -> None:
    squad(repo, "init", "--no-agents")
    inbox = repo / "decisions/inbox/new"
    for n, line in enumerate(IMPOSSIBLE):
        (inbox / f"{n}-bad.md").write_text(drop_text("Bad").replace("agent:", f"{line}\nagent:"))
    (inbox / "9-good.md").write_text(drop_text("Good after them"))
    result = squad(repo, "ingest", check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.count("quarantined") == len(IMPOSSIBLE)
    assert git(repo, "log", "-1", "--format=%s") == "Good after them\n"
    assert len(list((repo / "decisions/quarantine").glob("*.reason"))) == len(IMPOSSIBLE)


def test_watch_quarantines_an_impossible_date_and_goes_on(repo: Path) -> None:
    squad(repo, "init", "--no-agents")
    proc = start(repo, "watch", "--poll", stderr=subprocess.PIPE, text=True)
    try:
        new = repo / "decisions/inbox/new"
        (new / "0-bad.md").write_text(drop_text("Bad").replace("agent:", "when: 2024-02-30\n"
                                                                          "agent:"))
        (new / "1-good.md").write_text(drop_text("Good"))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and "Good" not in git(repo, "log", "-1", "--format=%s"):
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "Traceback" not in stderr, stderr
    assert "quarantined 0-bad.md" in stderr
    assert git(repo, "log", "-1", "--format=%s") == "Good\n"
