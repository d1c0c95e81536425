"""Progress measures of Nanda et al. 2023 (science.md §7), per ensemble member, for Z_M addition.

Reference: "Progress measures for grokking via mechanistic interpretability" (§5) and its code
(mechanistic-interpretability-grokking/progress-measures-paper: transformers.py, helpers.py).
The network's logits over all M² pairs are decomposed along the directions cos(w_k(a+b)) and
sin(w_k(a+b)), w_k = 2πk/M, of the (a, b) grid, per output class c:

- **key frequencies** (groklab's rule): the frequencies k = 1..M//2 whose share of the token
  embeddings' Fourier norm exceeds `key_factor` / (M//2) (default 2: twice the share a flat
  spectrum gives each frequency). The embeddings are the transformer's W_E without '=', or the
  one-hot networks' first-layer columns [W_a ; W_b] (Li2Net, EmbedMLP). Nanda's code takes each
  MLP neuron's best frequency instead; their paper computes restricted/excluded loss with the
  final model's key frequencies, which `key_freqs=` lets you pass.
- **restricted loss**: keep only the key-frequency components of the logits, P L, add back each
  class's mean of what was removed (the reference's bias correction), cross-entropy over all M²
  pairs (the reference's calculate_trig_loss, mode "all").
- **excluded loss**: remove the key-frequency components, L − P L (no bias correction), loss on
  each member's training pairs. The paper removes all key frequencies at once; the reference's
  calculate_excluded_loss reports one frequency at a time. We follow the paper.
- **Gini** of the per-frequency Fourier norms of the embeddings (sparsity of the spectrum; 0 for a
  flat spectrum, (n−1)/n for one frequency). Per frequency, not per cos/sin row, so the phase of a
  frequency does not change it.
- **sum of squared weights** over all parameters (the reference's sum_sq_weights).

The Fourier basis is the reference's make_fourier_basis (constant, then cos k, sin k, each of
unit norm); for even M the k = M/2 frequency has only its cosine (the reference divides by a zero
sine there).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from groklab.errors import GroklabError
from groklab.train.losses import per_example_loss

__all__ = ["is_modular_addition", "fourier_basis", "token_embeddings", "frequency_norms", "key_frequencies", "gini", "all_logits",
           "sum_directions", "restricted_logits", "excluded_logits", "progress_measures"]

KEY_FACTOR = 2.0  # a key frequency holds more than KEY_FACTOR x a flat spectrum's share


def fourier_basis(M: int, dtype: torch.dtype = torch.float64) -> tuple[Tensor, list[str]]:
    """Orthonormal real Fourier basis of R^M: rows const, cos 1, sin 1, ..., (M, M), and names."""
    x = torch.arange(M, dtype=dtype)
    rows, names = [torch.ones(M, dtype=dtype)], ["const"]
    for k in range(1, M // 2 + 1):
        rows.append(torch.cos(2 * math.pi * k * x / M))
        names.append(f"cos {k}")
        if 2 * k != M:  # for even M, sin(π x) = 0: frequency M/2 is a single (real) direction
            rows.append(torch.sin(2 * math.pi * k * x / M))
            names.append(f"sin {k}")
    B = torch.stack(rows)
    return B / B.norm(dim=1, keepdim=True), names


def token_embeddings(model: torch.nn.Module) -> Tensor:
    """The learned vector of each input token, (E, D, M): columns = tokens 0..M-1.

    Transformer: W_E without the '=' column (D = d_model). Li2Net / EmbedMLP: the first layer's
    columns for a and for b stacked, [W_a ; W_b] (D = 2K): both operands' embeddings count."""
    kind = getattr(model, "kind", None)
    if kind == "transformer":
        return model.W_E[:, :, : model.order].detach()
    if kind in ("li2", "embed-mlp"):
        W = model.export()["W"]  # (E, K, 2M), the contract's layout: W[..., :M] acts on a
        M = W.shape[2] // 2
        return torch.cat([W[..., :M], W[..., M:]], dim=1)
    raise GroklabError(f"progress measures: no token embeddings for model {kind!r}; expected transformer, embed-mlp or li2")


