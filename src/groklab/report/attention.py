"""`groklab report` for the attention room's run folders (config.json kind "groklab.attention").

One self-contained page (report_common.page) with the run's tables and its figures as PNGs made by
matplotlib without pyplot; the PNGs are also written beside the page. What each figure shows:
  snap.fig4   loss vs the official log; c_n(t) heatmap (Scan & Snap Fig. 4); entropies over time
  snap.grid   Scan & Snap Fig. 6 (entropy vs eta_Y/eta_Z, one panel per num_last, paper dashed);
              snap iteration vs eta_Y/eta_Z
  joma.toy    JoMA Fig. 4 (v(t) and its entropy)
  joma.linear JoMA Figs. 2-3 (X, NC(z, z_hat) over training, V at init and after training)
  joma.hier   per-layer attention entropy over training (JoMA Fig. 6 analogue), latent correlations
"""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np

from groklab.errors import GroklabError
from groklab.report.common import cell, esc, kv_table, note, page, png_bytes, read_json, read_parquet, table, write_atomic

__all__ = ["is_attention_run", "attention_report"]


def is_attention_run(p: Path) -> bool:
    meta = p / "config.json"
    if not meta.exists():
        return False
    m = read_json(meta)
    return isinstance(m, dict) and m.get("kind") == "groklab.attention"


def _fig(w=10, h=3.2, n=1):
    from matplotlib.figure import Figure

    f = Figure(figsize=(w, h))
    return f, [f.add_subplot(1, n, i + 1) for i in range(n)]


def _img(name: str, data: bytes) -> str:
    return f'<p><img alt="{esc(name)}" src="data:image/png;base64,{base64.b64encode(data).decode()}" style="max-width:100%"></p>'


def _fig4(p: Path, s: dict, m, a) -> tuple[str, dict]:
    f, (ax0, ax1, ax2) = _fig(15, 3.6, 3)
    it, loss = m["iteration"], m["loss"]
    ax0.semilogy(it, loss, label="groklab")
    lg = s["loss_vs_log"]
    ax0.semilogy([int(k) for k in lg], [v["log"] for v in lg.values()], "k.", label="figure_4.log")
    ax0.set_xlabel("iteration"), ax0.set_ylabel("loss"), ax0.legend(), ax0.set_title("loss")
    c = a["c"]                                             # (T+1, N, K)
    ts = [0, 2, 4, 6, 8, 10, c.shape[0] - 1]
    ax1.imshow(np.stack([c[t, 0] for t in ts]), aspect="auto")
    ax1.axvline(9.5, color="w", ls="--", lw=1)
    ax1.set_yticks(range(len(ts)), [f"iter {t}" if t < c.shape[0] - 1 else "final" for t in ts])
    ax1.set_xlabel("token # (0-9 common, 10-19 distinct, by P(l|n))"), ax1.set_title("c_n (fact 0), Fig. 4")
    ax2.plot(it, m["entropy"], label="c_n over all tokens")
    ax2.plot(it, m["entropy_distinct"], label="c_n over distinct tokens")
    ax2.set_xlabel("iteration"), ax2.set_ylabel("entropy (nats)"), ax2.legend()
    f.tight_layout()
    png = png_bytes(f)
    rows = [[cell(int(k)), cell(v["groklab"]), cell(v["log"]), cell(v["rel_err"])] for k, v in lg.items()]
    body = _img("fig4", png) + table(["iteration", "groklab loss", "figure_4.log", "rel. err"], rows, ident="loss-vs-log")
    body += kv_table({k: v for k, v in s.items() if k != "loss_vs_log"})
    return body, {"fig4.png": png}


def _grid(p: Path, s: dict, m, a) -> tuple[str, dict]:
    rows = s["table"]
    nls = sorted({r["num_last"] for r in rows})
    f, axes = _fig(4 * len(nls), 3.2, len(nls))
    f2, (bx,) = _fig(5, 3.4, 1)
    for ax, nl in zip(axes, nls):
        for k, lz in enumerate(sorted({r["lr_z"] for r in rows})):
            rr = [r for r in rows if r["num_last"] == nl and r["lr_z"] == lz]
            x = [r["lr_y_multi_on_z"] for r in rr]
            line = ax.errorbar(x, [r["entropy"] for r in rr], [r["entropy_std"] for r in rr], label=f"eta_Z={lz:g}")
            if all(r["paper"] is not None for r in rr):
                ax.plot(x, [r["paper"] for r in rr], "--", color=line[0].get_color(), lw=1)
            if nl == nls[0]:
                sl = bx.plot(x, [r["snap_mean"] if r["snap_mean"] is not None else np.nan for r in rr], "o-", label=f"eta_Z={lz:g}")
                if all(r.get("snap_pred") is not None for r in rr):   # Theorem 4: c K ln M / eta_Y, c fitted
                    bx.plot(x, [r["snap_pred"] for r in rr], ":", color=sl[0].get_color(), lw=1)
        ax.set_xscale("log"), ax.set_title(f"#last/next tokens = {nl}/{2 * nl}"), ax.set_xlabel("eta_Y / eta_Z")
    axes[0].set_ylabel("entropy of c_n (distinct tokens)"), axes[0].legend(fontsize=7)
    bx.set_xscale("log"), bx.set_xlabel("eta_Y / eta_Z"), bx.set_ylabel(f"snap iteration (num_last {nls[0]})"), bx.legend(fontsize=7)
    f.tight_layout(), f2.tight_layout()
    png, png2 = png_bytes(f), png_bytes(f2)
    trs = [[cell(r["num_last"]), cell(r["lr_z"]), cell(r["lr_y_multi_on_z"]),
            cell(r["entropy"], f"ent-{r['num_last']}-{r['lr_z']:g}-{r['lr_y_multi_on_z']:g}"), cell(r["entropy_std"]),
            cell(r["paper"]), cell(r["paper_std"]), cell(r["entropy_all_tokens"]), cell(r["snap_mean"]),
            cell(r.get("snap_pred")), cell(r.get("freeze_mean"))] for r in rows]
    body = (note("Solid: groklab (mean ± std over seeds); dashed: the paper's data (scan_snap/figure_6_data.pkl). "
                 "Snap plot, dotted: the paper's Theorem 4 (Sec. 6, Eq. 14) t0 = c K ln M / eta_Y with only c fitted.")
            + _img("fig6", png) + _img("snap", png2)
            + table(["num_last", "eta_Z", "eta_Y/eta_Z", "entropy", "std", "paper", "paper std", "entropy (all tokens)",
                     "snap iter", "snap pred (Thm 4)", "freeze iter"], rows=trs, cls="sortable", ident="fig6-table")
            + kv_table({k: v for k, v in s.items() if k != "table"}))
    return body, {"fig6.png": png, "snap_time.png": png2}


