"""HU-guided lesion growth: a lesion's paler margin, labelled liver, becomes tumour within the
distance and HU cut the rule allows; nothing else changes."""

from __future__ import annotations

import numpy as np
import pytest

from livseg.inference import LesionRule, clean_lesions, grow_lesions

SPACING = (1.0, 1.0, 1.0)


def _radius(shape, centre) -> np.ndarray:
    grid = np.indices(shape, dtype=np.float64)
    return np.sqrt(sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True)))


def _lesion_with_margin(core_hu: float, margin_hu: float, core: float = 5.0, outer: float = 8.0):
    """A liver (label 1, 100 HU) holding a lesion centred at (28, 28, 20): a core of radius
    ``core`` (labelled tumour, ``core_hu``) and a margin out to radius ``outer``
    (``margin_hu``) that the labels call liver."""
    shape, centre, liver_hu = (56, 56, 40), (28, 28, 20), 100.0
    labels = np.zeros(shape, np.uint8)
    labels[4:52, 4:52, 2:38] = 1
    hu = np.full(shape, -100.0, np.float32)
    hu[labels == 1] = liver_hu
    r = _radius(shape, centre)
    hu[r <= outer] = margin_hu
    hu[r <= core] = core_hu
    labels[r <= core] = 2
    return labels, hu, r


def test_a_pale_margin_joins_its_lesion_within_the_cut():
    labels, hu, r = _lesion_with_margin(core_hu=40.0, margin_hu=75.0, core=7.0, outer=12.0)
    # Smoothed over liver voxels (σ 1.5 mm) the margin reads 75 HU, paler within ~2 mm of
    # the liver beyond it: judge radii 7-9.
    margin = (r > 7) & (r <= 9)
    # Cut 0.65: 40 + 0.65 × 60 = 79 HU; the margin lies on the lesion's side.
    wide = grow_lesions(labels, hu, SPACING, 6.0, 0.65)
    assert (wide[margin] == 2).all()
    assert (wide[r > 13.5] == labels[r > 13.5]).all()  # the liver beyond stays liver
    assert np.array_equal(wide >= 1, labels >= 1)  # the liver's outline never changes
    # Cut 0.5: 70 HU; the margin is on the liver's side: nothing joins.
    assert grow_lesions(labels, hu, SPACING, 6.0, 0.5) is labels
    assert grow_lesions(labels, hu, SPACING, 0.0, 0.65) is labels


def test_a_lesion_segmented_to_its_edge_does_not_creep():
    """A lesion labelled exactly, in noisy liver blurred as a scanner blurs (the liver's outer
    layer partial-volumed with the fat around it), inside the liver, at its side and at its
    top: neither the lesion's own voxels nor the darker outer layer may lead growth."""
    from scipy import ndimage

    rng = np.random.default_rng(1)
    shape = (56, 56, 40)
    body = np.zeros(shape, bool)
    body[4:52, 4:52, 4:36] = True
    for centre in ((28, 28, 20), (7, 28, 20), (28, 28, 6)):  # inside; x surface; top
        lesion = (_radius(shape, centre) <= 6) & body
        hu = np.where(body, 100.0, -100.0)
        hu[lesion] = 40.0
        hu = ndimage.gaussian_filter(hu, (1.0, 1.0, 0.8)).astype(np.float32)
        labels = np.where(hu > 0, 1, 0).astype(np.uint8)  # the blurred liver's half-way line
        labels[lesion & (labels == 1)] = 2
        hu += rng.normal(0, 15, shape).astype(np.float32)
        out = grow_lesions(labels, hu, (0.8, 0.8, 2.5), 6.0, 0.65)
        grown = int(((out == 2) & (labels != 2)).sum())
        assert grown <= 0.02 * lesion.sum(), (centre, grown, int(lesion.sum()))


def _brute_grow(labels, hu, spacing, grow_mm, cut):
    """``grow_lesions`` on whole volumes, component by component: no boxes to get wrong
    (except the local liver reference, which is defined by its box)."""
    from scipy import ndimage

    from livseg.inference.growth import FACES, MIN_CONTRAST_HU, MIN_LIVER_VOXELS, SMOOTH_MM

    sp = np.asarray(spacing, float)
    sigma = SMOOTH_MM / sp
    pad = np.ceil(grow_mm / sp).astype(int) + np.ceil(4 * sigma).astype(int)
    ids, n = ndimage.label(labels == 2, FACES)
    out = labels.copy()
    for k in range(1, n + 1):
        own = ids == k
        where = np.argwhere(own)
        box = tuple(slice(max(lo - p, 0), min(hi + 1 + p, size)) for lo, hi, p, size
                    in zip(where.min(0), where.max(0), pad, labels.shape, strict=True))  # fmt: skip
        inner = (out == 1) & ndimage.binary_erosion(out >= 1, FACES, border_value=1)
        near = ndimage.distance_transform_edt(~own, sampling=sp) <= grow_mm
        reference = np.zeros_like(own)
        reference[box] = (inner & ~near)[box]
        if reference.sum() < MIN_LIVER_VOXELS:
            continue
        lesion_hu, liver_hu = float(np.median(hu[own])), float(np.median(hu[reference]))
        if abs(lesion_hu - liver_hu) < MIN_CONTRAST_HU:
            continue
        weight = ndimage.gaussian_filter(inner.astype(np.float32), sigma)
        total = ndimage.gaussian_filter(np.where(inner, hu, 0).astype(np.float32), sigma)
        smooth = np.divide(total, weight, out=np.zeros_like(total), where=weight > 1e-3)
        threshold = lesion_hu + cut * (liver_hu - lesion_hu)
        like = (smooth - threshold) * np.sign(lesion_hu - liver_hu) > 0
        allowed = own | (like & near & inner)
        out[ndimage.binary_propagation(own, structure=FACES, mask=allowed) & ~own] = 2
    return out


