"""The measures of groklab's analysis (science.md §3, §5; Li2 §4–5.3), computed from a Li2Net's
weights on each member's training pairs. ``Probe`` holds what they need from a Job; ``measure``
returns one value per member for each column of analysis.parquet (docs/formats.md).

Cost (the budget is < 10% of a run at the default interval): the n×K work runs in the model's
dtype, label products are gathers and scatters instead of one-hot matmuls, and the n×n matrix
FFᵀ is never formed; what remains is one K×K Gram, two n×M×K products and a few passes over the
(E, n, K) features. Results are reduced in float64. tests/test_analysis.py checks every measure
against its definition (n×n matrices, one-hot matmuls, theory.li2) in float64.
"""

from __future__ import annotations

import numpy as np
import torch

from groklab.errors import GroklabError
from groklab.models.pairs import bag_indices

__all__ = ["ACTIVE_NORM", "SCALARS", "Probe", "measure"]

# A unit counts towards "irreps covered" only if it carries weight: ‖w_k‖ ≥ this × the largest
# unit norm of its member (weight decay shrinks unused units; their direction means nothing).
ACTIVE_NORM = 0.1
# The scalar columns of analysis.parquet, in the order they are written (the irrep ones only for groups).
SCALARS = ("w_rel_change", "v_rel_change", "purity_mean", "purity_median", "purity_a_mean", "purity_a_median",
           "purity_b_mean", "purity_b_median", "purity_weighted", "units_active", "units_pure", "irreps_covered",
           "energy_mean", "energy_max", "energy_weighted", "energy_transfer", "gf_norm", "gf_indep_cos",
           "gf_missing_share", "dF_norm", "ftf_diag", "ftf_offdiag", "fft_dist")


# ---------------------------------------------------------------------------------------------- probe
class Probe:
    """What the measures need from a Job, built once: each member's training pairs (a, b, c padded
    to the largest set, with a 0/1 mask), the irreps of the table (None when it is not a group),
    the activation, and the weights at the first measurement (for the relative changes)."""

    def __init__(self, job):
        cfg = job.cfg
        if cfg.model.model != "li2":
            raise GroklabError(f"analyze: --model {cfg.model.model}: the irrep analysis is defined for the Li2 "
                               "network (one-hot -> W -> σ -> V); use --model li2")
        task = job.task
        self.M, self.act = task.order, cfg.model.act
        E = job.n_members
        n_max = max(len(i) for i in job.train_idx)
        flat = np.zeros((E, n_max), np.int64)
        mask = np.zeros((E, n_max))
        for e, idx in enumerate(job.train_idx):
            flat[e, : len(idx)], mask[e, : len(idx)] = idx, 1.0
        t = torch.as_tensor(flat)
        self.a, self.b = t // self.M, t % self.M  # (E, n)
        self.c = torch.as_tensor(task.table.reshape(-1)[flat])  # (E, n) labels a∘b
        self.mask = torch.as_tensor(mask)  # (E, n) float64
        self.n = self.mask.sum(1)  # (E,)
        self.padded = bool((mask == 0).any())
        self.shared = all(np.array_equal(job.train_idx[0], i) for i in job.train_idx[1:])
        onehot = np.zeros((E, self.M))
        for e in range(E):
            onehot[e] = np.bincount(self.c[e].numpy()[mask[e] > 0], minlength=self.M)
        self.ybar = torch.as_tensor(onehot) / self.n[:, None]  # (E, M) class frequencies ȳ
        # All valid pairs of the task (train + test, shared by the members), for energy_transfer.
        allp = torch.as_tensor(task.pairs())
        self.all_a, self.all_b = allp // self.M, allp % self.M  # (P,)
        self.all_c = torch.as_tensor(task.table.reshape(-1)[allp.numpy()])  # (P,)
        self.all_ybar = torch.bincount(self.all_c, minlength=self.M).double() / len(allp)  # (M,)
        self.irreps = None
        if task.is_group:
            from groklab.theory.reps import irreps

            self.irreps = irreps(task.table)
            self.basis = torch.tensor(np.asarray(self.irreps.basis))  # (M, M) orthonormal columns
            self.starts = np.array([b.start for b in self.irreps.blocks] + [self.M])
            self.block_names = tuple(self.irreps.block_names)
        else:
            self.block_names = ()
        self.w0: torch.Tensor | None = None
        self.v0: torch.Tensor | None = None
        self.device = torch.device("cpu")

    def to(self, device: torch.device) -> "Probe":
        """Move the index and label tensors to the model's device (once), so a GPU run is measured there."""
        if device != self.device:
            for k in ("a", "b", "c", "mask", "n", "ybar", "all_a", "all_b", "all_c", "all_ybar", "basis", "w0", "v0"):
                if getattr(self, k, None) is not None:
                    setattr(self, k, getattr(self, k).to(device))
            self.device = device
        return self


