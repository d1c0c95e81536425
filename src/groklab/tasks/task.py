"""Tasks (an M×M table T[a, b] = a∘b with a name) and seeded train/test splits.

Names (`make_task`): ``Z97``; ``Z2xZ3xZ4`` (direct products); ``D5`` (dihedral, order 2n);
``S4`` / ``A5`` (n ≤ 6); ``Q8``; ``table:FILE`` (.npy, .csv or .json Cayley table of a group);
``expr:x**2+y**2 mod 97`` (a non-group operation on 0..p-1). Group names are case-insensitive
(``z97`` is ``Z97``). Every group table, built-in or loaded, passes `check_group_axioms`.

>>> t = make_task("Z5")
>>> t.table[3, 4], t.order, t.is_abelian
(np.int64(2), 5, True)
>>> make_split(t, seed=0, n_train=3)
array([ 4, 10, 19])
"""

from __future__ import annotations

import ast
import json
import math
import numbers
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from groklab import science
from groklab.errors import GroklabError, bad_value, check
from groklab.tasks import groups
from groklab.tasks.groups import check_group_axioms

__all__ = [
    "MAX_ORDER",
    "Task",
    "available_tasks",
    "check_group_axioms",
    "critical_size",
    "make_split",
    "make_task",
    "split_size",
]

# The M×M table and all M² pairs (and the one-hot network's M×M logits per pair) live in memory,
# so orders are capped; 4096 gives a 134 MB int64 table and 16.8 M pairs.
MAX_ORDER = 4096
MAX_PERM_DEGREE = 6  # S6 has 720 elements; S7 (5040) would exceed MAX_ORDER


@dataclass(frozen=True, eq=False)
class Task:
    """One task: ``table[a, b] = a∘b`` on the elements 0..M-1.

    ``table`` is int64 ``[M, M]`` with entries in [0, M), or -1 where the operation is undefined
    (expression tasks only, e.g. ``x/y`` at y ≡ 0). ``is_abelian`` is False for non-groups.
    """

    name: str
    table: np.ndarray = field(repr=False)
    order: int
    is_group: bool
    is_abelian: bool
    elements: tuple[str, ...] = field(repr=False)

    @cached_property
    def valid(self) -> np.ndarray:
        """bool [M, M]: the pairs that belong to the task (all True for groups)."""
        return self.table >= 0

    def pairs(self) -> np.ndarray:
        """int64 [P]: flat indices a*M + b of the valid pairs, ascending."""
        return np.flatnonzero(self.valid).astype(np.int64)

    @property
    def n_pairs(self) -> int:
        """P, the number of valid pairs (M² for groups)."""
        return int(self.valid.sum())

    @cached_property
    def identity(self) -> int | None:
        """Index of the identity element (groups), else None."""
        return groups.identity_of(self.table) if self.is_group else None

    @cached_property
    def inverse(self) -> np.ndarray | None:
        """int64 [M]: inverse[g] (groups), else None."""
        return groups.inverse_of(self.table, self.identity) if self.is_group else None

    @cached_property
    def _d_max(self) -> int:
        """Largest irreducible-representation degree (1 for abelian groups)."""
        if self.is_abelian:
            return 1
        from groklab.theory.reps import (
            irrep_dimensions,  # lazy: numerical, only when needed
        )

        return int(max(irrep_dimensions(self.table)))


def available_tasks() -> str:
    """The accepted name forms, for error messages."""
    return (
        "Z<n>, Z<a>xZ<b>[xZ<c>...], D<n>, S<n> or A<n> (n <= 6), Q8, table:<file.npy|.csv|.json>, "
        "'expr:<expression in x, y> mod <p>' (e.g. Z97, Z4xZ7, D5, S4, 'expr:x/y mod 97')"
    )


