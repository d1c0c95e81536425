"""The task's config: which table to learn and how to split it (science.md §1). Validated at construction."""

from __future__ import annotations

from dataclasses import dataclass

from groklab.errors import GroklabError, check, number_in

__all__ = ["TaskConfig"]


@dataclass(frozen=True)
class TaskConfig:
    """Which table to learn and how to split it (science.md §1).

    Exactly one of `frac`, `n_train`, `crit_mult` sets the training-set size; with none given,
    `frac` = 0.3 (the original code's test_size 0.7). `split_seed` None means each ensemble member
    draws its split from its own seed, as the original code does (train_test_split(random_state=seed)).
    """

    group: str = "Z97"
    frac: float | None = None
    n_train: int | None = None
    crit_mult: float | None = None
    split_seed: int | None = None

    def __post_init__(self) -> None:
        check(isinstance(self.group, str) and self.group.strip() != "", "group", self.group, "must be a task name such as Z97, S4, D5, Q8, table:FILE or 'expr:x/y mod 97'")
        given = [n for n in ("frac", "n_train", "crit_mult") if getattr(self, n) is not None]
        if len(given) > 1:
            raise GroklabError(f"--{given[0].replace('_', '-')} and --{given[1].replace('_', '-')}: give only one way to size the training set (--frac, --n-train or --crit-mult)", field=given[1])
        if not given:
            object.__setattr__(self, "frac", 0.3)
        number_in("frac", self.frac, lo=0, hi=1, lo_open=True, hi_open=True, optional=True)
        number_in("n_train", self.n_train, lo=1, integer=True, optional=True)
        number_in("crit_mult", self.crit_mult, lo=0, lo_open=True, optional=True)
        number_in("split_seed", self.split_seed, lo=0, integer=True, optional=True)
