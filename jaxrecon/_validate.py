"""Argument checks shared by every layer: one line naming the argument and its value.

Each check raises `errors.InputError(f"{argument}: ...", argument=argument)` before anything is
traced; the CLI maps library argument names to its flags (`n_train` -> `--n-train`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from jaxrecon.errors import InputError


def fail(argument: str, message: str) -> InputError:
    """The error for `argument`: "<argument>: <message>"."""
    return InputError(f"{argument}: {message}", argument=argument)


def choice(argument: str, value: Any, allowed: Iterable[str]) -> None:
    """`value` must be one of `allowed`."""
    allowed = list(allowed)
    if value not in allowed:
        raise fail(argument, f"unknown value {value!r}; choose from {', '.join(allowed)}")


def integer(argument: str, value: Any, *, minimum: int, maximum: int | None = None) -> None:
    """`value` must be an integer (Python or NumPy, not a bool) in [minimum, maximum]."""
    ok = isinstance(value, int | np.integer) and not isinstance(value, bool)
    if not ok or value < minimum or (maximum is not None and value > maximum):
        bound = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        raise fail(argument, f"must be an integer {bound}, got {value!r}")


def positive(argument: str, value: Any, *, why: str = "") -> None:
    """`value` must be a finite real number > 0."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not math.isfinite(number) or number <= 0:
        reason = f" ({why})" if why else ""
        raise fail(argument, f"must be a finite number > 0{reason}, got {value!r}")
