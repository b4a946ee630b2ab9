import math

import pytest
import torch

from livseg.errors import UsageError
from livseg.train import (
    AugmentConfig,
    TrainConfig,
    augment_slices,
    case_counts,
    confusion,
    dice_from_counts,
    foreground_iou_f1,
    summarise_cases,
)


def test_case_counts_add_over_batches():
    pred = torch.tensor([[[1, 1], [2, 0]], [[0, 0], [0, 0]], [[1, 2], [2, 2]]])
    ref = torch.tensor([[[1, 0], [2, 2]], [[0, 0], [0, 0]], [[1, 1], [2, 0]]])
    case = torch.tensor([0, 1, 0])
    counts = case_counts(pred[:2], ref[:2], case[:2], 2) + case_counts(
        pred[2:], ref[2:], case[2:], 2
    )
    # case 0 liver (≥1): pred 7 voxels, ref 6, overlap 5; tumour: pred 4, ref 3, overlap 2
    assert counts[0, 0].tolist() == [5, 7, 6] and counts[0, 1].tolist() == [2, 4, 3]
    dice = dice_from_counts(counts)
    assert dice[0, 0].item() == 10 / 13 and dice[0, 1].item() == 4 / 7
    assert dice[1].tolist() == [1.0, 1.0]  # nothing predicted, nothing there: LiTS says 1
    summary = summarise_cases(counts)
    assert summary["liver_dice"] == 10 / 13 and summary["cases"] == 1  # case 1 has no liver


def test_missing_structure_is_nan_not_zero():
    counts = torch.zeros(2, 2, 3, dtype=torch.float64)
    counts[:, 0] = torch.tensor([[3.0, 4, 4], [1, 2, 2]])
    assert math.isnan(summarise_cases(counts)["tumour_dice"])


def test_confusion_and_foreground_scores():
    pred = torch.tensor([0, 1, 1, 2, 0])
    ref = torch.tensor([0, 1, 0, 2, 2])
    conf = confusion(pred, ref, 3)
    assert conf.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 1]]
    iou, f1 = foreground_iou_f1(conf)  # tp 2, fp 1, fn 1
    assert iou == 0.5 and f1 == 2 * 2 / (2 * 2 + 2)


def test_augment_identity_and_label_set():
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(3, 5, 32, 32)
    masks = torch.randint(0, 3, (3, 32, 32))
    none = AugmentConfig(0.0, (1.0, 1.0), 0.0, 0.0, 0.0, 0.0, 0.0)
    same_i, same_m = augment_slices(images, masks, none, gen)
    torch.testing.assert_close(same_i, images, atol=1e-5, rtol=0)
    assert torch.equal(same_m, masks)
    out_i, out_m = augment_slices(images, masks, AugmentConfig(), gen)
    assert out_i.shape == images.shape and out_m.dtype == torch.long
    assert set(out_m.unique().tolist()) <= {0, 1, 2} and not torch.equal(out_m, masks)


def test_flip_mirrors_left_and_right():
    """Slices are volume[:, :, z] of a RAS+ volume: dim 2 (H) is x, left/right; dim 3 (W) is y,
    anterior/posterior. A flip must mirror x and keep the anterior side up."""
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(2, 3, 32, 24)
    masks = torch.randint(0, 3, (2, 32, 24))
    flip = AugmentConfig(0.0, (1.0, 1.0), 0.0, 0.0, 0.0, 0.0, flip=1.0)
    out_i, out_m = augment_slices(images, masks, flip, gen)
    torch.testing.assert_close(out_i, images.flip(2), atol=1e-5, rtol=0)
    assert torch.equal(out_m, masks.flip(1))


def test_validation_score_is_the_mean_of_liver_and_tumour_dice():
    from livseg.train import validation_score

    assert validation_score({"val_liver_dice": 0.9, "val_tumour_dice": 0.5}) == pytest.approx(0.7)
    assert validation_score({"val_liver_dice": 0.9, "val_tumour_dice": float("nan")}) == 0.9
    assert (
        validation_score({"val_liver_dice": float("nan"), "val_tumour_dice": float("nan")}) == -1.0
    )


