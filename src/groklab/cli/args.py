"""Argument helpers shared by the verbs: the one-line-error parser and the seed-list type."""

from __future__ import annotations

import argparse

from groklab.errors import GroklabError

__all__ = ["Parser", "seeds_arg"]


class Parser(argparse.ArgumentParser):
    """argparse that reports a usage error in one line (and exit 2), like every groklab error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise GroklabError(f"{self.prog}: {message} (see {self.prog} --help)")


def seeds_arg(text: str) -> tuple[int, ...]:
    """'0,1,2' or '0-7' -> seeds."""
    try:
        if "-" in text.strip("-") and "," not in text:
            lo, hi = text.split("-")
            return tuple(range(int(lo), int(hi) + 1))
        return tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of integers like 0,1,2 or 0-7") from None
