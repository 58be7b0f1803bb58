"""The run log's typed events: the keys each kind is written with, old logs, newer logs, and
what the live view and the JSON lines make of a run's events."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import get_args

import pytest
from helpers import git, squad
from rich.console import Console
from scripted_server import ScriptedServer, Text, ToolCalls

from squad import events
from squad.errors import SquadError
from squad.progress import JsonLines, LiveView, print_summary
from squad.runfacts import fold

BUNDLE = Path(__file__).resolve().parent.parent / "examples" / "shop-run.bundle"
COMMON = {"event", "seq", "t"}
# The protocol, spelled out: renaming, adding or dropping a key of any kind fails here, and
# the same names are checked against what a real run writes below.
KEYS = {
    "run": {"version", "run", "goal", "start", "squad", "settings", "profile", "model"},
    "plan": {"tasks"},
    "round": {"round", "snapshot", "agents"},
    "spawn": {"agent", "round", "model", "inputs", "omitted", "prompt_tokens_estimate"},
    "llm": {"agent", "round", "call", "key", "usage", "tool_calls"},
    "reply": {"agent", "round", "usage", "tool_calls"},
    "tool": {"agent", "round", "tool", "ok", "arguments", "drop"},
    "done": {"agent", "round", "drops"},
    "failed": {"agent", "round", "error"},
    "stop": {"agent", "round", "call", "reason"},
    "delivery": {"task", "agent", "writer", "commit", "profile", "model", "drops"},
    "commit": {"drop", "id", "sha", "agent", "title", "date"},
    "quarantine": {"drop", "reason"},
    "kept": {"path", "kept_as"},
    "summary": {"run", "start", "end", "ok", "stopped", "decisions", "quarantined", "agents",
                "review", "nothing_decided", "log"},
}
SUMMARY_ROWS = {
    "decisions": {"id", "agent", "sha", "drop"},
    "quarantined": {"drop", "reason"},
    "agents": {"agent", "round", "ok", "error", "calls", "drops", "prompt_tokens",
               "completion_tokens", "cached_tokens", "cost"},
}
SETTINGS = {"agents", "rounds", "concurrency", "max_agents", "limits", "branch"}


def _models() -> dict[str, type]:
    union = get_args(get_args(events.Event)[0])
    return {model.model_fields["event"].default: model for model in union}


def test_every_kind_is_one_model_with_the_pinned_keys() -> None:
    models = _models()
    assert sorted(models) == sorted(events.KINDS) == sorted(KEYS)
    for kind, model in models.items():
        assert set(model.model_fields) == KEYS[kind] | COMMON, kind
    assert set(events.LoggedSettings.model_fields) == SETTINGS
    for name, keys in SUMMARY_ROWS.items():
        row = events.Summary.model_fields[name].annotation
        assert set(get_args(row)[0].model_fields) == keys, name


def _version_one_log() -> bytes:
    """The example run's log, recorded by squad 0.1.0 (no version field)."""
    return (Path(__file__).parent / "golden" / "events-v1.jsonl").read_bytes()


def test_a_version_one_log_loads_line_for_line() -> None:
    data = _version_one_log()
    log = events.read(data, "events.jsonl")
    head = events.head(log, "events.jsonl")
    assert head.version == 1 and head.settings.rounds == 2
    kinds = {e.event for e in log}
    assert {"reply", "llm", "commit", "summary", "spawn", "tool", "done"} <= kinds
    for event, line in zip(log, data.decode().splitlines(), strict=True):
        written = events.to_json(event)
        if event.event == "run":
            assert written.pop("version") == 1
        assert written == json.loads(line)  # nothing lost, renamed or added on the way


