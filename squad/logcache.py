"""A derived cache of the parsed log, so a command does not re-parse every record it shows.

Parsing a record (YAML, then pydantic's validators) costs about ten times more than reading
back what an earlier parse produced, and every command needs the whole log. The cache maps a
record's git blob id to that parse: the record's fields and the chain digest of its bytes. A
blob id names its bytes, so an entry never goes stale and serves every commit, branch and
worktree that holds the blob; only a different squad version (which may parse differently)
makes the whole file obsolete, and it is then rebuilt.

It lives in the common git dir (`.git/squad/log-cache`, shared by linked worktrees), never in
the working tree, and is only ever derived: deleting it costs one slow command. Form: a header
line, then per record `<blob id> <sha256> <length>\\n<payload>\\n`, the payload being a JSON
list (the digest, then the front matter's values in the record's field order: no key names
to read back 10,000 times) and the three sections, NUL-separated (a section cannot hold a
NUL). New entries are appended in one write; a file with damaged or many unused entries is
rewritten through a temporary file and a rename.

A cache is never trusted blindly:
- each entry's sha256 covers its blob id and payload: a torn append (a crash) or a flipped bit
  fails it, the rest of the file is ignored, those blobs are parsed again and the file rewritten;
- a hit must fit the file it stands for: exactly the record's fields, with an id and title that
  give the file name; otherwise the blob is parsed again;
- for a log that gets committed on (`parse_newest`), the newest record, whose digest the next
  record chains to, is parsed from git (the workspace also checks such a log against the
  committed index), and an entry on file that such a parse contradicts is dropped; once a
  check passed, the verified point (`squad.checkpoint`) names the sha256 of each entry it
  vouched for, and a later load of the same tree takes exactly those entries or none;
- the file holds data only (JSON and text, never pickle), so a forged entry can at most
  misreport an older record in `log`, `show --json` or an agent's context, never reach the
  committed index, and only by someone who can already write `.git` (and so its hooks).
  `squad verify` never reads this cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from squad import __version__
from squad.layout import folder_of
from squad.ledger import Entry, Ledger
from squad.logview import open_regular, read_regular, replace_whole
from squad.records import SECTIONS_LOWER, Origin, Record, filename

if TYPE_CHECKING:
    from squad.vcs import Repository

HEADER = f"squad-log-cache 2 {__version__}\n".encode()
_HEAD = tuple(name for name in Record.model_fields if name not in SECTIONS_LOWER)
_ORDER = tuple(Record.model_fields)
# the model's fields are the front matter before the sections, the sections, then the rest
_BEFORE = _ORDER[:_ORDER.index(SECTIONS_LOWER[0])]
_AFTER = _ORDER[_ORDER.index(SECTIONS_LOWER[-1]) + 1:]
_SPLIT = 1 + len(_BEFORE)  # in a payload's list, after the digest
assert _BEFORE + SECTIONS_LOWER + _AFTER == _ORDER, "sections are not together in Record"
# the decoder's C scanner, called directly: `decode` adds a Python frame and two regex
# matches per call, which at 10,000 records is a tenth of reading the log back
_scan: Callable[[str, int], tuple[Any, int]] = vars(json.JSONDecoder())["scan_once"]
_set = object.__setattr__
_TUPLES = ("supersedes", "tags", "inputs")


def cache_path(git_dir: Path) -> Path:
    """The cache file in the repository's common git dir (shared by its worktrees)."""
    pointer = git_dir / "commondir"  # a linked worktree's git dir names the common one
    common = (git_dir / pointer.read_text().strip()).resolve() if pointer.is_file() else git_dir
    return common / "squad" / "log-cache"


