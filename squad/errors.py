"""One error tree for squad; the CLI edge turns these into a message and an exit code.

    SquadError              exit 1  (anything squad refuses or cannot do)
    ├── UsageError          exit 2  (bad input from the user: flags, squad.toml, charters)
    ├── NotARepoError       exit 2
    ├── UnsafeRepoError     exit 3  (a commit is impossible or unsafe right now)
    ├── RecordError         exit 1  (a record or drop that does not validate)
    ├── RemoteError         exit 4  (a fetch or push failed; nothing is lost, retry later)
    └── LLMError            exit 1  (the model endpoint failed for good)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError


class SquadError(Exception):
    """An error with a one-line message meant for the user."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UsageError(SquadError):
    exit_code = 2


class NotARepoError(SquadError):
    exit_code = 2


class UnsafeRepoError(SquadError):
    exit_code = 3


class RecordError(SquadError):
    pass


class LLMError(SquadError):
    pass


def describe(exc: ValidationError, skip: int = 0) -> str:
    """A pydantic validation error as one line naming the first faulty field (the first
    `skip` parts of its location left out), as a user would want to read it; the one
    wording for charters, squad.toml, records, drops and run logs."""
    err = exc.errors()[0]
    where = ".".join(str(part) for part in err["loc"][skip:])
    message = " ".join(err["msg"].removeprefix("Value error, ").split())
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return (f"field {where}: {message}" if where else message) + more


class RemoteError(SquadError):
    """A fetch or push failed for a reason other than a lost race (no route, no repository)."""

    exit_code = 4

    def __init__(self, message: str, missing: bool = False) -> None:
        super().__init__(message)
        self.missing = missing  # a ref asked for by name does not exist there
