"""The numbers that describe the science, in one place, each with its source.

See shared/science.md (cited as "science.md §N") and the papers it names:
Li2 = Y. Tian, arXiv 2509.21519 (v5); the original code is facebookresearch/luckmatters,
ssl/real-dataset/cogo/modular_addition_simple2.py.
"""

from __future__ import annotations

import math

# The groklab version stamped into every file it writes (config.json, plan.json, report pages), so a
# reader knows which code made a result. Equal to pyproject.toml's version (tests/test_layout.py checks it).
VERSION = "0.1.0"

# Accuracy thresholds that define the grokking times written to summary.json.
MEMORIZED_ACC = 0.99  # step_memorized: first evaluation with train accuracy >= this
GENERALIZED_ACC = 0.99  # step_generalized: first evaluation with test accuracy >= this

# The original code's critical ratio (science.md §4):
#   test_size = 1 - corr * ln(M)/M * (2.7482 - delta)  =>  n_c = corr * 2.7482 * M * ln M.
# 2.7482 is empirical: the code gives no derivation, and the constant moves with the recipe
# (another group measured ~6.08 with AdamW, wd 1e-3, K 2048). groklab's sweeps measure it.
CRITICAL_CONST = 2.7482


def critical_corr(is_abelian: bool, d_max: int) -> float:
    """The group correction of the critical size (science.md §4).

    1 for abelian groups; d_max / 2 for non-abelian ones (the original code's rule, which it
    applies to its catalogue groups; groklab applies it to every non-abelian group). Li2 Thm 4
    suggests d_max**2 instead; the sweeps decide. The rule used is recorded in each run.
    """
    return 1.0 if is_abelian else d_max / 2.0


CRITICAL_RULE = "n_c = corr * 2.7482 * M * ln(M); corr = 1 (abelian) or d_max/2 (non-abelian)"


def critical_size(order: int, is_abelian: bool = True, d_max: int = 1) -> float:
    """Li2 critical number of training pairs n_c for a group of order M (science.md §4)."""
    if order < 2:
        raise ValueError(f"group order must be >= 2, got {order}")
    return critical_corr(is_abelian, d_max) * CRITICAL_CONST * order * math.log(order)
