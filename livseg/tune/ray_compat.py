"""Workarounds for Ray internals, each with the Ray behaviour it works around. Nothing else in
livseg touches ``ray._raylet`` or ``ray.train.v2._internal``; when Ray fixes these, delete here.
"""

from __future__ import annotations

import contextlib
import os

from livseg.io import storage

# Why the next three exist (ray-project/ray#54305): when Tune stops a trial (ASHA), the trial's
# Train V2 controller dies with it and the workers' placement group outlives both until the job
# ends. Ray's own PlacementGroupCleaner (ray-project/ray#58515, in 2.60) finds the dead
# controller through the State API, which needs the dashboard and fails outright with several
# Ray instances on one host; a leaked group holds CPUs and stalls the next trials.
PG_FILE = "placement_group"


def placement_group_recorder(path: str):
    """A Train callback that writes its workers' placement group id to ``path``."""
    from ray.train.v2._internal.execution.callback import WorkerGroupCallback

    class RecordPlacementGroup(WorkerGroupCallback):
        def after_worker_group_start(self, worker_group) -> None:
            state = worker_group.get_worker_group_state()
            storage.write_text(path, state.placement_group_handle.placement_group.id.hex())

    return RecordPlacementGroup()


def remove_placement_group(runs_root: str, trial_id: str) -> None:
    from ray._raylet import PlacementGroupID
    from ray.util.placement_group import PlacementGroup, placement_group_table
    from ray.util.placement_group import remove_placement_group as remove

    path = storage.join(runs_root, trial_id, PG_FILE)
    if not storage.exists(path):
        return
    group = PlacementGroup(PlacementGroupID(bytes.fromhex(storage.read_text(path).strip())))
    if placement_group_table(group).get("state", "REMOVED") != "REMOVED":
        remove(group)


def placement_group_reaper(runs_root: str):
    """A Tune callback removing each finished trial's Train placement group."""
    from ray.tune import Callback

    class RemovePlacementGroups(Callback):
        def on_trial_complete(self, iteration, trials, trial, **info) -> None:
            remove_placement_group(runs_root, trial.trial_id)

        on_trial_error = on_trial_complete

    return RemovePlacementGroups()


@contextlib.contextmanager
def quiet_tune_console():
    """Let ``verbose=0`` silence Tune for the sweep's driver.

    Tune's new output engine (the default since Ray 2.5) prints its experiment table and a
    forced final trial-status table even at ``verbose=0`` (``ray/tune/tune.py``:
    ``experiment_started`` and ``_report_air_progress(..., force=True)``); the legacy engine,
    chosen with ``RAY_AIR_NEW_OUTPUT=0``, honours it. Set for the duration of the block only:
    the variable is read when ``Tuner.fit`` starts.
    """
    before = os.environ.get("RAY_AIR_NEW_OUTPUT")
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("RAY_AIR_NEW_OUTPUT", None)
        else:
            os.environ["RAY_AIR_NEW_OUTPUT"] = before
