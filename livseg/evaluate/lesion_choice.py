"""Choosing the lesion rule on the validation split (``livseg.inference.lesions``).

Each validation case is segmented once on its original grid (Ray tasks); every candidate rule is
applied to that prediction and scored: tumour Dice per case (cases with reference tumour) and
lesion detection (LiTS rule) summed over the split. The objective is the mean of the two — Dice
alone rewards dropping every small lesion, detection alone ignores their extent. Ties keep the
rule that changes least. The winner is recorded in the checkpoint's ``meta.json`` so the
Segmenter applies it; a registered version is never changed (choose before registering).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from dataclasses import asdict, replace
from typing import Any

import numpy as np

from livseg.data import TUMOUR, bounding_box
from livseg.evaluate.cases import cached_segmenter
from livseg.evaluate.lits import detect_lesions, detection_scores
from livseg.evaluate.runner import evaluation_cases, run_tasks
from livseg.inference import LesionRule, clean_lesions, grow_lesions
from livseg.io import read_case

# 0, then spheres of ≈ 3.5, 5, 7 and 10 mm diameter; each with and without hole filling;
# keeping every component or removing those with more than 0.6, 0.5 or 0.4 of their surface
# on background (generated reference lesions: at most 0.46; ``livseg.inference.lesions``);
# then no growth, or growth up to 3 or 6 mm to the midpoint between the lesion's HU and the
# liver's or 0.65 of the way (``livseg.inference.growth``: on generated cases the margins the
# tumour stage missed lay 15-30 HU below the liver, the parts it found 40-60 HU below).
GROWTH = ((0.0, 0.5), (3.0, 0.5), (3.0, 0.65), (6.0, 0.5), (6.0, 0.65))
LESION_RULES = tuple(
    LesionRule(volume, fill, outside, grow, cut)
    for volume in (0.0, 20.0, 65.0, 200.0, 500.0)
    for fill in (False, True)
    for outside in (1.0, 0.6, 0.5, 0.4)
    for grow, cut in GROWTH
)


def rule_rows(
    labels: np.ndarray,
    ref: np.ndarray,
    hu: np.ndarray,
    spacing: tuple[float, float, float],
    rules: tuple[LesionRule, ...],
) -> list[dict[str, Any]]:
    """Per rule: tumour Dice (None without reference tumour) and lesion tp/fp/fn of predicted
    ``labels`` against reference labels ``ref`` (both (X, Y, Z) uint8) of the volume ``hu``.

    Exactly ``clean_lesions(labels, spacing, rule, hu)`` per rule, each distinct result grown
    and scored once: growth is the rule's last step, and rules whose component filters leave
    the same labels (most of them on a validation case) share it. The filters change only the
    box around the predicted tumour, so that box identifies their result."""
    truth = ref == TUMOUR
    n_ref = int(truth.sum())
    box = bounding_box(labels == TUMOUR, margin=1) or (slice(0, 0),) * 3
    filtered: dict[LesionRule, bytes] = {}  # a filter's result's digest
    scored: dict[tuple, dict[str, Any]] = {}
    last: tuple[LesionRule | None, np.ndarray | None] = (None, None)  # one array kept at a time
    rows = []
    for rule in rules:
        base = replace(rule, grow_mm=0.0, grow_cut=0.5)
        if base not in filtered:
            last = (base, clean_lesions(labels, spacing, base))
            part = np.ascontiguousarray(last[1][box])
            filtered[base] = hashlib.blake2b(part.data, digest_size=16).digest()
        key = (filtered[base], rule.grow_mm, rule.grow_cut if rule.grow_mm else None)
        if key not in scored:
            if last[0] != base:
                last = (base, clean_lesions(labels, spacing, base))
            out = last[1]
            if rule.grow_mm:
                out = grow_lesions(out, hu, spacing, rule.grow_mm, rule.grow_cut)
            pred = out == TUMOUR
            inter, n_pred = int((pred & truth).sum()), int(pred.sum())
            detected = detect_lesions(pred, truth)
            scored[key] = {"dice": 2 * inter / (n_pred + n_ref) if n_ref else None,
                           **{k: detected[k] for k in ("tp", "fp", "fn")}}  # fmt: skip
        rows.append(dict(scored[key]))
    return rows


def candidate_scores(checkpoint: str, case: dict[str, Any], rules: tuple) -> dict[str, Any]:
    """Per rule: tumour Dice (None without reference tumour) and lesion tp/fp/fn of one case."""
    volume, ref = read_case(case["image_uri"], case["mask_uri"])
    labels = cached_segmenter(checkpoint).segment(volume.array).labels  # no lesion rule yet
    rows = rule_rows(labels, ref, volume.array, volume.spacing, rules)
    return {"row": {"case_id": case["case_id"], "rules": rows}, "figure": None}


def choose_lesion_rule(
    checkpoint: str, data: str, split: str = "val", rules: tuple = LESION_RULES
) -> dict[str, Any]:
    """The best of ``rules`` on ``data``'s ``split`` and the table behind the choice."""
    cases = evaluation_cases(data, split)
    items = [{"case_id": c.case_id, "image_uri": c.image_uri, "mask_uri": c.mask_uri}
             for c in cases if c.mask_uri]  # fmt: skip
    results = run_tasks(candidate_scores, [(checkpoint, i, rules) for i in items],
                        [(i["case_id"], i["image_uri"]) for i in items])  # fmt: skip
    scored = [r["row"] for r in results if "rules" in r["row"]]
    if not scored:
        raise ValueError(f"{data}: no {split} case could be segmented to choose a lesion rule")
    table = rule_table([c["rules"] for c in scored], rules)
    best = max(range(len(rules)), key=lambda n: (table[n]["objective"], -n))
    return {"rule": asdict(rules[best]), "split": split, "cases": len(scored), "table": table,
            "best": best}  # fmt: skip


