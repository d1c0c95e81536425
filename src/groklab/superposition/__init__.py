"""Continuous thoughts on graph reachability ("Reasoning by Superposition", arXiv 2505.12514).

- `construction`: the paper's hand-built 2-layer transformer with explicit weights (float64);
  thought c is exactly the normalised superposition of the nodes reachable within c steps.
- `graphs`: reachability problems and breadth-first sets, independent of any model.
- `data`, `model`, `coconut`, `probes`, `run`: a CPU-scale Coconut training with discrete-CoT and
  no-CoT baselines, and the paper's probes of the trained thoughts.
"""

from groklab.superposition.construction import Construction, ConstructionConfig
from groklab.superposition.graphs import Problem, distances, random_problem, reachable_within

__all__ = ["Construction", "ConstructionConfig", "Problem", "distances", "random_problem", "reachable_within"]