def frequency_norms(emb: Tensor) -> Tensor:
    """Squared Fourier norm of the embeddings per frequency k = 1..M//2 (cos² + sin², summed over
    the D features), (E, M//2). The constant component is left out."""
    E, D, M = emb.shape
    B, names = fourier_basis(M, torch.float64)
    c2 = torch.einsum("edm,fm->edf", emb.to(torch.float64).cpu(), B).square().sum(1)  # (E, M) per basis row
    out = torch.zeros(E, M // 2, dtype=torch.float64)
    for f, name in enumerate(names[1:], start=1):
        out[:, int(name.split()[1]) - 1] += c2[:, f]
    return out


def key_frequencies(norms: Tensor, key_factor: float = KEY_FACTOR) -> list[list[int]]:
    """Per member, the frequencies (1-based) whose share of the total exceeds key_factor / n_freq."""
    share = norms / norms.sum(dim=1, keepdim=True).clamp(min=torch.finfo(norms.dtype).tiny)
    thr = key_factor / norms.shape[1]
    return [[int(k) + 1 for k in torch.nonzero(row > thr).flatten()] for row in share]


def gini(x: Tensor) -> Tensor:
    """Gini coefficient along the last axis of non-negative values: Σ_i (2i − n − 1) x_(i) / (n Σ x)
    with x sorted ascending (= Σ_ij |x_i − x_j| / (2 n Σ x)). 0 = flat, (n − 1)/n = one-hot."""
    xs, _ = torch.sort(x.to(torch.float64), dim=-1)
    n = xs.shape[-1]
    i = torch.arange(1, n + 1, dtype=torch.float64)
    return ((2 * i - n - 1) * xs).sum(-1) / (n * xs.sum(-1).clamp(min=torch.finfo(torch.float64).tiny))


def sum_directions(M: int) -> tuple[Tensor, Tensor]:
    """Unit vectors cos(w_k(a+b)), sin(w_k(a+b)) over the M² grid (flat index a*M + b), k = 1..M//2,
    as rows of U (n_dir, M²), and each row's frequency (n_dir,). Rows are orthonormal (Nanda's
    get_component_cos_xpy / sin_xpy directions)."""
    a = torch.arange(M, dtype=torch.float64).repeat_interleave(M)
    b = torch.arange(M, dtype=torch.float64).repeat(M)
    rows, freqs = [], []
    for k in range(1, M // 2 + 1):
        for trig in (torch.cos, torch.sin):
            u = trig(2 * math.pi * k * (a + b) / M)
            nrm = u.norm()
            if nrm > 1e-9:  # sin at k = M/2 vanishes
                rows.append(u / nrm)
                freqs.append(k)
    return torch.stack(rows), torch.tensor(freqs)


def _key_projection(logits: Tensor, keys: Sequence[Sequence[int]]) -> Tensor:
    """P L: each member's logits (E, C, M²) projected, per class, onto its key directions."""
    M = math.isqrt(logits.shape[2])
    U, freqs = sum_directions(M)
    U = U.to(logits.device)
    sel = torch.zeros(logits.shape[0], U.shape[0], dtype=logits.dtype, device=logits.device)
    for e, ks in enumerate(keys):
        sel[e] = torch.isin(freqs, torch.as_tensor(list(ks), dtype=freqs.dtype)).to(logits.dtype)
    coef = torch.einsum("ecn,kn->eck", logits, U) * sel[:, None, :]
    return torch.einsum("eck,kn->ecn", coef, U)


def restricted_logits(logits: Tensor, keys: Sequence[Sequence[int]]) -> Tensor:
    """Key-frequency components only, with the reference's bias correction: P L + mean_n(L − P L).
    logits (E, C, M²) over all pairs in flat order a*M + b."""
    P = _key_projection(logits, keys)
    return P + (logits - P).mean(dim=2, keepdim=True)


def excluded_logits(logits: Tensor, keys: Sequence[Sequence[int]]) -> Tensor:
    """Key-frequency components removed: L − P L. logits (E, C, M²) over all pairs."""
    return logits - _key_projection(logits, keys)


def _train_mask(train_idx, E: int, P: int) -> Tensor:
    """(E, P) float mask from flat indices [n] / [E, n] / a list of E index arrays, or bool masks."""
    if isinstance(train_idx, (list, tuple)) and len(train_idx) == E and not np.isscalar(train_idx[0]):
        rows = [np.asarray(t) for t in train_idx]
    else:
        arr = np.asarray(train_idx)
        rows = [arr] * E if arr.ndim == 1 else list(arr)
    mask = torch.zeros(E, P, dtype=torch.float64)
    for e, r in enumerate(rows):
        if r.dtype == bool:
            mask[e] = torch.as_tensor(r.reshape(-1), dtype=torch.float64)
        else:
            mask[e, torch.as_tensor(r.astype(np.int64))] = 1.0
    return mask


def _mean(loss: Tensor, mask: Tensor) -> np.ndarray:
    return ((loss * mask).sum(1) / mask.sum(1).clamp(min=1)).numpy()


@torch.no_grad()
def all_logits(model: torch.nn.Module, M: int, chunk: int = 4096) -> Tensor:
    """The model's outputs on all M² pairs (flat order a*M + b), (E, M, M²) float64 on the CPU."""
    p = next(model.parameters())
    flat = torch.arange(M * M, device=p.device)
    outs = [model(flat[i:i + chunk] // M, flat[i:i + chunk] % M).to(torch.float64).cpu()
            for i in range(0, M * M, chunk)]
    return torch.cat(outs, dim=2)


@torch.no_grad()
def is_modular_addition(table) -> bool:
    """Is `table` the M×M table of (a + b) mod M, the only one the Fourier measures are defined for?"""
    table = np.asarray(table)
    M = table.shape[0]
    ar = np.arange(M)
    return table.shape == (M, M) and bool(np.array_equal(table, (ar[:, None] + ar[None, :]) % M))


def progress_measures(model: torch.nn.Module, task_table: np.ndarray, train_idx, *, loss: str = "ce",
                      key_freqs: Sequence[int] | Sequence[Sequence[int]] | None = None,
                      key_factor: float = KEY_FACTOR) -> dict:
    """Nanda et al.'s progress measures for every member of `model` on Z_M addition.

    task_table [M, M] must be (a + b) mod M (the Fourier directions are those of Z_M). train_idx:
    flat indices a*M + b of the training pairs, [n] shared or [E, n] (or E arrays, or bool masks
    [M²] / [E, M²]). loss: the per-example loss used ("ce" as in the paper; "mse", "stablemax").
    key_freqs: a list of frequencies for every member, or one list per member (e.g. the final
    checkpoint's, as the paper does); None: found from the embeddings (see the module docstring).

    Returns {"key_freqs": list of E lists, "freq_share": (E, M//2), "gini": (E,),
    "restricted_loss": (E,), "excluded_loss": (E,), "train_loss": (E,), "test_loss": (E,),
    "sum_sq_weights": (E,)}, numpy arrays.
    """
    table = np.asarray(task_table)
    M = table.shape[0]
    if not is_modular_addition(table):
        raise GroklabError(f"progress measures: the task table must be Z_{M} addition (a + b) mod {M}; "
                           "the Fourier directions cos/sin(w(a+b)) are defined for it only")
    norms = frequency_norms(token_embeddings(model))  # (E, M//2)
    E = norms.shape[0]
    if key_freqs is None:
        keys = key_frequencies(norms, key_factor)
    elif len(key_freqs) > 0 and not np.isscalar(key_freqs[0]):
        keys = [list(map(int, k)) for k in key_freqs]  # one list per member
    else:
        keys = [list(map(int, key_freqs))] * E
    if len(keys) != E:
        raise GroklabError(f"progress measures: key_freqs has {len(keys)} lists for {E} members")
    L = all_logits(model, M)  # (E, M, M²)
    y = torch.as_tensor(table.reshape(-1), dtype=torch.int64)
    train = _train_mask(train_idx, E, M * M)
    ones = torch.ones(E, M * M, dtype=torch.float64)
    full = per_example_loss(loss, L, y)  # (E, M²)
    return {
        "key_freqs": keys,
        "freq_share": (norms / norms.sum(1, keepdim=True)).numpy(),
        "gini": gini(norms.sqrt()).numpy(),
        "restricted_loss": _mean(per_example_loss(loss, restricted_logits(L, keys), y), ones),
        "excluded_loss": _mean(per_example_loss(loss, excluded_logits(L, keys), y), train),
        "train_loss": _mean(full, train),
        "test_loss": _mean(full, 1.0 - train),
        "sum_sq_weights": sum(p.detach().to(torch.float64).square().flatten(1).sum(1).cpu()
                              for p in model.parameters()).numpy(),
    }
