"""What a command imports before it works: only what it needs (`--help` no model stack, a
`run --json` no rich). A real interpreter start each (`-X importtime` lists every import)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from helpers import decide
from scripted_server import ScriptedServer


def imported(cwd: Path, *args: str, env: dict[str, str] | None = None) -> set[str]:
    """The top-level packages `python -m squad ARGS` imported (its exit status checked)."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "squad", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})
    assert done.returncode == 0, done.stderr[-2000:]
    return {line.rsplit("|", 1)[1].strip().split(".")[0]
            for line in done.stderr.splitlines() if line.startswith("import time:")
            and "|" in line}


def test_help_imports_no_model_stack(tmp_path: Path) -> None:
    names = imported(tmp_path, "--help")
    assert "click" in names  # the listing is read right
    assert not names & {"pydantic", "openai", "git", "rich", "jinja2", "yaml"}, names


def test_a_json_run_imports_no_rich(team: Path, server: ScriptedServer) -> None:
    server.responder = decide
    names = imported(team, "run", "Add rate limiting", "--agents", "architect", "--json",
                     env={"OPENAI_BASE_URL": server.base_url})
    assert {"openai", "pydantic", "git"} <= names  # the run did run
    assert "rich" not in names