def _sigma(name: str):
    from groklab.models.li2 import ACT

    return ACT[name]


def _block_sums(x: torch.Tensor, starts: np.ndarray) -> torch.Tensor:
    """Sum the last axis of x within each block [starts[i], starts[i+1]) (one matmul)."""
    ind = torch.zeros(x.shape[-1], len(starts) - 1, dtype=x.dtype, device=x.device)
    for i, (lo, hi) in enumerate(zip(starts[:-1], starts[1:])):
        ind[lo:hi, i] = 1
    return x @ ind


# σ(x/‖w‖) = σ(x)/‖w‖^p for positively homogeneous σ of degree p (no second pass over F).
_HOMOGENEOUS = {"sqr": 2, "relu": 1, "relusqr": 2}


def _by_class(x: torch.Tensor, idx: torch.Tensor, M: int, shared: bool) -> torch.Tensor:
    """Σ_{i: idx_i = c} x_i: (E, n, K) rows summed per value of idx (E, n) -> (E, M, K); = onehotᵀ x.
    ``shared``: every member has the same idx (index_add_ on idx[0], faster than a scatter)."""
    E, n, K = x.shape
    out = torch.zeros(E, M, K, dtype=x.dtype, device=x.device)
    if shared:
        return out.index_add_(1, idx[0], x)
    return out.scatter_add_(1, idx[:, :, None].expand(E, n, K), x)


