"""squad reads folder listings with its own tree parser: it must agree with git on every
name, plain or not, and still refuse the names GitPython refuses."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import git

from squad.errors import SquadError
from squad.vcs import open_repo

NAMES = ["0001-plain.md", "README.md", "a b.md", "x:y.md", "ünï.md", "-dash", "tab\tname",
         "Mixed_Case.v2.txt", "trailing.", ".hidden", "exec.sh", "link"]


def test_listing_matches_git_ls_tree(repo: Path) -> None:
    folder = repo / "decisions" / "001"
    folder.mkdir(parents=True)
    for name in NAMES[:-2]:
        (folder / name).write_text(name)
    (folder / "exec.sh").write_text("#!/bin/sh\n")
    (folder / "exec.sh").chmod(0o755)
    (folder / "link").symlink_to("README.md")
    (folder / "sub").mkdir()
    (folder / "sub" / "f.md").write_text("f")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "names")
    out = git(repo, "ls-tree", "-z", "HEAD:decisions/001")
    expected = {}
    dirs = []
    for line in filter(None, out.split("\0")):
        meta, name = line.split("\t", 1)
        _mode, kind, sha = meta.split()
        if kind == "tree":
            dirs.append(name)
        else:
            expected[name] = sha
    r = open_repo(repo)
    try:
        assert r.list_dir("decisions/001") == expected
        assert set(expected) == set(NAMES)
        assert r.list_dirs("decisions/001") == dirs == ["sub"]
        assert r.list_dir("decisions/001/sub") == {"f.md": git(repo, "rev-parse",
                                                               "HEAD:decisions/001/sub/f.md").strip()}
    finally:
        r.close()


def test_unsafe_tree_name_is_refused(repo: Path) -> None:
    """A tree naming an entry `.git` (which git itself will not write) is still refused."""
    blob = git(repo, "hash-object", "-w", "--stdin", input="x").strip()
    tree = git(repo, "mktree", "--missing", input=f"100644 blob {blob}\t.GIT\n").strip()
    top = git(repo, "mktree", input=f"040000 tree {tree}\tdecisions\n").strip()
    commit = git(repo, "commit-tree", top, "-m", "forged").strip()
    r = open_repo(repo)
    try:
        with pytest.raises((ValueError, SquadError)):
            r.list_dir("decisions", commit)
    finally:
        r.close()
