"""One exception type for every input problem a user can fix; the CLI prints it as one line."""


class MLFFDError(Exception):
    """A clear, user-facing error (bad input, wrong file, unknown element...)."""
