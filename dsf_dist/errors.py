"""Errors meant for users: one line that names the thing that is wrong and the fix.

Library code raises these; only the CLI turns them into exit codes (STYLE.md).
"""


class DsfError(Exception):
    """A problem the user can fix. `str(err)` is the whole message shown to them."""

    exit_code = 1


class ConfigError(DsfError):
    """A bad config file, key, value or override; refused before anything is written."""

    exit_code = 2


class RunFolderError(DsfError):
    """The run folder is missing, incomplete, or already taken."""

    exit_code = 2