def load(repo: Repository, listing: dict[str, str], parse_newest: bool = False,
         where: str = "decisions", checks: dict[str, str] | None = None) -> Ledger:
    """The ledger of the records in `listing` (path inside decisions/ -> blob id), parsing
    only misses. With `checks`, it is filled with blob -> the sha256 of the cache entry now
    on file for each record (what a verified point binds, see `squad.checkpoint`)."""
    path = cache_path(repo.git_dir)
    raw, sums, damaged = _read(path)
    newest = max(listing, key=_number, default=None) if parse_newest else None
    entries: list[Entry] = []
    missing: dict[str, str] = {}
    for name, blob in listing.items():
        entry = _hit(raw.get(blob), name) if name != newest else None
        if entry is None:
            missing[name] = blob
        else:
            entries.append(entry)
    parsed = Ledger.from_blobs({name: repo.blob(blob) for name, blob in missing.items()}, where)
    for entry in parsed.entries:  # an entry on file that a parse contradicts is dropped
        blob = missing[entry.name]
        if blob in raw and _hit(raw[blob], entry.name) != entry:
            del raw[blob], sums[blob]
            damaged = True
    entries += parsed.entries
    entries.sort(key=lambda entry: (entry.record.id, entry.name))
    fresh = {missing[e.name]: e for e in parsed.entries if missing[e.name] not in raw}
    used = set(listing.values())
    unused = sum(1 for blob in raw if blob not in used)
    with contextlib.suppress(OSError):  # a cache that cannot be written is only slower
        if damaged or unused > len(used) + 100:
            _rewrite(path, {blob: raw[blob] for blob in raw if blob in used},
                     {listing[e.name]: e for e in entries})
        elif fresh:
            _append(path, fresh, new_file=not raw)
    if checks is not None:
        frames = {blob: _check(blob, _payload(entry)) for blob, entry in fresh.items()}
        checks.update({listing[e.name]: sums.get(listing[e.name]) or frames[listing[e.name]]
                       for e in entries})
    return Ledger(entries)


def load_vouched(repo: Repository, listing: dict[str, str],
                 checks: dict[str, str]) -> Ledger | None:
    """The ledger of `listing` (its records) from exactly the cache entries a verified
    point vouched for (`checks`), the newest record parsed again from git as in a checked
    load; None if any entry is missing or not the one vouched for, or the newest differs
    from its parse (the caller then checks the log in full)."""
    raw, sums, _ = _read(cache_path(repo.git_dir))
    entries: list[Entry] = []
    for name, blob in listing.items():
        check = checks.get(blob)
        if check is None or sums.get(blob) != check:
            return None
        entry = _hit(raw[blob], name, fit=False)  # the check saw it fit its file name
        if entry is None:
            return None
        entries.append(entry)
    entries.sort(key=lambda entry: (entry.record.id, entry.name))
    if entries:
        newest = entries[-1]
        if Ledger.from_blobs({newest.name: repo.blob(listing[newest.name])}).entries \
                != [newest]:
            return None
    return Ledger(entries)


def remember(repo: Repository, fresh: dict[str, Entry]) -> dict[str, str]:
    """Append entries the caller knows to be parses of their blobs (the coordinator's own
    records, rendered and parsed back before their commit); returns blob -> entry sha256."""
    path = cache_path(repo.git_dir)
    with contextlib.suppress(OSError):
        _append(path, fresh, new_file=not path.is_file())
    return {blob: _check(blob, _payload(entry)) for blob, entry in fresh.items()}


def _number(name: str) -> int:
    """A record path's number (`NNNN-slug.md`, in a folder or not), -1 for anything else."""
    number = name.rpartition("/")[2].partition("-")[0]
    return int(number) if number.isdecimal() else -1


# ---- reading ----------------------------------------------------------------------------

def _read(path: Path) -> tuple[dict[str, bytes], dict[str, str], bool]:
    """blob id -> checked payload of every sound entry, blob id -> that entry's sha256, and
    whether anything was damaged."""
    try:
        data = read_regular(path)
    except OSError:
        return {}, {}, False
    if not data.startswith(HEADER):
        return {}, {}, bool(data)  # another format or squad version: rebuild
    entries: dict[str, bytes] = {}
    sums: dict[str, str] = {}
    pos, end = len(HEADER), len(data)
    while pos < end:
        try:
            eol = data.index(b"\n", pos, pos + 200)
            blob, check, size = data[pos:eol].decode("ascii").split(" ")
            start, stop = eol + 1, eol + 1 + int(size)
        except ValueError:
            return entries, sums, True
        payload = data[start:stop]
        if (stop >= end or data[stop:stop + 1] != b"\n" or len(blob) != 40
                or hashlib.sha256(blob.encode() + payload).hexdigest() != check):
            return entries, sums, True
        entries[blob] = payload
        sums[blob] = check
        pos = stop + 1
    return entries, sums, False


