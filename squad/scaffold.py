"""`squad init`: lay out squad's folders in a repository without overwriting anything."""

from __future__ import annotations

from pathlib import Path

from squad import __version__, templating
from squad.coordinator import Coordinator
from squad.ledger import Ledger, render_index
from squad.templating import packaged_templates_dir
from squad.workspace import DECISIONS, INDEX, Workspace


def packaged_agents_dir() -> Path | None:
    here = Path(__file__).resolve().parent
    for candidate in (here / "_agents", here.parent / "agents"):
        if candidate.is_dir():
            return candidate
    return None


WORKFLOW = ".github/workflows/squad.yml"
DISTRIBUTION = "squad-decisions"  # squad's name on the package index (`squad` is another project)


def install_line() -> str:
    """How to install the squad that is running now, pinned to its version."""
    return f'pip install "{DISTRIBUTION}=={__version__}"'


def scaffold_files(ws: Workspace, with_agents: bool, ci: str | None = None,
                   install: str | None = None) -> dict[str, bytes]:
    """The files init would create: only those that do not exist yet."""
    templates = packaged_templates_dir() / "scaffold"
    wanted: dict[str, bytes] = {
        "squad.toml": (templates / "squad.toml").read_bytes(),
        "AGENTS.md": (templates / "AGENTS.md").read_bytes(),
        f"{DECISIONS}/.gitignore": b"# drops wait in inbox/ until squad commits them\ninbox/\n",
        INDEX: render_index(Ledger(), ws.root).encode(),
    }
    agents = packaged_agents_dir()
    if with_agents and agents is not None:
        for charter in sorted(agents.glob("*.md")):
            wanted[f"agents/{charter.name}"] = charter.read_bytes()
    if ci == "github":
        from squad.merge import trunk

        wanted[WORKFLOW] = templating.render(
            "scaffold/github-workflow.yml", ws.root, version=__version__,
            install=install or install_line(), trunk=trunk(ws) or "main").encode()
    return {path: data for path, data in wanted.items() if not (ws.root / path).exists()}


def init(ws: Workspace, with_agents: bool = True, ci: str | None = None,
         install: str | None = None) -> list[str]:
    """Create what is missing and commit exactly that; returns the paths created."""
    ws.repo.ensure_safe()
    ws.inbox.create()
    ws.quarantine.mkdir(parents=True, exist_ok=True)
    created = scaffold_files(ws, with_agents, ci, install)
    if created:
        with ws.repo.coordinator_lock():
            head = ws.repo.head()
            ws.repo.commit(created, "squad init\n\nSquad-Init: true\n", ws.clock(), head)
            ws.repo.settle(sorted(created))
    Coordinator(ws).ingest()
    return sorted(created)
