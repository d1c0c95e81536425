"""User-facing errors.

Every mistake a user can make (a bad option, a corrupt file, a folder that is not a run) raises
`GroklabError` with a one-line message that names the field, the value received and what is
allowed. The CLI prints that line to stderr and exits with status 2; no traceback.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["GroklabError", "bad_value", "check"]


class GroklabError(ValueError):
    """A problem with the user's input. ``str(err)`` is one line, fit to print as it is."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message.replace("\n", " "))
        self.field = field


def _show(value: Any) -> str:
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def bad_value(field: str, value: Any, allowed: str) -> GroklabError:
    """The standard message: ``--frac 1.5: must be in (0, 1)``.

    ``field`` is written as the command-line option (underscores become dashes) so the user can
    find it; the same name is the config field, so API users recognise it too.
    """
    name = field if field.startswith(("-", "table:", "expr:")) or " " in field else "--" + field.replace("_", "-")
    return GroklabError(f"{name} {_show(value)}: {allowed}", field=field)


def check(ok: bool, field: str, value: Any, allowed: str) -> None:
    """Raise `bad_value(field, value, allowed)` unless ``ok``."""
    if not ok:
        raise bad_value(field, value, allowed)


def one_of(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    """Check that `value` is one of `allowed`; the message lists them."""
    check(value in allowed, name, value, "expected one of " + ", ".join(allowed))


def number_in(name: str, value: Any, *, lo: float | None = None, hi: float | None = None,
              lo_open: bool = False, hi_open: bool = False, integer: bool = False, optional: bool = False) -> None:
    """Check a number against an interval; the message states the interval in math notation."""
    if value is None:
        check(optional, name, value, "a value is required")
        return
    kind = "an integer" if integer else "a number"
    ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    check(ok_type and not isinstance(value, bool), name, value, f"must be {kind}")
    check(math.isfinite(value), name, value, "must be finite")
    if lo is not None and hi is not None:
        span = f"must be in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
    elif lo is not None:
        span = f"must be {'>' if lo_open else '>='} {lo:g}"
    else:
        span = f"must be {'<' if hi_open else '<='} {hi:g}"
    if lo is not None:
        check(value > lo if lo_open else value >= lo, name, value, span)
    if hi is not None:
        check(value < hi if hi_open else value <= hi, name, value, span)