def make_task(name: str) -> Task:
    """Build and validate the task called `name` (see the module docstring for the forms)."""
    if not isinstance(name, str):
        raise bad_value("group", name, "expected one of " + available_tasks())
    text = name.strip()
    low = text.lower()
    if low.startswith("table:"):
        return _table_task("table:" + text[6:].strip())
    if low.startswith("expr:"):
        return _expr_task("expr:" + text[5:].strip())
    key = re.sub(r"\s+", "", low)
    if m := re.fullmatch(r"z(\d+)", key):
        n = _param(name, "Z", int(m[1]), 2, None, "Z<n> needs n >= 2")
        return _group_task(f"Z{n}", *groups.cyclic(n))
    if re.fullmatch(r"z\d+(xz\d+)+", key):
        orders = [int(o) for o in re.findall(r"\d+", key)]
        if min(orders) < 2:
            raise bad_value("group", name, "every factor Z<n> of a direct product needs n >= 2")
        _check_order(name, math.prod(orders))
        return _group_task("x".join(f"Z{o}" for o in orders), *groups.direct_product(orders))
    if m := re.fullmatch(r"d(\d+)", key):
        n = _param(name, "D", int(m[1]), 3, None, "D<n> needs n >= 3 (D<n> has order 2n)")
        _check_order(name, 2 * n)
        return _group_task(f"D{n}", *groups.dihedral(n))
    if m := re.fullmatch(r"([sa])(\d+)", key):
        kind, lo = m[1].upper(), (2 if m[1] == "s" else 3)
        n = _param(name, kind, int(m[2]), lo, MAX_PERM_DEGREE, f"{kind}<n> needs {lo} <= n <= 6")
        build = groups.symmetric if kind == "S" else groups.alternating
        return _group_task(f"{kind}{n}", *build(n))
    if key == "q8":
        return _group_task("Q8", *groups.quaternion())
    raise bad_value("group", name, "expected one of " + available_tasks())


def _param(name: str, kind: str, n: int, lo: int, hi: int | None, need: str) -> int:
    if n < lo:
        raise bad_value("group", name, need)
    if hi is not None and n > hi:
        size = math.factorial(n) // (1 if kind == "S" else 2)
        raise bad_value(
            "group", name, f"{kind}{n} has {size} elements, too large a table; allowed: {kind}{lo} to {kind}{hi}"
        )
    _check_order(name, n)
    return n


def _check_order(name: str, m: int) -> None:
    if m > MAX_ORDER:
        raise bad_value(
            "group", name, f"order {m} is too large; allowed: at most {MAX_ORDER} elements (tables are held in memory)"
        )


def _group_task(name: str, table: np.ndarray, labels: tuple[str, ...]) -> Task:
    check_group_axioms(table, name)
    table = np.ascontiguousarray(table, dtype=np.int64)
    abelian = bool(np.array_equal(table, table.T))
    return Task(name, table, table.shape[0], True, abelian, tuple(labels))


# ---------------------------------------------------------------------------------------------
# table:<file>


def _fail(name: str, problem: str) -> GroklabError:
    return GroklabError(f"{name}: {problem}", field="group")


def _table_task(name: str) -> Task:
    """Load a group's Cayley table from .npy, .csv (integers, no header) or .json."""
    path = Path(name[len("table:") :]).expanduser()
    ext = path.suffix.lower()
    if ext not in (".npy", ".csv", ".json"):
        raise _fail(name, f"unknown file type {ext or '(none)'!r}; allowed: .npy, .csv, .json")
    if not path.exists():
        raise _fail(name, f"file not found ({path.resolve()})")
    if not path.is_file():
        raise _fail(name, "is not a file")
    labels = None
    try:
        if ext == ".npy":
            table = np.load(path, allow_pickle=False)
        else:
            text = path.read_text(encoding="utf-8")
    except Exception as e:  # corrupt files raise many types (ValueError, OSError, EOFError, ...)
        raise _fail(name, f"cannot read as {ext} ({type(e).__name__}: {e})") from None
    if ext == ".csv":
        table = _rows_to_array(name, _parse_csv(name, text))
    elif ext == ".json":
        rows, labels = _parse_json(name, text)
        table = _rows_to_array(name, rows)
    if table.dtype.kind not in "iu":
        raise _fail(name, f"entries must be integers, got dtype {table.dtype} (save it with .astype(int))")
    if table.ndim == 2 and table.shape[0] == table.shape[1]:
        _check_order(name, table.shape[0])
    check_group_axioms(table, name)
    m = table.shape[0]
    if m < 2:
        raise _fail(name, "has 1 element; allowed: at least 2")
    if labels is not None and len(labels) != m:
        raise _fail(name, f"'elements' has {len(labels)} labels but the table has {m} rows")
    if labels is not None and len(set(labels)) != m:
        raise _fail(name, "'elements' labels must be distinct")
    return _group_task(name, table, tuple(labels) if labels else tuple(str(i) for i in range(m)))


def _parse_csv(name: str, text: str) -> list[list[int]]:
    rows = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        row = []
        for col, cell in enumerate(line.split(","), 1):
            try:
                row.append(int(cell.strip()))
            except ValueError:
                raise _fail(name, f"line {lineno}, column {col}: {cell.strip()!r} is not an integer") from None
        rows.append(row)
    return rows


