"""The four deterministic tools an agent may call, and their OpenAI function schemas.

A model is untrusted input: whatever it sends, `ToolBox.call` answers with a `ToolResult`
whose refusals say in one line what to fix, never with an exception. Tools see only tracked
files inside the repository and the charter's `reads`, minus secret-like files and other
agents' drops (the inbox is no channel). The one thing they write is an inbox drop.
"""

from __future__ import annotations

import contextlib
import copy
import json
import posixpath
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from functools import cached_property
from pathlib import Path
from typing import Any, cast

import re2
from pydantic import ValidationError

from squad import guide, records, safety, secrets
from squad.charters import Charter
from squad.errors import SquadError
from squad.ledger import Ledger
from squad.llm.guard import DROPPED
from squad.workspace import DECISIONS, Workspace

MAX_READ_BYTES = 64 * 1024
MAX_READ_LINES = 2_000
MAX_FILE_BYTES = 8 * 1024 * 1024  # larger files are neither read nor grepped
BINARY_SNIFF_BYTES = 8 * 1024
MAX_LIST = 500
MAX_MATCHES = 200
MAX_LINE_CHARS = 300
MAX_PATTERN_CHARS = 500

_SYMLINK = 0o120000
_GITLINK = 0o160000  # a submodule: a commit of another repository, no file to read
MAX_GREP_BYTES = 64 * 1024 * 1024  # one grep reads at most this much, then says so
MAX_DROPS = 5  # drops per agent and round, unless the charter or squad.toml say otherwise
PRIVATE_DIRS = (f"{DECISIONS}/inbox/", f"{DECISIONS}/quarantine/")
_TYPES: dict[str, type] = {"string": str, "integer": int, "array": list}


def _arg(kind: str, description: str, **more: Any) -> dict[str, Any]:
    return {"type": kind, "description": description, **more}


def _spec(name: str, description: str, required: tuple[str, ...],
          **properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "description": description,
            "parameters": {"type": "object", "properties": properties,
                           "required": list(required), "additionalProperties": False}}}


_GLOB = _arg("string", "Optional glob on the whole path, e.g. 'src/**' or '*.py' ('*' also "
                       "matches '/'). Omit it for every file.")
TOOL_SPECS: dict[str, dict[str, Any]] = {spec["function"]["name"]: spec for spec in (
    _spec("list_files", "List the repository files you may read, one path per line.", (),
          path=_GLOB),
    _spec("read_file", "Read a text file. Give start_line and end_line to read part of a "
                       "long file.", ("path",),
          path=_arg("string", "Path relative to the repository root, e.g. 'src/app.py'."),
          start_line=_arg("integer", "First line to read (1-based).", minimum=1),
          end_line=_arg("integer", "Last line to read (inclusive).", minimum=1)),
    _spec("grep", "Search the files you may read for a Python regular expression. Returns "
                  "lines as 'path:line: text'.", ("pattern",),
          pattern=_arg("string", "Python regular expression, e.g. 'def \\w+'."), path=_GLOB),
    _spec("record_decision", "Record one decision for the team. The coordinator commits it "
                             "to the decision log. Call it once per decision.",
          ("title", "context", "decision", "consequences"),
          title=_arg("string", "One-line summary, at most 200 characters."),
          context=_arg("string", "Why a decision is needed: facts, constraints."),
          decision=_arg("string", "What is decided, stated plainly. Not empty."),
          consequences=_arg("string", "What follows: costs, risks, follow-ups."),
          supersedes=_arg("array", "Ids of earlier decisions this one replaces, e.g. [3].",
                          items={"type": "integer", "minimum": 1}),
          tags=_arg("array", 'Short labels without spaces, e.g. ["api", "storage"].',
                    items={"type": "string"})),
)}


def specs_for(charter: Charter) -> list[dict[str, Any]]:
    """The OpenAI `tools` entries for the charter's tools, in the fixed order of TOOL_SPECS."""
    return [copy.deepcopy(spec) for name, spec in TOOL_SPECS.items() if name in charter.tools]


@dataclass(frozen=True)
class ToolResult:
    ok: bool
    content: str
    drop: str | None = None


