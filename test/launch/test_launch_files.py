"""The launch files: valid Python, arguments mirror the node parameters one to one, every
executable and file they name exists and is installed, and (with ROS 2 launch installed)
generate_launch_description() declares exactly those arguments."""

from __future__ import annotations

import ast
import os
import re
from pathlib import Path

import pytest

from launch_support import (
    LAUNCH_FILES,
    REPO_ROOT,
    launch_missing_reason,
    launch_path,
    load_launch_file,
    node_calls,
)
from samfusion.launch_args import COMMON_ARGUMENT_NAMES, parse_bool, parse_value


def load(name: str):
    """The launch file module; skipped (with the reason) where its node modules cannot be
    imported (rclpy, or the sam_fusion interfaces built by colcon)."""
    try:
        return load_launch_file(name)
    except ImportError as exc:
        pytest.skip(f"{name}.launch.py imports node modules that are not importable here ({exc}); "
                    "source scripts/env.sh so the colcon install is on PYTHONPATH")


def specs(which: str):
    try:
        if which == "perception":
            from samfusion.ros.perception_params import PERCEPTION_PARAMS as found
        elif which == "fusion":
            from samfusion.ros.fusion_node import FUSION_PARAMS as found
        else:
            from samfusion.ros.kitti_player import PLAYER_PARAMS as found
    except ImportError as exc:
        pytest.skip(f"{which} parameters not importable here ({exc}); source scripts/env.sh")
    return found


EXTERNAL = {("rviz2", "rviz2"), ("ros_gz_bridge", "parameter_bridge")}
CMAKE = (REPO_ROOT / "CMakeLists.txt").read_text()


def arguments(name: str) -> dict[str, object]:
    return {a.name: a for a in load(name).ARGUMENTS}


def assert_mirrors(args: dict, specs, *, overridden: dict | None = None) -> None:
    """Each spec is an argument of the same name whose default parses back to the default."""
    overridden = overridden or {}
    for spec in specs:
        assert spec.name in args, f"parameter {spec.name} has no launch argument"
        value = parse_value(spec, args[spec.name].default)
        expected = overridden.get(spec.name, spec.default)
        assert value == expected, f"{spec.name}: launch default {args[spec.name].default!r} != {expected!r}"
        assert spec.description in args[spec.name].description


@pytest.mark.parametrize("name", LAUNCH_FILES)
def test_launch_file_is_python_with_the_entry_point(name: str) -> None:
    tree = ast.parse(launch_path(name).read_text())
    functions = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert "generate_launch_description" in functions
    # launch itself is imported only inside the entry point (module constants stay readable)
    top_imports = {a.name.split(".")[0] for n in tree.body if isinstance(n, ast.Import) for a in n.names}
    top_imports |= {n.module.split(".")[0] for n in tree.body if isinstance(n, ast.ImportFrom) and n.module}
    assert not top_imports & {"launch", "launch_ros"}


@pytest.mark.parametrize("name", LAUNCH_FILES)
def test_every_argument_is_documented_and_unique(name: str) -> None:
    args = load(name).ARGUMENTS
    names = [a.name for a in args]
    assert len(names) == len(set(names))
    for arg in args:
        assert arg.description.strip(), f"{name}: {arg.name} has no description"
        assert isinstance(arg.default, str)


def test_perception_arguments() -> None:
    args = arguments("perception")
    assert list(args) == [s.name for s in specs("perception")] + list(COMMON_ARGUMENT_NAMES)
    assert_mirrors(args, specs("perception"))
    assert args["backend"].default == "classical"
    assert args["camera_names"].default == "[camera]"
    assert args["lidar_topic"].default == "points"
    assert args["score_threshold"].default == "0.5"
    assert args["checkpoint"].default == ""
    assert Path(args["params_file"].default) == REPO_ROOT / "config" / "perception.yaml"


def test_fusion_arguments() -> None:
    args = arguments("fusion")
    assert list(args) == [s.name for s in specs("fusion")] + list(COMMON_ARGUMENT_NAMES)
    assert_mirrors(args, specs("fusion"))
    assert args["params_file"].default == ""
    assert args["service_name"].default == "fusion_query"


def test_system_arguments_cover_both_nodes() -> None:
    args = arguments("system")
    assert_mirrors(args, specs("perception"))
    assert_mirrors(args, specs("fusion"))
    extra = set(args) - {s.name for s in (*specs("perception"), *specs("fusion"))}
    assert extra == (set(COMMON_ARGUMENT_NAMES) - {"params_file"}) | {
        "perception_params_file", "fusion_params_file", "rviz", "rviz_config"}
    assert parse_bool(args["rviz"].default) is False  # robots are often headless
    assert Path(args["perception_params_file"].default) == REPO_ROOT / "config" / "perception.yaml"
    # a name shared by both nodes is one argument feeding both (same default)
    shared = {s.name for s in specs("perception")} & {s.name for s in specs("fusion")}
    assert "prompt_topic" in shared


