"""The hand-built 2-layer transformer of "Reasoning by Superposition" (Zhu, Hao, Hu, Jiao, Russell,
Tian; arXiv 2505.12514), with explicit weights, in float64.

Transcribed from the paper's text (v3): Algorithm 1-2 (the transformer: h <- h + Σ_heads Attn(h);
h <- LayerNorm(MLP(h)) with LayerNorm(x) = x/||x||, no residual around the MLP), Definition 1
(sinusoidal code), Lemma 3 (attention chooser), Proposition B.1-B.4 (the two layers), Theorem 1
(readout W_O = U^T), Lemma 6 (the chooser under RoPE). Residual layout (paper §2):

    [ content (d_TE) | buffer 1 (d_TE) | buffer 2 (d_TE) | position slot (d_P) ]

with orthonormal token embeddings u_v = U[:, v] in the content block (U^T U = I). Prompt (Fig. 1):
``<s> s1 t1 <e> ... sm tm <e> <Q> c1 c2 <R> r`` then thoughts [t1..tC] then ``<A>``.

Layer 1: five attention choosers (x, l) -> copy the content of position i-l when token i is x,
else attend to <s> (whose value is zeroed): (<e>,2)->buffer1, (<e>,1)->buffer2, (<R>,2)->buffer2,
(<R>,1)->buffer2, (<A>,1)->buffer1. MLP: coordinate filter 1{x >= eps1} in the U basis.
Layer 2: one head, query = content (the thought, a superposition of V_c), key = buffer1 (an edge's
source) so every edge whose source is in V_c gets the same score; value = buffer2 (the target),
written back into the content: one breadth-first step. <A> finds <R> (key τ u_<A> on <R>) and reads
the two candidates. MLP: filter 1{x >= eps2} on content and buffer1, summed into the content;
after LayerNorm the thought is (1/sqrt|V_{c+1}|) Σ_{v in V_{c+1}} u_v (Lemma 2, eq. 1).

Two places where the paper's constants, taken literally, are wrong, and what this module does
(``paper_literal=True`` restores the literal version so tests can show the failures):

1. Layer-2 threshold. The paper takes eps2 = 1/(4n) claiming every true weight is >= 1/(2n); but a
   target reached by one edge out of |I_c| matched edges gets weight 1/(sqrt(3)|I_c|), and |I_c| can
   reach the edge count m >> n (dense graphs). We use eps2 = min(1/(2 sqrt(3) m_max), 1/(2 sqrt(n+1))).
2. Empty match set. If no edge leaves V_c (a root with no out-edges), all layer-2 scores are 0 and
   the softmax spreads uniformly over every target in every buffer 2 — weights ~ m/(sqrt(3)(3m+6)),
   far above eps2 — so unreachable nodes enter the thought. We give <s> a key
   τ_s Σ_{nodes} u_v with τ_s = τ/(2 sqrt(3) n): its score τ_s sqrt|V_c| lies strictly between 0
   and every matched edge's τ/sqrt(3|V_c|), so <s> is a layer-2 attention sink with value 0.

RoPE (paper §B.6) is built for the layer-1 choosers, where the paper puts it; layer 2 reads no
position and is not rotated here (the paper does not say how a fully rotated layer 2 would work).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from groklab.errors import check
from groklab.superposition.graphs import Problem

__all__ = ["ConstructionConfig", "Construction", "Thinking"]

POSITIONS = ("sinusoidal", "rope")
BASES = ("identity", "random")


@dataclass(frozen=True)
class ConstructionConfig:
    """Sizes and choices of the construction. ``m_max`` defaults to n_max(n_max-1) (every ordered
    pair), ``t_max`` to the longest prompt + n_max thoughts + <A>."""

    n_max: int = 16
    m_max: int | None = None
    t_max: int | None = None
    position: str = "sinusoidal"
    d_pe: int = 32  # sinusoidal: effective positional dimension d_PE (even)
    base: float | None = None  # M of Definition 1 / 2; default 1e4 (sinusoidal), t_max (RoPE needs M >= T)
    basis: str = "identity"  # token embeddings U: identity, or a random orthonormal basis
    seed: int = 0
    paper_literal: bool = False  # eps2 = 1/(4n) and no layer-2 sink, exactly as printed
    softmax_slack: float = 1e-9  # chooser attention on its target >= 1 - softmax_slack
    margin: float = 60.0  # layer-2 score gap (nats) between groups

    def __post_init__(self) -> None:
        check(2 <= self.n_max <= 4096, "n_max", self.n_max, "must be in [2, 4096]")
        check(self.position in POSITIONS, "position", self.position, "one of " + ", ".join(POSITIONS))
        check(self.basis in BASES, "basis", self.basis, "one of " + ", ".join(BASES))
        check(self.d_pe >= 2 and self.d_pe % 2 == 0, "d_pe", self.d_pe, "must be an even integer >= 2")
        check(self.m_max is None or self.m_max >= 1, "m_max", self.m_max, "must be >= 1")
        check(self.t_max is None or self.t_max >= 8, "t_max", self.t_max, "must be >= 8")
        check(self.base is None or self.base > 1, "base", self.base, "must be > 1")
        check(0 < self.softmax_slack < 0.01, "softmax_slack", self.softmax_slack, "must be in (0, 0.01)")
        check(self.margin >= 10, "margin", self.margin, "must be >= 10 (nats)")

    @property
    def edges_max(self) -> int:
        return self.m_max if self.m_max is not None else self.n_max * (self.n_max - 1)

    @property
    def length_max(self) -> int:
        return self.t_max if self.t_max is not None else 3 * self.edges_max + 6 + self.n_max + 1


@dataclass
class Thinking:
    """What one run of the construction produced: thoughts[c] = [t_c] as full d-vectors (c = 0..C;
    [t_0] = u_root), logits over the vocabulary at <A>, the predicted token, and per step the
    layer-2 attention row of the position that made the next thought."""

    thoughts: torch.Tensor  # (C+1, d)
    logits: torch.Tensor  # (V,)
    prediction: int
    attn_l2: list[torch.Tensor]  # attn_l2[c]: (t0 + c,) layer-2 attention of the position making [t_{c+1}]


def _rot2(theta: torch.Tensor) -> torch.Tensor:
    """Block-diagonal 2x2 rotations by the angles ``theta`` (k,) -> (2k, 2k)."""
    k = theta.numel()
    r = torch.zeros(2 * k, 2 * k, dtype=torch.float64)
    c, s = torch.cos(theta), torch.sin(theta)
    idx = torch.arange(k) * 2
    r[idx, idx], r[idx, idx + 1], r[idx + 1, idx], r[idx + 1, idx + 1] = c, -s, s, c
    return r


class Construction:
    """The weights of Proposition B.1-B.4 for graphs with up to n_max nodes, and the forward pass."""

    def __init__(self, cfg: ConstructionConfig):
        self.cfg = cfg
        n = cfg.n_max
        self.V = V = n + 5
        self.BOS, self.EDGE, self.QUES, self.REASON, self.ANS = n, n + 1, n + 2, n + 3, n + 4
        rope = cfg.position == "rope"
        self.dte = dte = V + (V % 2 if rope else 0)  # RoPE rotates pairs, so d_TE is even there
        self.dp = dp = 2 if rope else cfg.d_pe
        self.d = d = 3 * dte + dp
        T = cfg.length_max
        M = cfg.base if cfg.base is not None else (float(T) if rope else 1e4)
        check(not rope or M >= T, "base", M, f"RoPE chooser needs base >= t_max = {T} (paper Lemma 6)")
        self.M, self.T = M, T
        g = torch.Generator().manual_seed(cfg.seed)
        if cfg.basis == "identity":
            U = torch.eye(dte, V, dtype=torch.float64)
        else:
            U, _ = torch.linalg.qr(torch.randn(dte, V, generator=g, dtype=torch.float64))
        self.U = U  # (d_TE, V), orthonormal columns
        C, B1, B2, P = slice(0, dte), slice(dte, 2 * dte), slice(2 * dte, 3 * dte), slice(3 * dte, d)
        self.blocks = dict(content=C, buffer1=B1, buffer2=B2, pos=P)
        u = lambda v: U[:, v]  # noqa: E731
        u_not = lambda x: U.sum(1) - U[:, x]  # ũ_x̄: every token but x  # noqa: E731

        # ---- positions -------------------------------------------------------------------
        pos = torch.zeros(T + 1, d, dtype=torch.float64)  # row i = p_i (1-indexed; row 0 unused)
        if rope:
            pos[:, 3 * dte] = 1.0  # the constant coordinate h_i = [h̃_i, 1, 0] of §B.6
            dr = dte + 2
            self.rope_omega = M ** (-2.0 * torch.arange(1, dr // 2 + 1, dtype=torch.float64) / dr)
        else:
            om = M ** (-2.0 * torch.arange(1, dp // 2 + 1, dtype=torch.float64) / dp)
            ang = torch.arange(T + 1, dtype=torch.float64)[:, None] * om[None]
            pos[:, P] = torch.stack([torch.cos(ang), torch.sin(ang)], -1).reshape(T + 1, dp)
            self.sin_omega = om
        self.pos = pos

        # ---- layer 1: five attention choosers (Lemma 3 / Lemma 6) ---------------------------
        slack = cfg.softmax_slack
        choosers = [(self.EDGE, 2, B1), (self.EDGE, 1, B2), (self.REASON, 2, B2), (self.REASON, 1, B2), (self.ANS, 1, B1)]
        self.l1 = []
        Vm = torch.zeros(dte, d, dtype=torch.float64)
        Vm[:, C] = torch.eye(dte, dtype=torch.float64) - torch.outer(u(self.BOS), u(self.BOS))  # <s> carries nothing
        for x, ell, out in choosers:
            Q, K, gap, X = self._chooser(x, ell, u_not(x))
            eta = math.log(max(T - 1, 1) / slack) / min(gap, X) + 1.0
            O = torch.zeros(d, dte, dtype=torch.float64)
            O[out, :] = torch.eye(dte, dtype=torch.float64)
            self.l1.append(dict(Q=Q, K=K * eta, V=Vm.clone(), O=O, token=x, ell=ell))
        self.eps1 = 1.0 / (2.0 * math.sqrt(n))  # Proposition B.2
        W1 = torch.zeros(3 * V, d, dtype=torch.float64)
        for b, blk in enumerate((C, B1, B2)):
            W1[b * V:(b + 1) * V, blk] = U.T
        self.mlp1 = dict(W1=W1, W2=W1.T.clone())

        # ---- layer 2: one head (Proposition B.3) and the filter MLP (B.4) --------------------
        sink = not cfg.paper_literal
        tau = 2.0 * math.sqrt(3.0) * n * cfg.margin  # matched-vs-sink and sink-vs-rest gaps >= margin
        Q2 = torch.zeros(dte, d, dtype=torch.float64)
        Q2[:, C] = torch.eye(dte, dtype=torch.float64)
        K2 = torch.zeros(dte, d, dtype=torch.float64)
        K2[:, C] = tau * torch.outer(u(self.ANS), u(self.REASON))
        if sink:
            K2[:, C] += tau / (2.0 * math.sqrt(3.0) * n) * torch.outer(U[:, :n].sum(1), u(self.BOS))
        K2[:, B1] = tau * torch.eye(dte, dtype=torch.float64)
        V2 = torch.zeros(dte, d, dtype=torch.float64)
        V2[:, B2] = torch.eye(dte, dtype=torch.float64)
        O2 = torch.zeros(d, dte, dtype=torch.float64)
        O2[C, :] = torch.eye(dte, dtype=torch.float64)
        self.l2 = dict(Q=Q2, K=K2, V=V2, O=O2)
        self.eps2 = 1.0 / (4.0 * n) if cfg.paper_literal else min(
            1.0 / (2.0 * math.sqrt(3.0) * cfg.edges_max), 1.0 / (2.0 * math.sqrt(n + 1.0)))
        W1b = torch.zeros(2 * V, d, dtype=torch.float64)
        W1b[:V, C], W1b[V:, B1] = U.T, U.T
        W2b = torch.zeros(d, 2 * V, dtype=torch.float64)
        W2b[C, :V], W2b[C, V:] = U, U
        self.mlp2 = dict(W1=W1b, W2=W2b)
        self.WO = torch.zeros(V, d, dtype=torch.float64)
        self.WO[:, C] = U.T  # Theorem 1: W_O = [u_1, ..., u_V]^T

    def _chooser(self, x: int, ell: int, unot: torch.Tensor):
        """Q, K (before the η scale) of the chooser (x, ell), its position gap ε_T and the scale X
        of its position term (the sink condition uses ξ(...) >= 2X)."""
        T, d, dte, dp = self.T, self.d, self.dte, self.dp
        if self.cfg.position == "sinusoidal":  # Lemma 3
            om = self.sin_omega
            P = slice(3 * dte, d)
            lags = torch.arange(1, T + 1, dtype=torch.float64)
            inner = torch.cos(lags[:, None] * om[None]).sum(1)  # <p̄_i, p̄_{i+δ}> for δ = 1..T
            gap = float(dp / 2 - inner.max())
            xi = float((2 * dp / (dp / 2 - inner[: T - 1])).max())  # ξ of Lemma 3 (⟨p̄1,p̄j⟩ = inner[j-2])
            Q = torch.zeros(2 * dp, d, dtype=torch.float64)
            Q[:dp, P] = torch.eye(dp, dtype=torch.float64)
            Q[dp:, : dte] = xi * torch.outer(self.pos[1, P], unot)
            K = torch.zeros(2 * dp, d, dtype=torch.float64)
            K[:dp, P] = _rot2(ell * om)
            K[dp:, P] = torch.eye(dp, dtype=torch.float64)
            return Q, K, gap, float(dp)
        # RoPE, Lemma 6: query/key space of dim d_TE + 2, rotated by R(i) inside attention.
        om = self.rope_omega
        dr, b = dte + 2, 3 * dte  # b: the constant coordinate
        om_te, om_last = om[: dte // 2], float(om[-1])
        lags = torch.arange(1, T + 1, dtype=torch.float64)
        gap = float(dte / 2 - torch.cos(lags[:, None] * om_te[None]).sum(1).max())
        M = self.M
        # ξ(cos((T-(i-1))/M) - cos((T-(i-j))/M)) >= 2 d_TE for all 1 <= j < i <= T; tightest at i = T, j = 2
        a = torch.arange(1, T, dtype=torch.float64)  # T-(i-1) runs over 1..T-1
        xi = float((2 * dte / (torch.cos(a / M) - torch.cos((a + 1) / M))).max())
        p0 = torch.zeros(dte, dtype=torch.float64)
        p0[0::2] = 1.0
        pl = torch.zeros(dte, dtype=torch.float64)
        pl[0::2], pl[1::2] = torch.cos(ell * om_te), torch.sin(ell * om_te)
        Q = torch.zeros(dr, d, dtype=torch.float64)
        Q[:dte, b] = p0
        Q[dte:, : dte] = xi * torch.outer(torch.tensor([math.cos(-T * om_last), math.sin(-T * om_last)], dtype=torch.float64), unot)
        K = torch.zeros(dr, d, dtype=torch.float64)
        K[:dte, b] = pl
        K[dte, b] = 1.0
        return Q, K, gap, float(dte)

    # ---- the transformer (Algorithm 1 and 2) ---------------------------------------------------
    def embed(self, tokens: list[int]) -> torch.Tensor:
        """Token embeddings u_v as rows (T, d): content block only."""
        h = torch.zeros(len(tokens), self.d, dtype=torch.float64)
        h[:, self.blocks["content"]] = self.U[:, tokens].T
        return h

    def _attend(self, h: torch.Tensor, Q, K, rotate: bool) -> torch.Tensor:
        """Causal softmax attention weights (T, T) for rows h (T, d)."""
        q, k = h @ Q.T, h @ K.T  # (T, dq)
        if rotate:  # RoPE: q_i = R(i) Q h_i, k_j = R(j) K h_j
            T = h.shape[0]
            ang = torch.arange(1, T + 1, dtype=torch.float64)[:, None] * self.rope_omega[None]  # (T, dq/2)
            c, s = torch.cos(ang), torch.sin(ang)

            def rot(z):
                z1, z2 = z[:, 0::2], z[:, 1::2]
                return torch.stack([c * z1 - s * z2, s * z1 + c * z2], -1).reshape(z.shape)

            q, k = rot(q), rot(k)
        scores = q @ k.T
        T = h.shape[0]
        scores = scores.masked_fill(torch.triu(torch.ones(T, T, dtype=torch.bool), 1), float("-inf"))
        return torch.softmax(scores, dim=-1)

    @staticmethod
    def _layernorm(x: torch.Tensor) -> torch.Tensor:
        return x / x.norm(dim=-1, keepdim=True)  # the paper's LayerNorm(x) = x / ||x||_2

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """h: (T, d) input embeddings -> (h^(2) (T, d), attention maps {'l1': (5, T, T), 'l2': (T, T)})."""
        T = h.shape[0]
        check(T <= self.T, "t_max", self.T, f"sequence of length {T} is longer than the construction's t_max")
        h0 = h + self.pos[1: T + 1]
        rope = self.cfg.position == "rope"
        a1 = torch.stack([self._attend(h0, hd["Q"], hd["K"], rope) for hd in self.l1])
        x = h0 + sum((a1[i] @ (h0 @ hd["V"].T)) @ hd["O"].T for i, hd in enumerate(self.l1))
        m = self.mlp1
        h1 = self._layernorm((((x @ m["W1"].T) >= self.eps1).double()) @ m["W2"].T)
        a2 = self._attend(h1, self.l2["Q"], self.l2["K"], False)
        x2 = h1 + (a2 @ (h1 @ self.l2["V"].T)) @ self.l2["O"].T
        m = self.mlp2
        h2 = self._layernorm((((x2 @ m["W1"].T) >= self.eps2).double()) @ m["W2"].T)
        return h2, {"l1": a1, "l2": a2}

    # ---- the problem ------------------------------------------------------------------------
    def prompt(self, p: Problem) -> list[int]:
        """``<s> s1 t1 <e> ... <Q> c1 c2 <R> r`` as token ids (length t0 = 3m + 6)."""
        check(p.n <= self.cfg.n_max, "n", p.n, f"the construction was built for n_max = {self.cfg.n_max} nodes")
        check(len(p.edges) <= self.cfg.edges_max, "edges", len(p.edges), f"at most m_max = {self.cfg.edges_max}")
        toks = [self.BOS]
        for s, t in p.edges:
            toks += [s, t, self.EDGE]
        return toks + [self.QUES, p.c1, p.c2, self.REASON, p.root]

    def think(self, p: Problem, n_thoughts: int) -> Thinking:
        """Continuous thought, autoregressively: [t_{c+1}] = TF(h_1..h_{t0}, [t_1]..[t_c]) is the last
        position's output fed back as the next input (Coconut); then <A> and the greedy answer."""
        h = self.embed(self.prompt(p))
        thoughts, attn = [h[-1]], []
        for _ in range(n_thoughts):
            out, maps = self.forward(h)
            attn.append(maps["l2"][-1])
            thoughts.append(out[-1])
            h = torch.cat([h, out[-1:]], 0)
        h = torch.cat([h, self.embed([self.ANS])], 0)
        out, _ = self.forward(h)
        logits = self.WO @ out[-1]
        return Thinking(torch.stack(thoughts), logits, int(logits.argmax()), attn)

    def superposition(self, nodes: list[int]) -> torch.Tensor:
        """(1/sqrt|S|) Σ_{v in S} u_v as a d-vector: eq. (1) of the paper."""
        h = torch.zeros(self.d, dtype=torch.float64)
        h[self.blocks["content"]] = self.U[:, nodes].sum(1) / math.sqrt(len(nodes))
        return h
