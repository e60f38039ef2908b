"""One exception type for every user-facing failure, so the CLI can print one line instead of a traceback."""


class HanzooError(Exception):
    """A problem with user input, a file or a model id. The message names the problem."""
