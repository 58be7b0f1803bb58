"""Drops through a git remote: a bare repository as the remote, clones as writers and
coordinators, the real `squad` command, all on local paths."""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import Process, clone, git, squad, start, titles

from squad.errors import UsageError
from squad.remote import check_writer, default_writer


def _committed(stdout: str) -> list[str]:
    """The records a command says it committed, without the commit each names."""
    return [re.sub(r"  \(committed [0-9a-f]{12}\)$", "", line) for line in stdout.splitlines()]


@pytest.fixture
def remote(initialized_no_agents: Path, tmp_path: Path) -> Path:
    """A bare remote holding a squad-initialised main."""
    repo = initialized_no_agents
    bare = tmp_path / "remote.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(repo), str(bare)], check=True)
    return bare


def decide(where: Path, title: str, *extra: str, check: bool = True,
           ) -> subprocess.CompletedProcess[str]:
    return squad(where, "decide", "--title", title, "--decision", "d", "--agent", "tester",
                 "--push", "origin", *extra, check=check)


def trunk_drops(bare: Path) -> list[str]:
    """Squad-Drop names on the remote's main, one per record commit."""
    return git(bare, "log", "main", "--format=%(trailers:key=Squad-Drop,valueonly)").split()


def refs(where: Path, prefix: str) -> dict[str, str]:
    out = git(where, "for-each-ref", "--format=%(refname) %(objectname)", prefix)
    return dict(line.split(" ") for line in out.splitlines())


def test_decide_push_commits_each_drop_on_the_writers_own_ref(remote: Path,
                                                               tmp_path: Path) -> None:
    writer = clone(remote, tmp_path / "writer")
    before = git(remote, "rev-parse", "main")
    decide(writer, "First")
    result = decide(writer, "Second")
    me = (writer / ".git/squad/writer").read_text().strip()  # made by the first command
    assert me.startswith(default_writer() + "+")
    assert f"pushed 1 drop(s) to origin (refs/squad/drops/{me})" in result.stderr
    ref = f"refs/squad/drops/{me}"
    assert refs(remote, "refs/squad/") == {ref: git(writer, "rev-parse", ref).strip()}
    assert git(remote, "rev-parse", "main") == before  # never a push to the log's branch
    commits = git(writer, "rev-list", ref).split()
    assert len(commits) == 2
    for sha in commits:  # one commit per drop, holding only that drop
        files = git(writer, "ls-tree", "-r", "--name-only", sha).split()
        assert len(files) == 1 and files[0].startswith("inbox/"), files
        body = git(writer, "log", "-1", "--format=%B", sha)
        assert f"Squad-Writer: {me}" in body and "Squad-Drop-Hash: sha256:" in body
    assert not (writer / "decisions" / "inbox" / "new").exists() or \
        os.listdir(writer / "decisions" / "inbox" / "new") == []

    coordinator = clone(remote, tmp_path / "coordinator")
    taken = squad(coordinator, "ingest", "--remote", "origin")
    assert _committed(taken.stdout) == ["0001  First", "0002  Second"]
    assert squad(coordinator, "ingest", "--remote", "origin").stdout == ""  # nothing twice
    assert len(trunk_drops(remote)) == 2
    assert git(remote, "rev-parse", "main") == git(coordinator, "rev-parse", "main")
    assert git(remote, "rev-parse", f"refs/squad/taken/{me}") == git(remote, "rev-parse", ref)
    writers = git(remote, "log", "main", "--format=%(trailers:key=Squad-Writer,valueonly)")
    assert writers.split() == [me, me]
    assert squad(coordinator, "verify").stdout.strip() == "ok: 2 records verified"
    assert git(coordinator, "status", "--porcelain") == ""


def test_writer_id_must_be_a_safe_ref_component(remote: Path, tmp_path: Path) -> None:
    for bad in ("../main", "a..b", "x.lock", "-x", "a b", "a/b", "a@{1}", "x" * 101, "x."):
        with pytest.raises(UsageError):
            check_writer(bad)
    assert check_writer(default_writer()) == default_writer()
    writer = clone(remote, tmp_path / "writer")
    result = decide(writer, "Nope", "--writer", "../main", check=False)
    assert result.returncode == 2, result.stderr
    assert "writer id" in result.stderr and "Traceback" not in result.stderr
    assert refs(writer, "refs/squad/") == {}
    ok = decide(writer, "Fine", "--writer", "ci.job-7@runner_2")
    assert "refs/squad/drops/ci.job-7@runner_2" in ok.stderr


