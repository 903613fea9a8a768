"""Errors that the command line turns into one clear line and an exit code."""


class UserError(Exception):
    """Bad input: a configuration, a file or an argument. Exit code 2, no traceback."""

    exit_code = 2


class RunError(Exception):
    """A failure while running that is not the user's input. Exit code 1."""

    exit_code = 1
