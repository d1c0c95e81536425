"""The `superposition` verb: continuous thoughts on graph reachability (arXiv 2505.12514).

    groklab superposition construct --n-max 12 --position rope --graphs 200     # the exact construction
    groklab superposition train --out runs/sp --steps 1500                      # Coconut vs CoT vs no CoT
    groklab superposition probe runs/sp                                         # probes.json again from the weights
    groklab superposition report runs/sp                                        # report.html + report.png

Thin: parse, call groklab.superposition, print. Wired into groklab.cli.main by ``add_parser``;
``main(argv)`` runs the verb alone (the tests use it).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from groklab.errors import GroklabError

__all__ = ["add_parser", "cmd", "main"]

TRAIN_OPTIONS: dict[str, tuple[type, str]] = {
    "n_min": (int, "nodes per graph, at least (default 10)"), "n_max": (int, "nodes per graph, at most (default 12)"),
    "depth": (int, "hops from root to target (default 3)"), "n_tokens": (int, "node vocabulary (default 16)"),
    "n_layer": (int, "layers (default 2)"), "n_head": (int, "heads (default 4)"), "d_model": (int, "width (default 128)"),
    "steps": (int, "optimizer steps per arm (default 1500)"),
    "stage_steps": (int, "Coconut steps per curriculum stage (default 250)"),
    "batch": (int, "graphs per step (default 64)"), "lr": (float, "AdamW learning rate (default 1e-3)"),
    "wd": (float, "weight decay (default 0.01)"), "uniform_prob": (float, "mix an earlier stage (default 0.1)"),
    "coconut_loss": (str, "Coconut loss before the last stage: optimal (one optimal next-hop node, official Coconut) | "
                          "bfs (mass on the whole next-hop frontier, arXiv 2509.23365 App. E.2) (default optimal)"),
    "eval_every": (int, "evaluate every N steps (default 100)"), "n_eval": (int, "evaluation graphs (default 256)"),
    "seed": (int, "seed (default 0)"), "threads": (int, "torch threads (default 1)"),
    "max_seconds": (float, "per-arm wall-clock budget; stops at the next evaluation (default 0 = none)"),
}


def add_parser(sub, parser_class=None) -> None:
    kw = {"parser_class": parser_class} if parser_class is not None else {}
    p = sub.add_parser("superposition", help="continuous thoughts on graph reachability: the exact construction "
                                             "of arXiv 2505.12514 and a CPU-scale Coconut training")
    vs = p.add_subparsers(dest="action", required=True, **kw)
    c = vs.add_parser("construct", help="check the hand-built 2-layer transformer on random digraphs")
    c.add_argument("--n-max", type=int, default=12, help="largest graph; the vocabulary is n_max + 5 (default 12)")
    c.add_argument("--n-min", type=int, default=4, help="smallest graph (default 4)")
    c.add_argument("--m-max", type=int, default=None, help="most edges (default n_max(n_max-1))")
    c.add_argument("--position", default="sinusoidal", help="sinusoidal|rope (default sinusoidal)")
    c.add_argument("--basis", default="identity", help="token embeddings: identity|random orthonormal")
    c.add_argument("--graphs", type=int, default=100, help="random graphs (default 100)")
    c.add_argument("--p-edge", type=float, default=0.2, help="edge probability (default 0.2)")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--paper-literal", action="store_true", help="the paper's printed eps2 = 1/(4n) and no layer-2 sink")
    c.add_argument("--out", type=Path, default=None, help="also write config.json + summary.json here")
    c.add_argument("--json", action="store_true", help="print JSON")
    t = vs.add_parser("train", help="train Coconut, discrete CoT and no-CoT arms; probe the thoughts")
    t.add_argument("--out", type=Path, required=True, help="new run folder")
    t.add_argument("--arms", default="coconut,cot,nocot", help="comma list of coconut, cot, nocot")
    for name, (typ, help_) in TRAIN_OPTIONS.items():
        t.add_argument("--" + name.replace("_", "-"), dest=name, type=typ, default=None, help=help_)
    pr = vs.add_parser("probe", help="probe the Coconut thoughts of a finished training folder again (rewrites probes.json)")
    pr.add_argument("run", type=Path)
    r = vs.add_parser("report", help="HTML + PNG page of a superposition run folder")
    r.add_argument("run", type=Path)


def cmd(ns: argparse.Namespace, argv: list[str]) -> int:
    if ns.action == "construct":
        from groklab.superposition.construction import ConstructionConfig
        from groklab.superposition.run import verify_construction

        cfg = ConstructionConfig(n_max=ns.n_max, m_max=ns.m_max, position=ns.position, basis=ns.basis,
                                 seed=ns.seed, paper_literal=ns.paper_literal)
        s = verify_construction(cfg, ns.graphs, ns.n_min, ns.p_edge, ns.seed, ns.out, argv)
        if ns.json:
            print(json.dumps(s, indent=2))
        else:
            print(f"{s['graphs']} graphs ({s['with_cycles']} with cycles, diameter ≤ {s['diameter_max']}), "
                  f"{s['thoughts_checked']} thoughts: max |[t_c] - eq.(1)| = {s['max_abs_error']:.2e}, "
                  f"answer accuracy {s['accuracy']:.3f} ({cfg.position}, d = {s['d_model']}, {s['seconds']:.1f} s)")
        return 0
    if ns.action == "train":
        from groklab.superposition.run import run_training
        from groklab.superposition.train import TrainConfig

        given = {k: getattr(ns, k) for k in TRAIN_OPTIONS if getattr(ns, k) is not None}
        cfg = TrainConfig(arms=tuple(a.strip() for a in ns.arms.split(",") if a.strip()), **given)

        def log(row: dict) -> None:
            print(f"{row['arm']:8s} step {row['step']:5d} stage {row['stage']} loss {row['loss']:.3f} "
                  f"acc {row['acc']:.3f} ({row['seconds']:.0f} s)", flush=True)

        s = run_training(cfg, ns.out, argv, log)
        print("final accuracy: " + ", ".join(f"{a} {v:.3f}" for a, v in s["final_acc"].items()))
        return 0
    if ns.action == "probe":
        from groklab.superposition.run import probe_run

        s = probe_run(ns.run)
        for i, c in enumerate(s["contrast"], 1):
            print(f"thought {i}: " + ", ".join(f"{k} {'–' if v is None else f'{v:+.3f}'}" for k, v in c.items()))
        return 0
    from groklab.report.superposition import write_report

    for path in write_report(ns.run):
        print(path)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)

    class _P(argparse.ArgumentParser):
        def error(self, message: str) -> None:  # one line and exit 2, like every groklab error
            raise GroklabError(f"{self.prog}: {message} (see {self.prog} --help)")

    p = _P(prog="groklab")
    sub = p.add_subparsers(dest="verb", required=True, parser_class=_P)
    add_parser(sub, _P)
    try:
        ns = p.parse_args(argv)
        return cmd(ns, argv)
    except GroklabError as e:
        print(f"groklab: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
