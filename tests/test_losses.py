import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from trm.errors import ConfigError
from trm.model.losses import (
    CROSS_ENTROPY,
    halting_bce,
    q_learning_target,
    sequence_loss,
    softmax_cross_entropy,
    stablemax_cross_entropy,
)


def _s(v: float) -> float:
    return v + 1.0 if v >= 0 else 1.0 / (1.0 - v)


def _ds(v: float) -> float:
    return 1.0 if v >= 0 else 1.0 / (1.0 - v) ** 2


def reference_stablemax(logits: np.ndarray, labels: np.ndarray, ignore: int = -100):
    """Loss and d loss / d logits, written with plain Python floats, position by position."""
    flat, lab = logits.reshape(-1, logits.shape[-1]), labels.reshape(-1)
    loss, grad = np.zeros(len(lab)), np.zeros(flat.shape)
    for i, (row, y) in enumerate(zip(flat.tolist(), lab.tolist())):
        if y == ignore:
            continue
        total = sum(_s(v) for v in row)
        loss[i] = -math.log(_s(row[y]) / total)
        for j, v in enumerate(row):
            grad[i, j] = _ds(v) / total - (_ds(row[y]) / _s(row[y]) if j == y else 0.0)
    return loss.reshape(labels.shape), grad.reshape(logits.shape)


def test_stablemax_matches_reference_values_and_grads():
    g = torch.Generator().manual_seed(0)
    logits = (torch.randn(3, 5, 7, generator=g, dtype=torch.float64) * 3).requires_grad_(True)
    labels = torch.randint(0, 7, (3, 5), generator=g)
    labels[0, 1] = labels[2, 4] = -100
    loss = stablemax_cross_entropy(logits, labels)
    assert loss.dtype == torch.float64 and loss.shape == labels.shape
    ref_loss, ref_grad = reference_stablemax(logits.detach().numpy(), labels.numpy())
    np.testing.assert_allclose(loss.detach().numpy(), ref_loss, rtol=1e-12, atol=1e-12)
    loss.sum().backward()
    np.testing.assert_allclose(logits.grad.numpy(), ref_grad, rtol=1e-10, atol=1e-12)
    assert loss[0, 1] == 0 and loss[2, 4] == 0
    assert torch.all(logits.grad[0, 1] == 0)


def test_stablemax_gradcheck():
    g = torch.Generator().manual_seed(1)
    logits = (torch.randn(4, 6, generator=g, dtype=torch.float64) * 2).requires_grad_(True)
    labels = torch.tensor([0, 3, -100, 5])
    assert torch.autograd.gradcheck(lambda x: stablemax_cross_entropy(x, labels), (logits,))


def test_stablemax_float32_input_computed_in_float64():
    logits = torch.tensor([[1e-9, 0.0, -1e-9]], dtype=torch.float32)
    loss = stablemax_cross_entropy(logits, torch.tensor([0]))
    assert loss.dtype == torch.float64
    ref, _ = reference_stablemax(logits.double().numpy(), np.array([0]))
    np.testing.assert_allclose(loss.numpy(), ref, rtol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_stablemax_no_nan_gradients(dtype):
    # exactly 1.0 is where the unused branch 1/(1-v) is infinite; huge magnitudes stress both branches
    big = 1e30 if dtype == torch.float32 else 1e200
    logits = torch.tensor([[1.0, -1.0, 0.0, big], [-big, 1.0, 2.0, -3.0], [1.0, 1.0, 1.0, 1.0]], dtype=dtype)
    logits.requires_grad_(True)
    loss = stablemax_cross_entropy(logits, torch.tensor([0, 0, 2]))
    loss.sum().backward()
    assert torch.isfinite(loss).all()
    assert torch.isfinite(logits.grad).all()
    assert loss[2].item() == pytest.approx(math.log(4))


def test_stablemax_unsafe_where_would_nan():
    # guards the test above: the naive formula does produce NaN gradients at v = 1
    v = torch.tensor([1.0, -2.0], dtype=torch.float64, requires_grad=True)
    torch.where(v >= 0, v + 1, 1 / (1 - v)).sum().backward()
    assert torch.isnan(v.grad).any()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_softmax_matches_f_cross_entropy(dtype):
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(2, 9, 11, generator=g)
    labels = torch.randint(0, 11, (2, 9), generator=g)
    labels[1, :3] = -100
    loss = softmax_cross_entropy(logits, labels, dtype=dtype)
    ref = F.cross_entropy(logits.to(dtype).transpose(1, 2), labels, ignore_index=-100, reduction="none")
    assert loss.dtype == dtype
    torch.testing.assert_close(loss, ref)
    assert torch.all(loss[1, :3] == 0)


def test_custom_ignore_index():
    logits = torch.randn(1, 4, 3)
    labels = torch.tensor([[0, 1, 7, 2]])
    for fn in CROSS_ENTROPY.values():
        out = fn(logits, labels, ignore_index=7)
        assert out[0, 2] == 0 and (out[0, [0, 1, 3]] > 0).all()


@pytest.mark.parametrize("loss_type", ["stablemax", "softmax"])
def test_sequence_loss(loss_type):
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(3, 6, 5, generator=g)
    labels = logits.argmax(-1).clone()
    labels[0, 2] = (labels[0, 2] + 1) % 5  # one wrong cell in sequence 0
    labels[1, :4] = -100  # sequence 1: two supervised cells, both right
    labels[2, :] = -100  # sequence 2: nothing supervised
    out = sequence_loss(logits, labels, loss_type)
    loss, correct, exact, counts = out
    ce = CROSS_ENTROPY[loss_type](logits, labels)
    torch.testing.assert_close(loss[0], ce[0].mean())
    torch.testing.assert_close(loss[1], ce[1, 4:].mean())
    assert loss[2] == 0
    assert counts.tolist() == [6, 2, 0]
    assert exact.tolist() == [False, True, True]
    assert correct.sum(-1).tolist() == [5, 2, 0]
    assert not correct[0, 2] and not correct[1, :4].any()


def test_sequence_loss_unknown_type():
    with pytest.raises(ConfigError, match="loss_type"):
        sequence_loss(torch.zeros(1, 2, 3), torch.zeros(1, 2, dtype=torch.long), "nope")


def test_halting_bce_sum_and_safe():
    logit = torch.tensor([-5.0, 0.0, 3.0, 200.0, -200.0], requires_grad=True)
    target = torch.tensor([False, True, True, False, True])
    loss = halting_bce(logit, target)
    x, t = logit.detach().double(), target.double()
    ref = -(t * torch.log(torch.sigmoid(x)) + (1 - t) * torch.log1p(-torch.sigmoid(x)))
    ref[3], ref[4] = 200.0, 200.0  # log(1 + e^200) ~ 200
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(ref.sum().item(), rel=1e-5)
    loss.backward()
    assert torch.isfinite(logit.grad).all()
    halting_bce(logit.detach().bfloat16(), target)  # bf16 logits are promoted


def test_q_learning_target():
    halt = torch.tensor([0.0, 1.0, -2.0, 3.0])
    cont = torch.tensor([2.0, -1.0, 1.0, 5.0])
    last = torch.tensor([False, False, True, True])
    expected = torch.sigmoid(torch.tensor([2.0, 1.0, -2.0, 3.0]))
    torch.testing.assert_close(q_learning_target(halt, cont, last), expected)