class Refused(Exception):
    """A one-line reason the model can act on; never leaves `ToolBox.call`."""


def matches(path: str, glob: str) -> bool:
    """fnmatch on the whole path ('*' crosses '/'); a leading '**/' may also match nothing."""
    return fnmatchcase(path, glob) or (glob.startswith("**/") and fnmatchcase(path, glob[3:]))


def secret_rule(path: str) -> str | None:
    """The default secret-like pattern a component of `path` matches, or None."""
    return secrets.secret_rule(path)


def clean_path(raw: str) -> str:
    """A repository-relative POSIX path without '.' or empty parts; refuses every escape."""
    parts = [part for part in raw.split("/") if part not in ("", ".")]
    if raw.startswith("/"):
        raise Refused(f"{raw}: absolute paths are not allowed; start from the repository root")
    if ".." in parts:
        raise Refused(f"{raw}: paths may not contain '..'")
    if not parts or "\x00" in raw:
        raise Refused(f"{raw!r}: not a usable path")
    return "/".join(parts)


class ToolBox:
    """The tools of one agent run, bound to a workspace and a charter.

    With `snapshot` (a commit), files are read from that commit instead of the working tree:
    a run's agents all see the repository as it was when their round started.
    `drop_name` names drops (runs use deterministic names); `on_drop` hears of each drop.
    """

    def __init__(self, ws: Workspace, charter: Charter, *, run: str | None = None,
                 inputs: tuple[int, ...] = (), ledger: Ledger | None = None,
                 snapshot: str | None = None, drop_name: Callable[[], str] | None = None,
                 on_drop: Callable[[str], None] | None = None,
                 max_drops: int | None = None) -> None:
        self.max_drops = max_drops if max_drops is not None else charter.max_drops or \
            ws.config.agents.max_drops
        self.ws, self.charter, self.run, self.inputs, self.ledger = ws, charter, run, inputs, ledger
        self.snapshot, self._drop_name, self._on_drop = snapshot, drop_name, on_drop
        self.drops: list[str] = []
        self._rules: dict[str, str | None] = {}
        # A bad run id or input is the caller's bug, not the model's: fail now, loudly.
        records.Draft(title="probe", agent=charter.name, run=run, inputs=inputs, decision="x")

    def call(self, name: str, arguments: str) -> ToolResult:
        """Run one tool call; every fault the model can cause becomes an `error: ...` result."""
        mine = ", ".join(tool for tool in TOOL_SPECS if tool in self.charter.tools) or "none"
        if name not in TOOL_SPECS:
            return _error(f"unknown tool {name!r}; your tools are: {mine}")
        if name not in self.charter.tools:
            return _error(f"tool {name!r} is not available to you; your tools are: {mine}")
        if arguments.startswith(DROPPED):
            return _error(arguments.removeprefix("squad: "))
        try:
            args = parse_arguments(arguments, TOOL_SPECS[name]["function"]["parameters"])
            result: ToolResult = getattr(self, f"_{name}")(**args)
            if safety.has_surrogate(result.content):  # e.g. a file name that is not UTF-8
                result = ToolResult(result.ok, safety.scrub(result.content), result.drop)
            return result
        except Refused as exc:
            return _error(str(exc))
        except SquadError as exc:
            return _error(f"{name} failed: {exc.message}")
        except Exception as exc:  # a fault the model found is its tool error, not a dead agent
            detail = " ".join(str(exc).split())[:300]
            return _error(f"{name} failed: {type(exc).__name__}: {detail}")

    def _list_files(self, path: str | None = None) -> ToolResult:
        found = [rel for rel, _ in self._readable(path)]
        if len(found) > MAX_LIST:
            found[MAX_LIST:] = [f"... and {len(found) - MAX_LIST} more (narrow with a glob)"]
        return ToolResult(True, "\n".join(found) or "no files you may read match")

    def _read_file(self, path: str, start_line: int = 1,
                   end_line: int | None = None) -> ToolResult:
        rel = clean_path(path)
        lines = self._text(rel, self._allowed(rel)).split("\n")
        wanted = min(end_line or len(lines), len(lines))
        if start_line > wanted:
            raise Refused(f"{rel}: no lines {start_line} to {end_line or 'the end'} (the file "
                          f"has {len(lines)} lines; start_line must not exceed end_line)")
        text = "\n".join(lines[start_line - 1 : min(wanted, start_line + MAX_READ_LINES - 1)])
        cut = len(text.encode()) > MAX_READ_BYTES
        if cut:  # keep whole lines, unless even the first one is too long
            text = text.encode()[:MAX_READ_BYTES].decode("utf-8", "ignore")
            text = text[: text.rindex("\n")] if "\n" in text else text
        shown = start_line + text.count("\n")
        note = f"[lines {start_line}-{shown} of {len(lines)}]" if end_line or start_line > 1 \
            else "[empty file]" if lines == [""] else ""
        if cut and "\n" not in text:
            note = f"[truncated: line {shown} is over {MAX_READ_BYTES} bytes; grep inside it]"
        elif shown < wanted:
            note = (f"[truncated: showed lines {start_line}-{shown} of {len(lines)}; call "
                    f"read_file with start_line={shown + 1} for more]")
        return ToolResult(True, f"{text}\n{note}" if note else text)

    def _grep(self, pattern: str, path: str | None = None) -> ToolResult:
        regex = compile_pattern(pattern)
        hits: list[str] = []
        budget = MAX_GREP_BYTES
        for rel, real in self._readable(path):
            try:
                text = self._text(rel, real)
            except Refused:
                continue  # binary or oversized files are not searched
            budget -= len(text)
            if budget < 0:
                return ToolResult(True, "\n".join([*hits, f"[truncated: searched "
                                  f"{MAX_GREP_BYTES // 2**20} MB before {rel}; narrow the "
                                  "path]"]))
            for number, line in matching_lines(regex, text):
                if len(hits) == MAX_MATCHES:
                    return ToolResult(True, "\n".join([*hits, f"[truncated: over {MAX_MATCHES} "
                                                       "matches; narrow the pattern or path]"]))
                cut = line[:MAX_LINE_CHARS] + ("…" if len(line) > MAX_LINE_CHARS else "")
                hits.append(f"{rel}:{number}: {cut}")
        return ToolResult(True, "\n".join(hits) or f"no matches for {pattern!r}")

    def _record_decision(self, title: str, context: str, decision: str, consequences: str,
                         supersedes: Sequence[int] = (), tags: Sequence[str] = ()) -> ToolResult:
        try:
            draft = records.Draft(
                title=title, agent=self.charter.name, run=self.run, inputs=self.inputs,
                status="proposed", context=context, decision=decision,
                consequences=consequences, supersedes=tuple(supersedes), tags=tuple(tags))
        except ValidationError as exc:
            raise Refused(records.describe(exc)) from None
        problem = guide.placeholder(draft.title, self.charter)
        if problem:
            raise Refused(problem)
        if len(self.drops) >= self.max_drops:
            raise Refused(f"you already recorded {len(self.drops)} decisions, the most one "
                          "agent may record in one task; finish now")
        problem = self.ledger.problems_with(draft) if self.ledger is not None else None
        if problem:
            raise Refused(problem)
        name = self.ws.inbox.drop(records.render(draft, self.ws.templates),
                                  name=self._drop_name() if self._drop_name else None,
                                  durable=self._on_drop is None)  # see Inbox.drop
        self.drops.append(name)
        if self._on_drop:
            self._on_drop(name)
        return ToolResult(True, f"dropped {name}: it will be committed by the coordinator", name)

    @cached_property
    def _tree(self) -> dict[str, tuple[int, str]]:
        return self.ws.repo.tree_files(self.snapshot) if self.snapshot else {}

    @cached_property
    def _tracked(self) -> frozenset[str]:
        if self.snapshot:
            return frozenset(self._tree)
        return frozenset(self.ws.repo.tracked_files())

    def _rule(self, rel: str) -> str | None:
        """Why `rel` may not be read, judged on its name alone, or None (remembered: list and
        grep judge every tracked file on every call)."""
        if rel not in self._rules:
            self._rules[rel] = self._judge(rel)
        return self._rules[rel]

    def _judge(self, rel: str) -> str | None:
        if rel.lower().startswith(PRIVATE_DIRS):
            return f"other agents' drops are not a channel; read the records in {DECISIONS}/"
        settings = self.ws.config.secrets
        rule = secrets.secret_rule(rel, settings.names, settings.allow)
        if rule:
            return f"secret-like files are never read (matches {rule!r})"
        if not any(matches(rel, glob) for glob in self.charter.reads):
            return f"outside your read scope ({', '.join(self.charter.reads)})"
        return None if rel in self._tracked else "not a git-tracked file"

    def _allowed(self, rel: str) -> Path | str:
        """Where to read a readable file (an on-disk path, or a path in the snapshot),
        symlinks followed and judged; or Refused."""
        if self.snapshot:
            return self._allowed_in_snapshot(rel)
        root, why = self.ws.root, self._rule(rel)
        real = (root / rel).resolve()
        if not why and real != root / rel:  # a symlink on the way: judge where it lands
            if not real.is_relative_to(root):
                why = "resolves outside the repository"
            elif self._rule(target := real.relative_to(root).as_posix()):
                why = f"is a symlink to {target}, which is refused: {self._rule(target)}"
        if not why and real.is_dir():
            why = "a folder (a submodule?), not a file"
        if not why and not real.is_file():
            why = "not a regular file in the working tree"
        if why:
            raise Refused(f"{rel}: {why}")
        return real

    def _allowed_in_snapshot(self, rel: str) -> str:
        why, target = self._rule(rel), rel
        if not why and self._tree[rel][0] == _GITLINK:
            why = "a submodule (another repository), not a file"
        if not why and self._tree[rel][0] == _SYMLINK:
            link = self.ws.repo.blob(self._tree[rel][1]).decode("utf-8", "replace")
            target = posixpath.normpath(posixpath.join(posixpath.dirname(rel), link))
            if link.startswith("/") or target == ".." or target.startswith("../"):
                why = "resolves outside the repository"
            elif self._rule(target) or self._tree.get(target, (0,))[0] == _SYMLINK:
                why = f"is a symlink to {target}, which is refused: " \
                      f"{self._rule(target) or 'a link to a link'}"
        if why:
            raise Refused(f"{rel}: {why}")
        return target

    def _readable(self, glob: str | None) -> list[tuple[str, Path | str]]:
        """(path, real path) of every readable file the glob (or directory) selects, sorted."""
        glob = clean_path(glob) if glob and glob.strip() not in ("", ".") else "**"
        found = []
        for rel in sorted(self._tracked):
            if matches(rel, glob) or rel.startswith(glob + "/"):
                with contextlib.suppress(Refused):
                    found.append((rel, self._allowed(rel)))
        return found

    def _text(self, rel: str, real: Path | str) -> str:
        if isinstance(real, str):  # a path in the snapshot
            data = self.ws.repo.blob(self._tree[real][1])
        elif real.stat().st_size > MAX_FILE_BYTES:
            data = b""
        else:
            data = real.read_bytes()
        if len(data) > MAX_FILE_BYTES or (not data and isinstance(real, Path)
                                          and real.stat().st_size > MAX_FILE_BYTES):
            raise Refused(f"{rel}: over the {MAX_FILE_BYTES}-byte limit for reading")
        if b"\x00" not in data[:BINARY_SNIFF_BYTES]:
            with contextlib.suppress(UnicodeDecodeError):
                return data.decode("utf-8").replace("\r\n", "\n").removesuffix("\n")
        raise Refused(f"{rel}: binary file (not UTF-8 text); it cannot be read")


