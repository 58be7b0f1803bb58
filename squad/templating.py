"""The jinja2 environment: a repo's own `templates/` overrides the packaged defaults."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import jinja2


def packaged_templates_dir() -> Path:
    """Templates ship inside the wheel as squad/_templates; a source checkout uses ./templates."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "_templates", here.parent / "templates"):
        if candidate.is_dir():
            return candidate
    raise RuntimeError("squad is installed without its templates")


@lru_cache(maxsize=16)
def environment(root: Path | None = None) -> jinja2.Environment:
    import jinja2  # imported on first render: commands that render nothing skip it

    loaders: list[jinja2.BaseLoader] = []
    if root is not None and (root / "templates").is_dir():
        loaders.append(jinja2.FileSystemLoader(root / "templates"))
    loaders.append(jinja2.FileSystemLoader(packaged_templates_dir()))
    return jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )


def render(name: str, root: Path | None = None, **context: object) -> str:
    return environment(root).get_template(name).render(**context)
