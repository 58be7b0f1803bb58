"""Git pack files written by hand: a group of new objects as one `.pack` and its `.idx`.

Writing each object as a loose file costs one file creation and one fsync per object (about
a hundred for a 16-agent run); a pack holds any number of objects in two files, so making a
group commit durable costs two file fsyncs and one of the folder, whatever its size.

Crash safety comes from the order: both files are written under `tmp_` names (which
`git gc` sweeps, as it does its own), fsynced, then renamed, the pack first and its index
last; git only looks at a pack through its index, so readers see all of it or none of it.
The caller fsyncs the folder before any ref names the objects. The format is git's pack
version 2 with an index of version 2 and SHA-1 names (squad refuses other object formats).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import struct
import time
import zlib
from collections.abc import Iterable
from pathlib import Path

from squad.safety import write_new

TYPES = {"commit": 1, "tree": 2, "blob": 3, "tag": 4}
PREFIX = "tmp_pack_squad_"  # git's `prune` removes stale `tmp_*` files in objects/pack
STALE_SECONDS = 3600.0  # a temporary this old was left by a killed writer
LIMIT = 40  # packs in a repository past which squad has git roll the small ones up


def _entry_header(kind: int, size: int) -> bytes:
    """Type and size of one packed object: 3 bits of type, the size in 7-bit groups."""
    out = bytearray()
    byte = (kind << 4) | (size & 0x0F)
    size >>= 4
    while size:
        out.append(byte | 0x80)
        byte = size & 0x7F
        size >>= 7
    out.append(byte)
    return bytes(out)


def encode(objects: Iterable[tuple[str, str, bytes]]) -> tuple[bytes, bytes, str]:
    """(pack bytes, idx bytes, the pack's checksum in hex) for (sha, kind, data) objects;
    a sha given twice is packed once."""
    seen: dict[bytes, tuple[int, int]] = {}  # binary sha -> (offset, crc32)
    parts = [b"PACK", b""]
    offset = 12
    for sha, kind, data in objects:
        name = bytes.fromhex(sha)
        if name in seen:
            continue
        entry = _entry_header(TYPES[kind], len(data)) + zlib.compress(data, 1)
        seen[name] = (offset, zlib.crc32(entry))
        parts.append(entry)
        offset += len(entry)
    parts[1] = struct.pack(">II", 2, len(seen))
    pack = b"".join(parts)
    checksum = hashlib.sha1(pack).digest()
    pack += checksum
    names = sorted(seen)
    fanout = [0] * 256
    for name in names:
        fanout[name[0]] += 1
    total = 0
    for i in range(256):
        total += fanout[i]
        fanout[i] = total
    small: list[int] = []
    large: list[int] = []
    for name in names:
        where = seen[name][0]
        if where < 0x80000000:
            small.append(where)
        else:
            small.append(0x80000000 | len(large))
            large.append(where)
    idx = b"".join([b"\377tOc", struct.pack(">I", 2), struct.pack(">256I", *fanout),
                    *names, struct.pack(f">{len(names)}I", *(seen[n][1] for n in names)),
                    struct.pack(f">{len(small)}I", *small),
                    struct.pack(f">{len(large)}Q", *large), checksum])
    idx += hashlib.sha1(idx).digest()
    return pack, idx, checksum.hex()


def write(folder: Path, objects: Iterable[tuple[str, str, bytes]]) -> Path:
    """Write the objects as one pack in `folder` (objects/pack), each file fsynced before
    its rename; returns the index's path. The folder itself is the caller's to fsync."""
    pack, idx, name = encode(objects)
    folder.mkdir(exist_ok=True)
    stem = folder / f"pack-{name}"
    tmp_pack = folder / f"{PREFIX}{os.getpid()}_{name}.pack"
    tmp_idx = folder / f"{PREFIX}{os.getpid()}_{name}.idx"
    try:
        write_new(tmp_pack, pack, 0o444)
        write_new(tmp_idx, idx, 0o444)
        os.replace(tmp_pack, stem.with_suffix(".pack"))
        os.replace(tmp_idx, stem.with_suffix(".idx"))
    except BaseException:
        for leftover in (tmp_pack, tmp_idx):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(leftover)
        raise
    return stem.with_suffix(".idx")


def sweep(folder: Path, now: float | None = None) -> int:
    """Remove squad's temporaries in `folder` that a killed writer left (older than an
    hour, so never one a live writer is still filling); returns how many."""
    now = time.time() if now is None else now
    removed = 0
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return 0
    for entry in entries:
        if not entry.name.startswith(PREFIX):
            continue
        with contextlib.suppress(FileNotFoundError):
            if entry.is_file(follow_symlinks=False) and \
                    now - entry.stat(follow_symlinks=False).st_mtime > STALE_SECONDS:
                os.unlink(entry.path)
                removed += 1
    return removed


def count(folder: Path) -> int:
    """How many packs `folder` holds (by their indexes, as git finds them)."""
    try:
        return sum(1 for entry in os.scandir(folder)
                   if entry.name.startswith("pack-") and entry.name.endswith(".idx"))
    except FileNotFoundError:
        return 0

