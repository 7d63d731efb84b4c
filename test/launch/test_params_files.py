"""config/perception.yaml holds exactly the perception node's parameters with their defaults, and
the parameter files load through the real rcl YAML parser into the node's declarations."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from launch_support import REPO_ROOT

PERCEPTION_YAML = REPO_ROOT / "config" / "perception.yaml"
SIM_YAML = REPO_ROOT / "config" / "sim" / "perception_sim.yaml"


def perception_specs():
    try:
        from samfusion.ros.perception_params import PERCEPTION_PARAMS
    except ImportError as exc:
        pytest.skip(f"rclpy is not importable ({exc}); source scripts/env.sh")
    return PERCEPTION_PARAMS


def ros_parameters(path: Path) -> dict:
    tree = yaml.safe_load(path.read_text())
    assert list(tree) == ["/**"], f"{path.name}: parameters must apply to any node name (/**)"
    assert list(tree["/**"]) == ["ros__parameters"]
    return tree["/**"]["ros__parameters"]


def test_perception_yaml_has_exactly_the_node_parameters_with_their_defaults() -> None:
    specs = perception_specs()
    params = ros_parameters(PERCEPTION_YAML)
    assert list(params) == [s.name for s in specs]
    for spec in specs:
        value = params[spec.name]
        assert value == spec.default, f"{spec.name}: {value!r} != node default {spec.default!r}"
        expected_type = list if spec.array else spec.kind
        assert type(value) is expected_type, f"{spec.name}: {type(value).__name__} in the file"


def test_perception_yaml_comments_every_parameter() -> None:
    lines = PERCEPTION_YAML.read_text().splitlines()
    for spec in perception_specs():
        index = next(i for i, line in enumerate(lines) if line.strip().startswith(f"{spec.name}:"))
        assert lines[index - 1].strip().startswith("#"), f"{spec.name} has no comment above it"


def test_sim_yaml_sets_known_parameters_to_valid_values() -> None:
    specs = {s.name: s for s in perception_specs()}
    params = ros_parameters(SIM_YAML)
    assert set(params) <= set(specs), set(params) - set(specs)
    for name, value in params.items():
        assert specs[name].check(value) is None
    assert len(params["extrinsics"]) == 7 * len(params["camera_names"])


def declared_from_file(path: Path) -> dict:
    """Declare the node's parameters on a plain node started with ``--params-file path``."""
    try:
        import rclpy
        from rclpy.node import Node

        from samfusion.ros.params import declare_parameters
    except ImportError as exc:
        pytest.skip(f"rclpy is not importable ({exc}); source scripts/env.sh")
    specs = perception_specs()
    context = rclpy.Context()
    rclpy.init(args=["--ros-args", "--params-file", str(path)], context=context)
    try:
        node = Node("sam_fusion_perception", context=context)
        try:
            return declare_parameters(node, specs)
        finally:
            node.destroy_node()
    finally:
        rclpy.shutdown(context=context)


@pytest.mark.ros
def test_perception_yaml_loads_through_rcl_as_the_defaults() -> None:
    values = declared_from_file(PERCEPTION_YAML)
    assert values == {s.name: s.default for s in perception_specs()}


@pytest.mark.ros
def test_sim_yaml_loads_through_rcl() -> None:
    values = declared_from_file(SIM_YAML)
    expected = ros_parameters(SIM_YAML)
    for name, value in expected.items():
        assert values[name] == value
    assert values["backend"] == "classical"  # not in the sim file: the node default