def test_a_version_one_budget_stop_is_not_counted_twice() -> None:
    head = _version_one_log().split(b"\n", 1)[0]
    stop = {"event": "stop", "agent": "tester", "round": 1, "call": 2, "reason": "budget",
            "seq": 2, "t": "2026-01-01T00:00:01Z"}
    failed = {"event": "failed", "agent": "tester", "round": 1, "error": "budget",
              "seq": 3, "t": "2026-01-01T00:00:01Z"}
    data = b"\n".join([head, json.dumps(stop).encode(), json.dumps(failed).encode()])
    facts = fold(events.read(data, "events.jsonl"))
    assert [m.kind for m in facts.marks] == ["stop"]
    assert facts.agents["tester"].stops == ["budget"] and not facts.agents["tester"].errors


@pytest.mark.parametrize(("line", "says"), [
    ({"version": 99}, "events.jsonl: run log version 99 is newer than this squad reads (up to "),
    ({"version": "2"}, "events.jsonl:1: the run event's version '2' is not a run log version"),
    ({"goal": 3}, "events.jsonl:1: not a usable run log (run event: field goal: Input should"),
    ({"settings": {"rounds": 1}}, "(run event: field settings.agents: Field required"),
    ({"event": "nope"}, "events.jsonl: does not start with a run event"),
])
def test_a_bad_head_is_one_line_naming_the_file(line: dict, says: str) -> None:
    first, rest = _version_one_log().split(b"\n", 1)
    data = json.dumps({**json.loads(first), **line}).encode() + b"\n" + rest
    with pytest.raises(SquadError) as caught:
        events.read(data, "events.jsonl")
    assert says in caught.value.message and "\n" not in caught.value.message


def test_an_unknown_kind_names_the_line() -> None:
    data = _version_one_log() + b'{"event": "teleport", "seq": 99}\n'
    with pytest.raises(SquadError, match=r"events.jsonl:60: unknown event 'teleport'"):
        events.read(data, "events.jsonl")


def test_a_newer_log_is_refused_by_replay_and_report(tmp_path: Path) -> None:
    git(tmp_path, "clone", "-q", "-b", "main", str(BUNDLE), "shop")
    repo = tmp_path / "shop"
    (run_id,) = [p.name for p in (repo / ".squad/runs").iterdir()]
    path = repo / ".squad/runs" / run_id / "events.jsonl"
    first, rest = path.read_text().split("\n", 1)
    path.write_text(json.dumps({**json.loads(first), "version": 7}) + "\n" + rest)
    git(repo, "commit", "-qam", "a log from the future")
    says = (f".squad/runs/{run_id}/events.jsonl: run log version 7 is newer than this squad "
            f"reads (up to {events.VERSION}); upgrade squad to read it")
    replayed = squad(repo, "replay", check=False)
    assert replayed.returncode == 1 and says in replayed.stdout
    reported = squad(repo, "report", "--format", "markdown", check=False)
    assert reported.returncode == 1 and reported.stderr == f"squad: {says}\n"


@pytest.fixture
def recorded(repo: Path) -> tuple[Path, list[dict], str]:
    """A real run of one agent (a read, a decision, done) and its log."""
    squad(repo, "init")
    (repo / "squad.toml").write_text("[llm]\nmodel = 'scripted'\nmax_retries = 0\n"
                                     "[prices.scripted]\nprompt = 1.0\ncompletion = 2.0\n")
    git(repo, "commit", "-qam", "settings")
    decision = {"title": "Keep orders in SQLite", "context": "c", "decision": "d",
                "consequences": "e"}
    with ScriptedServer() as server:
        server.enqueue(ToolCalls([("read_file", {"path": "AGENTS.md"})]),
                       ToolCalls([("record_decision", decision)]), Text("done"))
        out = squad(repo, "run", "goal", "--json", "--agents", "tester",
                    env={"OPENAI_BASE_URL": server.base_url}).stdout
    stdout = out.splitlines()
    run_id = json.loads(stdout[-1])["run"]
    path = repo / ".squad/runs" / run_id / "events.jsonl"
    written = path.read_text().splitlines()
    assert stdout == written  # --json prints the very lines the log keeps
    return repo, [json.loads(line) for line in written], run_id


