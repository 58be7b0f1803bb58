"""One error tree for squad; the CLI edge turns these into a message and an exit code.

    SquadError              exit 1  (anything squad refuses or cannot do)
    ├── UsageError          exit 2  (bad input from the user: flags, squad.toml, charters)
    ├── NotARepoError       exit 2
    ├── UnsafeRepoError     exit 3  (a commit is impossible or unsafe right now)
    ├── RecordError         exit 1  (a record or drop that does not validate)
    └── LLMError            exit 1  (the model endpoint failed for good)
"""

from __future__ import annotations


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
