"""Markdown tables of a `groklab posttrain` folder's summary.json (the tables in docs/posttrain.md).

    python scripts/posttrain_table.py runs/posttrain/small-h2 [more folders...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def iv(d: dict | None, digits: int = 3, signed: bool = False) -> str:
    """mean ± 95% half-width over seeds."""
    if not d or d.get("mean") is None:
        return "n/a"
    ci = f" ± {d['ci95']:.{digits}f}" if d.get("ci95") is not None else ""
    return f"{d['mean']:{'+' if signed else ''}.{digits}f}{ci}"


def main(folders: list[str]) -> None:
    for folder in folders:
        s = json.loads((Path(folder) / "summary.json").read_text())
        cfg = json.loads((Path(folder) / "config.json").read_text())["config"]
        b = s["base"]
        print(f"\n### {folder}: {cfg['group']}, r0 = {cfg['r0']}, {cfg['hops']}-step answers, seeds {cfg['seeds']}, "
              f"wall {s['wall_s']:.0f} s ({s['threads']} thread)\n")
        n = len(b["acc_r0"])
        print(f"Base (snapshot steps {b['snapshot_step']}): held-out r0 {sum(b['acc_r0']) / n:.3f}, "
              f"r1 {sum(b['acc_r1']) / n:.3f} (mean over seeds).\n")
        print("| arm | pool | r0 final | r1 final | pool acc | Δr0 | Δr1 | rot (deg) | sv_drift | topk_share | bf16_same | dW_rel |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for g in s["groups"]:
            cells = [iv(g[k]) for k in ("acc_r0", "acc_r1", "acc_pool")] + [iv(g[k], signed=True) for k in ("d_acc_r0", "d_acc_r1")]
            cells += [iv(g["rot"], 2), iv(g["sv_drift"], 4), iv(g["topk_share"]), iv(g["bf16_same"]), iv(g["dW_rel"], 4)]
            print(f"| {g['arm']} | {g['pool']} | " + " | ".join(cells) + " |")
        print("\n| matching | arm | pool | metric | RL − SFT (paired, 95% CI) | verdict |")
        print("|---|---|---|---|---|---|")
        for c in s["claims"]:
            if c["verdict"] in ("not measured",):
                continue
            print(f"| {c['matching']} | {c['arm']} | {c['pool']} | {c['metric']} | {iv(c['rl_minus_sft'], 4, signed=True)} | {c['verdict']} |")


if __name__ == "__main__":
    main(sys.argv[1:])