def test_a_run_writes_every_line_with_the_pinned_keys(recorded: tuple[Path, list[dict], str],
                                                      ) -> None:
    _, log, _ = recorded
    assert [e["seq"] for e in log] == list(range(1, len(log) + 1))
    assert log[0]["version"] == events.VERSION
    for line in log:
        assert set(line) == KEYS[line["event"]] | COMMON, line["event"]
    kinds = [e["event"] for e in log]
    assert kinds[:3] == ["run", "plan", "round"] and kinds[-1] == "summary"
    assert kinds.count("llm") == 3 and "reply" not in kinds  # one line per model call
    assert set(log[0]["settings"]) == SETTINGS
    for name, keys in SUMMARY_ROWS.items():
        assert all(set(row) == keys for row in log[-1][name]), name


def test_the_live_view_shows_each_agent_from_the_events(
        recorded: tuple[Path, list[dict], str]) -> None:
    _, log, _ = recorded
    typed = [events.parse(line, "events.jsonl") for line in log]
    out = io.StringIO()
    console = Console(file=out, width=120, force_terminal=False, color_system=None)
    with LiveView(console) as view:
        for event in typed:
            view(event)
    shown = out.getvalue()
    row = next(line for line in shown.splitlines() if line.strip("│ ").startswith("tester"))
    cells = [c.strip() for c in row.strip("│").split("│")]
    usage = sum(e["usage"]["prompt_tokens"] + e["usage"]["completion_tokens"]
                for e in log if e["event"] == "llm")
    assert cells == ["tester", "done", "3", "2", "1", str(usage), "record_decision ok"]
    assert "0001 tester: Keep orders in SQLite" in shown

    view = LiveView(Console(file=io.StringIO()))
    view.show(events.Stopped(agent="tester", round=1, call=4, reason="call budget reached"))
    view.show(events.Failed(agent="docs", round=1, error="x" * 100))
    assert "stopped" in _text(view) and "call budget reached" in _text(view)
    assert "failed" in _text(view) and "x" * 60 in _text(view) and "x" * 61 not in _text(view)


def _text(view: LiveView) -> str:
    out = io.StringIO()
    Console(file=out, width=200).print(view._render())
    return out.getvalue()


def test_json_lines_and_the_summary_print_from_the_typed_events(
        recorded: tuple[Path, list[dict], str]) -> None:
    _, log, _ = recorded
    typed = [events.parse(line, "events.jsonl") for line in log]
    out = io.StringIO()
    lines = JsonLines(out)
    for event in typed:
        lines(event)
    assert [json.loads(line) for line in out.getvalue().splitlines()] == log
    summary = typed[-1]
    assert isinstance(summary, events.Summary)
    printed = io.StringIO()
    print_summary(Console(file=printed, width=160), summary, {1: "Keep orders in SQLite"})
    text = printed.getvalue()
    assert "0001" in text and "Keep orders in SQLite" in text
    assert "$0.00" in text and "review: git log -p" in text
    failed = summary.model_copy(update={
        "decisions": [], "review": None, "ok": False, "stopped": "call budget reached",
        "nothing_decided": "call budget reached", "log": ".git/squad/runs/x/events.jsonl",
        "agents": [summary.agents[0].model_copy(update={"ok": False, "error": "boom"})]})
    printed = io.StringIO()
    print_summary(Console(file=printed, width=160), failed, {})
    text = printed.getvalue()
    assert "FAILED: boom" in text and "stopped early: call budget reached" in text
    assert "nothing was decided: call budget reached; nothing was committed (the run's " \
           "log: .git/squad/runs/x/events.jsonl)" in text


def test_a_stamp_set_on_the_line_reads_as_the_stamp_set_on_the_event() -> None:
    """The run log stamps `seq` and `t` on the line's JSON, not on a copy of the event."""
    stamp = {"seq": 7, "t": "2026-01-01T00:00:00Z"}
    for event in (events.RoundStarted(round=1, snapshot=None, agents=["a"]),
                  events.Failed(agent="x" * 20_000, round=2, error="Bearer abcdefghijkl")):
        assert events.to_line(event, stamp) == events.to_line(event.model_copy(update=stamp))
        assert json.loads(events.to_line(event, stamp))["seq"] == 7
