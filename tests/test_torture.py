"""Torture: eight writer processes fill the inbox while `squad watch` is SIGKILLed again and again.

Why: the coordinator promises that a kill at any instant loses no drop and commits none twice,
because git is the only record of what is done. This runs that promise for real: 400 drops
from concurrent processes through `Inbox.drop`, a real `squad watch` killed at random moments
(mid-commit, mid-recovery, mid-startup) and restarted, then an audit of the log, the history
and the object store. The seed is printed; rerun a failure with TORTURE_SEED=<seed>.
"""

from __future__ import annotations

import os
import random
import re
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from helpers import Watcher, git, squad, start, torture

from squad.records import RECORD_NAME, parse_record

WRITERS = 8
DROPS = 50  # per writer, spread over the kill phase by the pauses below
MIN_KILLS = 10
KILL_PHASE_SECONDS = 120  # give up killing after this long (and fail: the writers hung)
DRAIN_SECONDS = 150  # the last watch must empty the inbox within this

# One writer process: DROPS valid drops through the real Maildir door, with random pauses so
# that the writing goes on for about as long as the kills (ten of them, one every second or so).
WRITER = """
import random, sys, time
from pathlib import Path
from squad.dropbox import Inbox

inbox, writer, count = Inbox(Path(sys.argv[1])), int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(int(sys.argv[4]))
for n in range(count):
    marker = f"w{writer}-d{n}"
    inbox.drop(f"---\\ntitle: {marker}\\nagent: writer-{writer}\\n---\\n\\n## Context\\n\\n"
               f"torture\\n\\n## Decision\\n\\nDropped as {marker}.\\n")
    time.sleep(rng.uniform(0, 0.4))
"""


def markers() -> set[str]:
    return {f"w{w}-d{n}" for w in range(WRITERS) for n in range(DROPS)}


@pytest.mark.slow
def test_killed_watch_loses_and_doubles_nothing(repo: Path, tmp_path: Path) -> None:
    """400 drops from 8 processes, >= 10 SIGKILLs of `squad watch`: each drop committed once."""
    seed = int(os.environ.get("TORTURE_SEED") or random.SystemRandom().randrange(2**32))
    print(f"torture seed {seed} (rerun with TORTURE_SEED={seed})")
    rng = random.Random(seed)
    (repo / "squad.toml").write_text("[coordinator]\nsettle_seconds = 0\n")
    git(repo, "add", "squad.toml")
    git(repo, "commit", "-q", "-m", "squad settings")
    squad(repo, "init", "--no-agents")
    inbox = repo / "decisions" / "inbox"
    logs = tmp_path / "logs"
    logs.mkdir()

    writers = [start(repo, str(inbox), str(w), str(DROPS), str(seed + w), code=WRITER,
                     text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
               for w in range(WRITERS)]
    watcher = Watcher(repo, logs, ["watch"])
    went = torture(watcher, writers, rng, seed, min_kills=MIN_KILLS,
                   kill_seconds=KILL_PHASE_SECONDS, drain_seconds=DRAIN_SECONDS,
                   waiting=lambda: len(os.listdir(inbox / "new")))
    code, stopping = went.code, went.stopping
    every_log = watcher.every_log()
    print(f"kills caught mid-drop: {every_log.count('already committed by an interrupted')} "
          f"drops committed but not yet removed, {every_log.count('of an interrupted commit')} "
          "commits whose files were restored")
    print(f"{watcher.kills} kills, {watcher.started} starts; writers done after "
          f"{went.writers_done:.1f}s, inbox drained after {went.drained:.1f}s "
          f"({WRITERS * DROPS / went.drained:.1f} drops/s overall); SIGTERM took "
          f"{stopping:.2f}s")

    context = f"seed {seed}"
    assert not watcher.died, f"{context}: squad watch exited by itself:\n" + \
        "\n".join(watcher.died)
    assert (code, stopping < 10) == (0, True), \
        f"{context}: stop took {stopping:.1f}s, exit {code}:\n{watcher.log(watcher.started)}"
    for number in range(1, watcher.started + 1):
        assert "Traceback" not in watcher.log(number), \
            f"{context}: incarnation {number}:\n{watcher.log(number)}"
    assert watcher.kills >= MIN_KILLS
    assert sorted(os.listdir(inbox)) == ["new", "tmp"], os.listdir(inbox)
    assert os.listdir(inbox / "new") == [] and os.listdir(inbox / "tmp") == []

    # Every marker committed exactly once, ids 1..N, nothing quarantined.
    folder = repo / "decisions"
    records = [parse_record(path.read_text()) for path in folder.glob("[0-9]*/*.md")
               if RECORD_NAME.match(path.name)]
    titles = Counter(record.title for record in records)
    doubled = sorted(title for title, n in titles.items() if n > 1)
    assert not doubled, f"{context}: committed twice: {doubled[:20]}"
    lost = sorted(markers() - set(titles))
    assert not lost, f"{context}: {len(lost)} drops lost, e.g. {lost[:20]}"
    assert set(titles) == markers(), f"{context}: unexpected records"
    assert sorted(record.id for record in records) == list(range(1, WRITERS * DROPS + 1))
    quarantine = folder / "quarantine"
    assert not quarantine.exists() or os.listdir(quarantine) == [], os.listdir(quarantine)

    # The history agrees: one squad commit per drop name, each naming a Maildir drop.
    names = git(repo, "log", "--format=%(trailers:key=Squad-Drop,valueonly)").split()
    again = [name for name, n in Counter(names).items() if n > 1]
    assert not again, f"{context}: drop names committed twice: {again[:20]}"
    assert len(names) == WRITERS * DROPS
    assert all(re.fullmatch(r"\d+\.P\d+Q\d+R[0-9a-f]{8}\..+\.md", name) for name in names)
    decisions = git(repo, "log", "--format=%(trailers:key=Squad-Decision,valueonly)").split()
    assert sorted(map(int, decisions)) == list(range(1, WRITERS * DROPS + 1))

    # squad's own audit, git's, and a clean working tree under decisions/.
    verified = squad(repo, "verify", check=False)
    assert (verified.returncode, verified.stdout.strip()) == \
        (0, f"ok: {WRITERS * DROPS} records verified"), verified.stderr
    fsck = subprocess.run(["git", "fsck", "--strict", "--no-dangling", "--no-progress"],
                          cwd=repo, capture_output=True, text=True)
    assert (fsck.returncode, fsck.stdout + fsck.stderr) == (0, ""), fsck.stdout + fsck.stderr
    status = git(repo, "status", "--porcelain", "--ignored", "--untracked-files=all",
                 "--", "decisions").splitlines()
    assert all(line.startswith("!! decisions/inbox/") for line in status), status
    assert git(repo, "status", "--porcelain") == ""
