"""The one exception type for bad user input (the CLI turns it into one line and exit code 2)."""


class InputError(ValueError):
    """An option, file or array the user supplied is invalid; the message names it and its value.

    Attributes:
      argument: the library argument the message is about (e.g. "n_train"), or None. Messages
        raised with one start with "<argument>: "; the CLI writes the matching flag instead
        (`--n-train: ...`).
    """

    def __init__(self, message: str, *, argument: str | None = None):
        super().__init__(message)
        self.argument = argument


class NumericalError(InputError):
    """A solve returned non-finite values; the message names the affected deletion.

    A subclass of InputError so the CLI reports it in one line with exit code 2: on valid input
    it points at settings (l2, dtype) the user can change.
    """
