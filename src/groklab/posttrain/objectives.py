"""The two post-training objectives, per member: SFT's cross-entropy and the policy gradient.

With answer tokens y = (y_1..y_h) after prompt x, log pi(y|x) = sum_j log pi(y_j | x, y_<j).

  SFT:  L_sft(e) = - mean_b log pi_e(y*_b | x_b)                         (gold answers)
  PG:   L_pg(e)  = - mean_b A_b log pi_e(y_b | x_b),  y_b ~ pi_e(.|x_b)   (REINFORCE surrogate)
        with reward R(y) = 1[y_h == y*_h] (the verifier checks the final answer only, as an outcome
        reward) and A formed from the G samples of each prompt (`advantages`). Its gradient is the
        score-function estimator of grad E_y[R]; with the leave-one-out baseline ("loo", Kool et al.
        2019) it is unbiased, with the group mean ("mean") it is (G-1)/G times an unbiased one,
        and "grpo" (Shao et al. 2024, DeepSeekMath eq. 3's outcome supervision) divides by the
        group's std. tests/test_posttrain.py checks the first two exactly by enumeration.
  KL:   KL(e) = mean_b sum_j KL(pi_e(.|x_b, y_<j) || pi_base(.|x_b, y_<j)) at the sampled prefixes,
        computed exactly over the M answers (not the k3 sample estimate GRPO uses: M is small).

The one-token identity: for h = 1 and R = 1[y = y*], E_y[R grad log pi(y)] = pi(y*) grad log pi(y*),
i.e. the expected policy gradient is SFT's gradient scaled by pi(y*) (tests check it exactly);
with h = 2 and an outcome reward the two differ in what y_1 is credited with.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["answer_logprobs", "sft_loss", "pg_loss", "advantages", "kl_to_base", "generate", "final_reward"]


def answer_logprobs(model, seq: Tensor, prompt_len: int) -> Tensor:
    """log pi over the M answers at each answer position: (E, B, h, M) for seq (E, B, P + h)."""
    logits = model(seq[..., :-1])[:, :, prompt_len - 1:, :]  # position t predicts token t+1
    return logits.log_softmax(-1)


def token_logprob(logp: Tensor, seq: Tensor, prompt_len: int) -> Tensor:
    """log pi(y|x) = sum_j log pi(y_j|...) for the answers in seq: (E, B)."""
    return logp.gather(-1, seq[..., prompt_len:, None]).squeeze(-1).sum(-1)


def sft_loss(logp: Tensor, seq: Tensor, prompt_len: int) -> Tensor:
    """(E,): mean cross-entropy of the gold answer chain seq[..., P:]."""
    return -token_logprob(logp, seq, prompt_len).mean(-1)


def advantages(reward: Tensor, group_size: int, baseline: str) -> Tensor:
    """reward (E, B) with B = n prompts x G consecutive samples each -> advantages (E, B)."""
    E, B = reward.shape
    r = reward.reshape(E, B // group_size, group_size)
    G = group_size
    if baseline == "none":
        a = r
    elif baseline == "mean":
        a = r - r.mean(-1, keepdim=True)
    elif baseline == "loo":
        a = r - (r.sum(-1, keepdim=True) - r) / (G - 1)
    elif baseline == "grpo":
        a = (r - r.mean(-1, keepdim=True)) / (r.std(-1, keepdim=True) + 1e-6)
    else:
        raise ValueError(baseline)
    return a.reshape(E, B)


def pg_loss(logp: Tensor, seq: Tensor, prompt_len: int, adv: Tensor) -> Tensor:
    """(E,): the REINFORCE surrogate -mean_b A_b log pi(y_b|x_b) (A detached)."""
    return -(adv.detach() * token_logprob(logp, seq, prompt_len)).mean(-1)


def kl_to_base(logp: Tensor, logp_base: Tensor) -> Tensor:
    """(E,): mean over sequences of the summed per-position KL(pi || pi_base), exact over M."""
    return (logp.exp() * (logp - logp_base.detach())).sum(-1).sum(-1).mean(-1)


@torch.no_grad()
def generate(model, prompts: Tensor, hops: int, *, greedy: bool, temperature: float = 1.0,
             generator: torch.Generator | None = None) -> Tensor:
    """Write `hops` answer tokens after prompts (E, B, P): greedy or sampled at `temperature`. -> (E, B, P + hops)."""
    seq = prompts
    for _ in range(hops):
        logits = model(seq)[:, :, -1, :]  # (E, B, M)
        if greedy:
            y = logits.argmax(-1)
        else:
            probs = (logits.double() / temperature).softmax(-1)
            y = torch.multinomial(probs.reshape(-1, probs.shape[-1]), 1, generator=generator).view(probs.shape[:2])
        seq = torch.cat([seq, y[..., None]], dim=-1)
    return seq


def final_reward(seq: Tensor, gold_final: Tensor) -> Tensor:
    """The 0/1 verifier: 1 where the last written token equals the gold final answer. (E, B) float."""
    return (seq[..., -1] == gold_final).to(torch.get_default_dtype())