@torch.no_grad()
def measure(probe: Probe, model) -> dict[str, np.ndarray]:
    """All measures for every member: {name: (E,) array}, plus "spectrum" (E, n_blocks) when the
    task is a group. Reads the model only (no state is changed, no random numbers drawn).

    The n×K work runs in the model's dtype; label products use gathers and scatters instead of
    one-hot matmuls, and FFᵀ (n×n) is never formed: the cost is one K×K Gram, two n×M×K products
    and a few passes over the (E, n, K) features.
    """
    dt, dev = model.Wa.dtype, model.Wa.device
    probe.to(dev)
    Wa, Wb, V = (p.detach() for p in (model.Wa, model.Wb, model.V))  # (E, M, K) each; o = V f
    E, M, K = Wa.shape
    W64 = torch.cat([Wa, Wb], 1).double()  # (E, 2M, K): column k is unit k's w ∈ R^{2M}
    V64 = V.double()
    if probe.w0 is None:
        probe.w0, probe.v0 = W64.clone(), V64.clone()
    out: dict[str, np.ndarray] = {}
    out["w_rel_change"] = ((W64 - probe.w0).norm(dim=(1, 2)) / probe.w0.norm(dim=(1, 2))).cpu().numpy()
    out["v_rel_change"] = ((V64 - probe.v0).norm(dim=(1, 2)) / probe.v0.norm(dim=(1, 2))).cpu().numpy()

    # ---- features on the training pairs: F = σ(XW), row convention (E, n, K) ------------------
    sig = _sigma(probe.act)
    a, b, c = probe.a, probe.b, probe.c
    m = probe.mask.to(dt)[:, :, None] if probe.padded else None  # (E, n, 1); None: no padding rows
    # pre-activations Xw, (E, n, K): one embedding_bag over the stacked (E·2M, K) table [W_a; W_b]
    z = torch.nn.functional.embedding_bag(bag_indices(a, b, E, M), torch.cat([Wa, Wb], 1).reshape(E * 2 * M, K),
                                          torch.arange(0, 2 * E * a.shape[1], 2, device=dev), mode="sum").view(E, -1, K)
    F = sig(z) if m is None else sig(z) * m
    n = probe.n  # (E,) float64
    ybar = probe.ybar  # (E, M) class frequencies of the training set

    # ---- kernel diagnostics of the original code (science.md §5), from the K×K Gram only -------
    G = (F.mT @ F).double()  # (E, K, K) = FᵀF
    s = F.sum(1).double()  # (E, K) = Fᵀ1
    C = G - s[:, :, None] * s[:, None, :] / n[:, None, None]  # F̃ᵀF̃, F̃ = P₁^⊥F
    dC = C.diagonal(dim1=1, dim2=2).abs()
    out["ftf_diag"] = dC.mean(1).cpu().numpy()
    out["ftf_offdiag"] = ((C.abs().sum((1, 2)) - dC.sum(1)) / max(K * (K - 1), 1)).cpu().numpy()
    # FFᵀ (n×n) fitted by (a−b)I + b11ᵀ, a/b its mean diagonal / off-diagonal. The fit is the
    # orthogonal projection on span{I, 11ᵀ}, so ‖fit − FFᵀ‖² = ‖FFᵀ‖² − n a² − n(n−1) b², and
    # ‖FFᵀ‖_F = ‖FᵀF‖_F, tr FFᵀ = tr FᵀF, 1ᵀFFᵀ1 = ‖Fᵀ1‖².
    tr = G.diagonal(dim1=1, dim2=2).sum(1)
    a_ = tr / n
    b_ = ((s * s).sum(1) - tr) / (n * (n - 1)).clamp(min=1)
    g2 = (G * G).sum((1, 2))
    resid = (g2 - n * a_**2 - n * (n - 1) * b_**2).clamp(min=0)
    out["fft_dist"] = torch.where(g2 > 0, resid.sqrt() / g2.sqrt(), torch.zeros_like(g2)).cpu().numpy()

    # ---- back-propagated gradient (Li2 Eq. 2) and the code's dF_norm ------------------------------
    D = torch.bmm(F, V.mT).neg_()  # (E, n, M) = −o, outputs in Li2's row layout
    D.scatter_add_(2, c[:, :, None], torch.ones(E, c.shape[1], 1, dtype=dt, device=dev))  # Y − o
    R = torch.bmm(D, V)  # (Y − o)V: one GEMM, no (n, K) gather of V's rows
    if m is not None:
        R = R * m
    rbar = R.sum(1, keepdim=True) / n.to(dt)[:, None, None]
    GF = R - rbar if m is None else (R - rbar) * m  # P₁^⊥(Y − FV)Vᵀ, centred over the member's samples
    gcol = (GF * GF).sum(1).double()  # (E, K) ‖g_k‖²
    out["gf_norm"] = gcol.sum(1).sqrt().cpu().numpy()
    dF = R - (V.sum(1, keepdim=True) / M if m is None else (V.sum(1, keepdim=True) / M) * m)  # (Ỹ − o)V, Ỹ = onehot − 1/M
    out["dF_norm"] = (dF * dF).sum((1, 2)).double().sqrt().cpu().numpy()
    del dF

    # Independence (Li2 §5): in stage II column k of G_F is ∝ h_k = (ỸỸᵀF̃)[:, k], unit k's own
    # activation only. gf_indep_cos = Σ_k⟨g_k, h_k⟩ / Σ_k‖g_k‖‖h_k‖ (1: independent). With
    # Q = ỸᵀF̃ = YᵀF − ȳ(1ᵀF) [M, K], h_i = Q[c_i] − ȳᵀQ; since 1ᵀG_F = 0, ⟨g_k, h_k⟩ = Σ_c Q[c, k]
    # (YᵀG_F)[c, k], and ‖h_k‖² = Σ_c n_c (Q[c, k] − (ȳᵀQ)_k)².
    SF = _by_class(F, c, M, probe.shared).double()  # (E, M, K) = YᵀF
    Q = SF - ybar[:, :, None] * s[:, None, :]
    qbar = (ybar[:, :, None] * Q).sum(1, keepdim=True)
    hn = ((n[:, None, None] * ybar[:, :, None]) * (Q - qbar) ** 2).sum(1).sqrt()  # (E, K) ‖h_k‖
    num = (Q * _by_class(GF, c, M, probe.shared).double()).sum((1, 2))
    den = (gcol.sqrt() * hn).sum(1)
    out["gf_indep_cos"] = torch.where(den > 0, num / den.clamp(min=1e-300), torch.zeros_like(den)).cpu().numpy()

    # ---- energy of each unit direction ŵ = w/‖w‖ (Li2 Thm 1), on the training pairs -------------
    wn = W64.norm(dim=1)  # (E, K)
    if probe.act in _HOMOGENEOUS:  # Ỹᵀσ(Xŵ) = (YᵀF − ȳ 1ᵀF)/‖w‖^p = Q/‖w‖^p
        r = Q / wn.clamp(min=1e-300)[:, None, :] ** _HOMOGENEOUS[probe.act]
    else:
        Fh = sig(z / wn.clamp(min=1e-30).to(dt)[:, None, :])
        Fh = Fh if m is None else Fh * m
        r = _by_class(Fh, c, M, probe.shared).double() - ybar[:, :, None] * Fh.sum(1).double()[:, None, :]
    En = 0.5 * (r * r).sum(1)  # (E, K)
    w2 = wn**2
    out["energy_mean"] = En.mean(1).cpu().numpy()
    out["energy_max"] = En.max(1).values.cpu().numpy()
    ew = (En * w2).sum(1) / w2.sum(1)  # (E,)
    out["energy_weighted"] = ew.cpu().numpy()
    # Does the climb on the training pairs carry over to all pairs? (Li2 §6, Thm 4–5: generalizing
    # maxima of the empirical E are maxima of the population E; memorization maxima are not.)
    # energy_transfer = (E_all/P²) / (E_train/n²), both ‖w‖²-weighted over units: ≈ 1 for units
    # whose signal is coherent over all P pairs (Ỹᵀσ(Xŵ) grows ∝ the number of pairs), ≈ n/P for
    # random directions (it grows ∝ √count), below that when units fit the training pairs only.
    P = probe.all_a.shape[0]
    Eall = _energy_all(probe, W64, wn, dt)  # (E, K)
    ea = (Eall * w2).sum(1) / w2.sum(1)
    out["energy_transfer"] = torch.where(ew > 0, (ea / P**2) / (ew / n**2).clamp(min=1e-300),
                                         torch.zeros_like(ew)).cpu().numpy()

    if probe.irreps is None:
        return out
    # ---- irreps: block energies of every unit and operand -------------------------------------
    from groklab.theory.reps import PURITY_THRESHOLD

    B = probe.basis
    Wu = W64.mT.reshape(E, K, 2, M)  # (E, K, operand, M)
    be = _block_sums(((Wu.reshape(-1, M) @ B) ** 2).reshape(E, K, 2, M), probe.starts)  # (E, K, 2, n_blocks)
    tot = be.sum(-1)  # (E, K, 2)
    frac = be / tot.clamp(min=1e-300)[..., None]
    pur, dom = frac.max(-1)  # (E, K, 2)
    out["purity_a_mean"], out["purity_b_mean"] = pur[:, :, 0].mean(1).cpu().numpy(), pur[:, :, 1].mean(1).cpu().numpy()
    out["purity_a_median"] = pur[:, :, 0].median(1).values.cpu().numpy()
    out["purity_b_median"] = pur[:, :, 1].median(1).values.cpu().numpy()
    out["purity_mean"] = pur.mean((1, 2)).cpu().numpy()
    out["purity_median"] = pur.reshape(E, -1).median(1).values.cpu().numpy()
    out["purity_weighted"] = ((pur * tot).sum((1, 2)) / tot.sum((1, 2))).cpu().numpy()  # Σ dominant energy / ‖W‖²
    active = wn >= ACTIVE_NORM * wn.max(1, keepdim=True).values  # (E, K)
    feat = torch.where((dom[..., 0] == dom[..., 1]) & (pur.min(-1).values >= PURITY_THRESHOLD), dom[..., 0], -1)
    learned = (feat > 0) & active  # block 0 is the trivial irrep: not a feature
    cover = torch.zeros(E, len(probe.block_names), dtype=torch.bool, device=dev)
    for e in range(E):
        cover[e, feat[e][learned[e]]] = True
    out["units_active"] = active.sum(1).cpu().numpy().astype(np.float64)
    out["units_pure"] = learned.sum(1).cpu().numpy().astype(np.float64)
    out["irreps_covered"] = cover.sum(1).cpu().numpy().astype(np.float64)
    out["spectrum"] = (be.sum((1, 2)) / tot.sum((1, 2))[:, None]).cpu().numpy()  # (E, n_blocks)

    # Gradient on the first layer implied by G_F: ∂/∂w_k = Xᵀ(σ′(Xw_k) ⊙ G_F[:, k]); its share in
    # blocks that no unit has learned (Li2 Thm 7: once S is learned, G_F points outside S).
    dz = _dsigma(probe.act, z) * GF  # (E, n, K)
    gu = torch.stack([_by_class(dz, a, M, probe.shared), _by_class(dz, b, M, probe.shared)], 1)  # (E, 2, M, K)
    gu = gu.double().permute(0, 3, 1, 2).reshape(-1, M)  # (E·K·2, M)
    ge = _block_sums((gu @ B) ** 2, probe.starts).reshape(E, -1, len(probe.block_names)).sum(1)  # (E, n_blocks)
    missing = ~cover
    missing[:, 0] = False  # the trivial block is never "missing"
    gtot = ge.sum(1)
    out["gf_missing_share"] = torch.where(gtot > 0, (ge * missing).sum(1) / gtot.clamp(min=1e-300),
                                          torch.zeros_like(gtot)).cpu().numpy()
    return out