def test_boxed_growth_equals_growing_whole_volumes():
    """Lesions of every contrast anywhere, at the volume's faces too, on anisotropic grids
    and HU dtypes: the boxed computation grows exactly what whole-volume arithmetic grows."""
    rng = np.random.default_rng(5)
    grew = 0
    for _ in range(12):
        shape = tuple(int(x) for x in rng.integers(24, 36, 3))
        labels = np.zeros(shape, np.uint8)
        labels[2:-2, 2:-2, 1:-1] = 1
        labels[:, : rng.integers(0, 3)] = 0  # the liver reaches some of the volume's faces
        hu = np.where(labels == 1, 100.0, -80.0)
        for _ in range(rng.integers(1, 4)):
            r = _radius(shape, [rng.integers(0, n) for n in shape])
            lesion_hu = rng.choice([30.0, 60.0, 170.0])
            hu[(r <= rng.uniform(4, 8)) & (labels == 1)] = (lesion_hu + 100) / 2
            core = (r <= rng.uniform(1.5, 4)) & (labels == 1)
            hu[core], labels[core] = lesion_hu, 2
        hu = (hu + rng.normal(0, 10, shape)).astype(rng.choice([np.float32, np.int16]))
        spacing = tuple(float(x) for x in rng.choice([0.6, 0.8, 1.0, 2.5, 5.0], 3))
        grow_mm, cut = float(rng.choice([1.0, 3.0, 6.0])), float(rng.choice([0.5, 0.65, 0.8]))
        before = labels.copy()
        out = grow_lesions(labels, hu, spacing, grow_mm, cut)
        assert np.array_equal(labels, before)  # the input is never written
        assert np.array_equal(out, _brute_grow(labels, hu, spacing, grow_mm, cut))
        grew += int((out != labels).sum())
    assert grew > 0


def test_growth_stops_at_its_distance_along_a_dark_channel():
    """A dark vessel-like channel (the lesion's HU) leads away from the lesion through the
    liver: growth follows it only as far as ``grow_mm``, measured in mm on the voxel grid."""
    labels, hu, r = _lesion_with_margin(core_hu=40.0, margin_hu=40.0)
    labels[r <= 8] = 2  # the whole lesion found
    hu[34:48, 26:31, 18:23] = 40.0  # the channel: x 34-47, beyond the lesion's edge at x 36
    out = grow_lesions(labels, hu, SPACING, 4.0, 0.5)
    grown = (out == 2) & (labels != 2)
    xs = np.flatnonzero(grown.any(axis=(1, 2)))
    assert xs.size and xs.max() <= 28 + 8 + 4  # no further than 4 mm past the lesion
    assert grown[37:40, 28, 20].all()  # but along the channel up to there
    # At 2 mm voxels the same 4 mm is two voxels, not four.
    coarse = grow_lesions(labels, hu, (2.0, 2.0, 2.0), 4.0, 0.5)
    assert np.flatnonzero(((coarse == 2) & (labels != 2)).any(axis=(1, 2))).max() <= 28 + 8 + 2
    # Anisotropic voxels, with a second channel along z from the lesion's top (z 28): 4 mm is
    # five 0.7 mm voxels along x and no 5 mm slice along z; at 1 mm, four slices up.
    hu[26:31, 26:31, 28:38] = 40.0
    thin = grow_lesions(labels, hu, (0.7, 0.7, 5.0), 4.0, 0.5)
    moved = (thin == 2) & (labels != 2)
    assert np.flatnonzero(moved.any(axis=(1, 2))).max() == 28 + 8 + 5
    assert moved[37:42, 28, 20].all() and not moved[:, :, 29:].any()
    fine = (grow_lesions(labels, hu, SPACING, 4.0, 0.5) == 2) & (labels != 2)
    assert fine[28, 28, 29:33].all() and not fine[:, :, 33:].any()


