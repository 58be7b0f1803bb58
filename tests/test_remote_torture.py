"""Torture through a remote: 8 writer clones push 50 drops each while `squad watch --remote`
is SIGKILLed again and again.

Why: the remote path promises what the local one does — a kill at any instant loses no drop and
commits none twice — with a push and a fetch in the middle of every step. Two of the clones
share a writer id, so their pushes race on one ref and rebuild on each other. The seed is
printed; rerun a failure with TORTURE_SEED=<seed>.
"""

from __future__ import annotations

import os
import random
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from helpers import Watcher, clone, git, squad, start, torture

WRITERS = 8
DROPS = 50  # per writer
MIN_KILLS = 10
KILL_PHASE_SECONDS = 240
DRAIN_SECONDS = 120
IDS = [f"w{n}" for n in range(WRITERS - 2)] + ["shared", "shared"]

# One writer clone: commit a drop on its ref and push, DROPS times; a push that keeps losing
# races leaves its drops waiting, and the next push (or the last one) takes them along.
WRITER = """
import random, sys, time
from pathlib import Path
from squad.errors import RemoteError
from squad.remote import push_drops, record_drop
from squad.workspace import Workspace

ws = Workspace.open(Path(sys.argv[1]))
number, writer, count = int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
rng = random.Random(int(sys.argv[5]))
for n in range(count):
    marker = f"w{number}-d{n}"
    record_drop(ws, writer, f"---\\ntitle: {marker}\\nagent: writer-{number}\\n---\\n\\n"
                f"## Context\\n\\ntorture\\n\\n## Decision\\n\\nDropped as {marker}.\\n")
    try:
        push_drops(ws, "origin", writer)
    except RemoteError:
        pass
    time.sleep(rng.uniform(0, 0.1))
for _ in range(50):
    try:
        push_drops(ws, "origin", writer)
        break
    except RemoteError:
        time.sleep(0.2)
else:
    sys.exit("could not push the last drops")
"""


def markers() -> set[str]:
    return {f"w{w}-d{n}" for w in range(WRITERS) for n in range(DROPS)}


def on_trunk(bare: Path) -> int:
    return len(git(bare, "log", "main", "--format=%(trailers:key=Squad-Drop,valueonly)").split())


@pytest.mark.slow
def test_killed_remote_watch_loses_and_doubles_nothing(repo: Path, tmp_path: Path) -> None:
    """400 drops from 8 clones, >= 10 SIGKILLs of `squad watch --remote`: each taken once."""
    seed = int(os.environ.get("TORTURE_SEED") or random.SystemRandom().randrange(2**32))
    print(f"torture seed {seed} (rerun with TORTURE_SEED={seed})")
    rng = random.Random(seed)
    squad(repo, "init", "--no-agents")
    bare = tmp_path / "remote.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(repo), str(bare)], check=True)
    coordinator = clone(bare, tmp_path / "coordinator")
    clones = [clone(bare, tmp_path / f"writer{n}") for n in range(WRITERS)]
    logs = tmp_path / "logs"
    logs.mkdir()

    writers = [start(tmp_path, str(clones[n]), str(n), IDS[n], str(DROPS), str(seed + n),
                     code=WRITER, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
               for n in range(WRITERS)]
    watcher = Watcher(coordinator, logs, ["watch", "--remote", "origin", "--interval", "0.2"])
    went = torture(watcher, writers, rng, seed, min_kills=MIN_KILLS,
                   kill_seconds=KILL_PHASE_SECONDS, drain_seconds=DRAIN_SECONDS,
                   waiting=lambda: WRITERS * DROPS - on_trunk(bare))
    code, stopping = went.code, went.stopping
    every_log = watcher.every_log()
    print(f"{watcher.kills} kills, {watcher.started} starts, all on the trunk after "
          f"{went.drained:.1f}s ({WRITERS * DROPS / went.drained:.1f} drops/s); "
          f"{every_log.count('already committed by an interrupted')} drops found committed "
          f"but not yet removed; SIGTERM took {stopping:.2f}s")

    context = f"seed {seed}"
    assert not watcher.died, f"{context}: squad watch exited by itself:\n" + \
        "\n".join(watcher.died)
    assert code == 0, f"{context}: exit {code}:\n{watcher.log(watcher.started)}"
    assert "Traceback" not in every_log, every_log[-3000:]
    assert watcher.kills >= MIN_KILLS

    # The remote's trunk: each marker once, from the right writer, ids 1..N.
    fields = ("Squad-Writer", "Squad-Decision", "Squad-Drop")
    log = git(bare, "log", "main", "--format=%x1e%s" + "".join(
        f"%x00%(trailers:key={key},valueonly,separator=)" for key in fields))
    rows = [chunk.strip("\n").split("\0") for chunk in log.split("\x1e") if chunk.strip()]
    rows = [row for row in rows if row[3]]
    seen = Counter(row[0] for row in rows)
    assert not [t for t, n in seen.items() if n > 1], f"{context}: committed twice"
    assert set(seen) == markers(), f"{context}: lost {sorted(markers() - set(seen))[:20]}"
    assert all(row[1] == IDS[int(row[0][1:].split("-")[0])] for row in rows)
    assert sorted(int(row[2]) for row in rows) == list(range(1, WRITERS * DROPS + 1))
    assert Counter(row[3] for row in rows).most_common(1)[0][1] == 1

    # Every writer's drops are on the remote and taken; nothing waits in any clone.
    drops = {ref.split("/")[-1]: sha for ref, sha in (line.split(" ") for line in git(
        bare, "for-each-ref", "--format=%(refname) %(objectname)", "refs/squad/").splitlines())
        if "/drops/" in ref}
    taken = {line.split(" ")[0].split("/")[-1]: line.split(" ")[1] for line in git(
        bare, "for-each-ref", "--format=%(refname) %(objectname)",
        "refs/squad/taken/").splitlines()}
    assert drops == taken and set(drops) == set(IDS)
    for n, where in enumerate(clones):
        assert git(where, "rev-parse", f"refs/squad/pushed/{IDS[n]}") == \
            git(where, "rev-parse", f"refs/squad/drops/{IDS[n]}"), f"writer {n} waits"

    # squad's audit and git's, on every repository.
    assert git(coordinator, "rev-parse", "main") == git(bare, "rev-parse", "main")
    verified = squad(coordinator, "verify", check=False)
    assert (verified.returncode, verified.stdout.strip()) == \
        (0, f"ok: {WRITERS * DROPS} records verified"), verified.stderr
    assert git(coordinator, "status", "--porcelain") == ""
    for where in [bare, coordinator, *clones]:
        fsck = subprocess.run(["git", "fsck", "--strict", "--no-dangling", "--no-progress"],
                              cwd=where, capture_output=True, text=True)
        assert (fsck.returncode, fsck.stdout + fsck.stderr) == (0, ""), \
            f"{where}: {fsck.stdout}{fsck.stderr}"
