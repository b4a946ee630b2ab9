"""What a sweep prints: one line per trial event on stdout, instead of Tune's status tables.

Tune's own reporter reprints the whole trial table every 30 s (hundreds of lines in the main
job); the sweep runs it silent (``verbose=0``) and this callback says what happened, when.
"""

from __future__ import annotations

import math
import sys
import time
from typing import Any


def trial_lines(searched: list[str], metric: str, max_epochs: int):
    """A Tune callback printing ``trial <id> started/epoch/stopped/finished/failed`` lines."""
    from ray.tune import Callback

    class TrialLines(Callback):
        def __init__(self) -> None:
            self.started: dict[str, float] = {}

        def _say(self, trial, text: str) -> None:
            print(f"  trial {trial.trial_id}: {text}", file=sys.stdout, flush=True)

        def on_trial_start(self, iteration, trials, trial, **info) -> None:
            self.started[trial.trial_id] = time.time()
            values = ", ".join(_fmt(k, trial.config.get(k)) for k in searched)
            self._say(trial, f"started ({values})")

        def on_trial_restore(self, iteration, trials, trial, **info) -> None:
            self._say(trial, "restored from its checkpoint")

        def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
            if "epoch" in result:
                scores = ", ".join(
                    _fmt(k, result.get(k))
                    for k in ("val_liver_dice", "val_tumour_dice", metric)
                    if k in result
                )
                self._say(trial, f"epoch {result['epoch']}/{max_epochs}: {scores}")

        def on_trial_complete(self, iteration, trials, trial, **info) -> None:
            epoch = (trial.last_result or {}).get("epoch", 0)
            seconds = time.time() - self.started.get(trial.trial_id, time.time())
            verb = "finished" if epoch >= max_epochs else "stopped early (ASHA or patience)"
            self._say(trial, f"{verb} after {epoch} of {max_epochs} epochs, {seconds:.0f} s")

        def on_trial_error(self, iteration, trials, trial, **info) -> None:
            self._say(trial, f"failed (see {trial.path} for its error)")

    return TrialLines()


def _fmt(key: str, value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return f"{key}=–"
        return f"{key}={value:.3g}" if abs(value) < 1e-2 else f"{key}={value:.3f}"
    return f"{key}={value}"