def test_bright_lesions_grow_toward_bright_and_flat_ones_not_at_all():
    labels, hu, r = _lesion_with_margin(core_hu=180.0, margin_hu=130.0)  # hyper-enhancing
    out = grow_lesions(labels, hu, SPACING, 4.0, 0.8)  # cut 180 - 0.8 × 80 = 116 HU
    assert (out[(r > 5) & (r <= 6.5)] == 2).all()
    assert grow_lesions(labels, hu, SPACING, 4.0, 0.5) is labels  # cut 140 HU
    labels, hu, r = _lesion_with_margin(core_hu=95.0, margin_hu=97.0)  # 5 HU: no contrast
    assert grow_lesions(labels, hu, SPACING, 4.0, 0.65) is labels


def test_clean_lesions_grows_what_its_filters_keep():
    labels, hu, r = _lesion_with_margin(core_hu=40.0, margin_hu=75.0)
    # A 4-voxel speck in a dark patch the labels call liver: under a 5 mm³ minimum it goes;
    # grown first, it would take the patch (48 voxels) and stay.
    hu[32:36, 32:36, 6:9] = 40.0
    labels[33:35, 33:35, 7] = 2
    rule = LesionRule(min_volume_mm3=5.0, grow_mm=4.0, grow_cut=0.8)
    out = clean_lesions(labels, SPACING, rule, hu)
    assert (out[32:36, 32:36, 6:9] == 1).all()  # filtered first, so it never grew
    assert (out[(r > 5) & (r <= 6.5)] == 2).all()  # the lesion's margin did
    with pytest.raises(ValueError, match="needs the HU volume"):
        clean_lesions(labels, SPACING, rule)
    with pytest.raises(ValueError, match="grow_mm"):
        LesionRule(grow_mm=-1.0)
    with pytest.raises(ValueError, match="grow_cut"):
        LesionRule(grow_mm=3.0, grow_cut=1.0)
    with pytest.raises(ValueError, match="shape"):
        grow_lesions(labels, hu[:-1], SPACING, 4.0)
    with pytest.raises(ValueError, match="spacing"):
        grow_lesions(labels, hu, (1.0, 0.0, 1.0), 4.0)


def test_rule_rows_equal_applying_each_rule(monkeypatch):
    """The choice's shared computation gives each rule's own result: noisy lesions of several
    sizes and contrasts, a speck and a blob outside the liver, every candidate rule — while
    growing each distinct filter result once."""
    from livseg.evaluate import lesion_choice
    from livseg.evaluate.lesion_choice import LESION_RULES, rule_rows
    from livseg.evaluate.lits import detect_lesions

    grown = []
    monkeypatch.setattr(lesion_choice, "grow_lesions",
                        lambda *a: grown.append(a[3:]) or grow_lesions(*a))  # fmt: skip

    rng = np.random.default_rng(0)
    shape = (64, 64, 24)
    ref = np.zeros(shape, np.uint8)
    ref[6:58, 6:50, 2:22] = 1
    hu = np.full(shape, -100.0, np.float32)
    hu[ref == 1] = 100.0
    for centre, radius, lesion_hu in (((20, 20, 10), 6, 50.0), ((40, 30, 12), 4, 75.0),
                                      ((30, 44, 8), 3, 160.0)):  # fmt: skip
        r = _radius(shape, centre)
        ref[r <= radius] = 2
        hu[r <= radius] = lesion_hu
    hu += rng.normal(0, 12, shape).astype(np.float32)
    labels = ref.copy()
    labels[(ref == 2) & (rng.random(shape) < 0.3)] = 1  # under-segmented, holes
    labels[10, 40, 5] = 2  # a speck
    labels[58:62, 20:24, 8:12] = 2  # a blob outside the liver, touching it
    spacing = (1.5, 1.5, 2.5)
    rows = rule_rows(labels, ref, hu, spacing, LESION_RULES)
    truth = ref == 2
    for rule, row in zip(LESION_RULES, rows, strict=True):
        pred = clean_lesions(labels, spacing, rule, hu) == 2
        detected = detect_lesions(pred, truth)
        expected = 2 * int((pred & truth).sum()) / (int(pred.sum()) + int(truth.sum()))
        assert row == {"dice": expected, **{k: detected[k] for k in ("tp", "fp", "fn")}}, rule
    assert len({row["dice"] for row in rows}) > 3  # the rules do differ here
    growing = [n for n, rule in enumerate(LESION_RULES) if rule.grow_mm]
    assert 0 < len(grown) < len(growing) / 2  # shared between filters that agree
    per = len(lesion_choice.GROWTH)  # each filter, then its growth variants
    assert any(rows[n] != rows[n - n % per] for n in growing)  # growth changed some results
    # No predicted tumour: every rule leaves the labels as they are.
    empty = rule_rows(np.minimum(labels, 1), ref, hu, spacing, LESION_RULES)
    assert all(row == {"dice": 0.0, "tp": 0, "fp": 0, "fn": 3} for row in empty)
