import math

import pytest
import torch

from livseg.train import build_loss, parse_loss_weights


def _half_and_half(classes=3):
    target = torch.zeros(1, 4, 4, dtype=torch.long)
    target[:, 2:] = 1  # half background, half liver, no tumour
    return torch.zeros(1, classes, 4, 4), target


def test_dice_term_by_hand():
    # softmax of equal logits: p = 1/3. Present classes: dice = 2·(n/2·1/3) / (n/3 + n/2) = 0.4,
    # so their loss is 0.6; smp leaves the absent class out (0) and averages over 3 classes.
    logits, target = _half_and_half()
    assert build_loss(dice=1, focal=0)(logits, target).item() == pytest.approx(0.4, abs=1e-6)


def test_focal_term_by_hand():
    # smp's multiclass focal loss: one-vs-rest per class, sigmoid(0) = 0.5 → (1−0.5)^γ·ln 2
    # for every pixel of every class, averaged over classes.
    logits, target = _half_and_half()
    expected = 0.25 * math.log(2)
    assert build_loss(dice=0, focal=1, gamma=2)(logits, target).item() == pytest.approx(expected)


def test_weighted_sum_and_perfect_prediction():
    logits, target = _half_and_half()
    hybrid = build_loss(0.8, 0.2, 2.0)(logits, target).item()
    assert hybrid == pytest.approx(0.8 * 0.4 + 0.2 * 0.25 * math.log(2), abs=1e-6)
    perfect = torch.nn.functional.one_hot(target, 3).permute(0, 3, 1, 2).float() * 40 - 20
    assert build_loss()(perfect, target).item() < 1e-6


def test_works_on_volumes():
    logits = torch.randn(2, 3, 4, 4, 4, requires_grad=True)
    target = torch.randint(0, 3, (2, 4, 4, 4))
    build_loss()(logits, target).backward()
    assert logits.grad is not None


@pytest.mark.parametrize("kwargs, message", [
    ({"dice": -1, "focal": 1}, "non-negative"),
    ({"dice": 0, "focal": 0}, "at least one"),
    ({"gamma": -2}, "gamma"),
])  # fmt: skip
def test_invalid_weights(kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_loss(**kwargs)


def test_parse_flag():
    assert parse_loss_weights("dice=0.7,focal=0.3") == {"dice": 0.7, "focal": 0.3}
    with pytest.raises(ValueError, match="dice=0.8,focal=0.2"):
        parse_loss_weights("dice:0.7")