def parse_arguments(arguments: str, schema: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments checked against `schema`, or Refused. Weak models send '' for no
    arguments and null for an omitted one: both are accepted, nothing else is stretched."""
    hint = "; the arguments are: " + (", ".join(
        f"{key}{' (required)' if key in schema['required'] else ''}"
        for key in schema["properties"]) or "none")
    try:
        # strict=False: raw newlines inside strings, as weak models write them, are fine
        data = json.loads(arguments, strict=False) if arguments and arguments.strip() else {}
    except (ValueError, RecursionError) as exc:
        raise Refused(f"arguments are not valid JSON ({exc}){hint}") from None
    if not isinstance(data, dict):
        raise Refused(f"arguments must be a JSON object, not {type(data).__name__}{hint}")
    data = _scrubbed(data)
    props, args = schema["properties"], {k: v for k, v in data.items() if v is not None}
    problems = [f"unknown argument {key!r}" for key in sorted(set(data) - set(props))]
    problems += [f"missing required argument {key!r}" for key in schema["required"]
                 if key not in args]
    problems += [f"argument {key!r} {why}" for key, value in args.items()
                 if key in props and (why := _type_problem(value, props[key]))]
    if problems:
        raise Refused(problems[0] + hint)
    return args


def _scrubbed(value: Any) -> Any:
    """JSON escapes can spell lone surrogates; they become U+FFFD so UTF-8 can hold them."""
    if isinstance(value, str):
        return safety.scrub(value)
    if isinstance(value, list):
        return [_scrubbed(item) for item in value]
    if isinstance(value, dict):
        return {safety.scrub(key): _scrubbed(item) for key, item in value.items()}
    return value


def compile_pattern(pattern: str) -> Any:
    """A grep pattern compiled by RE2, or Refused.

    RE2 matches in time linear in the text and never backtracks, so no pattern can hang a
    run (Python's `re` can take years on `(a+)+$`), and the result does not depend on the
    machine's speed, as a timeout would: a replay sees the same tool result. Its syntax is
    Python's without backreferences and lookaround; those are refused with a hint.
    """
    if not 0 < len(pattern) <= MAX_PATTERN_CHARS:
        raise Refused(f"the pattern must have 1 to {MAX_PATTERN_CHARS} characters")
    if any(int(n) > 1000 for found in _REPEAT.findall(pattern) for n in _DIGITS.findall(found)):
        raise Refused(f"invalid regex {pattern!r}: a repetition count over 1000")
    try:
        # never_nl: no match spans lines, as if each line were searched on its own
        return re2.compile(("(?m)" + pattern).encode("utf-8"), options=_RE2_OPTIONS)
    except Exception as exc:  # re2.error, or anything else its binding raises
        detail = exc.args[0].decode("utf-8", "replace") if exc.args and \
            isinstance(exc.args[0], bytes) else str(exc)
        raise Refused(f"invalid regex {pattern!r}: {detail} (backreferences and lookaround "
                      "are not supported)") from None


def matching_lines(regex: Any, text: str) -> Iterator[tuple[int, str]]:
    """(line number, line) of each line of `text` that `regex` (from `compile_pattern`)
    matches. One search over the whole UTF-8 text per matching line: RE2 is fast, its Python
    binding is not, so calling it once per line would cost ten times more."""
    data = text.encode("utf-8")
    pos, number, counted = 0, 1, 0
    while pos <= len(data):
        found = regex.search(data, pos)
        if found is None:
            return
        start = data.rfind(b"\n", 0, found.start()) + 1
        end = data.find(b"\n", found.start())
        end = len(data) if end < 0 else end
        number += data.count(b"\n", counted, start)
        counted = start
        yield number, data[start:end].decode("utf-8")
        pos = end + 1


_REPEAT = re.compile(r"(?<!\\)\{\s*\d*\s*,?\s*\d*\s*\}")  # {n}, {n,}, {n,m}, {,m}
_DIGITS = re.compile(r"\d+")
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # a refused pattern is the model's tool error, not stderr
_RE2_OPTIONS.max_mem = 64 * 1024 * 1024
_RE2_OPTIONS.never_nl = True


def _type_problem(value: Any, schema: dict[str, Any]) -> str | None:
    kind = schema["type"]
    if not isinstance(value, _TYPES[kind]) or isinstance(value, bool):
        return f"must be a{'n' * (kind != 'string')} {kind}, not {json.dumps(value)[:40]}"
    if kind == "array":
        return next((f"item {why}" for item in cast(list[Any], value)
                     if (why := _type_problem(item, schema["items"]))), None)
    minimum = schema.get("minimum", value)
    return f"must be at least {minimum}, not {value}" if value < minimum else None


def _error(message: str) -> ToolResult:
    return ToolResult(False, "error: " + safety.scrub(" ".join(message.split())))
