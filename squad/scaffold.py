"""`squad init`: lay out squad's folders in a repository without overwriting anything."""

from __future__ import annotations

from pathlib import Path

from squad import __version__, templating
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


def scaffold_files(ws: Workspace, with_agents: bool, ci: str | None = None) -> dict[str, bytes]:
    """The files init would create: only those that do not exist yet."""
    templates = packaged_templates_dir() / "scaffold"
    wanted: dict[str, bytes] = {
        "squad.toml": (templates / "squad.toml").read_bytes(),
        "AGENTS.md": (templates / "AGENTS.md").read_bytes(),
        # drops wait in inbox/ until squad commits them; quarantine/ holds the ones it
        # refused, each beside its .reason: the user's to read, never to commit by accident
        f"{DECISIONS}/.gitignore": b"# drops wait in inbox/ until squad commits them\ninbox/\n"
                                   b"# refused drops, each with a .reason: fix and re-drop, "
                                   b"or delete\nquarantine/\n",
        INDEX: render_index(Ledger(), ws.root).encode(),
    }
    agents = packaged_agents_dir()
    if with_agents and agents is not None:
        for charter in sorted(agents.glob("*.md")):
            wanted[f"agents/{charter.name}"] = charter.read_bytes()
    if ci == "github":
        requirement = f"squad=={__version__}"
        wanted[WORKFLOW] = templating.render("scaffold/github-workflow.yml", ws.root,
                                             requirement=requirement).encode()
    return {path: data for path, data in wanted.items() if not (ws.root / path).exists()}


def init(ws: Workspace, with_agents: bool = True, ci: str | None = None, *,
         author: str | None = None) -> tuple[list[str], str | None]:
    """Create what is missing and commit exactly that, by `author` (the person running it);
    returns the paths created and the commit. Drops waiting in the inbox are not init's
    business: `squad ingest` commits them, and says so."""
    ws.repo.ensure_safe()
    ws.inbox.create()
    ws.quarantine.mkdir(parents=True, exist_ok=True)
    created = scaffold_files(ws, with_agents, ci)
    sha = None
    if created:
        with ws.repo.coordinator_lock():
            head = ws.repo.head()
            sha = ws.repo.commit(created, "squad init\n\nSquad-Init: true\n", ws.clock(), head,
                                 author=author)
            ws.repo.settle(sorted(created))
    return sorted(created), sha

