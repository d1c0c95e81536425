"""Data, the Coconut forward pass, probes, run folders and the CLI of the superposition room."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from groklab.cli.superposition import main
from groklab.errors import GroklabError
from groklab.superposition.data import IGNORE, DataConfig, encode_batch, make_graph
from groklab.superposition.graphs import distances
from groklab.superposition.model import GPT, GPTConfig, coconut_forward
from groklab.superposition.probes import probe
from groklab.superposition.train import TrainConfig, accuracy


def test_graphs_are_well_posed_and_optimal_sets_are_shortest_paths():
    cfg = DataConfig(n_min=8, n_max=10, depth=3, n_tokens=12)
    rng = np.random.default_rng(0)
    for _ in range(200):
        g = make_graph(rng, cfg)
        names = {v: i for i, v in enumerate(g.nodes)}
        e = [(names[s], names[t]) for s, t in g.edges]
        d = distances(len(g.nodes), e, names[g.root])
        assert d[names[g.target]] == 3 and d[names[g.neg]] == -1
        back = distances(len(g.nodes), [(t, s) for s, t in e], names[g.target])
        for k in range(4):
            want = {v for v in g.nodes if d[names[v]] == k and back[names[v]] == 3 - k}
            assert set(g.optimal[k]) == want and want
        assert len(set(g.edges)) == len(g.edges)


def test_batches_supervise_the_right_positions():
    cfg = DataConfig(n_min=8, n_max=10, depth=3, n_tokens=12)
    voc, rng = cfg.vocab, np.random.default_rng(1)
    gs = [make_graph(rng, cfg) for _ in range(5)]
    b = encode_batch(gs, voc, "coconut", 1, rng)
    L = b.prompt_len
    assert (b.tokens[:, L] == voc.LATENT).all() and b.tokens.shape[1] == L + 1
    sup = (b.targets != IGNORE).nonzero()[:, 1]
    assert (sup == L).all()  # the latent slot predicts a hop-2 optimal node
    assert all(int(b.targets[i, L]) in g.optimal[2] for i, g in enumerate(gs))
    b = encode_batch(gs, voc, "coconut", 5, rng)
    assert (b.tokens[:, -1] == voc.ANS).all() and b.n_latent == 3
    assert [int(t) for t in b.targets[:, -1]] == [g.target for g in gs]
    b = encode_batch(gs, voc, "cot", 0, rng)
    assert (b.targets[:, L - 1:] != IGNORE).all()  # root -> n1 -> n2 -> n3 -> <A> -> target
    assert [int(t) for t in b.targets[:, L + 2]] == [voc.ANS] * 5
    # left padding: the root sits at L-1 in every row and real positions start at 0
    for i, g in enumerate(gs):
        assert int(b.tokens[i, L - 1]) == g.root
        first = int(b.pad[i].sum())
        assert int(b.pos[i, first]) == 0 and int(b.tokens[i, first]) == voc.BOS


def _naive(model, tokens, pos, pad, L, n):
    """Coconut without a cache: recompute the whole prefix at every pass, splice the thought in."""
    emb = model.wte(tokens)
    for p in range(n):
        h, _ = model.hidden(emb[:, : L + p], pos[:, : L + p], pad[:, : L + p])
        emb = torch.cat([emb[:, : L + p], h[:, -1:], emb[:, L + p + 1:]], 1)
    return model.hidden(emb, pos, pad)[0]


def test_cached_coconut_equals_recomputation_and_its_gradients_in_float64():
    cfg = DataConfig(n_min=8, n_max=9, depth=3, n_tokens=12)
    rng = np.random.default_rng(2)
    gs = [make_graph(rng, cfg) for _ in range(3)]
    b = encode_batch(gs, cfg.vocab, "coconut", 3, rng)
    model = GPT(GPTConfig(vocab=cfg.vocab.size, d_model=16, n_head=2, n_pos=64), seed=0).double()
    h, th, _ = coconut_forward(model, b.tokens, b.pos, b.pad, b.prompt_len, 3)
    h_ref = _naive(model, b.tokens, b.pos, b.pad, b.prompt_len, 3)
    assert (h - h_ref).abs().max() < 1e-12
    g1 = torch.autograd.grad(model.logits(h[:, -1]).logsumexp(-1).sum(), list(model.parameters()), retain_graph=True)
    g2 = torch.autograd.grad(model.logits(h_ref[:, -1]).logsumexp(-1).sum(), list(model.parameters()))
    assert max(float((a - c).abs().max()) for a, c in zip(g1, g2)) < 1e-10
    # the <latent> token's own embedding never reaches the output (every slot is overwritten by a
    # thought), while the root token's embedding does, through the chain of thoughts
    # (read out with node 0's logit only: the tied head would otherwise reach every row)
    gw = torch.autograd.grad(model.logits(h[:, -1])[:, 0].sum(), model.wte.weight)[0]
    assert float(gw[cfg.vocab.LATENT].abs().max()) == 0.0
    assert all(float(gw[g.root].abs().max()) > 0 for g in gs)
    assert th.shape == (3, 3, 16)
    # a thought is the final-LayerNorm state (bias 0 at init): zero mean in every row
    assert float(th.detach().mean(-1).abs().max()) < 1e-12


def test_padding_does_not_change_a_row():
    """The same graph alone and in a batch with longer prompts gives the same answer logits."""
    cfg = DataConfig(n_min=8, n_max=12, depth=3, n_tokens=12)
    rng = np.random.default_rng(3)
    gs = [make_graph(rng, cfg) for _ in range(6)]
    model = GPT(GPTConfig(vocab=cfg.vocab.size, d_model=16, n_head=2, n_pos=64), seed=1).double()
    b = encode_batch(gs, cfg.vocab, "coconut", 3, rng, swaps=[False] * 6)
    h, _, _ = coconut_forward(model, b.tokens, b.pos, b.pad, b.prompt_len, 3)
    for i in range(6):
        b1 = encode_batch([gs[i]], cfg.vocab, "coconut", 3, rng, swaps=[False])
        h1, _, _ = coconut_forward(model, b1.tokens, b1.pos, b1.pad, b1.prompt_len, 3)
        assert (h[i, -1] - h1[0, -1]).abs().max() < 1e-12


def test_probe_groups_and_negative_control_at_initialisation():
    """At initialisation the node groups are indistinguishable (a probe that separates them there
    would measure the graph, not the model) except Reachable, which holds the root, whose own
    embedding rides in every thought; Reachable-not-root removes that. Group sizes follow the graphs."""
    cfg = TrainConfig(n_min=8, n_max=10, n_tokens=12, d_model=32, n_head=2, n_eval=64)
    graphs = [make_graph(np.random.default_rng(i), cfg.data) for i in range(64)]
    p = probe(GPT(cfg.gpt, seed=0), graphs, cfg.data.vocab, 3)
    assert len(p["thought"]) == 3 and len(p["edge_attention"]) == 3
    t1 = p["thought"][0]
    assert t1["optimal"]["n"] == sum(len(g.optimal[1]) for g in graphs)
    sd = t1["not_reachable"]["std"]
    spread = [t1[g]["mean"] for g in ("not_reachable", "reachable_not_root", "optimal")]
    assert max(spread) - min(spread) < 0.5 * sd
    assert t1["reachable"]["mean"] > t1["not_reachable"]["mean"] + sd  # the root's own embedding
    for c in p["contrast"]:  # within graphs too: no group stands out at initialisation
        f = c["frontier_vs_not_reachable"]
        assert f["graphs"] == len(graphs) and abs(f["mean"]) < 0.5 * f["std"] and 0.2 < f["positive"] < 0.8
    e0 = p["edge_attention"][0]  # step 0: only the root's edges are reachable and frontier
    assert e0["reachable"]["n"] == e0["frontier"]["n"] == sum(sum(s == g.root for s, _ in g.edges) for g in graphs)


def test_untrained_accuracy_is_near_chance_or_below_for_every_arm():
    cfg = TrainConfig(n_min=8, n_max=10, n_tokens=12, d_model=32, n_head=2, n_eval=64)
    graphs = [make_graph(np.random.default_rng(10 + i), cfg.data) for i in range(64)]
    model = GPT(cfg.gpt, seed=0)
    for arm in ("coconut", "cot", "nocot"):
        assert accuracy(model, arm, graphs, cfg) < 0.3


def test_cli_train_writes_a_complete_folder_and_report(tmp_path):
    out = tmp_path / "sp"
    rc = main(["superposition", "train", "--out", str(out), "--steps", "6", "--stage-steps", "2", "--eval-every", "3",
               "--n-eval", "16", "--batch", "8", "--d-model", "16", "--n-head", "2", "--n-min", "8", "--n-max", "9",
               "--n-tokens", "12"])
    assert rc == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["config.json", "metrics.parquet", "probes.json", "summary.json", "weights.safetensors"]
    m = pq.read_table(out / "metrics.parquet").to_pydict()
    assert sorted(set(m["arm"])) == ["coconut", "cot", "nocot"] and max(m["step"]) == 6
    s = json.loads((out / "summary.json").read_text())
    assert set(s["final_acc"]) == {"coconut", "cot", "nocot"}
    assert main(["superposition", "report", str(out)]) == 0
    assert (out / "report.html").stat().st_size > 1000 and (out / "report.png").stat().st_size > 1000
    assert "Within-graph contrasts" in (out / "report.html").read_text()
    # probing again from the saved weights gives the same probes (the weights round-trip)
    before = json.loads((out / "probes.json").read_text())
    (out / "probes.json").unlink()
    assert main(["superposition", "probe", str(out)]) == 0
    assert json.loads((out / "probes.json").read_text()) == before
    assert json.loads((out / "summary.json").read_text())["contrast"] == s["contrast"]
    assert main(["superposition", "train", "--out", str(out)]) == 2  # never overwrites
    # a folder cut short (no summary, no probes) still renders, under a warning
    (out / "summary.json").unlink()
    (out / "probes.json").unlink()
    assert main(["superposition", "report", str(out)]) == 0
    html = (out / "report.html").read_text()
    assert "INCOMPLETE run" in html and "No probes.json" in html
    assert main(["superposition", "probe", str(out)]) == 2  # not finished: refused, nothing written
    assert not (out / "probes.json").exists()


def test_cli_errors_are_one_line_and_write_nothing(tmp_path, capsys):
    out = tmp_path / "bad"
    assert main(["superposition", "train", "--out", str(out), "--arms", "coconut,magic"]) == 2
    assert "--arms 'coconut,magic'" in capsys.readouterr().err and not out.exists()
    assert main(["superposition", "train", "--out", str(out), "--depth", "4", "--n-min", "8"]) == 2
    assert "--n-min 8: must be >= 2(depth+1) = 10" in capsys.readouterr().err
    assert main(["superposition", "construct", "--position", "alibi"]) == 2
    assert "--position 'alibi'" in capsys.readouterr().err
    with pytest.raises(GroklabError, match="--d-model 30"):
        TrainConfig(d_model=30, n_head=4)


def test_cli_construct_prints_exactness(capsys):
    """Through groklab's own verb table (groklab.cli.main), not only the verb module."""
    from groklab.cli.main import main as groklab_main

    assert groklab_main(["superposition", "construct", "--n-max", "8", "--graphs", "10", "--position", "rope", "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["max_abs_error"] < 1e-12 and s["accuracy"] == 1.0 and s["graphs"] == 10


def test_probes_read_the_exact_construction_as_the_paper_predicts():
    """Positive control for the grouping: on the hand-built model, Reachable = 1/sqrt|V_i| per
    node, Not reachable = 0, and each edge leaving V_i gets attention 1/|I_i|, the rest ~0."""
    from groklab.superposition.probes import probe_construction

    cfg = DataConfig(n_min=8, n_max=10, depth=3, n_tokens=12)
    graphs = [make_graph(np.random.default_rng(100 + i), cfg) for i in range(12)]
    p = probe_construction(graphs, cfg.n_tokens)
    for i in range(1, 4):
        want = []
        for g in graphs:
            names = {v: k for k, v in enumerate(g.nodes)}
            d = distances(len(g.nodes), [(names[s], names[t]) for s, t in g.edges], names[g.root])
            k = sum(0 <= x <= i for x in d)
            want += [k ** -0.5] * k
        t = p["thought"][i - 1]
        assert abs(t["reachable"]["mean"] - np.mean(want)) < 1e-12 and t["reachable"]["n"] == len(want)
        assert t["not_reachable"]["mean"] == 0.0 and t["not_reachable"]["std"] == 0.0
    e = p["edge_attention"]
    for i in range(3):
        assert e[i]["not_reachable"]["mean"] < 1e-20
        tot = e[i]["reachable"]["mean"] * e[i]["reachable"]["n"]
        assert abs(tot - len(graphs)) < 1e-9  # each graph's thought spends all attention on its I_i
    for i, c in enumerate(p["contrast"]):  # within a graph every reachable node weighs the same
        assert c["frontier_vs_not_reachable"]["positive"] == 1.0 and c["frontier_vs_not_reachable"]["graphs"] == len(graphs)
        if c["optimal_vs_frontier_not_optimal"]["graphs"]:
            assert abs(c["optimal_vs_frontier_not_optimal"]["mean"]) < 1e-12
        if i > 0:  # eq. (1) keeps the nodes reached before
            assert c["earlier_vs_not_reachable"]["positive"] == 1.0


def test_training_is_seeded_and_a_shorter_run_is_a_prefix_of_a_longer_one():
    """Same config, same numbers; and --steps only cuts the run (the stage schedule and the data
    stream do not depend on it), so an arm stopped early replays with --steps = steps reached."""
    from groklab.superposition.train import train_arm

    kw = dict(n_min=8, n_max=9, n_tokens=12, d_model=16, n_head=2, batch=8, stage_steps=2, eval_every=2, n_eval=16)
    _, a = train_arm(TrainConfig(steps=4, **kw), "coconut")
    _, b = train_arm(TrainConfig(steps=8, **kw), "coconut")
    strip = lambda rows: [(r["step"], r["stage"], r["loss"], r["acc"]) for r in rows]  # noqa: E731
    assert strip(a) == strip(b)[: len(a)] and len(b) == 5


def test_bfs_loss_is_minus_log_mass_on_the_next_hop_frontier():
    """Emergence of Superposition App. E.2: before the last stage the loss is -log sum_{v in F} p(v),
    F = nodes at the end of a (k+1)-step walk from the root; after it, the answer's cross-entropy.
    Checked against a loop over rows in float64, and against the graph's own levels."""
    from groklab.superposition.data import frontier_tokens
    from groklab.superposition.train import arm_loss

    cfg = TrainConfig(n_min=8, n_max=10, depth=3, n_tokens=12, d_model=32, n_head=4, coconut_loss="bfs")
    rng = np.random.default_rng(3)
    graphs = [make_graph(rng, cfg.data) for _ in range(6)]
    for g in graphs:  # on these layered graphs the walk frontier is the set at distance k, and holds the optimal nodes
        local = {v: k for k, v in enumerate(g.nodes)}
        d = distances(len(g.nodes), [(local[s], local[t]) for s, t in g.edges], local[g.root])
        for k in range(1, cfg.depth + 1):
            assert sorted(frontier_tokens(g, k)) == sorted(v for v in g.nodes if d[local[v]] == k)
            assert set(g.optimal[k]) <= set(frontier_tokens(g, k))
    model = GPT(cfg.gpt, seed=0).double().requires_grad_(False)
    for stage in range(cfg.depth + 1):
        b = encode_batch(graphs, cfg.data.vocab, "coconut", stage, np.random.default_rng(0))
        h, _, _ = coconut_forward(model, b.tokens, b.pos, b.pad, b.prompt_len, b.n_latent)
        got = arm_loss(model, h, b, cfg, "coconut", stage)
        p = model.logits(h[:, -1]).softmax(-1)
        if stage < cfg.depth:
            want = -torch.stack([p[i, frontier_tokens(g, stage + 1)].sum().log() for i, g in enumerate(graphs)]).mean()
            standard = arm_loss(model, h, b, TrainConfig(**{**cfg.to_dict(), "coconut_loss": "optimal"}), "coconut", stage)
            wider = any(len(frontier_tokens(g, stage + 1)) > 1 for g in graphs)
            assert float(standard) > float(got) if wider else float(standard) == pytest.approx(float(got), rel=1e-12)
        else:
            want = -torch.stack([p[i, g.target].log() for i, g in enumerate(graphs)]).mean()
        assert float(got) == pytest.approx(float(want), rel=1e-12)
    with pytest.raises(GroklabError, match="coconut-loss 'frontier': optimal or bfs"):
        TrainConfig(coconut_loss="frontier")
