"""Tuning: Ray Tune sweeps over the loss weights (ASHA over the training job's TorchTrainer),
the search-space syntax, the sweep table and plot, and registering the best trial."""

from livseg.tune.results import (
    COLUMNS, format_best, format_table, register_best, trial_rows, write_table,
)
from livseg.tune.space import DEFAULT_SPACE, Dimension, parse_dimension, parse_space, trial_config
from livseg.tune.sweep import DRIVER_CPU, METRIC, SweepConfig, check_trial_fits, sweep

__all__ = [
    "COLUMNS", "DEFAULT_SPACE", "DRIVER_CPU", "METRIC", "Dimension", "SweepConfig",
    "check_trial_fits", "format_best", "format_table", "parse_dimension", "parse_space",
    "register_best", "sweep", "trial_config", "trial_rows", "write_table",
]  # fmt: skip
