"""Rule-variant group tasks: a prompt [rule, a, b] (or [rule, a, b, c]) and its answer chain.

In the spirit of Chu et al. 2025 (arXiv 2501.17161, GeneralPoints: the face cards J/Q/K count as 10
under one rule and as 11/12/13 under the other), two rules share one group G (table T[a, b] = a o b):

    r1 (the group law):       a *1 b = a o b
    r0, "power:k":            a *0 b = a o phi(b),  phi(x) = x^k   (an automorphism of an abelian G
                                                                    when gcd(k, exponent) = 1; checked)
    r0, "relabel:n":          a *0 b = pi(a) o pi(b), pi sends the last n elements M-n..M-1 to M-n-1
                                                     (n "face cards" read as the card below them)

Answers of `hops` steps: y1 = a *r b, and for hops = 2 also y2 = y1 *r c, so the prompt carries
hops + 1 operands and the model writes hops answer tokens; the verifier checks the final one.

Tokens: group elements 0..M-1, then the rule tokens M (r0) and M+1 (r1); vocabulary V = M + 2.
The operand tuples are split once (seeded) into train/held-out, the same tuples for both rules.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from groklab.errors import bad_value
from groklab.tasks import make_task

__all__ = ["RuleTask", "make_rule_task", "rule_tables", "chain_answers"]


def _power_map(table: np.ndarray, e: int, k: int) -> np.ndarray:
    """phi(x) = x^k for every element, by repeated multiplication in the table."""
    out = np.full(table.shape[0], e, dtype=np.int64)
    for _ in range(k):
        out = table[out, np.arange(table.shape[0])]
    return out


def rule_tables(table: np.ndarray, r0: str, identity: int) -> np.ndarray:
    """int64 (2, M, M): [r0 table, r1 table] for the group table `table` (r1 = the table itself)."""
    M = table.shape[0]
    kind, num = r0.split(":")
    n = int(num)
    ar = np.arange(M)
    if kind == "power":
        phi = _power_map(table, identity, n)
        if len(set(phi.tolist())) != M:
            raise bad_value("r0", r0, f"x -> x^{n} is not a bijection of this group; pick k coprime to its exponent")
        # homomorphism: phi(a o b) = phi(a) o phi(b) for all a, b (true for abelian groups)
        if not np.array_equal(phi[table], table[phi[:, None], phi[None, :]]):
            raise bad_value("r0", r0, f"x -> x^{n} is not an automorphism of this (non-abelian) group; use relabel:<n>")
        if np.array_equal(phi, ar):
            raise bad_value("r0", r0, f"x -> x^{n} is the identity map here, so r0 would equal r1")
        t0 = table[ar[:, None], phi[None, :]]
    else:
        if not 1 <= n <= M - 2:
            raise bad_value("r0", r0, f"relabel:<n> needs 1 <= n <= M-2 = {M - 2}")
        pi = ar.copy()
        pi[M - n:] = M - n - 1
        t0 = table[pi[:, None], pi[None, :]]
    return np.stack([t0, table]).astype(np.int64)


def chain_answers(table: np.ndarray, operands: np.ndarray) -> np.ndarray:
    """(N, hops) answers of operands (N, hops+1): y1 = x0 * x1, y_{j+1} = y_j * x_{j+1}."""
    ys, y = [], operands[:, 0]
    for j in range(1, operands.shape[1]):
        y = table[y, operands[:, j]]
        ys.append(y)
    return np.stack(ys, axis=1).astype(np.int64)


@dataclass(frozen=True, eq=False)
class RuleTask:
    """All prompts of both rules: operands (N, hops+1) shared, answers (2, N, hops), a train mask."""

    group: str
    r0: str
    order: int
    hops: int
    tables: np.ndarray = field(repr=False)      # (2, M, M) int64: r0, r1
    operands: np.ndarray = field(repr=False)    # (N, hops+1) int64: every tuple, lexicographic
    answers: np.ndarray = field(repr=False)     # (2, N, hops) int64
    train: np.ndarray = field(repr=False)       # (N,) bool: the base's training tuples (both rules)

    @property
    def vocab(self) -> int:
        return self.order + 2

    @property
    def prompt_len(self) -> int:
        return self.hops + 2

    @property
    def seq_len(self) -> int:
        return self.prompt_len + self.hops

    def rule_token(self, rule: int) -> int:
        return self.order + rule

    def sequences(self, rule: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """int64 (n, T): [rule token, operands..., answers...] of tuples idx under rules `rule` (n,)."""
        rule = np.broadcast_to(np.asarray(rule), idx.shape)
        return np.concatenate([(self.order + rule)[:, None], self.operands[idx], self.answers[rule, idx]], axis=1)

    def differ(self) -> float:
        """Share of prompts whose final answer differs between r0 and r1."""
        return float((self.answers[0, :, -1] != self.answers[1, :, -1]).mean())


def make_rule_task(group: str, r0: str, hops: int, frac: float, split_seed: int) -> RuleTask:
    task = make_task(group)
    if not task.is_group:
        raise bad_value("group", group, "must be a group (Z<n>, D<n>, S<n>, A<n>, Q8, products)")
    M = task.order
    tables = rule_tables(task.table, r0, task.identity)
    grids = np.meshgrid(*[np.arange(M)] * (hops + 1), indexing="ij")
    operands = np.stack([g.ravel() for g in grids], axis=1).astype(np.int64)  # (M^(hops+1), hops+1)
    answers = np.stack([chain_answers(tables[r], operands) for r in (0, 1)])
    N = operands.shape[0]
    n_train = max(1, min(N - 1, int(math.floor(frac * N))))
    perm = np.random.default_rng(split_seed).permutation(N)
    train = np.zeros(N, dtype=bool)
    train[perm[:n_train]] = True
    return RuleTask(task.name, r0, M, hops, tables, operands, answers, train)
