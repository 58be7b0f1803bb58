"""The jinja2 environment: a repo's own `templates/` overrides the packaged defaults.

A repository's templates are input from whoever can commit to it, and they are rendered by
`squad verify` in CI on pull requests and by every replay. So every template renders in
jinja2's sandbox (no access to Python internals, so no shell), with the sandbox's range cap
and a cap on `*`/`**` results, and any fault in one becomes a one-line SquadError naming
the template instead of a traceback.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from squad.errors import SquadError

MAX_PRODUCT = 1_000_000  # the largest string or number `*` and `**` may make in a template


def packaged_templates_dir() -> Path:
    """Templates ship inside the wheel as squad/_templates; a source checkout uses ./templates."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "_templates", here.parent / "templates"):
        if candidate.is_dir():
            return candidate
    raise RuntimeError("squad is installed without its templates")


class _Sandbox(ImmutableSandboxedEnvironment):
    """The sandbox, plus bounds on `*` and `**` so `{{ 'x' * 10**12 }}` cannot eat memory."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator_name: str, left: Any, right: Any) -> Any:
        if operator_name == "**":
            if isinstance(left, int | float) and isinstance(right, int | float) \
                    and abs(right) > 64 and abs(left) > 1:
                raise jinja2.sandbox.SecurityError("exponent too large")
            return operator.pow(left, right)
        size = 1
        for side, other in ((left, right), (right, left)):
            if isinstance(side, str | list | tuple) and isinstance(other, int):
                size = len(side) * other
        if size > MAX_PRODUCT:
            raise jinja2.sandbox.SecurityError(f"a product over {MAX_PRODUCT} items")
        return operator.mul(left, right)


@dataclass(frozen=True)
class Overrides:
    """A repository's `templates/` as committed: (path below templates/, text) pairs. A run
    renders with these rather than the working tree's, so a replay renders the same."""

    files: tuple[tuple[str, str], ...]


Templates = Path | Overrides | None  # a working tree's templates/, committed ones, or none


@lru_cache(maxsize=16)
def environment(root: Templates = None) -> jinja2.Environment:
    loaders: list[jinja2.BaseLoader] = []
    if isinstance(root, Overrides):
        loaders.append(jinja2.DictLoader(dict(root.files)))
    elif root is not None and (root / "templates").is_dir():
        loaders.append(jinja2.FileSystemLoader(root / "templates"))
    loaders.append(jinja2.FileSystemLoader(packaged_templates_dir()))
    return _Sandbox(
        loader=jinja2.ChoiceLoader(loaders),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )


def _overridden(root: Templates, name: str) -> bool:
    if isinstance(root, Overrides):
        return any(path == name for path, _ in root.files)
    return root is not None and (root / "templates" / name).exists()


def packaged_as(name: str, root: Templates, text: str) -> bool:
    """Whether `name` renders from squad's own template and that template reads `text`:
    then a caller may produce the very same bytes with plain Python, which for a template
    rendered once per record (an index row) is most of the cost of a long log."""
    return not _overridden(root, name) and _packaged_text(name) == text


@lru_cache(maxsize=16)
def _packaged_text(name: str) -> str | None:
    try:
        return (packaged_templates_dir() / name).read_text(encoding="utf-8")
    except OSError:
        return None


@lru_cache(maxsize=16)
def _template(name: str, root: Templates) -> jinja2.Template:
    return environment(root).get_template(name)


def render(name: str, root: Templates = None, *, often: bool = False,
           **context: object) -> str:
    """`often`: a template rendered thousands of times in one command (an index row) is
    looked up once per process, not checked against its file at every call. Committed
    templates (`Overrides`, what a run renders with) never change, so they always are."""
    try:
        template = _template(name, root) if often or isinstance(root, Overrides) \
            else environment(root).get_template(name)
        return template.render(**context)
    except (jinja2.TemplateError, OSError, ValueError, TypeError, ArithmeticError,
            RecursionError, MemoryError) as exc:
        where = f"templates/{name}" if _overridden(root, name) else f"squad's template {name}"
        detail = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise SquadError(f"{where}: cannot render: {type(exc).__name__}: {detail}") from None
