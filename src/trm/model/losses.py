"""Losses of one supervision step (spec section 5).

- Answer loss: per position cross-entropy, either *stable-max* (the public code's choice, float64) or
  softmax; per sequence the mean over supervised cells (labels != ignore_index). The caller sums over
  the batch and divides by the global batch size.
- Halting loss: binary cross-entropy of the halting logit against "the whole sequence is right"
  (summed; the caller weights it by 0.5 and divides by the global batch size).
- HRM-style ACT (ablation): Q-learning target of the "continue" logit.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from trm.errors import ConfigError

IGNORE_INDEX = -100


def _labels_for_gather(labels: torch.Tensor, ignore_index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(valid mask, labels with ignored positions replaced by class 0, as int64)."""
    labels = labels.long()  # uint8 labels would wrap ignore_index (-100 == 156 in uint8)
    valid = labels != ignore_index
    return valid, torch.where(valid, labels, torch.zeros_like(labels))


def stablemax_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = IGNORE_INDEX,
                            dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Stable-max cross-entropy per position; 0 where ``labels == ignore_index``.

    s(v) = v + 1 for v >= 0 and 1 / (1 - v) for v < 0;  p_i = s(v_i) / sum_j s(v_j);  loss = -log p_label.
    ``logits`` [..., V], ``labels`` [...] -> loss [...] in ``dtype`` (float64 by default, as the public code).

    Each branch of s is evaluated on inputs where it is finite (the other branch sees 0), so the
    ``torch.where`` never multiplies an infinite gradient of the unused branch by 0 (which gives NaN,
    e.g. 1/(1-v) at v = 1). log s uses log1p for accuracy near 0.
    """
    x = logits.to(dtype)
    valid, target = _labels_for_gather(labels, ignore_index)
    nonneg = x >= 0
    zero = torch.zeros((), dtype=dtype, device=x.device)
    x_pos = torch.where(nonneg, x, zero)  # v >= 0 branch sees v, else 0
    x_neg = torch.where(nonneg, zero, x)  # v < 0 branch sees v, else 0
    s = torch.where(nonneg, x_pos + 1, 1 / (1 - x_neg))
    log_norm = torch.log(s.sum(dim=-1))

    v = x.gather(-1, target.unsqueeze(-1)).squeeze(-1)
    v_nonneg = v >= 0
    log_s_pos = torch.log1p(torch.where(v_nonneg, v, zero))
    log_s_neg = -torch.log1p(-torch.where(v_nonneg, zero, v))
    log_s = torch.where(v_nonneg, log_s_pos, log_s_neg)
    return torch.where(valid, log_norm - log_s, zero)


def softmax_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = IGNORE_INDEX,
                          dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Softmax cross-entropy per position in ``dtype``; 0 where ``labels == ignore_index``."""
    loss = F.cross_entropy(
        logits.to(dtype).reshape(-1, logits.shape[-1]),
        labels.reshape(-1).long(),
        ignore_index=ignore_index,
        reduction="none",
    )
    return loss.view(labels.shape)


CrossEntropy = Callable[..., torch.Tensor]
CROSS_ENTROPY: dict[str, CrossEntropy] = {
    "stablemax": stablemax_cross_entropy,
    "softmax": softmax_cross_entropy,
}


class SequenceLoss(NamedTuple):
    """Per-sequence answer loss and the correctness it implies (unpacks as a 4-tuple)."""

    loss: torch.Tensor  # [B] mean CE over supervised cells (float64 for stable-max, else float32)
    correct: torch.Tensor  # [B, L] bool: supervised and argmax == label
    exact: torch.Tensor  # [B] bool: every supervised cell right (True when there are none)
    counts: torch.Tensor  # [B] int64: number of supervised cells


def sequence_loss(
    logits: torch.Tensor, labels: torch.Tensor, loss_type: str = "stablemax", ignore_index: int = IGNORE_INDEX
) -> SequenceLoss:
    """Answer loss of a batch: ``logits`` [B, L, V], ``labels`` [B, L].

    Per sequence: the mean over supervised cells of the cross-entropy (0 for a sequence with no
    supervised cell, e.g. batch padding; mask such rows out of metrics with ``counts > 0``).
    The caller sums ``loss`` over the batch and divides by the global batch size (spec section 5).
    """
    if loss_type not in CROSS_ENTROPY:
        raise ConfigError(f"unknown loss_type {loss_type!r}; choose one of {sorted(CROSS_ENTROPY)}")
    labels = labels.long()
    ce = CROSS_ENTROPY[loss_type](logits, labels, ignore_index)
    valid = labels != ignore_index
    counts = valid.sum(-1)
    loss = ce.sum(-1) / counts.clamp_min(1).to(ce.dtype)
    correct = valid & (logits.argmax(-1) == labels)
    exact = correct.sum(-1) == counts
    return SequenceLoss(loss, correct, exact, counts)


def halting_bce(halt_logit: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy with logits in fp32, summed over the batch (the caller weights and divides).

    ``target`` is typically the per-sequence ``exact`` of the current prediction (bool) or a
    Q-learning target in [0, 1].
    """
    return F.binary_cross_entropy_with_logits(halt_logit.float(), target.to(torch.float32), reduction="sum")


def q_learning_target(
    next_halt: torch.Tensor, next_continue: torch.Tensor, is_last: torch.Tensor
) -> torch.Tensor:
    """Target of the "continue" logit in HRM-style ACT (spec section 5).

    sigmoid(next_halt) at the last allowed step (``is_last``, i.e. steps >= N_sup after this step),
    otherwise sigmoid(max(next_halt, next_continue)); the "next" logits come from one extra forward
    pass (without gradients) on the new carry. Returned detached, fp32.
    """
    next_halt, next_continue = next_halt.detach().float(), next_continue.detach().float()
    return torch.sigmoid(torch.where(is_last, next_halt, torch.maximum(next_halt, next_continue)))


def to_labels(labels: np.ndarray, ignore_label_id: int | None) -> torch.Tensor:
    """Dataset labels (uint8) to int64 with the ignored id mapped to IGNORE_INDEX."""
    t = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    if ignore_label_id is not None:
        t[t == ignore_label_id] = IGNORE_INDEX
    return t
