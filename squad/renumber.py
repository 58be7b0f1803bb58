"""Which decision a record is, whatever id it carries now.

`squad merge` appends the other side's records after the trunk's with new ids; a renumbered
record keeps `was` (its first id and a commit that holds it there). A record's *origin* is
(first id, blob sha of the file it first was): for a record never renumbered that is its own
id and blob. Two records with the same origin are the same decision. Both `squad merge` (to
know what a side already has) and `squad verify` (to check a renumbering) rely on this.
"""

from __future__ import annotations

from squad import layout
from squad.errors import RecordError, SquadError
from squad.records import Record, parse_record, slug
from squad.vcs import Repository

Origin = tuple[int, str]
# Fields a renumbering may change; every other field must stay as it was.
MOVABLE = ("id", "prev", "was", "supersedes", "target", "inputs")


def record_names(repo: Repository, commit: str | None = None) -> dict[str, str]:
    """file name -> blob sha of the records at `commit` (default HEAD), in either layout:
    a record is known by its file name, whichever folder it sits in."""
    return layout.by_name(layout.listing(repo, commit))


def id_of(name: str) -> int:
    return int(name.split("-", 1)[0])


class Origins:
    """Origins of records, reading each listing and blob once."""

    def __init__(self, repo: Repository) -> None:
        self.repo = repo
        self._listings: dict[str, dict[str, str] | None] = {}
        self._records: dict[str, Record] = {}
        self._data: dict[str, bytes] = {}
        self.blobs_read = 0

    def listing(self, commit: str) -> dict[str, str] | None:
        """Record files at `commit`, or None if the commit is not in this repository."""
        if commit not in self._listings:
            try:
                self._listings[commit] = record_names(self.repo, commit)
            except (SquadError, ValueError, KeyError, OSError):
                self._listings[commit] = None
        return self._listings[commit]

    def data(self, blob: str) -> bytes:
        if blob not in self._data:
            self.blobs_read += 1
            self._data[blob] = self.repo.blob(blob)
        return self._data[blob]

    def record(self, blob: str) -> Record:
        if blob not in self._records:
            self._records[blob] = parse_record(self.data(blob).decode("utf-8"))
        return self._records[blob]

    def original(self, record: Record) -> tuple[str, str] | None:
        """(file name, blob sha) of the record a renumbered record was, or None if gone."""
        assert record.was is not None
        listing = self.listing(record.was.commit)
        name = f"{record.was.id:04d}-{slug(record.title)}.md"
        if listing is None or name not in listing:
            return None
        return name, listing[name]

    def key(self, record: Record, blob: str) -> Origin:
        if record.was is None:
            return (record.id, blob)
        found = self.original(record)
        return (record.was.id, found[1] if found else f"missing:{record.was.commit}")

    def key_at(self, listing: dict[str, str], record_id: int) -> Origin | None:
        """Origin of the record numbered `record_id` in `listing`."""
        names = _names_for(listing, record_id)
        if len(names) != 1:
            return None
        blob = listing[names[0]]
        try:
            return self.key(self.record(blob), blob)
        except (RecordError, UnicodeDecodeError):
            return None


def _names_for(listing: dict[str, str], record_id: int) -> list[str]:
    prefix = f"{record_id:04d}-"
    return [n for n in listing if n.startswith(prefix) and id_of(n) == record_id]


def renumbering_problem(origins: Origins, record: Record, blob: str,
                        listing: dict[str, str]) -> str | None:
    """Why `record` (in a log whose record files are `listing`) is not an honest renumbering
    of the record its `was` names, or None when it is."""
    assert record.was is not None
    found = origins.original(record)
    where = f"{record.was.id:04d} in commit {record.was.commit[:12]}"
    if found is None:
        return f"renumbered from {where}, which does not hold such a record"
    try:
        before = origins.record(found[1])
    except (RecordError, UnicodeDecodeError):
        return f"renumbered from {where}, which is not a valid record"
    if before.was is not None or before.id != record.was.id:
        return f"renumbered from {where}, which is not an original record"
    fields = set(Record.model_fields) - set(MOVABLE)
    changed = sorted(f for f in fields if getattr(before, f) != getattr(record, f))
    if changed:
        return f"renumbered from {where} but its {changed[0]} differs from the original"
    then = origins.listing(record.was.commit) or {}
    for label in ("supersedes", "inputs", "target"):
        old, new = getattr(before, label), getattr(record, label)
        olds = list(old) if isinstance(old, tuple) else [old]
        news = list(new) if isinstance(new, tuple) else [new]
        if len(olds) != len(news):
            return f"renumbered from {where} but its {label} list changed"
        for a, b in zip(olds, news, strict=True):
            if a is None and b is None:
                continue
            if a is None or b is None or origins.key_at(then, a) is None \
                    or origins.key_at(then, a) != origins.key_at(listing, b):
                return (f"renumbered from {where} but its {label} {b} is not the decision "
                        f"the original named as {a}")
    return None
