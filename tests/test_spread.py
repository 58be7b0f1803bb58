"""A run spread over machines: planned in one clone, each agent run in another clone with
`squad agent … --push`, collected by `squad ingest --remote`, replayed offline in a fresh
clone. A bare repository is the remote; the model is the real scripted HTTP server."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from helpers import AGENTS, clone, decide, git, squad, squad_on_path, start, titles
from scripted_server import RecordedRequest, ScriptedServer, Text, ToolCalls

GOAL = "Add rate limiting"


def route_then_decide(request: RecordedRequest) -> ToolCalls | Text:
    if request.body.get("response_format"):  # the lead's plan
        return Text(json.dumps({"tasks": [{"agent": a, "task": f"{a}: {GOAL}"}
                                          for a in AGENTS]}))
    return decide(request)


@pytest.fixture
def bare(repo: Path, tmp_path: Path) -> Path:
    squad(repo, "init")
    (repo / "squad.toml").write_text("[llm]\nmodel = 'scripted'\nmax_retries = 0\ntimeout = 10\n")
    git(repo, "commit", "-qam", "settings")
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(repo), str(remote)], check=True)
    return remote


def plan(where: Path, server: ScriptedServer, *extra: str) -> dict:
    out = squad(where, "run", GOAL, "--plan-only", "--json", *extra,
                env={"OPENAI_BASE_URL": server.base_url}).stdout
    git(where, "push", "-q", "origin", "main")
    return json.loads(out)


def agent(where: Path, server: ScriptedServer, task: str, *extra: str,
          check: bool = True) -> subprocess.CompletedProcess[str]:
    return squad(where, "agent", task, "--push", "origin", *extra, check=check,
                 env={"OPENAI_BASE_URL": server.base_url})


def test_four_agents_on_four_clones_collected_then_replayed_offline(
        bare: Path, tmp_path: Path, server: ScriptedServer) -> None:
    server.responder = route_then_decide
    planner = clone(bare, tmp_path / "planner")
    planned = plan(planner, server)
    run_id = planned["run"]
    assert [t["id"] for t in planned["tasks"]] == [f"r1.{a}" for a in AGENTS]
    trunk = git(bare, "rev-parse", "main").strip()

    machines = [clone(bare, tmp_path / f"m{n}") for n in range(4)]
    running = [start(m, "agent", f"r1.{a}", "--run", run_id, "--push", "origin", "--writer",
                     f"m{n}", text=True, env={"OPENAI_BASE_URL": server.base_url},
                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
               for n, (a, m) in enumerate(zip(AGENTS[:3], machines, strict=False))]
    for process in running:
        out, errs = process.communicate(timeout=120)
        assert process.returncode == 0, errs
        assert "delivered r1." in out
    # the fourth machine is offline: its drops and log wait in its clone
    git(machines[3], "remote", "set-url", "origin", str(tmp_path / "gone.git"))
    offline = agent(machines[3], server, f"r1.{AGENTS[3]}", "--writer", "m3", check=False)
    assert offline.returncode == 4, offline.stderr
    assert "kept in refs/squad/drops/m3" in offline.stderr
    assert git(bare, "rev-parse", "main").strip() == trunk  # agents never push the trunk

    coordinator = clone(bare, tmp_path / "coordinator")
    waiting = squad(coordinator, "ingest", "--remote", "origin")
    assert waiting.stdout == "" and f"waiting for r1.{AGENTS[3]} (3 of 4" in waiting.stderr
    assert git(bare, "rev-parse", "main").strip() == trunk

    git(machines[3], "remote", "set-url", "origin", str(bare))
    again = agent(machines[3], server, f"r1.{AGENTS[3]}", "--writer", "m3", check=False)
    assert again.returncode == 2 and "already run here" in again.stderr  # refused, not rerun
    assert "pushed 2 drop(s)" in squad(machines[3], "push", "origin", "--writer", "m3").stdout

    collected = squad(coordinator, "ingest", "--remote", "origin")
    assert f"collected run {run_id}: 4 record(s) from 4 agent(s)" in collected.stderr
    assert squad(coordinator, "ingest", "--remote", "origin").stdout == ""  # nothing twice
    log = git(bare, "log", "--format=%s", f"{trunk}..main").splitlines()
    assert log[0] == f"squad run {run_id}"
    assert sorted(log[1:]) == sorted(f"{a} first thoughts" for a in AGENTS)
    writers = git(bare, "log", f"{trunk}..main",
                  "--format=%(trailers:key=Squad-Writer,valueonly)").split()
    assert sorted(writers) == ["m0", "m1", "m2", "m3"]

    fresh = clone(bare, tmp_path / "fresh")
    verdict = squad(fresh, "replay", "--json", env={"OPENAI_BASE_URL": "http://127.0.0.1:9/v1"})
    assert json.loads(verdict.stdout) == {"run": run_id, "ok": True, "commits": 4,
                                          "problem": None, "where": None, "diff": ""}
    assert squad(fresh, "verify").stdout.strip() == "ok: 4 records verified"
    assert squad(fresh, "report", "--format", "markdown").returncode == 0

    # the replay checks the commits: an edited date in the log is caught
    events = fresh / f".squad/runs/{run_id}/events.jsonl"
    events.write_text(events.read_text().replace('"date": "', '"date": "1999', 1)
                      .replace('"date": "1999', '"date": "', 1)
                      .replace('"writer": "m0"', '"writer": "m9"'))
    git(fresh, "commit", "-qam", "edit the log")
    bad = squad(fresh, "replay", run_id, check=False)
    assert bad.returncode == 1 and "commit" in bad.stdout and "differs" in bad.stdout


def test_a_task_twice_counts_once_and_an_unknown_task_is_one_line(
        bare: Path, tmp_path: Path, server: ScriptedServer) -> None:
    server.responder = route_then_decide
    coordinator = clone(bare, tmp_path / "coordinator")
    run_id = json.loads(squad(coordinator, "run", GOAL, "--plan-only", "--json", "--agents",
                              ",".join(AGENTS)).stdout)["run"]  # no lead, no model call
    squad(coordinator, "ingest", "--remote", "origin")  # the plan goes out with the trunk
    assert git(bare, "rev-parse", "main") == git(coordinator, "rev-parse", "main")
    unknown = agent(coordinator, server, "r1.nobody", check=False)
    assert unknown.returncode == 2
    assert unknown.stderr.strip().splitlines() == [
        f"squad: no task 'r1.nobody' in run {run_id} (tasks: "
        + ", ".join(f"r1.{a}" for a in AGENTS) + ")"]
    one, two = clone(bare, tmp_path / "one"), clone(bare, tmp_path / "two")
    for task in (f"r1.{a}" for a in AGENTS):
        agent(one, server, task, "--writer", "one")
    agent(two, server, AGENTS[0], "--writer", "two")  # the same task, elsewhere, by name
    result = squad(coordinator, "ingest", "--remote", "origin")
    assert "the first delivery counts" in result.stderr
    assert titles(coordinator) == Counter(f"{a} first thoughts" for a in AGENTS)
    late = agent(two, server, f"r1.{AGENTS[1]}", "--writer", "two")  # after collection
    assert "delivered" in late.stdout
    assert squad(coordinator, "ingest", "--remote", "origin").stdout == ""
    assert git(bare, "rev-parse", "refs/squad/taken/two") == \
        git(bare, "rev-parse", "refs/squad/drops/two")  # passed over, so gc can prune it
    assert "ok: run" in squad(coordinator, "replay", run_id).stdout


def test_the_matrix_workflow_plans_fans_out_collects_and_replays(
        bare: Path, tmp_path: Path, server: ScriptedServer) -> None:
    """`squad init --ci github --matrix`, its `run:` steps executed job by job, each job in
    a clone of its own, as GitHub would (checkout, setup and install steps are GitHub's)."""
    import yaml

    server.responder = route_then_decide
    setup = clone(bare, tmp_path / "setup")
    squad(setup, "init", "--ci", "github", "--matrix")
    git(setup, "push", "-q", "origin", "main")
    path = setup / ".github/workflows/squad-run.yml"
    tool = Path(sys.executable).parent / "check-jsonschema"
    checked = subprocess.run([str(tool), "--builtin-schema", "vendor.github-workflows",
                              str(path)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    jobs = yaml.safe_load(path.read_text())["jobs"]
    assert jobs["agent"]["needs"] == "plan" and jobs["collect"]["needs"] == ["plan", "agent"]
    values = {"inputs.goal": GOAL, "secrets.OPENAI_BASE_URL": server.base_url,
              "secrets.OPENAI_API_KEY": "", "github.ref_name": "main", "github.run_id": "7",
              "github.ref": "refs/heads/main"}

    def job(name: str, where: Path) -> dict[str, str]:
        outputs: dict[str, str] = {}
        for step in jobs[name]["steps"]:
            if "uses" in step:
                with_ = step.get("with", {})
                if "ref" in with_:  # the checkout of a given commit or branch
                    git(where, "checkout", "-q", _expand(with_["ref"], values))
                continue
            if "pip install" in step["run"]:
                continue
            out_file = tmp_path / f"{name}-output"
            out_file.write_text("")
            env = {**os.environ, "GITHUB_OUTPUT": str(out_file), "RUNNER_TEMP": str(tmp_path),
                   "GITHUB_REF_NAME": "main", "PATH": squad_on_path(),
                   **{k: _expand(v, values) for k, v in step.get("env", {}).items()}}
            result = subprocess.run(["bash", "-e", "-c", step["run"]], cwd=where, env=env,
                                    capture_output=True, text=True)
            assert result.returncode == 0, f"{name}: {step['name']}: {result.stderr}"
            for line in out_file.read_text().splitlines():
                key, _, value = line.partition("=")
                outputs[f"steps.{step.get('id')}.outputs.{key}"] = value
        return outputs

    steps = job("plan", clone(bare, tmp_path / "plan"))
    for key, expression in jobs["plan"]["outputs"].items():
        values[f"needs.plan.outputs.{key}"] = _expand(expression, steps)
    tasks = json.loads(values["needs.plan.outputs.tasks"])
    assert tasks == [f"r1.{a}" for a in AGENTS]
    for task in tasks:
        values["matrix.task"] = task
        job("agent", clone(bare, tmp_path / f"agent-{task}"))
    collector = clone(bare, tmp_path / "collect")
    job("collect", collector)
    assert titles(collector) == Counter(f"{a} first thoughts" for a in AGENTS)
    writers = git(bare, "log", "main", "--format=%(trailers:key=Squad-Writer,valueonly)")
    assert sorted(writers.split()) == [f"ci-7-r1.{a}" for a in sorted(AGENTS)]


def _expand(text: str, values: dict[str, str]) -> str:
    def value(match: re.Match[str]) -> str:
        expression = match.group(1).strip()
        assert expression in values, f"unhandled expression {expression!r}"
        return values[expression]

    return re.sub(r"\$\{\{(.*?)\}\}", value, text)


def test_a_budget_stop_on_one_machine_is_logged_and_refused_again_on_replay(
        bare: Path, tmp_path: Path, server: ScriptedServer) -> None:
    server.responder = route_then_decide
    planner = clone(bare, tmp_path / "planner")
    run_id = plan(planner, server, "--agents", "architect,security", "--max-calls", "2")["run"]
    for n, name in enumerate(("architect", "security")):
        stopped = agent(clone(bare, tmp_path / f"m{n}"), server, name, check=False)
        assert stopped.returncode == 1 and "delivered as failed" in stopped.stderr  # 2 calls
    coordinator = clone(bare, tmp_path / "coordinator")
    assert "2 record(s)" in squad(coordinator, "ingest", "--remote", "origin").stderr
    lines = [json.loads(line) for line in
             (coordinator / f".squad/runs/{run_id}/events.jsonl").read_text().splitlines()]
    stops = [(e["agent"], e["call"]) for e in lines if e["event"] == "stop"]
    assert stops == [("architect", 3), ("security", 3)]
    assert [e["agent"] for e in lines if e["event"] == "delivery"] == ["architect", "security"]
    verdict = squad(coordinator, "replay", run_id, "--json",
                    env={"OPENAI_BASE_URL": "http://127.0.0.1:9/v1"})
    assert json.loads(verdict.stdout)["ok"] is True  # the third calls are refused again


def test_a_delivery_whose_log_claims_a_commit_is_passed_over(
        bare: Path, tmp_path: Path, server: ScriptedServer) -> None:
    """A pushed delivery is untrusted: its log may hold only its own agent's events, since
    a replay takes the commits and the refused calls from the collected log."""
    server.responder = route_then_decide
    planner = clone(bare, tmp_path / "planner")
    run_id = plan(planner, server, "--agents", "architect")["run"]
    machine = clone(bare, tmp_path / "m")
    agent(machine, server, "architect", "--writer", "m", "--run", run_id)
    tip = git(machine, "rev-parse", "refs/squad/drops/m").strip()
    forged = git(machine, "show", f"{tip}:delivery/events.jsonl") + json.dumps(
        {"event": "commit", "drop": "x.md", "id": 1, "sha": "0" * 40, "agent": "architect",
         "title": "t", "date": "2026-01-01T00:00:00Z", "seq": 0, "t": ""}) + "\n"
    blob = git(machine, "hash-object", "-w", "--stdin", input=forged).strip()
    index = {**os.environ, "GIT_INDEX_FILE": str(tmp_path / "index")}
    git(machine, "read-tree", tip, env=index)
    git(machine, "update-index", "--cacheinfo", f"100644,{blob},delivery/events.jsonl", env=index)
    tree = git(machine, "write-tree", env=index).strip()
    message = git(machine, "log", "-1", "--format=%B", tip)
    commit = git(machine, "commit-tree", tree, "-p", f"{tip}^", input=message).strip()
    git(machine, "push", "-qf", "origin", f"{commit}:refs/squad/drops/m")
    coordinator = clone(bare, tmp_path / "coordinator")
    held = squad(coordinator, "ingest", "--remote", "origin")
    assert "passed over delivery" in held.stderr and "waiting for r1.architect" in held.stderr
    assert git(coordinator, "ls-tree", "--name-only", f"HEAD:.squad/runs/{run_id}").split() \
        == ["plan.json"]  # not collected
