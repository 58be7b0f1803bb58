"""The CI workflow `squad init --ci github` writes, run step by step in a local clone.

GitHub is not here, so the test plays its part: a pull request whose base branch is the
commit the example run started from, `GITHUB_STEP_SUMMARY` pointing at a file, and each
`run:` step executed by bash in order. `uses:` steps (checkout, setup-python, upload) are
GitHub's own; the install step is skipped because this venv already has squad.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml
from helpers import git, squad

BUNDLE = Path(__file__).resolve().parent.parent / "examples" / "shop-run.bundle"


# The expressions the workflow uses, as GitHub evaluates them on a pull request into `base`.
PULL_REQUEST = {
    "github.base_ref": "base",
    "github.event_name == 'pull_request' && format('origin/{0}', github.base_ref) "
    "|| github.event.before": "origin/base",
}


def _expand(text: str) -> str:
    def value(match: re.Match[str]) -> str:
        expression = match.group(1).strip()
        assert expression in PULL_REQUEST, f"unhandled expression {expression!r}"
        return PULL_REQUEST[expression]

    return re.sub(r"\$\{\{(.*?)\}\}", value, text)


def test_the_workflow_writes_the_report_to_the_job_summary(tmp_path: Path) -> None:
    git(tmp_path, "clone", "-q", "-b", "main", str(BUNDLE), "shop")
    repo = tmp_path / "shop"
    (run_id,) = [p.name for p in (repo / ".squad/runs").iterdir()]
    head = json.loads((repo / f".squad/runs/{run_id}/events.jsonl").read_text()
                      .splitlines()[0])
    git(repo, "update-ref", "refs/remotes/origin/base", head["start"])  # the PR's base branch
    squad(repo, "init", "--ci", "github")
    workflow = yaml.safe_load((repo / ".github/workflows/squad.yml").read_text())
    steps = workflow["jobs"]["verify-and-replay"]["steps"]
    summary = tmp_path / "summary.md"
    bin_dir = Path(sys.executable).parent
    assert (bin_dir / "squad").exists(), "the venv's squad command is needed on PATH"
    env = {**os.environ, "GITHUB_STEP_SUMMARY": str(summary),
           "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    ran, uploads = [], []
    for step in steps:
        if "uses" in step:
            if step["uses"].startswith("actions/upload-artifact"):
                uploads.append(step["with"]["path"])
            continue
        command = step["run"]
        if "pip install" in command:
            continue
        step_env = {name: _expand(value) for name, value in step.get("env", {}).items()}
        command = _expand(command)
        result = subprocess.run(["bash", "-e", "-c", command], cwd=repo,
                                env={**env, **step_env},
                                capture_output=True, text=True)
        assert result.returncode == 0, f"{step['name']}: {result.stdout}\n{result.stderr}"
        ran.append(step["name"])
    assert len(ran) >= 4
    text = summary.read_text()
    assert text.startswith("## squad: 6 new decisions, 1 run since `origin/base`\n")
    assert re.search(r"^\| 0006 \| .+ \| architect \| proposed \| 0001, 0002, 0003 \|$", text,
                     re.MULTILINE)
    # the replay step ran first, so its verdict is known to the report
    assert "**Replay:** reproduced 6 commits with the same SHAs." in text
    assert uploads == ["squad-report/"]
    assert (repo / "squad-report" / "index.html").is_file()
    assert (repo / "squad-report" / f"{run_id}.html").is_file()
