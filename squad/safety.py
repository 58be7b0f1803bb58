"""Guards for the bytes squad writes: its own folders, the user's files, untrusted text.

- `check_layout`: squad's folders (decisions/, its inbox and quarantine, .squad/runs) must be
  real directories inside the repository, never symlinks or files; otherwise squad refuses
  before touching anything, since a tracked symlink would let it move or write files
  outside the repository.
- `keep_aside`: before squad writes a path of its own (a record, the index), whatever the
  user has there that squad did not write (an untracked file, an edit, a folder, a link) is
  moved aside under a free name, so no byte of theirs is destroyed.
- `text_problem`: lone UTF-16 surrogates (not encodable as UTF-8) and characters that make
  text read differently from what it is (bidirectional overrides, invisible formatting).
"""

from __future__ import annotations

import os
import stat
import unicodedata
from collections.abc import Iterable
from pathlib import Path

from squad.errors import UnsafeRepoError

# Squad's own folders, relative to the repository root: each must be a real directory.
OWN_DIRS = ("decisions", "decisions/inbox", "decisions/inbox/new", "decisions/inbox/tmp",
            "decisions/quarantine", ".squad", ".squad/runs")
KEPT_SUFFIX = ".mine"


def check_layout(root: Path, folders: Iterable[str] = OWN_DIRS) -> None:
    """Refuse (one line, nothing touched) if one of squad's folders is a symlink or a file."""
    for folder in folders:
        path = root
        for part in folder.split("/"):
            path = path / part
            try:
                info = os.lstat(path)
            except FileNotFoundError:
                break
            except OSError as exc:
                raise UnsafeRepoError(f"{path}: cannot inspect: {exc.strerror}") from None
            if stat.S_ISLNK(info.st_mode):
                raise UnsafeRepoError(
                    f"{path.relative_to(root)}: is a symlink; squad's folders must be real "
                    "directories inside the repository (nothing was touched)")
            if not stat.S_ISDIR(info.st_mode):
                raise UnsafeRepoError(
                    f"{path.relative_to(root)}: is a file, not a folder; squad keeps its "
                    "own files there (move it away; nothing was touched)")


def write_new(path: Path, data: bytes, mode: int = 0o644, sync: bool = True) -> None:
    """Create `path` (never an existing file: O_EXCL) holding `data` whole, fsynced unless
    `sync` is False: the first step of every write squad later renames into place."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)


def free_name(path: Path, suffix: str = KEPT_SUFFIX) -> Path:
    """`path` + suffix, numbered until nothing exists there (links count as existing)."""
    candidate, n = path.with_name(path.name + suffix), 1
    while os.path.lexists(candidate):
        n += 1
        candidate = path.with_name(f"{path.name}{suffix}.{n}")
    return candidate


def keep_aside(path: Path, staged: bytes | None = None) -> list[Path]:
    """Move what sits at `path` (file, folder or link) aside, and write a staged version
    that differs from it next to it; returns where the user's bytes now are."""
    kept: list[Path] = []
    if os.path.lexists(path):
        target = free_name(path)
        os.rename(path, target)
        kept.append(target)
        if staged is not None and not os.path.islink(target) and target.is_file() \
                and target.read_bytes() == staged:
            staged = None
    if staged is not None:
        target = free_name(path, KEPT_SUFFIX + "-staged")
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, staged)
        finally:
            os.close(fd)
        kept.append(target)
    return kept


BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e"
                          "\u2066\u2067\u2068\u2069")


def has_surrogate(text: str) -> bool:
    return not text.isascii() and any("\ud800" <= ch <= "\udfff" for ch in text)


def scrub(text: str) -> str:
    """Lone surrogates replaced by U+FFFD, so the text can be written as UTF-8 anywhere."""
    if not has_surrogate(text):
        return text
    return "".join("\ufffd" if "\ud800" <= ch <= "\udfff" else ch for ch in text)


def text_problem(text: str, one_line: bool) -> str | None:
    """Why `text` may not stand in a record, or None.

    A one-line field (a title, an agent) may hold no invisible formatting character at all
    (Unicode category Cf: bidi controls, zero-width spaces, soft hyphens...); body text may
    hold them (emoji sequences need U+200D) except the bidirectional controls, which can make
    a reviewer read something else than what is there.
    """
    if text.isascii():  # most text, checked at C speed: no surrogate, control or Cf is ASCII
        return None
    if has_surrogate(text):
        return "contains a lone UTF-16 surrogate (not valid Unicode)"
    for ch in text:
        if ch in BIDI_CONTROLS or (one_line and unicodedata.category(ch) == "Cf"):
            return (f"contains the invisible control character U+{ord(ch):04X} "
                    f"({unicodedata.name(ch, 'unnamed')})")
    return None