def _parse_json(name: str, text: str) -> tuple[list, list[str] | None]:
    try:
        data = json.loads(text)
    except ValueError as e:
        raise _fail(name, f"cannot read as .json ({e})") from None
    labels = None
    if isinstance(data, dict):
        if "table" not in data:
            raise _fail(name, "a JSON object needs a 'table' key: {\"table\": [[...]], \"elements\": [...]}")
        if "elements" in data:
            if not isinstance(data["elements"], list):
                raise _fail(name, "'elements' must be a list of labels")
            labels = [str(e) for e in data["elements"]]
        data = data["table"]
    if not isinstance(data, list) or not all(isinstance(r, list) for r in data):
        raise _fail(name, "expected a list of rows (lists of integers) or {\"table\": [[...]], \"elements\": [...]}")
    for i, row in enumerate(data):
        for j, v in enumerate(row):
            if isinstance(v, bool) or not isinstance(v, int):
                raise _fail(name, f"entry T[{i}, {j}] = {json.dumps(v)} is not an integer")
    return data, labels


def _rows_to_array(name: str, rows: list[list[int]]) -> np.ndarray:
    lengths = [len(r) for r in rows]
    if lengths and min(lengths) != max(lengths):
        i = next(i for i, n in enumerate(lengths) if n != lengths[0])
        raise _fail(name, f"rows have different lengths: row {i} has {lengths[i]} entries, row 0 has {lengths[0]}")
    try:
        return np.array(rows, dtype=np.int64).reshape(len(rows), lengths[0] if rows else 0)
    except OverflowError:  # an entry beyond int64: certainly outside [0, M)
        i, j, v = next((i, j, v) for i, r in enumerate(rows) for j, v in enumerate(r) if abs(v) >= 2**63)
        raise _fail(name, f"entry T[{i}, {j}] = {v} is outside [0, {len(rows)})") from None


# ---------------------------------------------------------------------------------------------
# expr:<expression> mod <p>

_EXPR_ALLOWED = "allowed: x, y, integer constants, + - * / **, unary -, parentheses"
_MAX_EXPONENT = 10**6
_NODE_KIND = {
    ast.Call: "a function call",
    ast.Attribute: "attribute access",
    ast.Subscript: "indexing",
    ast.Name: "an unknown name; use x and y",
    ast.Constant: "a non-integer constant",
    ast.BinOp: "an operator other than + - * / **",
    ast.UnaryOp: "a unary operator other than -",
}


def _expr_task(name: str) -> Task:
    """A non-group task T[x, y] = f(x, y) mod p; pairs where f is undefined (x/0) are left out.

    The expression is parsed with `ast` and evaluated by a whitelist walker (never `eval`):
    division multiplies by the modular inverse; ``**`` takes a non-negative integer literal.
    """
    m = re.fullmatch(r"expr:(.*\S)\s+mod\s+(\S+)", name, flags=re.S)
    if not m:
        raise _fail(name, "expected 'expr:<expression in x, y> mod <p>', e.g. 'expr:x/y mod 97'")
    source, p_text = m[1].strip(), m[2]
    if not p_text.isdigit() or int(p_text) < 2:
        raise _fail(name, f"modulus {p_text!r} must be an integer >= 2")
    p = int(p_text)
    _check_order(name, p)
    if len(source) > 1000:
        raise _fail(name, "expression longer than 1000 characters")
    try:
        tree = ast.parse(source, mode="eval")
    except (SyntaxError, ValueError) as e:
        raise _fail(name, f"cannot parse {source!r} ({getattr(e, 'msg', e)}); {_EXPR_ALLOWED}") from None
    x, y = np.arange(p, dtype=np.int64)[:, None], np.arange(p, dtype=np.int64)[None, :]
    try:
        value, undefined = _Evaluator(name, source, p, x, y).eval(tree.body)
    except RecursionError:
        raise _fail(name, "expression nested too deeply") from None
    table = np.broadcast_to(value % p, (p, p)).astype(np.int64)
    table[np.broadcast_to(undefined, (p, p))] = -1
    if (table < 0).all():
        raise _fail(name, "the expression is undefined on every pair")
    return Task(name, table, p, False, False, tuple(str(i) for i in range(p)))


