"""Tasks: built-in groups, table files, expressions, axiom checks, critical sizes, splits."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest

from groklab import science
from groklab.errors import GroklabError
from groklab.tasks import (
    available_tasks,
    check_group_axioms,
    critical_size,
    make_split,
    make_task,
    split_size,
)

BUILTINS = ["Z2", "Z5", "Z12", "Z2xZ3", "Z2xZ2xZ3", "Z4xZ7", "D3", "D4", "D5", "S2", "S3", "S4", "A3", "A4", "A5", "Q8"]


def element_orders(task) -> list[int]:
    t, e = task.table, task.identity
    out = []
    for g in range(task.order):
        x, k = g, 1
        while x != e:
            x, k = t[x, g], k + 1
        out.append(k)
    return sorted(out)


def involutions(task) -> int:
    return element_orders(task).count(2)


def brute_first_violation(t):
    m = len(t)
    for a, b, c in itertools.product(range(m), repeat=3):
        if t[t[a, b], c] != t[a, t[b, c]]:
            return a, b, c
    return None


def raises(fn, *args, **kw) -> str:
    with pytest.raises(GroklabError) as info:
        fn(*args, **kw)
    return str(info.value)


# --- built-in groups -------------------------------------------------------------------------


def test_z5_full_table():
    t = make_task("Z5")
    assert t.table.dtype == np.int64
    assert t.table.tolist() == [[(a + b) % 5 for b in range(5)] for a in range(5)]
    assert t.elements == ("0", "1", "2", "3", "4")
    assert (t.order, t.is_group, t.is_abelian, t.identity) == (5, True, True, 0)
    assert t.inverse.tolist() == [0, 4, 3, 2, 1]
    assert t.valid.all() and t.pairs().tolist() == list(range(25))


@pytest.mark.parametrize("name", BUILTINS)
def test_builtins_are_groups_by_brute_force(name):
    t = make_task(name)
    tab = t.table
    assert tab.shape == (t.order, t.order) and len(t.elements) == t.order == len(set(t.elements))
    if t.order <= 24:
        assert brute_first_violation(tab) is None
    e = t.identity
    assert (tab[e] == np.arange(t.order)).all() and (tab[:, e] == np.arange(t.order)).all()
    assert (tab[np.arange(t.order), t.inverse] == e).all()
    # Latin square: each row and column a permutation.
    assert (np.sort(tab, axis=1) == np.arange(t.order)).all() and (np.sort(tab, axis=0).T == np.arange(t.order)).all()


def test_direct_product_flattening_differs_from_cyclic():
    p, z = make_task("Z2xZ3"), make_task("Z6")
    assert p.is_group and z.is_group and p.is_abelian
    assert not np.array_equal(p.table, z.table)
    # index = x0 + x1*2: index 1 = (1,0), 2 = (0,1), 3 = (1,1)
    assert p.elements == ("(0,0)", "(1,0)", "(0,1)", "(1,1)", "(0,2)", "(1,2)")
    assert p.table[1, 2] == 3 and p.table[1, 1] == 0 and z.table[1, 1] == 2
    assert element_orders(p) == element_orders(z) == [1, 2, 3, 3, 6, 6]  # isomorphic


@pytest.mark.parametrize(
    "name,order,abelian,invol",
    [("D4", 8, False, 5), ("S4", 24, False, 9), ("Q8", 8, False, 1), ("A4", 12, False, 3), ("Z2xZ2xZ3", 12, True, 3),
     ("D3", 6, False, 3), ("S3", 6, False, 3), ("A5", 60, False, 15), ("Z12", 12, True, 1)],
)
def test_group_facts(name, order, abelian, invol):
    t = make_task(name)
    assert (t.order, t.is_abelian, involutions(t)) == (order, abelian, invol)


def test_s3_isomorphic_to_d3_by_element_orders():
    assert element_orders(make_task("S3")) == element_orders(make_task("D3")) == [1, 2, 2, 2, 3, 3]


def test_dihedral_is_composition_of_vertex_maps():
    n = 5
    t = make_task("D5")
    # index k: i -> i + k; index n + k: i -> -(i + k)
    maps = [tuple((i + k) % n for i in range(n)) for k in range(n)] + [tuple(-(i + k) % n for i in range(n)) for k in range(n)]
    for a, b in itertools.product(range(2 * n), repeat=2):
        composed = tuple(maps[a][maps[b][i]] for i in range(n))
        assert maps[t.table[a, b]] == composed
    assert t.elements[:2] == ("r0", "r1") and t.elements[5:7] == ("s r0", "s r1")
    assert t.table[1, 5] == 9  # r∘s = s∘r^-1 = s r4


def test_symmetric_and_alternating_are_lexicographic_compositions():
    s4 = make_task("S4")
    perms = list(itertools.permutations(range(4)))
    assert s4.identity == 0 and s4.elements[1] == "[0 1 3 2]"
    for a, b in [(1, 2), (5, 17), (23, 9)]:
        pa, pb = perms[a], perms[b]
        assert perms[s4.table[a, b]] == tuple(pa[pb[i]] for i in range(4))
    a4 = make_task("A4")
    assert a4.elements == tuple("[" + " ".join(map(str, p)) + "]" for p in perms if sum(
        p[i] > p[j] for i in range(4) for j in range(i + 1, 4)) % 2 == 0)
    assert make_task("S6").order == 720 and make_task("A6").order == 360


def test_quaternion_relations():
    q = make_task("Q8")
    i = {lab: k for k, lab in enumerate(q.elements)}
    assert q.elements == ("1", "-1", "i", "-i", "j", "-j", "k", "-k")
    t = q.table
    assert t[i["i"], i["j"]] == i["k"] and t[i["j"], i["i"]] == i["-k"]
    assert t[i["j"], i["k"]] == i["i"] and t[i["k"], i["i"]] == i["j"]
    assert t[i["i"], i["i"]] == t[i["j"], i["j"]] == t[i["k"], i["k"]] == i["-1"]
    assert q.inverse[i["i"]] == i["-i"] and q.identity == 0


def test_names_case_and_errors():
    assert make_task("z97").name == "Z97" and make_task(" z2xz3 ").name == "Z2xZ3" and make_task("q8").name == "Q8"
    allowed = available_tasks()
    assert raises(make_task, "Foo") == f"--group 'Foo': expected one of {allowed}"
    assert raises(make_task, "Z1") == "--group 'Z1': Z<n> needs n >= 2"
    assert raises(make_task, "S7") == "--group 'S7': S7 has 5040 elements, too large a table; allowed: S2 to S6"
    assert raises(make_task, "A2") == "--group 'A2': A<n> needs 3 <= n <= 6"
    assert raises(make_task, "D2") == "--group 'D2': D<n> needs n >= 3 (D<n> has order 2n)"
    assert raises(make_task, "Z9999").startswith("--group 'Z9999': order 9999 is too large; allowed: at most 4096")
    assert raises(make_task, "Q16").startswith("--group 'Q16': expected one of")


# --- axiom checker ---------------------------------------------------------------------------


def test_axioms_non_associative_exact_message():
    sub = np.array([[(a - b) % 3 for b in range(3)] for a in range(3)])  # subtraction mod 3
    assert raises(check_group_axioms, sub, "table:g.csv") == "table:g.csv is not associative: (0∘0)∘1 = 2 but 0∘(0∘1) = 1"


def test_axioms_first_violation_matches_brute_force():
    t = make_task("Z12").table.copy()
    t[7, 9], t[9, 7] = t[9, 7] + 1, t[7, 9]  # break Z12 at a few entries (stays in range)
    t[7, 9] %= 12
    a, b, c = brute_first_violation(t)
    msg = raises(check_group_axioms, t, "G")
    assert msg == f"G is not associative: ({a}∘{b})∘{c} = {t[t[a, b], c]} but {a}∘({b}∘{c}) = {t[a, t[b, c]]}"


def test_axioms_identity_inverse_range_shape():
    left_zero = np.repeat(np.arange(4)[:, None], 4, axis=1)  # a∘b = a: associative, no identity
    assert raises(check_group_axioms, left_zero, "table:g.csv") == "table:g.csv has no identity element"
    mul4 = np.array([[a * b % 4 for b in range(4)] for a in range(4)])  # monoid: 0 has no inverse
    assert raises(check_group_axioms, mul4, "table:g.csv") == "table:g.csv: element 0 has no inverse"
    z6 = make_task("Z6").table.copy()
    z6[2, 4], z6[3, 5] = 9, -1
    assert raises(check_group_axioms, z6, "table:g.csv") == "table:g.csv: entry T[2, 4] = 9 is outside [0, 6)"
    assert raises(check_group_axioms, np.zeros((3, 4), int), "table:g.csv") == "table:g.csv is not square: shape (3, 4)"
    assert raises(check_group_axioms, np.zeros(3, int), "X") == "X is not a 2-D table: shape (3,)"
    assert raises(check_group_axioms, np.zeros((2, 2)), "X") == "X: entries must be integers, got dtype float64"


# --- table files -----------------------------------------------------------------------------


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_table_files_load(in_tmp):
    s3 = make_task("S3")
    np.save("s3.npy", s3.table)
    (in_tmp / "s3.csv").write_text("\n".join(",".join(map(str, r)) for r in s3.table) + "\n")
    (in_tmp / "s3.json").write_text(json.dumps(s3.table.tolist()))
    labels = ["e", "a", "b", "c", "d", "f"]
    (in_tmp / "s3l.json").write_text(json.dumps({"table": s3.table.tolist(), "elements": labels}))
    for f in ["s3.npy", "s3.csv", "s3.json", "s3l.json"]:
        t = make_task(f"table:{f}")
        assert t.name == f"table:{f}" and np.array_equal(t.table, s3.table)
        assert t.is_group and not t.is_abelian and t.order == 6 and t.table.dtype == np.int64
    assert make_task("table:s3l.json").elements == tuple(labels)
    assert make_task("table:s3.csv").elements == ("0", "1", "2", "3", "4", "5")


def test_table_file_errors(in_tmp):
    assert raises(make_task, "table:g.csv") == f"table:g.csv: file not found ({in_tmp / 'g.csv'})"
    (in_tmp / "g.txt").write_text("0")
    assert raises(make_task, "table:g.txt") == "table:g.txt: unknown file type '.txt'; allowed: .npy, .csv, .json"
    (in_tmp / "bad.npy").write_bytes(b"this is not a numpy file")
    assert raises(make_task, "table:bad.npy").startswith("table:bad.npy: cannot read as .npy (ValueError: ")
    (in_tmp / "rect.csv").write_text("0,1,2,0\n1,2,0,1\n2,0,1,2\n")
    assert raises(make_task, "table:rect.csv") == "table:rect.csv is not square: shape (3, 4)"
    (in_tmp / "range.csv").write_text("0,1,2\n1,2,0\n2,0,7\n")
    assert raises(make_task, "table:range.csv") == "table:range.csv: entry T[2, 2] = 7 is outside [0, 3)"
    (in_tmp / "word.csv").write_text("0,1\n1,one\n")
    assert raises(make_task, "table:word.csv") == "table:word.csv: line 2, column 2: 'one' is not an integer"
    (in_tmp / "ragged.csv").write_text("0,1\n1\n")
    assert raises(make_task, "table:ragged.csv") == "table:ragged.csv: rows have different lengths: row 1 has 1 entries, row 0 has 2"
    (in_tmp / "float.json").write_text("[[0, 1.5], [1, 0]]")
    assert raises(make_task, "table:float.json") == "table:float.json: entry T[0, 1] = 1.5 is not an integer"
    (in_tmp / "broken.json").write_text("[[0, 1], [1,")
    assert raises(make_task, "table:broken.json").startswith("table:broken.json: cannot read as .json (")
    np.save("float.npy", np.zeros((2, 2)))
    assert raises(make_task, "table:float.npy").startswith("table:float.npy: entries must be integers, got dtype float64")
    (in_tmp / "lab.json").write_text(json.dumps({"table": [[0, 1], [1, 0]], "elements": ["e"]}))
    assert raises(make_task, "table:lab.json") == "table:lab.json: 'elements' has 1 labels but the table has 2 rows"
    (in_tmp / "sub.csv").write_text("0,2,1\n1,0,2\n2,1,0\n")  # a - b mod 3
    assert raises(make_task, "table:sub.csv") == "table:sub.csv is not associative: (0∘0)∘1 = 2 but 0∘(0∘1) = 1"


# --- expression tasks ------------------------------------------------------------------------


def test_expr_division_skips_undefined_pairs():
    t = make_task("expr:x/y mod 7")
    assert (t.order, t.is_group, t.is_abelian, t.identity, t.inverse) == (7, False, False, None, None)
    assert (~t.valid).sum() == 7 and not t.valid[:, 0].any() and (t.table[:, 0] == -1).all()
    assert t.table[3, 5] == 3 * pow(5, -1, 7) % 7 == 2
    assert t.pairs().size == 42 and (t.pairs() % 7 != 0).all()


def test_expr_values():
    t = make_task("expr:x**2+y**2 mod 97")
    x, y = np.meshgrid(np.arange(97), np.arange(97), indexing="ij")
    assert np.array_equal(t.table, (x**2 + y**2) % 97) and t.valid.all()
    t = make_task("expr:x*y+1 mod 31")
    assert t.table[30, 30] == (30 * 30 + 1) % 31
    t = make_task("expr:-(x - 3*y)**3 / (x + 1) mod 10")  # composite modulus: x+1 must be a unit
    for a, b in [(0, 1), (2, 7), (4, 3), (9, 9)]:
        ok = math.gcd(a + 1, 10) == 1
        assert t.valid[a, b] == ok
        if ok:
            assert t.table[a, b] == -((a - 3 * b) ** 3) * pow(a + 1, -1, 10) % 10


@pytest.mark.parametrize(
    "name,message",
    [
        ("expr:__import__('os') mod 7", "expr:__import__('os') mod 7: \"__import__('os')\" is not allowed (a function call)"),
        ("expr:x.real mod 7", "expr:x.real mod 7: 'x.real' is not allowed (attribute access)"),
        ("expr:x % y mod 7", "expr:x % y mod 7: 'x % y' is not allowed (an operator other than + - * / **)"),
        ("expr:z+1 mod 7", "expr:z+1 mod 7: 'z' is not allowed (an unknown name; use x and y)"),
        ("expr:x**-1 mod 7", "expr:x**-1 mod 7: '-1' is not allowed (an exponent must be an integer literal in [0, 1000000])"),
        ("expr:x**y mod 7", "expr:x**y mod 7: 'y' is not allowed (an exponent must be an integer literal in [0, 1000000])"),
        ("expr:x/0 mod 7", "expr:x/0 mod 7: the expression is undefined on every pair"),
        ("expr:x+y mod 1", "expr:x+y mod 1: modulus '1' must be an integer >= 2"),
        ("expr:x+y", "expr:x+y: expected 'expr:<expression in x, y> mod <p>', e.g. 'expr:x/y mod 97'"),
    ],
)
def test_expr_rejected_safely(name, message):
    assert raises(make_task, name).startswith(message)


# --- critical sizes --------------------------------------------------------------------------


@pytest.mark.parametrize("m,frac", [(23, 0.375), (41, 0.249), (71, 0.165), (97, 0.130), (127, 0.105)])
def test_critical_fraction_cyclic(m, frac):
    t = make_task(f"Z{m}")
    assert round(critical_size(t) / t.pairs().size, 3) == frac


def test_critical_size_abelian_and_non_group():
    assert critical_size(make_task("Z4xZ7")) == pytest.approx(2.7482 * 28 * math.log(28))
    assert critical_size(make_task("expr:x/y mod 97")) == science.critical_size(97)


@pytest.mark.parametrize("name,d_max", [("S4", 3), ("D5", 2), ("Q8", 2), ("A5", 5)])
def test_critical_size_non_abelian(name, d_max):
    t = make_task(name)
    m = t.order
    assert critical_size(t) == pytest.approx(d_max / 2 * 2.7482 * m * math.log(m))


# --- splits ----------------------------------------------------------------------------------


def test_split_deterministic_and_sized():
    t = make_task("Z23")
    a, b, c = (make_split(t, s, frac=0.3) for s in (0, 0, 1))
    assert a.dtype == np.int64 and np.array_equal(a, b) and not np.array_equal(a, c)
    assert a.size == round(0.3 * 529) == 159 and (np.diff(a) > 0).all()
    assert np.array_equal(a, np.sort(np.random.default_rng(0).permutation(529)[:159]))
    assert make_split(make_task("Z97"), 3, frac=0.3).size == 2823  # docs/formats.md example
    assert make_split(t, 7, n_train=100).size == 100
    assert make_split(t, 7, crit_mult=1.0).size == round(critical_size(t)) == 198


def test_split_only_valid_pairs():
    t = make_task("expr:x/y mod 7")
    s = make_split(t, 2, n_train=20)
    assert s.size == 20 and np.isin(s, t.pairs()).all() and (s % 7 != 0).all()
    assert np.array_equal(s, np.sort(t.pairs()[np.random.default_rng(2).permutation(42)[:20]]))


def test_split_errors():
    z5, z47 = make_task("Z5"), make_task("Z47")
    for f in (0, 1, 1.5, -0.2, float("nan")):
        assert raises(make_split, z5, 0, frac=f) == f"--frac {f if isinstance(f, int) else format(f, 'g')}: must be in (0, 1)"
    assert raises(make_split, z5, 0, frac=0.01) == "--frac 0.01: gives 0 training pairs (Z5 has 25 pairs); allowed: at least 1"
    assert raises(make_split, z5, 0, n_train=0) == "--n-train 0: must be at least 1"
    assert raises(make_split, z5, 0, n_train=2.5) == "--n-train 2.5: must be a whole number of pairs"
    assert raises(make_split, z5, 0, n_train=25) == (
        "--n-train 25: gives 25 training pairs, the whole task (Z5 has 25 pairs); allowed: fewer than 25")
    assert raises(make_split, z5, 0, n_train=30).startswith("--n-train 30: gives 30 training pairs, more than the whole task")
    n = round(40 * critical_size(z47))
    assert raises(make_split, z47, 0, crit_mult=40) == (
        f"--crit-mult 40: gives {n} training pairs, more than the whole task (Z47 has 2209 pairs); "
        f"allowed: fewer than 2209 (--crit-mult below {2209 / critical_size(z47):.3g})")
    assert raises(make_split, z5, 0, crit_mult=0) == "--crit-mult 0: must be > 0"
    assert raises(make_split, z5, 0) == "give one way to size the training set (--frac, --n-train or --crit-mult)"
    assert raises(make_split, z5, 0, frac=0.5, n_train=3) == (
        "--frac and --n-train: give only one way to size the training set (--frac, --n-train or --crit-mult)")
    assert raises(make_split, z5, -1, frac=0.5) == "--seed -1: must be a whole number >= 0"
    assert split_size(z5, n_train=np.int64(24)) == 24