def rule_table(cases: list[list[dict[str, Any]]], rules: tuple) -> list[dict[str, Any]]:
    """One row per rule from per-case ``candidate_scores`` rows (``cases[case][rule]``): mean
    tumour Dice over cases with reference tumour, lesion counts and F1 summed over all cases,
    and the objective, their mean. Without reference lesions a rule that leaves no lesion
    either has detection F1 1 (nothing to find, nothing found), so removing false-positive
    specks wins over keeping them."""
    table = []
    for n, rule in enumerate(rules):
        dice = [c[n]["dice"] for c in cases if c[n]["dice"] is not None]
        counts = {k: sum(c[n][k] for c in cases) for k in ("tp", "fp", "fn")}
        f1 = detection_scores(**counts)["f1"] if any(counts.values()) else 1.0
        mean_dice = float(np.mean(dice)) if dice else math.nan
        known = [v for v in (mean_dice, f1) if not math.isnan(v)]
        objective = sum(known) / len(known)
        table.append({**asdict(rule), "tumour_dice": mean_dice, "lesion_f1": f1,
                      "objective": objective, **counts})  # fmt: skip
    return table


def record_lesion_rule(checkpoint: str, choice: dict[str, Any]) -> None:
    """Write the chosen rule (and how it was chosen) into the checkpoint's ``meta.json``."""
    from livseg.train import update_meta

    lesions_choice = {k: choice[k] for k in ("split", "cases", "table")}
    update_meta(checkpoint, lesions=choice["rule"], lesions_choice=lesions_choice)


def choose_lesion_rules(
    models: list[tuple[str, str]], data: str, split: str = "val", skip: frozenset = frozenset()
) -> Iterator[str]:
    """Choose and record the lesion rule of each ``(label, checkpoint)`` on ``data``'s
    ``split``, yielding one printable line per model as it is done (iterate to run it).
    Skipped with a line: checkpoints in ``skip`` (e.g. already registered: a registered
    version is never changed) and a split that cannot be segmented; silently: 3-D models and
    models whose tumour comes from no multi-class stage (no tumour components to clean). A
    cascade bundle is one checkpoint: its rule cleans the composed mask."""
    from livseg.io import storage
    from livseg.train import is_volumetric, read_meta

    for label, checkpoint in models:
        meta = read_meta(checkpoint)
        cascade = meta.get("cascade")
        tumour = read_meta(storage.join(checkpoint, cascade["tumour"])) if cascade else meta
        if is_volumetric(meta["arch"]) or len(tumour["label_map"]) != 3:
            continue
        if checkpoint in skip:
            yield f"{label}: lesion rule kept ({meta.get('lesions', 'none')})"
            continue
        try:
            choice = choose_lesion_rule(checkpoint, data, split)
        except ValueError as exc:
            yield f"{label}: lesion rule not chosen ({exc})"
            continue
        record_lesion_rule(checkpoint, choice)
        rule, table = choice["rule"], choice["table"]
        best = table[choice["best"]]
        yield (
            f"{label}: lesion rule {rule} on {choice['cases']} {split} cases (tumour Dice "
            f"{best['tumour_dice']:.3f}, lesion F1 {best['lesion_f1']:.3f}; unchanged "
            f"{table[0]['objective']:.3f} → {best['objective']:.3f})"
        )
