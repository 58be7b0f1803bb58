"""Torture: eight writer processes fill the inbox while `squad watch` is SIGKILLed again and again.

Why: the coordinator promises that a kill at any instant loses no drop and commits none twice,
because git is the only record of what is done. This runs that promise for real: 1,600 drops
from concurrent processes through `Inbox.drop`, a real `squad watch` killed at random moments
(mid-commit, mid-recovery, mid-startup) and restarted, then an audit of the log, the history
and the object store. The seed is printed; rerun a failure with TORTURE_SEED=<seed>.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import pytest

from squad.records import RECORD_NAME, parse_record
from tests.conftest import SQUAD, git, squad

WRITERS = 8
DROPS = 200  # per writer
MIN_KILLS = 10
KILL_PHASE_SECONDS = 120  # give up killing after this long (and fail: the writers hung)
DRAIN_SECONDS = 150  # the last watch must empty the inbox within this

# One writer process: DROPS valid drops through the real Maildir door, with small random pauses
# so that the writing overlaps the kills.
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
    time.sleep(rng.uniform(0, 0.06))
"""


@dataclass
class Watcher:
    """`squad watch` incarnations: each one's stderr kept for the audit."""

    root: Path
    logs: Path
    proc: subprocess.Popen[str] | None = None
    handle: IO[str] | None = None
    started: int = 0
    kills: int = 0
    died: list[str] = field(default_factory=list)  # incarnations that exited on their own

    def start(self) -> None:
        self.started += 1
        self.handle = (self.logs / f"watch-{self.started}.log").open("w")
        self.proc = subprocess.Popen([*SQUAD, "watch"], cwd=self.root, text=True,
                                     stdout=self.handle, stderr=subprocess.STDOUT)

    def kill_or_reap(self) -> None:
        """SIGKILL the running incarnation; note it if it had already died by itself."""
        assert self.proc is not None and self.handle is not None
        if self.proc.poll() is None:
            self.proc.kill()
            self.kills += 1
        else:
            self.died.append(f"incarnation {self.started} exited {self.proc.returncode}:\n"
                             f"{self.log(self.started)}")
        self.proc.wait()
        self.handle.close()

    def stop(self) -> tuple[int, float]:
        """SIGTERM; returns the exit code and how long the stop took."""
        assert self.proc is not None and self.handle is not None
        began = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.handle.close()
        return code, time.monotonic() - began

    def log(self, number: int) -> str:
        return (self.logs / f"watch-{number}.log").read_text(errors="replace")


def markers() -> set[str]:
    return {f"w{w}-d{n}" for w in range(WRITERS) for n in range(DROPS)}


@pytest.mark.slow
def test_killed_watch_loses_and_doubles_nothing(repo: Path, tmp_path: Path) -> None:
    """1,600 drops from 8 processes, >= 10 SIGKILLs of `squad watch`: each drop committed once."""
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

    began = time.monotonic()
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(inbox), str(w), str(DROPS),
                                 str(seed + w)], cwd=repo, text=True, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE) for w in range(WRITERS)]
    watcher = Watcher(repo, logs)
    try:
        watcher.start()
        deadline = began + KILL_PHASE_SECONDS
        while watcher.kills + len(watcher.died) < MIN_KILLS or \
                any(w.poll() is None for w in writers):
            assert time.monotonic() < deadline, f"seed {seed}: writers still running"
            time.sleep(rng.uniform(0.05, 2.0))
            watcher.kill_or_reap()
            watcher.start()  # the last start is the final restart
        writers_done = time.monotonic() - began
        for number, writer in enumerate(writers):
            _, err = writer.communicate(timeout=30)
            assert writer.returncode == 0 and not err, f"writer {number}: {err}"

        drained = time.monotonic() + DRAIN_SECONDS
        while os.listdir(inbox / "new"):
            assert watcher.proc is not None
            if watcher.proc.poll() is not None:
                break  # audited below
            assert time.monotonic() < drained, \
                f"seed {seed}: {len(os.listdir(inbox / 'new'))} drops never taken"
            time.sleep(0.1)
        total = time.monotonic() - began
        code, stopping = watcher.stop()
    finally:
        for writer in writers:
            if writer.poll() is None:
                writer.kill()
                writer.communicate()
        if watcher.proc is not None and watcher.proc.poll() is None:
            watcher.proc.kill()
            watcher.proc.wait()
        if watcher.handle is not None:
            watcher.handle.close()
    every_log = "".join(watcher.log(n) for n in range(1, watcher.started + 1))
    print(f"kills caught mid-drop: {every_log.count('already committed by an interrupted')} "
          f"drops committed but not yet removed, {every_log.count('of an interrupted commit')} "
          "commits whose files were restored")
    print(f"{watcher.kills} kills, {watcher.started} starts; writers done after "
          f"{writers_done:.1f}s, inbox drained after {total:.1f}s "
          f"({WRITERS * DROPS / total:.1f} drops/s overall); SIGTERM took {stopping:.2f}s")

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
