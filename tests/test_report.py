"""`squad report`: the example run and scripted runs, as markdown and as pages in Chromium."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from browser import chromium, visit
from helpers import AGENTS, agent_of, decide, events, git, squad
from playwright.sync_api import Browser
from scripted_server import Error, RecordedRequest, ScriptedServer, Text, ToolCalls

ROOT = Path(__file__).resolve().parent.parent
BUNDLE = ROOT / "examples" / "shop-run.bundle"
GOLDEN = Path(__file__).resolve().parent / "golden" / "example-run.md"
UPDATE = os.environ.get("SQUAD_UPDATE_GOLDEN") == "1"
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@pytest.fixture
def example(tmp_path: Path) -> Path:
    git(tmp_path, "clone", "-q", "-b", "main", str(BUNDLE), "shop")
    return tmp_path / "shop"


def run_log(repo: Path, run_id: str) -> list[dict]:
    path = repo / ".squad" / "runs" / run_id / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def only_run(repo: Path) -> str:
    (run_id,) = [p.name for p in (repo / ".squad" / "runs").iterdir()]
    return run_id


def test_markdown_of_the_example_run_matches_the_golden_file(example: Path) -> None:
    """Regenerated on every run; rewritten only with SQUAD_UPDATE_GOLDEN=1."""
    text = squad(example, "report", "--format", "markdown", "--replay").stdout
    if UPDATE:
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text(), "run with SQUAD_UPDATE_GOLDEN=1 if the change is meant"
    for n in range(1, 7):
        assert f"| {n:04d} |" in text
    assert "**Replay:** reproduced 6 commits" in text


def test_the_example_run_page_in_chromium(example: Path, tmp_path: Path, browser: Browser) -> None:
    out = tmp_path / "report"
    written = squad(example, "report", "-o", str(out)).stdout
    run_id = only_run(example)
    page = out / f"{run_id}.html"
    assert f"wrote {page}" in written and f"wrote {out / 'index.html'}" in written
    shot = tmp_path / "run.png"
    seen = visit(browser, page, shot)
    assert seen.console == []
    assert seen.requests == [page.resolve().as_uri()]
    facts = seen.facts
    log = run_log(example, run_id)
    commits = [e["id"] for e in log if e["event"] == "commit"]
    assert facts["decisions"] == [f"d{i:04d}" for i in commits]
    assert sorted(facts["lanes"]) == sorted({e["agent"] for e in log if e["event"] == "spawn"})
    assert facts["llm"] == sum(e["event"] == "llm" for e in log) == 6
    assert facts["tools"] == sum(e["event"] == "tool" for e in log) == 24
    assert facts["bars"] == facts["llm"] + facts["tools"]
    assert facts["commits"] == len(commits)
    assert facts["graphNodes"] == 6
    assert "Make orders survive a restart" in facts["text"]
    assert "not known here" in facts["replay"]
    assert shot.read_bytes().startswith(PNG) and shot.stat().st_size > 10_000
    index = visit(browser, out / "index.html")
    assert index.console == [] and len(index.requests) == 1
    assert f"{run_id}.html" in index.facts["links"]


def test_a_known_verdict_is_shown_and_a_stale_one_is_not(example: Path, tmp_path: Path,
                                                         browser: Browser) -> None:
    run_id = only_run(example)
    squad(example, "replay")
    page = tmp_path / "one.html"
    squad(example, "report", run_id, "-o", str(page))
    assert "reproduced 6 commits" in visit(browser, page).facts["replay"]
    events_file = example / ".squad" / "runs" / run_id / "events.jsonl"
    events_file.write_text(events_file.read_text() + "\n")
    git(example, "commit", "-qam", "touch the run log")
    squad(example, "report", run_id, "-o", str(page))
    assert "not known here" in visit(browser, page).facts["replay"]


def _diverge(repo: Path, run_id: str) -> None:
    """Make the run claim a start commit whose AGENTS.md differs, so replay diverges."""
    events_file = repo / ".squad" / "runs" / run_id / "events.jsonl"
    lines = events_file.read_text().splitlines()
    head = json.loads(lines[0])
    alt = repo.parent / "alt"
    git(repo, "worktree", "add", "-q", "--detach", str(alt), head["start"])
    (alt / "AGENTS.md").write_text((alt / "AGENTS.md").read_text() + "\nBe ``` terse.\n")
    git(alt, "commit", "-qam", "changed input")
    head["start"] = git(alt, "rev-parse", "HEAD").strip()
    git(repo, "worktree", "remove", "--force", str(alt))
    events_file.write_text("\n".join([json.dumps(head, sort_keys=True), *lines[1:]]) + "\n")
    git(repo, "commit", "-qam", "claim another start")


def test_a_diverging_replay_folds_its_diff_into_the_markdown(example: Path, tmp_path: Path,
                                                             browser: Browser) -> None:
    run_id = only_run(example)
    _diverge(example, run_id)
    text = squad(example, "report", "--format", "markdown", "--replay").stdout
    assert "**Replay: diverged.**" in text
    details = text.split("<details><summary>First diverging call: ", 1)[1]
    summary, body = details.split("</summary>", 1)
    assert summary.startswith(("architect", "security", "tester"))
    body = body.split("</details>", 1)[0]
    assert "\n````diff\n" in body  # longer than the ``` inside the diff
    assert "+Be ``` terse." in body
    page = tmp_path / "run.html"
    squad(example, "report", run_id, "-o", str(page))
    seen = visit(browser, page)
    assert "diverged" in seen.facts["replay"] and seen.console == []


def test_failures_and_budget_stops_are_highlighted(team: Path, server: ScriptedServer,
                                                  tmp_path: Path, browser: Browser) -> None:
    def responder(request: RecordedRequest) -> ToolCalls | Text | Error:
        if agent_of(request) == "security":
            return Error(500, "security endpoint down")
        return decide(request)

    server.responder = responder
    result = squad(team, "run", "Add <b>rate</b> limiting | fast", "--json", "--agents",
                   ",".join(AGENTS), "--concurrency", "1", "--max-calls", "4", check=False,
                   env={"OPENAI_BASE_URL": server.base_url})
    assert result.returncode == 1
    summary = events(result.stdout)[-1]
    assert summary["stopped"] and not all(a["ok"] for a in summary["agents"])
    text = squad(team, "report", "--format", "markdown").stdout
    assert f"### Run `{summary['run']}`: stopped" in text
    assert "- :warning: stopped: call budget reached (4 calls)" in text
    assert "- :x: security failed:" in text
    assert "> Add \\<b\\>rate\\</b\\> limiting \\| fast" in text  # inert, one table cell
    assert "| security | 0 |" in text and "| failed |" in text
    page = tmp_path / "run.html"
    squad(team, "report", "-o", str(page))
    seen = visit(browser, page)
    facts = seen.facts
    assert seen.console == [] and len(seen.requests) == 1
    assert facts["failed"] == 1 and facts["stops"] >= 1
    assert "security failed" in facts["problems"] and "call budget reached" in facts["problems"]
    assert "<b>rate</b>" in facts["text"]  # shown as text, not markup
    log = run_log(team, summary["run"])
    assert facts["bars"] == sum(e["event"] in ("llm", "tool") for e in log)
    assert sorted(facts["lanes"]) == sorted(AGENTS)


def test_a_repository_template_overrides_and_is_sandboxed(example: Path,
                                                          tmp_path: Path) -> None:
    own = example / "templates" / "report"
    own.mkdir(parents=True)
    (own / "report.md.j2").write_text("Our report: {{ runs | length }} run(s)\n")
    assert squad(example, "report", "--format", "markdown").stdout == "Our report: 1 run(s)\n"
    (own / "report.md.j2").write_text(
        "{{ runs[0].facts.__class__.__init__.__globals__['os'].system('touch pwned') }}\n")
    result = squad(example, "report", "--format", "markdown", check=False)
    assert result.returncode == 2
    assert result.stderr.startswith("squad: ") and "template error" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (example / "pwned").exists()


def test_choosing_runs(example: Path, tmp_path: Path) -> None:
    result = squad(example, "report", "nope", check=False)
    assert result.returncode == 2
    assert result.stderr == "squad: no recorded run nope in .squad/runs/ at HEAD\n"
    text = squad(example, "report", "--format", "markdown", "--since", "HEAD").stdout
    assert text.startswith("## squad: 0 new decisions, 0 runs since `HEAD`")
    text = squad(example, "report", "--format", "markdown", "--since", "HEAD~3").stdout
    assert text.startswith("## squad: 2 new decisions, 1 run since `HEAD~3`")
    assert "| 0005 |" in text and "| 0004 |" not in text
    out = tmp_path / "r.md"
    squad(example, "report", "--format", "markdown", "-o", str(out))
    assert out.read_text().startswith("## squad: 6 new decisions, 1 run\n")
    assert git(example, "status", "--porcelain") == ""


def test_the_default_folder_ignores_itself_and_no_run_is_a_clear_error(
        example: Path, repo: Path) -> None:
    written = squad(example, "report").stdout.split()
    assert "squad-report/index.html" in written
    assert git(example, "status", "--porcelain", "--ignored=no") == ""
    squad(example, "report")  # a second report writes over squad's own pages
    result = squad(repo, "report", check=False)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == ("squad: no recorded run in .squad/runs/ at HEAD; `squad run` "
                             "records one, and --since REF reports the decisions added since "
                             "REF\n")
    assert not (repo / "squad-report").exists()


def test_a_hundred_agents_make_thin_lanes_in_order() -> None:
    """The timeline of a large run stays one screen-ish tall, lanes in natural order."""
    from squad.budget import BudgetLimits
    from squad.events import LoggedSettings, ModelCalled, RunStarted, Spawned, ToolUsed
    from squad.llm.messages import Usage
    from squad.runfacts import fold
    from squad.timeline import layout

    settings = LoggedSettings(agents=None, rounds=1, concurrency=100, max_agents=100,
                              limits=BudgetLimits())
    log: list = [RunStarted(run="big", goal="g", start="0" * 40, squad="0", profile="openai",
                            model=None, settings=settings, t="2026-01-01T00:00:00Z")]
    for n in range(1, 101):
        log.append(Spawned(agent=f"a{n}", round=1, model="m", inputs=[], omitted=0,
                           prompt_tokens_estimate=0, t="2026-01-01T00:00:00Z"))
        for call in range(1, 11):
            at = f"2026-01-01T00:00:{call:02d}Z"
            log.append(ModelCalled(agent=f"a{n}", round=1, call=call, key="k", tool_calls=[],
                                   usage=Usage(prompt_tokens=5, completion_tokens=1), t=at))
            log.append(ToolUsed(agent=f"a{n}", round=1, tool="grep", ok=call != 3,
                                arguments="{}", t=at))
    facts = fold(log)
    line = layout(facts)
    assert [lane.name for lane in line.lanes][:12] == [f"a{n}" for n in range(1, 13)]
    assert len(line.lanes) == 100 and line.height <= 1000 and line.font >= 7.5
    assert len(line.bars) == 2000
    assert sum(b.cls == "tool refused" for b in line.bars) == 100
    assert all(b.w >= 1.5 and b.x + b.w <= line.width for b in line.bars)
    assert facts.total("calls") == 1000 and facts.total("tokens") == 6000