def _toy(p: Path, s: dict, m, a) -> tuple[str, dict]:
    f, (ax0, ax1) = _fig(11, 3.2, 2)
    v = a["v"]
    for i in range(v.shape[0]):
        ax0.plot(v[i], color=(i / v.shape[0], 0.3, 1 - i / v.shape[0]), lw=0.8)
    ax0.plot(a["mu"], "k--"), ax0.set_xlabel("sorted index of v"), ax0.set_title("v(t) every 100 iterations; dashed: mu")
    ax1.plot(m["iteration"], m["entropy"]), ax1.axvline(s["min_iter"], color="k", ls=":", lw=0.8)
    ax1.set_xlabel("iteration"), ax1.set_ylabel("entropy"), ax1.set_title("entropy falls, then rises")
    f.tight_layout()
    png = png_bytes(f)
    return _img("toy", png) + kv_table(s), {"joma_toy.png": png}


def _linear(p: Path, s: dict, m, a) -> tuple[str, dict]:
    f, axes = _fig(16, 3.2, 4)
    axes[0].imshow(a["X"]), axes[0].set_title("X = P(l | y)")
    first = m["seed"] == m["seed"][0]
    for k, lab in (("corr", "NC(z_hat, z)"), ("corr1", "NC(z_hat1, z)"), ("corr2", "NC(z_hat2, z)")):
        axes[1].plot(m["iteration"][first], m[k][first], label=lab)
    axes[1].axhline(1, color="k", lw=0.5, ls="--"), axes[1].legend(fontsize=7), axes[1].set_xlabel("iteration")
    axes[2].imshow(a["V_final"][:-1]), axes[2].set_title("V after training")
    for i in range(4):
        axes[3].plot(a["v0"][:, i], label=f"component {i}")
    axes[3].legend(fontsize=7), axes[3].set_title("v_0(t)")
    f.tight_layout()
    png = png_bytes(f)
    return _img("linear", png) + kv_table({k: v for k, v in s.items() if k != "per_seed"}), {"joma_linear.png": png}


def _hier(p: Path, s: dict, m, a) -> tuple[str, dict]:
    nl = len([k for k in m if k.startswith("entropy_") and not k.startswith("entropy_last")])
    f, (ax0, ax1) = _fig(11, 3.4, 2)
    its = a["iterations"]
    for l in range(nl):
        ax0.plot(its, [m[f"entropy_{l}"][m["iteration"] == t].mean() for t in its], label=f"layer {l}")
        ax1.plot(its, [m[f"entropy_last_{l}"][m["iteration"] == t].mean() for t in its], label=f"layer {l}")
    ax0.set_title("attention entropy (rows of observed tokens)"), ax1.set_title("attention entropy (last position)")
    for ax in (ax0, ax1):
        ax.set_xlabel("iteration"), ax.legend(fontsize=7)
    f.tight_layout()
    png = png_bytes(f)
    return _img("hier", png) + kv_table(s["headline"]) + kv_table({"wikitext2 (context only)": s["wikitext2_context_3layer"]}), \
        {"joma_hier.png": png}


_BODIES = {"snap.fig4": _fig4, "snap.grid": _grid, "joma.toy": _toy, "joma.linear": _linear, "joma.hier": _hier}


def attention_report(p: Path, out: Path | None = None) -> Path:
    meta = read_json(p / "config.json")
    what = meta.get("what")
    if what not in _BODIES:
        raise GroklabError(f"{p}: attention run of unknown kind {what!r}; known: {', '.join(_BODIES)}")
    if not (p / "summary.json").exists():
        raise GroklabError(f"{p}: no summary.json (the run did not finish)")
    s = read_json(p / "summary.json")
    m = read_parquet(p / "metrics.parquet")
    try:
        with np.load(p / "arrays.npz") as z:
            a = {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise GroklabError(f"{p / 'arrays.npz'}: unreadable ({e})") from None
    body, pngs = _BODIES[what](p, s, m, a)
    html = Path(out) if out else p / "report.html"
    if html.suffix != ".html":
        html = html / "report.html"
    files: dict[Path, bytes | str] = {html.parent / k: v for k, v in pngs.items()}
    files[html] = page(f"groklab {what}: {p.name}", f"{esc(p)} · created {esc(meta.get('created', '?'))}",
                       body + "<h2>config</h2>" + kv_table(meta.get("config", {})))
    write_atomic(files)
    return html
