"""The drop-box: Maildir semantics, so any number of writers never clobber each other.

A writer creates `inbox/tmp/<unique name>` and renames it into `inbox/new/`; the rename is
atomic, so a file in `new/` is always complete. A file that a person or another tool puts
straight into `inbox/` is claimed (renamed into `new/`) once it has not changed for a short
settle time. Hidden files and `tmp/` are never drops.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import secrets
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from squad.safety import write_new

_counter = itertools.count(1)


@dataclass(frozen=True)
class Inbox:
    path: Path

    @property
    def tmp(self) -> Path:
        return self.path / "tmp"

    @property
    def new(self) -> Path:
        return self.path / "new"

    def create(self) -> None:
        for folder in (self.tmp, self.new):
            folder.mkdir(parents=True, exist_ok=True)

    def drop(self, text: str, name: str | None = None, *, durable: bool = True) -> str:
        """Deliver one drop; returns its name. Never overwrites another drop.

        `durable=False` skips the fsync, for a drop that a coordinator in this same process
        takes at once (a run's agents): should the machine crash first, the run dies with
        it and its drops are set aside as orphans whatever their bytes, so the fsync would
        buy nothing but a disk flush per agent."""
        self.create()
        name = name or unique_name()
        staging = self.tmp / name
        write_new(staging, text.encode("utf-8"), sync=durable)
        target = self.new / name
        if target.exists():
            os.unlink(staging)
            raise FileExistsError(f"{target}: a drop with this name is already waiting")
        os.rename(staging, target)
        return name

    def place(self, name: str, data: bytes) -> None:
        """Put a drop squad already holds (one redelivered from a commit, fetched from a
        remote, or taken from a delivery) into `new/`, whole before its name appears there.
        A file of that name in `tmp/` or `new/` is a leftover of a killed pass of squad's
        own, so it is replaced."""
        self.create()
        staging = self.tmp / name
        with contextlib.suppress(FileNotFoundError):
            os.unlink(staging)
        write_new(staging, data, sync=False)
        os.replace(staging, self.new / name)

    def claim_loose(self, settle_seconds: float) -> float | None:
        """Move settled files written straight into the inbox into `new/`.

        Returns how long until the youngest unsettled file settles, or None if none waits.
        """
        wait: float | None = None
        try:
            entries = list(os.scandir(self.path))
        except FileNotFoundError:
            return None
        now = time.time()
        for entry in entries:
            if entry.name.startswith(".") or entry.name in ("tmp", "new"):
                continue
            try:
                age = now - entry.stat(follow_symlinks=False).st_mtime
            except FileNotFoundError:
                continue
            if age < settle_seconds:
                left = settle_seconds - age
                wait = left if wait is None else min(wait, left)
                continue
            self.new.mkdir(parents=True, exist_ok=True)
            target = self.new / entry.name
            if target.exists() or target.is_symlink():
                # keep the name recognisable, within the 255 bytes a file name may have
                stem = entry.name.encode("utf-8", "surrogateescape")[:120]
                target = self.new / f"{stem.decode('utf-8', 'ignore')}.{unique_name()}"
            try:
                os.rename(entry.path, target)
            except FileNotFoundError:
                continue
        return wait

    def ready(self) -> list[str]:
        """Names of complete drops, in the order the coordinator takes them. A hidden file
        (a desktop's `.DS_Store`, an editor's swap file) is not a drop, as in Maildir."""
        try:
            return sorted(n for n in os.listdir(self.new) if not n.startswith("."))
        except FileNotFoundError:
            return []


def unique_name() -> str:
    """A Maildir-style name: time first (so sorting is roughly arrival order), then uniqueness."""
    host = socket.gethostname().replace("/", "_").replace(":", "_") or "host"
    return f"{time.time_ns()}.P{os.getpid()}Q{next(_counter)}R{secrets.token_hex(4)}.{host}.md"
