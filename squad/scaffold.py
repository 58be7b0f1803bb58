"""`squad init`: lay out squad's folders in a repository without overwriting anything."""

from __future__ import annotations

from pathlib import Path

from squad import __version__, templating
from squad.templating import packaged_templates_dir
from squad.workspace import DECISIONS, Workspace


def packaged_agents_dir() -> Path | None:
    here = Path(__file__).resolve().parent
    for candidate in (here / "_agents", here.parent / "agents"):
        if candidate.is_dir():
            return candidate
    return None


WORKFLOW = ".github/workflows/squad.yml"
RUN_WORKFLOW = ".github/workflows/squad-run.yml"  # a run spread over a job matrix
DISTRIBUTION = "squad-decisions"  # squad's name on the package index (`squad` is another project)


def install_line() -> str:
    """How to install the squad that is running now, pinned to its version."""
    return f'pip install "{DISTRIBUTION}=={__version__}"'


def scaffold_files(ws: Workspace, with_agents: bool, ci: str | None = None,
                   install: str | None = None, matrix: bool = False) -> dict[str, bytes]:
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
        # no index yet: an empty log without one uses folders (squad.layout); the first
        # record's commit writes the index pages
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
        if matrix:
            wanted[RUN_WORKFLOW] = templating.render(
                "scaffold/github-run-workflow.yml", ws.root, version=__version__,
                install=install or install_line()).encode()
    return {path: data for path, data in wanted.items() if not (ws.root / path).exists()}


def init(ws: Workspace, with_agents: bool = True, ci: str | None = None,
         install: str | None = None, *, author: str | None = None, matrix: bool = False
         ) -> tuple[list[str], str | None]:
    """Create what is missing and commit exactly that, by `author` (the person running it);
    returns the paths created and the commit. Drops waiting in the inbox are not init's
    business: `squad ingest` commits them, and says so."""
    ws.repo.ensure_safe()
    ws.inbox.create()
    ws.quarantine.mkdir(parents=True, exist_ok=True)
    created = scaffold_files(ws, with_agents, ci, install, matrix)
    sha = None
    if created:
        with ws.repo.coordinator_lock():
            head = ws.repo.head()
            sha = ws.repo.commit(created, "squad init\n\nSquad-Init: true\n", ws.clock(), head,
                                 author=author)
            ws.repo.settle(sorted(created))
    return sorted(created), sha


# Each client's project-level MCP file and the key its servers live under. The server runs
# from PATH as `squad`; clients that expand ${workspaceFolder} are told the repository.
MCP_CLIENTS: dict[str, tuple[str, str, dict[str, object]]] = {
    "claude": (".mcp.json", "mcpServers",
               {"type": "stdio", "command": "squad", "args": ["mcp"]}),
    "vscode": (".vscode/mcp.json", "servers",
               {"type": "stdio", "command": "squad",
                "args": ["mcp", "--repo", "${workspaceFolder}"]}),
    "cursor": (".cursor/mcp.json", "mcpServers",
               {"type": "stdio", "command": "squad",
                "args": ["mcp", "--repo", "${workspaceFolder}"]}),
}
MCP_SERVER_NAME = "squad"


def add_mcp_config(root: Path, client: str) -> str:
    """Add the squad server to `client`'s project MCP config; returns what was done.

    A missing file is created; an existing one is merged into (its other servers and keys
    kept), and refused rather than touched when it is not plain JSON, is a symlink, or
    already names a different `squad` server. The file is not committed: it is the user's.
    """
    import json

    from squad.errors import UsageError
    from squad.vcs import write_atomic

    rel, key, entry = MCP_CLIENTS[client]
    path = root / rel
    snippet = json.dumps({key: {MCP_SERVER_NAME: entry}})
    if path.is_symlink() or (path.exists() and not path.is_file()) \
            or not path.parent.resolve().is_relative_to(root.resolve()):
        raise UsageError(f"{rel}: not a regular file inside the repository; left as it is: "
                         f"add this by hand: {snippet}")
    data: dict[str, object] = {}
    if path.exists():
        try:
            loaded = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise UsageError(f"{rel}: not plain JSON ({str(exc)[:80]}); left as it is: add "
                             f"this by hand: {snippet}") from None
        if not isinstance(loaded, dict) or not isinstance(loaded.get(key, {}), dict):
            raise UsageError(f"{rel}: not the shape {client} expects (an object with "
                             f"{key!r}); left as it is")
        data = loaded
    servers = data.setdefault(key, {})
    assert isinstance(servers, dict)
    if MCP_SERVER_NAME in servers:
        if servers[MCP_SERVER_NAME] == entry:
            return f"{rel} already has the squad server"
        raise UsageError(f"{rel}: already has a different server named {MCP_SERVER_NAME!r}; "
                         f"left as it is (squad's entry would be: {json.dumps(entry)})")
    servers[MCP_SERVER_NAME] = entry
    existed = path.exists()
    write_atomic(path, (json.dumps(data, indent=2) + "\n").encode("utf-8"))
    return f"{'added the squad server to' if existed else 'created'} {rel} (commit it to share)"
