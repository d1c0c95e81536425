"""What post-training did to each weight matrix, against the base: W0 (base) -> W1 (post-trained).

The measures follow the parameter-level probes of Zhu et al. 2025, "The Path Not Taken: RLVR
Provably Learns Off the Principals" (arXiv 2511.08567): principal-subspace rotation, spectral drift,
(off-)principal alignment of the update, and the bf16 "precision gate" (their Gate III); the update
sparsity count in bf16 is that of Mukherjee et al. 2025 (arXiv 2505.11711, SagnikMukherjee/
sparsity_in_rl check_sparsity.py: a parameter is unchanged when its stored bf16 value is equal).
Only the abstract and summaries of 2511.08567 could be read here, so the exact normalisations
below are ours (docs/posttrain.md says so). With W = U S V^T and U_k, V_k the top-k singular vectors:

  dW_rel      ||W1 - W0||_F / ||W0||_F
  rot_left    largest principal angle (degrees) between span U0_k and span U1_k:
              cos theta_i = sigma_i(U0_k^T U1_k) (Bjorck & Golub 1973); rot_right the same for V
  sv_drift    ||s1_{1:k} - s0_{1:k}||_2 / ||s0_{1:k}||_2  (relative top-k singular-value drift)
  topk_share  ||U0_k U0_k^T dW V0_k V0_k^T||_F^2 / ||dW||_F^2: the share of the update's energy in
              the base's principal block; an isotropic random dW gives k^2/(m n) (`chance_share`)
  bf16_same   share of entries with bf16(W1) == bf16(W0): updates below the bf16 spacing vanish
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["principal_angles", "matrix_diagnostics", "DIAGNOSTICS", "chance_share"]

DIAGNOSTICS = ("dW_rel", "rot_left", "rot_right", "sv_drift", "topk_share", "bf16_same")


def principal_angles(A: Tensor, B: Tensor) -> Tensor:
    """Principal angles (radians, ascending) between the column spans of orthonormal A, B (..., m, k)."""
    cos = torch.linalg.svdvals(A.mT @ B).clamp(0.0, 1.0)  # descending cosines
    # arccos loses precision near cos = 1; the sine form (from the orthogonal residual) does not.
    res = B - A @ (A.mT @ B)
    sin = torch.linalg.svdvals(res).flip(-1).clamp(0.0, 1.0)  # ascending sines pair with descending cosines
    return torch.where(cos > math.sqrt(0.5), torch.arcsin(sin), torch.arccos(cos))


def chance_share(shape: tuple[int, int], k: int) -> float:
    """E ||P_U dW P_V||^2 / ||dW||^2 for dW with i.i.d. entries: (k/m) (k/n)."""
    m, n = shape
    k = min(k, m, n)
    return (k / m) * (k / n)


def matrix_diagnostics(W0: Tensor, W1: Tensor, k: int) -> dict[str, Tensor]:
    """Each measure as an (E,) float64 tensor for matrices W0, W1 (E, m, n); k is capped at min(m, n)."""
    W0, W1 = W0.double(), W1.double()
    k = min(k, W0.shape[-2], W0.shape[-1])
    dW = W1 - W0
    U0, s0, V0h = torch.linalg.svd(W0, full_matrices=False)
    U1, s1, V1h = torch.linalg.svd(W1, full_matrices=False)
    U0k, V0k = U0[..., :k], V0h[..., :k, :].mT
    U1k, V1k = U1[..., :k], V1h[..., :k, :].mT
    dn = dW.square().sum((-2, -1))
    block = U0k.mT @ dW @ V0k  # (E, k, k): dW's coordinates in the principal block
    share = block.square().sum((-2, -1)) / dn
    share = torch.where(dn > 0, share, torch.full_like(share, float("nan")))
    same = (W1.float().to(torch.bfloat16) == W0.float().to(torch.bfloat16)).double().mean((-2, -1))
    return {
        "dW_rel": dn.sqrt() / W0.square().sum((-2, -1)).sqrt(),
        "rot_left": principal_angles(U0k, U1k)[..., -1].rad2deg(),
        "rot_right": principal_angles(V0k, V1k)[..., -1].rad2deg(),
        "sv_drift": (s1[..., :k] - s0[..., :k]).norm(dim=-1) / s0[..., :k].norm(dim=-1),
        "topk_share": share,
        "bf16_same": same,
    }
