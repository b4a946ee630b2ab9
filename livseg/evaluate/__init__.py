"""Evaluation: the LiTS metrics (``lits``, ``surface``), scoring mask folders or models case by
case as Ray tasks (``runner``), Monte-Carlo intervals, summaries and ``report.html``."""

from livseg.evaluate.auc import roc_auc_ap
from livseg.evaluate.cases import ModelResult, score_mask_pair, score_model_case
from livseg.evaluate.lesion_choice import (
    LESION_RULES, choose_lesion_rule, choose_lesion_rules, record_lesion_rule,
)
from livseg.evaluate.lits import (
    DETECTION_IOU, binary_scores, confusion_counts, detect_lesions, global_dice, overlap_scores,
    score_case, summarise, volume_ml,
)
from livseg.evaluate.montecarlo import interval, monte_carlo
from livseg.evaluate.review_choice import (
    calibrate_before_registering, calibrate_review, certainty_limit,
)
from livseg.evaluate.runner import (
    bundle_cascade, evaluation_cases, match_masks, score_mask_folders, score_models,
    validation_metrics,
)
from livseg.evaluate.summary import (
    case_dice_table, comparison_rows, format_model_comparison, write_evaluation,
)
from livseg.evaluate.surface import surface_distances, surface_scores

__all__ = [
    "DETECTION_IOU", "LESION_RULES", "ModelResult", "binary_scores", "bundle_cascade",
    "calibrate_before_registering", "calibrate_review", "case_dice_table", "certainty_limit",
    "choose_lesion_rule", "choose_lesion_rules", "comparison_rows", "confusion_counts",
    "detect_lesions", "evaluation_cases", "format_model_comparison", "global_dice", "interval",
    "match_masks", "monte_carlo", "overlap_scores", "record_lesion_rule",
    "roc_auc_ap", "score_case", "score_mask_folders", "score_mask_pair", "score_model_case",
    "score_models", "summarise", "surface_distances", "surface_scores", "validation_metrics",
    "volume_ml", "write_evaluation",
]  # fmt: skip
