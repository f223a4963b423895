"""The one exception the lab raises for everything an operator or a test should read."""


class LabError(RuntimeError):
    """The lab could not do what was asked; the message says what, where, and which log."""
