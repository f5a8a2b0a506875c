"""Errors meant for users: one line that names the thing that is wrong and the fix.

Library code raises these; only the CLI turns them into exit codes (STYLE.md).
"""


class DsfError(Exception):
    """A problem the user can fix. `str(err)` is the whole message shown to them."""

    exit_code = 1

    def __str__(self) -> str:
        # One line, whatever the user's value held (a name or a path with a newline in it).
        return super().__str__().replace("\r", "\\r").replace("\n", "\\n")


class ConfigError(DsfError):
    """A bad config file, key, value or override; refused before anything is written."""

    exit_code = 2


class RunFolderError(DsfError):
    """The run folder is missing, incomplete, or already taken."""

    exit_code = 2


EXIT_PREEMPTED = 75  # sysexits.h EX_TEMPFAIL: stopped on purpose, a later run continues


class Preempted(Exception):
    """Not a mistake: training stopped at a step boundary after SIGUSR1/SIGTERM, with its checkpoint saved
    (dsf_dist/hooks/preemption.py). `message` is the line for the user (rank zero only; None on the other ranks)."""

    exit_code = EXIT_PREEMPTED

    def __init__(self, message: str | None) -> None:
        super().__init__(message or "preempted")
        self.message = message