def _hit(payload: bytes | None, name: str, fit: bool = True) -> Entry | None:
    """The entry a checked payload stands for, if it fits the file name it is found under
    (`fit`: asked unless a verified point vouches for the entry under that name)."""
    if payload is None:
        return None
    try:
        head, context, decision, consequences = payload.decode("utf-8").split("\0")
        values, end = _scan(head, 0)
        if end != len(head):
            return None
        if type(values) is not list or len(values) != len(_HEAD) + 1 \
                or type(values[0]) is not str:
            return None
        # the fields in the model's order, as a parse leaves them
        fields: dict[str, Any] = dict(zip(_BEFORE, values[1:_SPLIT], strict=True))
        fields["context"], fields["decision"], fields["consequences"] = \
            context, decision, consequences
        fields.update(zip(_AFTER, values[_SPLIT:], strict=True))
        date = datetime.fromisoformat(fields["date"])
        fields["date"] = date if date.tzinfo is UTC else date.astimezone(UTC)
        for key in _TUPLES:
            fields[key] = tuple(fields[key])
        if fields["was"] is not None:  # a nested value is a model, as a parse gives
            fields["was"] = Origin.model_construct(**fields["was"])
        record = _construct(fields)
        if fit:
            folder, _, file = name.rpartition("/")
            if filename(record) != file or (folder and folder != folder_of(record.id)):
                return None
    except (ValueError, TypeError, AttributeError, KeyError, StopIteration):
        return None
    return Entry(record, name, values[0])


def _construct(fields: dict[str, Any]) -> Record:
    """`Record.model_construct` for a complete set of fields in the model's order (built so
    by the caller): the same object, without pydantic's per-field alias and default
    handling, which was most of the cost of reading a long log back from the cache."""
    record = Record.__new__(Record)
    _set(record, "__dict__", fields)
    _set(record, "__pydantic_fields_set__", set(_ORDER))
    _set(record, "__pydantic_extra__", None)
    _set(record, "__pydantic_private__", None)
    return record


# ---- writing ----------------------------------------------------------------------------

def _payload(entry: Entry) -> bytes:
    record = entry.record
    fields = record.model_dump(mode="json", exclude=set(SECTIONS_LOWER))
    head = json.dumps([entry.digest, *(fields[name] for name in _HEAD)],
                      ensure_ascii=False, separators=(",", ":"))
    return "\0".join((head, record.context, record.decision,
                      record.consequences)).encode("utf-8")


def _encode(blob: str, entry: Entry) -> bytes:
    return _frame(blob, _payload(entry))


def _check(blob: str, payload: bytes) -> str:
    return hashlib.sha256(blob.encode() + payload).hexdigest()


def _frame(blob: str, payload: bytes) -> bytes:
    return b"%s %s %d\n%s\n" % (blob.encode(), _check(blob, payload).encode(), len(payload),
                                 payload)


def _append(path: Path, fresh: dict[str, Entry], new_file: bool) -> None:
    data = b"".join(_encode(blob, entry) for blob, entry in fresh.items())
    if new_file:
        replace_whole(path, HEADER + data)
        return
    fd = open_regular(path, os.O_WRONLY | os.O_APPEND)  # not through a link, not a FIFO
    try:
        os.write(fd, data)  # one write: concurrent appenders do not interleave inside it
    finally:
        os.close(fd)


def _rewrite(path: Path, keep: dict[str, bytes], entries: dict[str, Entry]) -> None:
    parts = [HEADER] + [_frame(blob, payload) for blob, payload in keep.items()]
    parts += [_encode(blob, entry) for blob, entry in entries.items() if blob not in keep]
    replace_whole(path, b"".join(parts))


