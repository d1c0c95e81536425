"""The tree is the architecture: rooms by purpose, imports only pointing down, no cycles.

Reads every import of the package with `ast` (module level and inside functions alike) and holds it
against the layer table below. Adding an upward or sideways import, or a cycle, fails here with the
offending file, line and import named.
"""

from __future__ import annotations

import ast
import sys
import tomllib
from pathlib import Path

import pytest

import groklab

PKG = Path(groklab.__file__).parent
ROOT = PKG.parent.parent

# Rooms, bottom (0) to top. A module may import from its own room or from a room of a LOWER rank;
# rooms of equal rank may not import each other. "face" is groklab/__init__.py (the public API).
LAYERS: dict[str, int] = {
    "errors": 0, "science": 0,
    "theory": 1,      # irreducible representations, Li2 energy / G_F: pure math on tables
    "tasks": 2,       # groups, tables, splits (uses theory for irrep degrees)
    "models": 3,      # Li2Net, pair layer, transformer, embed-MLP
    "train": 4,       # config, the one training loop, optimizers, losses, tricks, run folders, API
    "attention": 5, "posttrain": 5, "superposition": 5,  # Tian's other feature-learning systems
    "analysis": 6,    # measures over training, stages, progress, replay
    "sweep": 7,       # specs, planning, executors, store, scaling fits
    "report": 8,      # HTML / PNG pages
    "bench": 9,       # benchmarks
    "cli": 10,        # the verbs; nothing imports it
    "face": 11,
}
TOP_LEVEL_FILES = {"__init__.py", "errors.py", "science.py"}


def room_of(module: str) -> str:
    parts = module.split(".")
    if parts == ["groklab"]:
        return "face"
    return parts[1]


def module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def is_module(name: str) -> bool:
    p = PKG.parent / Path(*name.split("."))
    return p.with_suffix(".py").exists() or (p / "__init__.py").exists()


def groklab_imports(path: Path) -> list[tuple[int, str, str]]:
    """(line, imported module, source text) for every import of a groklab module in `path`.
    `from groklab.x import y` counts as importing groklab.x.y when y is a submodule, else groklab.x."""
    tree = ast.parse(path.read_text(), filename=str(path))
    me = module_name(path)
    pkg = me if path.name == "__init__.py" else me.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "groklab":
                    out.append((node.lineno, a.name, ast.unparse(node)))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")[: len(pkg.split(".")) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.split(".")[0] != "groklab":
                continue
            for a in node.names:
                sub = f"{mod}.{a.name}"
                out.append((node.lineno, sub if is_module(sub) else mod, ast.unparse(node)))
    return out


def all_modules() -> list[Path]:
    return sorted(p for p in PKG.rglob("*.py"))


def layer_violations() -> list[str]:
    bad = []
    for path in all_modules():
        me = module_name(path)
        mine = room_of(me)
        for line, target, text in groklab_imports(path):
            theirs = room_of(target)
            if theirs == mine:
                continue
            if LAYERS[theirs] >= LAYERS[mine]:
                bad.append(f"{path.relative_to(ROOT)}:{line}: `{text}` imports room '{theirs}' (rank {LAYERS[theirs]}) "
                           f"from room '{mine}' (rank {LAYERS[mine]}): imports must point down")
    return bad


def cycles() -> list[list[str]]:
    """Strongly connected components of more than one module in the import graph (Tarjan)."""
    graph = {module_name(p): sorted({t for _, t, _ in groklab_imports(p) if t != module_name(p)}) for p in all_modules()}
    index, low, on, stack, comps, counter = {}, {}, set(), [], [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, []):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return comps


def test_every_room_is_in_the_layer_table():
    rooms = {p.name for p in PKG.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert rooms <= set(LAYERS), f"rooms missing from the layer table: {sorted(rooms - set(LAYERS))}"
    files = {p.name for p in PKG.glob("*.py")}
    assert files == TOP_LEVEL_FILES, f"module-level files beyond the package face, errors and science: {sorted(files - TOP_LEVEL_FILES)}"


def test_imports_point_down():
    bad = layer_violations()
    assert not bad, "upward or sideways imports:\n" + "\n".join(bad)


def test_no_import_cycles():
    comps = cycles()
    assert not comps, "import cycles: " + "; ".join(" <-> ".join(c) for c in comps)


def test_the_guard_catches_an_upward_import(tmp_path, monkeypatch):
    """The checker must be able to say no: a train module importing cli, and a two-module cycle, are found."""
    fake = tmp_path / "groklab"
    for room in ("train", "cli"):
        (fake / room).mkdir(parents=True)
        (fake / room / "__init__.py").write_text("")
    (fake / "__init__.py").write_text("")
    (fake / "train" / "engine.py").write_text("def f():\n    from groklab.cli.main import main\n")
    (fake / "cli" / "main.py").write_text("from groklab.train import engine\nfrom groklab.cli import other\n")
    (fake / "cli" / "other.py").write_text("from groklab.cli.main import x\n")
    monkeypatch.setattr(sys.modules[__name__], "PKG", fake)
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    bad = layer_violations()
    assert len(bad) == 1 and "groklab/train/engine.py:2" in bad[0] and "room 'cli'" in bad[0]
    assert cycles() == [["groklab.cli.main", "groklab.cli.other", "groklab.train.engine"]]


def test_version_matches_pyproject():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert groklab.__version__ == meta["project"]["version"]


@pytest.mark.parametrize("room", sorted(r for r in LAYERS if r not in ("errors", "science", "face")))
def test_room_has_a_docstring_face(room):
    init = PKG / room / "__init__.py"
    if not init.exists():
        pytest.skip(f"room {room} not present yet")
    assert ast.get_docstring(ast.parse(init.read_text())), f"{init} needs a docstring saying what lives there"
