"""Replay verdicts remembered on this machine, so a report can show one without replaying.

A verdict is kept in the git directory (never committed: it is a fact about this checkout)
with what it depends on: the run's events and cassette blobs and squad's version. A report
shows it only while all three are unchanged, so a stale verdict is never shown as current.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from squad import __version__
from squad.runfacts import RUNS
from squad.vcs import Repository, write_atomic


def _folder(repo: Repository) -> Path:
    return repo.git_dir / "squad" / "verdicts"


def _basis(repo: Repository, run_id: str) -> dict[str, str | None]:
    blobs = repo.list_dir(f"{RUNS}/{run_id}")
    return {"events": blobs.get("events.jsonl"), "cassette": blobs.get("cassette.jsonl"),
            "squad": __version__}


def remember(repo: Repository, verdict: dict[str, Any]) -> None:
    """Keep `verdict` (as `squad replay --json` prints it) for later reports."""
    run_id = str(verdict["run"])
    entry = {"basis": _basis(repo, run_id), "head": repo.head(), "verdict": verdict}
    write_atomic(_folder(repo) / f"{run_id}.json",
                 json.dumps(entry, sort_keys=True).encode())


def known(repo: Repository, run_id: str) -> dict[str, Any] | None:
    """The remembered verdict for the run as it is at HEAD, or None."""
    path = _folder(repo) / f"{run_id}.json"
    try:
        entry = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(entry, dict) or entry.get("basis") != _basis(repo, run_id):
        return None
    verdict = entry.get("verdict")
    return verdict if isinstance(verdict, dict) else None
