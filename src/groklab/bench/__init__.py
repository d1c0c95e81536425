"""Benchmarks that print ratios measured in one process (`groklab bench`). Imports every room below cli."""

from groklab.bench.li2 import main, run_bench

__all__ = ["main", "run_bench"]
