"""cluster.yaml passes Ray's own autoscaler schema check offline (no cloud credentials), and the
same check catches a misspelt key in a deliberately broken copy."""

from __future__ import annotations

import copy
from pathlib import Path

import jsonschema
import pytest
import ray
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

CLUSTER_YAML = Path(__file__).resolve().parents[2] / "cluster.yaml"


def check(config: dict) -> dict:
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


def test_cluster_yaml_passes_rays_schema_check() -> None:
    config = yaml.safe_load(CLUSTER_YAML.read_text())
    check(config)
    python = "py311"
    assert config["docker"]["image"] == f"rayproject/ray:{ray.__version__}-{python}-cpu"
    nodes = config["available_node_types"]
    gpu = nodes["gpu-worker"]
    assert gpu["docker"]["worker_image"] == f"rayproject/ray:{ray.__version__}-{python}-gpu"
    assert gpu["min_workers"] == 0 and nodes["cpu-worker"]["max_workers"] >= 1
    assert all(n["node_config"]["ImageId"] == "latest_dlami" for n in nodes.values())
    assert all("IamInstanceProfile" in n["node_config"] for n in nodes.values())  # no keys
    starts = config["head_start_ray_commands"] + config["worker_start_ray_commands"]
    assert all("RAY_AUTH_MODE=token" in c for c in starts if "ray start" in c)
    assert "/home/ray/.ray/auth_token" in config["file_mounts"]
    assert any("pip install" in c and "/home/ray/livseg" in c for c in config["setup_commands"])


@pytest.mark.parametrize(
    "good, broken",
    [
        ("    max_workers: 4\n    resources: {}\n    node_config:\n      InstanceType: g5",
         "    max_worker: 4\n    resources: {}\n    node_config:\n      InstanceType: g5"),
        ("head_node_type: head", "head_node_type: haed"),
        ("idle_timeout_minutes: 10", "idle_timeout_minutes: ten"),
    ],
)  # fmt: skip
def test_the_check_catches_a_broken_copy(tmp_path, good, broken) -> None:
    text = CLUSTER_YAML.read_text()
    assert text.count(good) == 1, good
    copy_path = tmp_path / "cluster.yaml"
    copy_path.write_text(text.replace(good, broken))
    with pytest.raises((jsonschema.ValidationError, ValueError)):
        check(yaml.safe_load(copy_path.read_text()))
