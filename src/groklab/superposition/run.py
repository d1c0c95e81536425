"""Run folders of the superposition room: the construction check and the three-arm training.

A training folder holds ``config.json`` (the TrainConfig, argv), ``INCOMPLETE`` while running,
``metrics.parquet`` (one row per arm and evaluation: arm, step, stage, loss, acc, seconds),
``probes.json`` (the paper's probes of the trained Coconut thoughts, and of the same network at
initialisation as a control), ``weights.safetensors`` (each arm's parameters, ``<arm>.<name>``)
and ``summary.json`` (final accuracy per arm, wall times, probe summary). Every file is written
atomically; metrics, weights and probes after every arm (a run cut short keeps the arms it
finished); ``summary.json`` last, then the marker is removed.

A construction folder holds ``config.json`` and ``summary.json`` (max |thought - eq. (1)| over
all graphs and thoughts, answer accuracy, graph statistics).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from groklab.errors import check
from groklab.train.record import atomic_write, check_out_dir, write_json
from groklab.superposition.construction import Construction, ConstructionConfig
from groklab.superposition.graphs import distances, random_problem, reachable_within
from groklab.superposition.probes import probe
from groklab.superposition.train import TrainConfig, eval_graphs, train_arm

__all__ = ["verify_construction", "run_training", "probe_run", "METRICS", "SUMMARY", "PROBES"]

CONFIG, METRICS, SUMMARY, PROBES, WEIGHTS, MARK = (
    "config.json", "metrics.parquet", "summary.json", "probes.json", "weights.safetensors", "INCOMPLETE")


def verify_construction(cfg: ConstructionConfig, n_graphs: int, n_min: int, p_edge: float, seed: int,
                        out: Path | None = None, argv: list[str] | None = None) -> dict:
    """Run the construction on ``n_graphs`` random digraphs (cycles allowed) with D thoughts,
    D = the root's eccentricity; compare every thought with eq. (1) and the answer with the
    reachable candidate."""
    check(n_graphs >= 1, "n_graphs", n_graphs, "must be >= 1")
    check(3 <= n_min <= cfg.n_max, "n_min", n_min, f"must be in [3, n_max = {cfg.n_max}]")
    if out is not None:
        check_out_dir(out)
    t0 = time.perf_counter()
    C = Construction(cfg)
    rng = np.random.default_rng(seed)
    worst, correct, used, cyclic, thoughts, depths = 0.0, 0, 0, 0, 0, []
    while used < n_graphs:
        n = int(rng.integers(n_min, cfg.n_max + 1))
        p = random_problem(rng, n, p_edge)
        if len(p.edges) > cfg.edges_max:
            continue
        D = max(distances(p.n, p.edges, p.root))
        th = C.think(p, D)
        for c in range(D + 1):
            want = C.superposition(reachable_within(p.n, p.edges, p.root, c))
            worst = max(worst, float((th.thoughts[c] - want).abs().max()))
        thoughts += D + 1
        correct += th.prediction == p.answer
        cyclic += any(distances(p.n, p.edges, t)[s] >= 0 for s, t in p.edges)
        depths.append(D)
        used += 1
    summary = dict(kind="superposition-construction", graphs=used, with_cycles=cyclic, thoughts_checked=thoughts,
                   max_abs_error=worst, accuracy=correct / used, diameter_mean=float(np.mean(depths)),
                   diameter_max=int(max(depths)), d_model=C.d, vocab=C.V, eps1=C.eps1, eps2=C.eps2,
                   seconds=time.perf_counter() - t0)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / CONFIG, dict(kind="superposition-construction", construction=cfg.__dict__,
                                      n_graphs=n_graphs, n_min=n_min, p_edge=p_edge, seed=seed, argv=argv))
        write_json(out / SUMMARY, summary)
    return summary


def _write_metrics(path: Path, rows: list[dict]) -> None:
    cols = {k: [r[k] for r in rows] for k in ("arm", "step", "stage", "loss", "acc", "seconds")}
    table = pa.table({"arm": pa.array(cols["arm"], pa.string()), "step": pa.array(cols["step"], pa.int64()),
                      "stage": pa.array(cols["stage"], pa.int64()), "loss": pa.array(cols["loss"], pa.float64()),
                      "acc": pa.array(cols["acc"], pa.float64()), "seconds": pa.array(cols["seconds"], pa.float64())})
    atomic_write(path, lambda tmp: pq.write_table(table, tmp))


def run_training(cfg: TrainConfig, out: Path, argv: list[str] | None = None,
                 log: Callable[[dict], None] | None = None) -> dict:
    """Train every arm of ``cfg`` in turn, probe the Coconut thoughts, write the folder."""
    check_out_dir(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / CONFIG, dict(kind="superposition-train", config=cfg.to_dict(),
                                  argv=argv if argv is not None else sys.argv[1:]))
    (out / MARK).write_text("training in progress or interrupted\n")
    rows: list[dict] = []
    weights: dict[str, torch.Tensor] = {}
    final, wall, probes = {}, {}, {}
    from safetensors.torch import save_file

    from groklab.superposition.model import GPT

    for arm in cfg.arms:
        model, arm_rows = train_arm(cfg, arm, log=log)
        rows += arm_rows
        # after each arm: metrics, weights and probes, so a run cut short keeps the arms it finished
        _write_metrics(out / METRICS, rows)
        final[arm] = arm_rows[-1]["acc"]
        wall[arm] = arm_rows[-1]["seconds"]
        weights.update({f"{arm}.{k}": v.detach().contiguous() for k, v in model.state_dict().items()})
        atomic_write(out / WEIGHTS, lambda tmp: save_file(weights, tmp))
        if arm == "coconut":
            probes = _probes(cfg, model)
            write_json(out / PROBES, probes)
    summary = dict(kind="superposition-train", final_acc=final, seconds=wall, steps=cfg.steps,
                   steps_reached={a: max(r["step"] for r in rows if r["arm"] == a) for a in cfg.arms},
                   best_acc={a: max(r["acc"] for r in rows if r["arm"] == a) for a in cfg.arms})
    if "trained" in probes:
        summary.update(_probe_summary(probes))
    write_json(out / SUMMARY, summary)
    (out / MARK).unlink()
    return summary


def _probes(cfg: TrainConfig, model) -> dict:
    """The probes of a trained Coconut network on 128 held-out graphs, and of the same network at
    initialisation (the control)."""
    from groklab.superposition.model import GPT

    graphs = eval_graphs(cfg)[:128]
    return {"trained": probe(model, graphs, cfg.data.vocab, cfg.depth, seed=cfg.seed),
            "init": probe(GPT(cfg.gpt, seed=cfg.seed), graphs, cfg.data.vocab, cfg.depth, seed=cfg.seed)}


def _probe_summary(probes: dict) -> dict:
    tr = probes["trained"]
    return {"thought_inner_product": [{g: s["mean"] for g, s in step.items()} for step in tr["thought"]],
            "edge_attention": [{g: s["mean"] for g, s in step.items()} for step in tr["edge_attention"]],
            "contrast": [{c: s["mean"] for c, s in step.items()} for step in tr["contrast"]]}


def probe_run(out: Path) -> dict:
    """Probe the Coconut network of a finished training folder again from weights.safetensors (e.g.
    a folder written before a probe was added); rewrites probes.json and the probe part of summary.json."""
    from safetensors.torch import load_file

    from groklab.errors import GroklabError
    from groklab.superposition.model import GPT
    from groklab.train.record import read_json

    out = Path(out)
    head = read_json(out / CONFIG, str(out))
    if head.get("kind") != "superposition-train":
        raise GroklabError(f"{out}/config.json: kind {head.get('kind')!r} is not 'superposition-train'")
    if (out / MARK).exists() or not (out / SUMMARY).exists():
        raise GroklabError(f"{out}: the training is not finished (INCOMPLETE); run it to the end first")
    cfg = TrainConfig.from_dict(head["config"])
    w = {k[len("coconut."):]: v for k, v in load_file(out / WEIGHTS).items() if k.startswith("coconut.")}
    if not w:
        raise GroklabError(f"{out}/{WEIGHTS}: no coconut arm in this run (arms: {', '.join(cfg.arms)})")
    model = GPT(cfg.gpt, seed=cfg.seed)
    model.load_state_dict(w)
    model.eval()
    probes = _probes(cfg, model)
    write_json(out / PROBES, probes)
    summary = {**read_json(out / SUMMARY, str(out)), **_probe_summary(probes)}
    write_json(out / SUMMARY, summary)
    return summary