def test_a_mistyped_remote_is_one_line_before_any_work(remote: Path, tmp_path: Path) -> None:
    writer = clone(remote, tmp_path / "writer")
    for command in (["decide", "--title", "T", "--decision", "d", "--push", "orign"],
                    ["push", "orign"], ["ingest", "--remote", "orign"],
                    ["watch", "--remote", "orign"], ["gc", "--remote", "orign"],
                    ["agent", "r1.tester", "--push", "orign"]):
        result = squad(writer, *command, check=False)
        assert result.returncode == 2, (command, result.stderr)
        assert result.stderr.splitlines() == [
            "squad: orign: not a remote of this clone, a URL or a path "
            "(`git remote -v` lists the remotes)"], command
    assert refs(writer, "refs/squad/") == {}
    # A path is a remote too, as git takes it.
    squad(writer, "decide", "--title", "By path", "--decision", "d", "--push", str(remote))
    pushed = refs(remote, "refs/squad/drops/")
    assert len(pushed) == 1 and set(pushed) == set(refs(writer, "refs/squad/drops/"))


def test_two_clones_of_one_user_have_two_default_writer_ids(remote: Path,
                                                            tmp_path: Path) -> None:
    one, two = clone(remote, tmp_path / "one"), clone(remote, tmp_path / "two")
    for where in (one, two, one):
        decide(where, f"From {where.name}")
    ids = {where.name: set(refs(where, "refs/squad/drops/")) for where in (one, two)}
    assert len(ids["one"]) == len(ids["two"]) == 1 and ids["one"] != ids["two"]
    assert set(refs(remote, "refs/squad/drops/")) == ids["one"] | ids["two"]
    assert len(git(one, "rev-list", *ids["one"]).split()) == 2  # stable within a clone


def test_an_offline_writer_keeps_its_drops_and_delivers_them_once(remote: Path,
                                                                  tmp_path: Path) -> None:
    writer = clone(remote, tmp_path / "writer")
    coordinator = clone(remote, tmp_path / "coordinator")
    decide(writer, "Before", "--writer", "w")
    git(writer, "remote", "set-url", "origin", str(tmp_path / "gone.git"))
    for n in range(3):
        failed = decide(writer, f"Offline {n}", "--writer", "w", check=False)
        assert failed.returncode == 4, failed.stderr
        assert f"{n + 1} drop(s) kept in refs/squad/drops/w" in failed.stderr
    assert len(git(writer, "rev-list", "refs/squad/drops/w").split()) == 4
    squad(coordinator, "ingest", "--remote", "origin")
    git(writer, "remote", "set-url", "origin", str(remote))
    back = squad(writer, "push", "origin", "--writer", "w")
    assert back.stdout.strip() == "pushed 3 drop(s) to origin (refs/squad/drops/w)"
    assert squad(writer, "push", "origin", "--writer", "w").stdout.startswith("pushed 0")

    # The writer forgets it pushed (killed before noting it): re-pushing changes nothing.
    tip = git(remote, "rev-parse", "refs/squad/drops/w")
    git(writer, "update-ref", "-d", "refs/squad/pushed/w")
    squad(writer, "push", "origin", "--writer", "w")
    assert git(remote, "rev-parse", "refs/squad/drops/w") == tip
    squad(coordinator, "ingest", "--remote", "origin")
    squad(coordinator, "ingest", "--remote", "origin")
    assert titles(coordinator) == Counter(["Before", "Offline 0", "Offline 1", "Offline 2"])
    assert sorted(Counter(trunk_drops(remote)).values()) == [1, 1, 1, 1]


def test_two_clones_with_one_writer_id_both_deliver(remote: Path, tmp_path: Path) -> None:
    one, two = clone(remote, tmp_path / "one"), clone(remote, tmp_path / "two")
    decide(one, "From one", "--writer", "shared")
    result = decide(two, "From two", "--writer", "shared")
    assert "moved refs/squad/drops/shared first; putting 1 drop(s) on top" in result.stderr
    decide(one, "One again", "--writer", "shared")
    coordinator = clone(remote, tmp_path / "coordinator")
    squad(coordinator, "ingest", "--remote", "origin")
    assert titles(coordinator) == Counter(["From one", "From two", "One again"])


HOOK = """#!{python}
import os, subprocess, sys
updates = sys.stdin.read()
marker = {marker!r}
if "refs/heads/main" in updates and not os.path.exists(marker):
    open(marker, "w").close()
    env = {{k: v for k, v in os.environ.items() if not k.startswith("GIT_")}}
    env["GIT_CONFIG_NOSYSTEM"] = "1"
    env["SQUAD_NOW"] = {now!r}
    with open({log!r}, "w") as log:
        for cwd, args in {steps!r}:
            subprocess.run([sys.executable, "-m", "squad", *args], cwd=cwd, env=env,
                           stdout=log, stderr=log, check=True)
"""


