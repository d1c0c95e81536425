"""groklab: a laboratory for grokking on finite groups, with the Li2 theory alongside."""

__version__ = "0.1.0"