_CHUNK_ELEMS = 1 << 22  # (E, chunk, K) elements per pass in _energy_all (16 MB in float32)


def _energy_all(probe: Probe, W64: torch.Tensor, wn: torch.Tensor, dt: torch.dtype) -> torch.Tensor:
    """E(ŵ_k) = ½‖Ỹᵀσ(Xŵ_k)‖² of every unit direction on ALL valid pairs of the task, (E, K) float64.
    W64 (E, 2M, K), wn (E, K) column norms. Ỹ is centred over the P pairs. The pairs run in chunks
    of _CHUNK_ELEMS / (E·K); per chunk one gather, one in-place add and σ, one index_add (the pairs
    are shared by every member), all in the model's dtype: this is M²·K work per member, the
    largest single item of the analysis (bench: analysis overhead)."""
    from groklab.models.pairs import ACT_INPLACE

    E, _, K = W64.shape
    M = probe.M
    Wh = (W64 / wn.clamp(min=1e-300)[:, None, :]).to(dt)  # (E, 2M, K) unit directions
    Wa, Wb = Wh[:, :M], Wh[:, M:]
    sig_ = ACT_INPLACE[probe.act]
    S = torch.zeros(E, M, K, dtype=dt, device=W64.device)  # Σ_{pairs of class c} σ(x·ŵ)
    chunk = max(256, _CHUNK_ELEMS // (E * K))
    for lo in range(0, probe.all_a.shape[0], chunk):
        a, b, c = (t[lo: lo + chunk] for t in (probe.all_a, probe.all_b, probe.all_c))
        f = Wa[:, a]  # (E, chunk, K)
        f += Wb[:, b]
        S.index_add_(1, c, sig_(f))
    S = S.double()
    r = S - probe.all_ybar[None, :, None] * S.sum(1, keepdim=True)  # Ỹᵀσ(Xŵ), (E, M, K): Σ_c S_c = Σ over all pairs
    return 0.5 * (r * r).sum(1)


def _dsigma(name: str, z: torch.Tensor) -> torch.Tensor:
    """σ′(z) for the activations of models.li2 (relu′(0) = 0, as autograd has it)."""
    if name == "sqr":
        return 2 * z
    if name == "relu":
        return (z > 0).to(z.dtype)
    if name == "relusqr":
        return 2 * torch.relu(z)
    s = torch.sigmoid(z)  # silu
    return s * (1 + z * (1 - s))