A_NOW = "2026-03-01T10:00:00Z"


@pytest.mark.parametrize("b_now", [A_NOW, "2026-03-01T10:00:01Z"],
                         ids=["same-second", "a-second-later"])
def test_two_coordinators_race_one_wins_the_other_rebuilds(remote: Path, tmp_path: Path,
                                                            b_now: str) -> None:
    """A's trunk push is held in the remote's pre-receive hook while B takes the same drops
    and pushes first (and a writer pushes one more): A's lease fails, A fetches, rebuilds on
    B's trunk and pushes only what B did not take. The clocks are pinned: squad's commits are
    deterministic, so made in the same second A's two commits are B's very commits and A's
    first attempt stands; a second later they differ and A rebuilds on B's."""
    writer = clone(remote, tmp_path / "writer")
    a, b = clone(remote, tmp_path / "a"), clone(remote, tmp_path / "b")
    decide(writer, "Early one", "--writer", "w")
    decide(writer, "Early two", "--writer", "w")
    hook = remote / "hooks" / "pre-receive"
    steps = [(str(b), ["ingest", "--remote", "origin"]),
             (str(writer), ["decide", "--title", "Late", "--decision", "d", "--agent", "t",
                            "--push", "origin", "--writer", "w"])]
    hook.write_text(HOOK.format(python=sys.executable, marker=str(tmp_path / "raced"),
                                log=str(tmp_path / "hook.log"), steps=steps, now=b_now))
    hook.chmod(hook.stat().st_mode | stat.S_IEXEC)

    result = squad(a, "ingest", "--remote", "origin", env={"SQUAD_NOW": A_NOW})
    assert (tmp_path / "raced").exists(), (tmp_path / "hook.log").read_text()
    assert "origin moved first; fetching and rebuilding" in result.stderr, result.stderr
    if b_now == A_NOW:
        assert "rebuilding 2 record(s)" not in result.stderr, result.stderr
        assert _committed(result.stdout) == ["0001  Early one", "0002  Early two", "0003  Late"]
    else:
        assert "rebuilding 2 record(s)" in result.stderr, result.stderr
        assert _committed(result.stdout) == ["0003  Late"]
    assert titles(b) == Counter(["Early one", "Early two"])
    git(b, "pull", "-q", "--ff-only")
    for clone_ in (a, b):
        assert titles(clone_) == Counter(["Early one", "Early two", "Late"])
        assert squad(clone_, "verify").stdout.strip() == "ok: 3 records verified"
        assert git(clone_, "status", "--porcelain") == ""
    assert sorted(Counter(trunk_drops(remote)).values()) == [1, 1, 1]
    assert git(remote, "rev-parse", "refs/squad/taken/w") == \
        git(remote, "rev-parse", "refs/squad/drops/w")