def test_kitti_demo_arguments_cover_player_and_perception() -> None:
    module = load("kitti_demo")
    args = arguments("kitti_demo")
    assert_mirrors(args, specs("perception"))
    assert_mirrors(args, specs("player"), overridden={"loop": True})
    assert module.DEMO_DEFAULTS == {"loop": True}
    assert parse_bool(args["rviz"].default) is True
    extra = set(args) - {s.name for s in (*specs("perception"), *specs("player"))}
    assert extra == set(COMMON_ARGUMENT_NAMES) | {"rviz", "rviz_config"}


def test_simulation_arguments_and_system_overrides() -> None:
    module = load("simulation")
    args = arguments("simulation")
    assert set(args) == {"world", "bridge_config", "headless", "rviz", "rviz_config"}
    assert Path(args["world"].default) == REPO_ROOT / "config" / "sim" / "sam_fusion_world.sdf"
    assert Path(args["bridge_config"].default) == REPO_ROOT / "config" / "sim" / "ros_gz_bridge.yaml"
    assert module.SYSTEM_OVERRIDES["use_sim_time"] == "true"
    system_args = arguments("system")
    assert set(module.SYSTEM_OVERRIDES) <= set(system_args)


@pytest.mark.parametrize("name", LAUNCH_FILES)
def test_named_executables_exist_and_are_installed(name: str) -> None:
    module = load(name)
    calls = node_calls(launch_path(name), module)
    for package, executable in calls:
        if package != "sam_fusion":
            assert (package, executable) in EXTERNAL, f"{name}: undeclared external {package}/{executable}"
            continue
        node = REPO_ROOT / "nodes" / executable
        assert node.is_file(), f"{name}: nodes/{executable} does not exist"
        assert os.access(node, os.X_OK), f"nodes/{executable} is not executable"
        assert node.read_text().startswith("#!/usr/bin/env python3")
    assert re.search(r'file\(GLOB SAM_FUSION_NODES "\$\{CMAKE_CURRENT_SOURCE_DIR\}/nodes/\*"\)', CMAKE)
    assert "install(PROGRAMS ${SAM_FUSION_NODES} DESTINATION lib/${PROJECT_NAME})" in CMAKE


def test_expected_nodes_per_launch_file() -> None:
    found = {name: sorted(node_calls(launch_path(name), load(name))) for name in LAUNCH_FILES}
    assert found["perception"] == [("sam_fusion", "perception_node")]
    assert found["fusion"] == [("sam_fusion", "fusion_node")]
    assert found["system"] == [("sam_fusion", "fusion_node"), ("sam_fusion", "perception_node")]
    assert found["kitti_demo"] == [("sam_fusion", "kitti_player"), ("sam_fusion", "perception_node")]
    assert found["simulation"] == [("ros_gz_bridge", "parameter_bridge")]


@pytest.mark.parametrize("name", LAUNCH_FILES)
def test_named_files_exist_and_are_installed(name: str) -> None:
    module = load(name)
    paths = {k: v for k, v in vars(module).items() if isinstance(v, Path) and k != "SHARE"}
    assert bool(paths) == (name != "fusion"), f"{name}: files {sorted(paths)}"
    assert module.SHARE == REPO_ROOT
    assert "install(DIRECTORY launch config DESTINATION share/${PROJECT_NAME})" in CMAKE
    for key, path in paths.items():
        assert path.is_file(), f"{name}: {key} = {path} does not exist"
        assert path.relative_to(REPO_ROOT).parts[0] in ("config", "launch"), f"{key} is not installed"


@pytest.mark.skipif(launch_missing_reason() is not None, reason=launch_missing_reason() or "")
@pytest.mark.parametrize("name", LAUNCH_FILES)
def test_generate_launch_description_declares_the_arguments(name: str) -> None:  # pragma: no cover
    from launch.actions import DeclareLaunchArgument

    description = load(name).generate_launch_description()
    declared = {e.name: e for e in description.entities if isinstance(e, DeclareLaunchArgument)}
    expected = {a.name: a for a in load(name).ARGUMENTS}
    assert set(declared) == set(expected)
    for arg_name, arg in expected.items():
        assert declared[arg_name].description == arg.description
        default = "".join(s.perform(None) for s in declared[arg_name].default_value)
        assert default == arg.default


@pytest.mark.skipif(launch_missing_reason() is not None, reason=launch_missing_reason() or "")
def test_perception_setup_builds_the_node_and_refuses_bad_values() -> None:  # pragma: no cover
    from launch import LaunchContext
    from launch.actions import OpaqueFunction

    from samfusion.launch_args import LaunchArgumentError

    module = load("perception")
    description = module.generate_launch_description()
    (setup,) = [e for e in description.entities if isinstance(e, OpaqueFunction)]
    context = LaunchContext()
    context.launch_configurations.update({a.name: a.default for a in module.ARGUMENTS})
    (node,) = setup.execute(context)
    assert (node.node_package, node.node_executable) == ("sam_fusion", "perception_node")
    context.launch_configurations["score_threshold"] = "2.0"
    with pytest.raises(LaunchArgumentError, match="score_threshold"):
        setup.execute(context)
