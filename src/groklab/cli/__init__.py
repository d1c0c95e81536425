"""The command line: one module per verb; thin. Nothing else in groklab imports it."""

from groklab.cli.main import build_parser, main

__all__ = ["main", "build_parser"]