class _Evaluator:
    """Evaluate a whitelisted expression on arrays mod p; returns (value, undefined mask)."""

    def __init__(self, name: str, source: str, p: int, x: np.ndarray, y: np.ndarray):
        self.name, self.source, self.p, self.x, self.y = name, source, p, x, y
        self.inv = np.array([pow(v, -1, p) if math.gcd(v, p) == 1 else -1 for v in range(p)], dtype=np.int64)

    def reject(self, node: ast.AST, why: str | None = None) -> GroklabError:
        seg = ast.get_source_segment(self.source, node) or type(node).__name__
        why = why or _NODE_KIND.get(type(node), f"a {type(node).__name__} expression")
        return _fail(self.name, f"{seg!r} is not allowed ({why}); {_EXPR_ALLOWED}")

    def eval(self, node: ast.AST):
        p = self.p
        if isinstance(node, ast.Name) and node.id in ("x", "y"):
            return (self.x if node.id == "x" else self.y), False
        if isinstance(node, ast.Constant) and type(node.value) is int:
            return np.int64(node.value % p), False
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            v, u = self.eval(node.operand)
            return (-v % p if isinstance(node.op, ast.USub) else v), u
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
            e = node.right
            if not (isinstance(e, ast.Constant) and type(e.value) is int and 0 <= e.value <= _MAX_EXPONENT):
                raise self.reject(e, f"an exponent must be an integer literal in [0, {_MAX_EXPONENT}]")
            base, u = self.eval(node.left)
            result, k = np.ones_like(base), e.value
            while k:  # square and multiply, reducing mod p at each step (no overflow: p² < 2^63)
                if k & 1:
                    result = result * base % p
                base, k = base * base % p, k >> 1
            return result, u
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub, ast.Mult, ast.Div)):
            (a, ua), (b, ub) = self.eval(node.left), self.eval(node.right)
            undefined = ua | ub
            if isinstance(node.op, ast.Add):
                return (a + b) % p, undefined
            if isinstance(node.op, ast.Sub):
                return (a - b) % p, undefined
            if isinstance(node.op, ast.Div):  # a * b^-1; undefined where b has no inverse mod p
                inv = self.inv[b]
                undefined = undefined | (inv < 0)
                b = np.maximum(inv, 0)
            return a * b % p, undefined
        raise self.reject(node)


# ---------------------------------------------------------------------------------------------
# Critical size and splits


def critical_size(task: Task) -> float:
    """Li2 critical number of training pairs n_c = corr · 2.7482 · M · ln M (science.md §4).

    corr = 1 for abelian groups and non-groups, d_max/2 for non-abelian groups (d_max = largest
    irrep degree, from `groklab.theory.reps`); see `groklab.science.CRITICAL_RULE`.
    """
    if not task.is_group:
        return science.critical_size(task.order, True, 1)
    return science.critical_size(task.order, task.is_abelian, task._d_max)


_SIZE_OPTIONS = ("frac", "n_train", "crit_mult")


def _opt(field_name: str) -> str:
    return "--" + field_name.replace("_", "-")


def split_size(task: Task, *, frac=None, n_train=None, crit_mult=None) -> int:
    """The number N of training pairs that exactly one of frac / n_train / crit_mult asks for.

    frac F: N = round(F·P); crit_mult C: N = round(C · critical_size(task)). 1 ≤ N < P, where
    P = number of valid pairs, else `GroklabError` naming the option.
    """
    given = {k: v for k, v in zip(_SIZE_OPTIONS, (frac, n_train, crit_mult)) if v is not None}
    if len(given) != 1:
        names = " and ".join(_opt(k) for k in given) + ": give only one" if given else "give one"
        raise GroklabError(f"{names} way to size the training set (--frac, --n-train or --crit-mult)", field="frac")
    (key, value), p = next(iter(given.items())), task.n_pairs
    real = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if key == "frac":
        check(real and 0 < value < 1, "frac", value, "must be in (0, 1)")
        n = round(value * p)
    elif key == "crit_mult":
        check(real and 0 < value < math.inf, "crit_mult", value, "must be > 0")
        n = round(value * critical_size(task))
    else:
        check(real and float(value).is_integer(), "n_train", value, "must be a whole number of pairs")
        n = int(value)
        check(n >= 1, "n_train", value, "must be at least 1")
    if n < 1:
        raise bad_value(key, value, f"gives 0 training pairs ({task.name} has {p} pairs); allowed: at least 1")
    if n >= p:
        whole = "the whole task" if n == p else "more than the whole task"
        allowed = f"fewer than {p}"
        if key == "crit_mult":
            allowed += f" (--crit-mult below {p / critical_size(task):.3g})"
        raise bad_value(key, value, f"gives {n} training pairs, {whole} ({task.name} has {p} pairs); allowed: {allowed}")
    return n


def make_split(task: Task, seed: int, *, frac=None, n_train=None, crit_mult=None) -> np.ndarray:
    """Sorted int64 flat indices (a*M + b) of the training pairs; the rest of `task.pairs()` is test.

    Training set = the valid pairs at ``np.random.default_rng(seed).permutation(P)[:N]``, sorted;
    N from `split_size`.
    """
    ok = isinstance(seed, numbers.Integral) and not isinstance(seed, bool) and seed >= 0
    check(ok, "seed", seed, "must be a whole number >= 0")
    n = split_size(task, frac=frac, n_train=n_train, crit_mult=crit_mult)
    pairs = task.pairs()
    return np.sort(pairs[np.random.default_rng(int(seed)).permutation(pairs.size)[:n]])
