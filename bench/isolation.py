"""Shared by the benches: a private HOME so the machine's git config never matters."""

from __future__ import annotations

import os
from pathlib import Path


def isolate_env(home: Path) -> None:
    """Every git this process or its children runs sees only this HOME's config."""
    for name in list(os.environ):
        if name.startswith(("GIT_", "SQUAD_", "OPENAI_")):
            del os.environ[name]
    home.mkdir()
    (home / ".gitconfig").write_text(
        "[user]\n\tname = Bench\n\temail = bench@example.com\n[init]\n\tdefaultBranch = main\n")
    os.environ["HOME"] = str(home)
    os.environ["GIT_CONFIG_NOSYSTEM"] = "1"
