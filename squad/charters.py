"""Charters: `agents/<name>.md`, YAML front matter validated by pydantic plus a markdown body.

A charter says who an agent is, which tools it may call, which files it may read (`reads`
globs) and which decisions concern it (`tags`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from squad.errors import UsageError, describe
from squad.records import Tag, plain_front_matter

ToolName = Literal["list_files", "read_file", "grep", "record_decision"]
ALL_TOOLS: tuple[ToolName, ...] = ("list_files", "read_file", "grep", "record_decision")
AgentName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,39}$")]
Glob = Annotated[str, StringConstraints(min_length=1, max_length=200)]

AGENTS_DIR = "agents"


class Charter(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: AgentName
    role: Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]
    model: str | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    tools: tuple[ToolName, ...] = ALL_TOOLS
    reads: tuple[Glob, ...] = ("**",)
    tags: tuple[Tag, ...] = ()
    max_tool_calls_per_reply: int | None = Field(None, ge=1, le=64)  # default: squad.toml
    max_drops: int | None = Field(None, ge=1, le=100)  # per round; default: squad.toml
    body: str = ""


def parse_charter(text: str, where: str) -> Charter:
    if not text.startswith("---\n") or "\n---\n" not in text[3:]:
        raise UsageError(f"{where}: a charter starts with YAML front matter between '---' lines")
    end = text.index("\n---\n", 3)
    # The simple `key: value` lines most charters hold are read without YAML (exactly as YAML
    # reads them), so a run need not import a YAML parser before its first model call.
    meta = plain_front_matter(text[4 : end + 1]) or _yaml(text[4 : end + 1], where)
    if not isinstance(meta, dict):
        raise UsageError(f"{where}: front matter is not a YAML mapping")
    if "body" in meta:
        raise UsageError(f"{where}: field body: the body is the markdown after the front matter")
    try:
        return Charter.model_validate({**meta, "body": text[end + 5 :].strip()})
    except ValidationError as exc:
        raise UsageError(f"{where}: {describe(exc)}") from None


def _yaml(head: str, where: str) -> object:
    import yaml  # imported where used: see parse_charter

    try:
        return yaml.load(head, Loader=yaml.CSafeLoader)
    except (yaml.YAMLError, ValueError, TypeError, RecursionError) as exc:
        raise UsageError(f"{where}: front matter is not valid YAML: "
                         f"{' '.join(str(exc).split())[:200]}") from None


def load_charter(path: Path) -> Charter:
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not valid UTF-8") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the charter: {exc.strerror}") from None
    charter = parse_charter(text, str(path))
    if charter.name != path.stem:
        raise UsageError(f"{path}: field name: {charter.name!r} must match the file name "
                         f"{path.stem!r}")
    return charter


def load_team(root: Path) -> dict[str, Charter]:
    """Every charter in `agents/`, by name; the first bad one stops with its file and field."""
    folder = root / AGENTS_DIR
    if not folder.is_dir():
        return {}
    return {path.stem: load_charter(path) for path in sorted(folder.glob("*.md"))
            if path.name != "README.md"}


def find_charter(root: Path, name: str) -> Charter:
    path = root / AGENTS_DIR / f"{name}.md"
    if not path.is_file():
        known = ", ".join(sorted(load_team(root))) or "none"
        raise UsageError(f"no agent {name!r}: {path} does not exist (agents: {known})")
    return load_charter(path)