def test_tumour_repeats_reach_the_share():
    from livseg.train.sampling import tumour_repeats

    for total, tumour, share in ((1000, 30, 0.33), (500, 1, 0.2), (100, 40, 0.5), (64, 7, 0.1)):
        r = tumour_repeats(total, tumour, share)
        assert tumour * r / (total - tumour + tumour * r) >= share  # reached …
        if r > 1:  # … with the fewest repeats
            assert tumour * (r - 1) / (total - tumour + tumour * (r - 1)) < share
    assert tumour_repeats(100, 50, 0.33) == 1  # already above the share
    assert tumour_repeats(100, 0, 0.33) == 1 and tumour_repeats(100, 10, 0.0) == 1
    with pytest.raises(ValueError, match="tumour_share"):
        tumour_repeats(100, 10, 1.0)


def test_crops_are_windows_at_the_slices_own_resolution():
    """Without rotation or scaling a crop is an exact window of the slice; a slice holding
    tumour is cut around it, one without anywhere inside the slice."""
    gen = torch.Generator().manual_seed(0)
    images = torch.arange(2 * 96 * 128, dtype=torch.float32).view(2, 1, 96, 128)
    masks = torch.zeros(2, 96, 128, dtype=torch.long)
    masks[0, 80:84, 4:8] = 2  # a lesion in a corner of slice 0
    masks[1, 10:90, 10:120] = 1  # liver only
    plain = AugmentConfig(0.0, (1.0, 1.0), 0.0, 0.0, 0.0, 0.0, crop=32)
    for _ in range(20):
        out_i, out_m = augment_slices(images, masks, plain, gen)
        assert out_i.shape == (2, 1, 32, 32) and out_m.shape == (2, 32, 32)
        for i in range(2):
            # A window: each row continues the last one's values by one pixel per column.
            first = out_i[i, 0, 0, 0]
            row, col = divmod(round(float(first)) - i * 96 * 128, 128)
            window = images[i, 0, row : row + 32, col : col + 32]
            torch.testing.assert_close(out_i[i, 0], window, atol=1e-3, rtol=0)
            assert torch.equal(out_m[i], masks[i, row : row + 32, col : col + 32])
        assert (out_m[0] == 2).any()  # the lesion is in every crop of its slice
    with pytest.raises(UsageError, match="multiple of 32"):
        TrainConfig(crop=48)
    with pytest.raises(UsageError, match="augment"):
        TrainConfig(crop=64, augment=False)


def test_rotated_crops_keep_the_pixel_size_and_their_tumour():
    """With the default warp a window is the slice's own pixels rotated and scaled — unsheared
    on a non-square slice — and a slice's lesion stays inside its window."""
    gen = torch.Generator().manual_seed(1)
    rows, cols = torch.meshgrid(torch.arange(64.0), torch.arange(128.0), indexing="ij")
    images = torch.stack([rows, cols])[None].repeat(8, 1, 1, 1)  # each pixel's own position
    masks = torch.zeros(8, 64, 128, dtype=torch.long)
    masks[:, 20:24, 90:94] = 2
    turn = AugmentConfig(30.0, (1.0, 1.0), 0.0, 0.0, 0.0, 0.0, crop=32)
    out_i, _ = augment_slices(images, masks, turn, gen)
    inner = out_i[:, :, 4:-4, 4:-4]
    down, right = (
        inner[:, :, 1:, :-1] - inner[:, :, :-1, :-1],
        inner[:, :, :-1, 1:] - inner[:, :, :-1, :-1],
    )
    torch.testing.assert_close(down.norm(dim=1), torch.ones_like(down[:, 0]), atol=1e-3, rtol=0)
    torch.testing.assert_close(right.norm(dim=1), torch.ones_like(right[:, 0]), atol=1e-3, rtol=0)
    assert (down * right).sum(dim=1).abs().max() < 1e-3  # at right angles
    for _ in range(25):
        _, out_m = augment_slices(images, masks, AugmentConfig(crop=32), gen)
        assert (out_m == 2).flatten(1).any(dim=1).all()
