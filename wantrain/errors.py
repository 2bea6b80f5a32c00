"""The error a user can fix: the CLI prints its one-line message instead of a traceback."""


class WantrainError(Exception):
    """A problem with the user's input, config or files; the message names the problem and the fix."""
