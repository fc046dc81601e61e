"""The one exception type for bad user input (the CLI turns it into one line and exit code 2)."""


class InputError(ValueError):
    """An option, file or array the user supplied is invalid; the message names it and its value."""
