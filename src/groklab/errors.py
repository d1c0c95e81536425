"""User-facing errors.

Every mistake a user can make (a bad option, a corrupt file, a folder that is not a run) raises
`GroklabError` with a one-line message that names the field, the value received and what is
allowed. The CLI prints that line to stderr and exits with status 2; no traceback.
"""

from __future__ import annotations

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
