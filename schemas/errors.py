"""The one error type a user should see as a one-line message (bad path, unreadable format, bad flag)."""


class MedmillError(Exception):
    """An error caused by the user's input or settings; the CLI prints it on one line and exits 2."""