def test_gc_prunes_only_writers_whose_drops_are_all_taken(remote: Path,
                                                          tmp_path: Path) -> None:
    writer = clone(remote, tmp_path / "writer")
    coordinator = clone(remote, tmp_path / "coordinator")
    decide(writer, "Done", "--writer", "done")
    decide(writer, "Half one", "--writer", "half")
    squad(coordinator, "ingest", "--remote", "origin")
    decide(writer, "Half two", "--writer", "half")  # pushed, not taken yet
    pruned = squad(coordinator, "gc", "--remote", "origin")
    assert pruned.stdout.splitlines() == ["pruned done", "kept half: 1 drop(s) not yet taken"]
    assert set(refs(remote, "refs/squad/")) == {"refs/squad/drops/half", "refs/squad/taken/half"}

    # The pruned writer goes on: its next drop starts a fresh chain, old drops are not resent.
    again = decide(writer, "Done again", "--writer", "done")
    assert "putting 1 drop(s) on top" in again.stderr
    assert len(git(remote, "rev-list", "refs/squad/drops/done").split()) == 1
    squad(coordinator, "ingest", "--remote", "origin")
    assert titles(coordinator) == Counter(["Done", "Half one", "Half two", "Done again"])
    assert squad(coordinator, "gc", "--remote", "origin").stdout.splitlines() == \
        ["pruned done", "pruned half"]
    assert refs(remote, "refs/squad/") == {}
    assert squad(coordinator, "ingest", "--remote", "origin").stdout == ""
    fsck = subprocess.run(["git", "fsck", "--strict", "--no-dangling"], cwd=remote,
                          capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stderr


def test_a_commit_that_is_not_a_drop_is_quarantined_and_passed_over(remote: Path,
                                                                    tmp_path: Path) -> None:
    writer = clone(remote, tmp_path / "writer")
    coordinator = clone(remote, tmp_path / "coordinator")
    (writer / "one.md").write_text("x")
    (writer / "two.md").write_text("y")
    git(writer, "add", "one.md", "two.md")
    git(writer, "commit", "-q", "-m", "not a drop")
    git(writer, "push", "-q", "origin", "HEAD:refs/squad/drops/odd")
    decide(writer, "Good", "--writer", "odd")  # lands on top after a lost race
    result = squad(coordinator, "ingest", "--remote", "origin")
    assert _committed(result.stdout) == ["0001  Good"]
    assert "quarantined drop commit" in result.stderr
    reasons = os.listdir(coordinator / "decisions" / "quarantine")
    assert len(reasons) == 1 and reasons[0].startswith("odd-")
    assert git(remote, "rev-parse", "refs/squad/taken/odd") == \
        git(remote, "rev-parse", "refs/squad/drops/odd")
    squad(coordinator, "ingest", "--remote", "origin")
    assert len(os.listdir(coordinator / "decisions" / "quarantine")) == 1


def test_records_committed_but_not_pushed_are_pushed_later_not_redone(remote: Path,
                                                                     tmp_path: Path) -> None:
    """The coordinator can fetch but not push (as if killed right after committing): its
    records wait on the local branch, and the next pass pushes them as they are."""
    writer = clone(remote, tmp_path / "writer")
    coordinator = clone(remote, tmp_path / "coordinator")
    decide(writer, "Waits", "--writer", "w")
    git(coordinator, "remote", "set-url", "--push", "origin", str(tmp_path / "gone.git"))
    failed = squad(coordinator, "ingest", "--remote", "origin", check=False)
    assert failed.returncode == 4 and "cannot push to origin" in failed.stderr, failed.stderr
    local = git(coordinator, "rev-parse", "main")
    assert titles(coordinator) == Counter(["Waits"]) and trunk_drops(remote) == []
    decide(writer, "Later", "--writer", "w")
    git(coordinator, "remote", "set-url", "--push", "origin", str(remote))
    done = squad(coordinator, "ingest", "--remote", "origin")
    assert _committed(done.stdout) == ["0002  Later"]
    assert git(remote, "rev-parse", "main~1") == local  # the waiting record, not a new one
    assert sorted(Counter(trunk_drops(remote)).values()) == [1, 1]


def test_watch_remote_waits_out_an_unreachable_remote_and_stops_on_sigterm(
        remote: Path, tmp_path: Path) -> None:
    writer = clone(remote, tmp_path / "writer")
    coordinator = clone(remote, tmp_path / "coordinator")
    git(coordinator, "remote", "set-url", "origin", str(tmp_path / "gone.git"))
    log = tmp_path / "watch.log"
    with log.open("w") as out:
        proc = start(coordinator, "watch", "--remote", "origin", "--interval", "0.1",
                     stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: "waiting: cannot fetch from origin" in log.read_text(), proc, log)
        decide(writer, "Arrives", "--writer", "w")
        git(coordinator, "remote", "set-url", "origin", str(remote))
        wait_for(lambda: len(trunk_drops(remote)) == 1, proc, log)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = log.read_text()
    assert text.count("waiting: cannot fetch") == 1 and "resumed" in text, text
    assert "committed 0001 Arrives" in text and text.rstrip().endswith("stopped"), text


def wait_for(condition: Callable[[], bool], proc: Process, log: Path) -> None:
    """Poll until `condition` holds; fail if the process died (a deadline only against hangs)."""
    deadline = time.monotonic() + 120
    while not condition():
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)


def test_unpushed_records_of_the_local_inbox_are_rebuilt_on_a_moved_trunk(
        remote: Path, tmp_path: Path) -> None:
    writer = clone(remote, tmp_path / "writer")
    a, b = clone(remote, tmp_path / "a"), clone(remote, tmp_path / "b")
    squad(a, "decide", "--title", "Local one", "--decision", "d", "--no-ingest")
    squad(a, "ingest")  # committed here (squad's identity), never pushed
    decide(writer, "Remote", "--writer", "w")
    squad(b, "ingest", "--remote", "origin")  # the trunk moves under a
    result = squad(a, "ingest", "--remote", "origin")
    assert "rebuilding 1 record(s)" in result.stderr, result.stderr
    assert _committed(result.stdout) == ["0002  Local one"]
    assert titles(a) == Counter(["Remote", "Local one"])
    assert git(remote, "rev-parse", "main") == git(a, "rev-parse", "main")
    assert squad(a, "verify").stdout.strip() == "ok: 2 records verified"
    assert git(a, "status", "--porcelain") == ""
