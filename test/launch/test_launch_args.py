"""samfusion.launch_args: argument tables from parameter specs, and launch values -> node settings.

Uses small stand-in specs (duck-typed like ParamSpec) so the helper is tested without rclpy;
the real node specs are covered in test_launch_files.py.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

import pytest

from samfusion.launch_args import (
    COMMON_ARGUMENT_NAMES,
    LaunchArgument,
    LaunchArgumentError,
    common_arguments,
    default_string,
    launch_arguments,
    markdown_table,
    merge_arguments,
    node_settings,
    parameter_arguments,
    parameter_overrides,
    parse_bool,
    parse_remappings,
    parse_value,
)


@dataclass(frozen=True)
class Spec:
    name: str
    default: Any
    description: str
    kind: type = str
    array: bool = False
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] = ()

    def check(self, value: Any) -> str | None:
        if self.choices and value not in self.choices:
            return f"{self.name}={value!r} is not one of {list(self.choices)}"
        if not self.array and self.kind in (int, float):
            if self.min is not None and value < self.min:
                return f"{self.name}={value} is below its minimum {self.min}"
            if self.max is not None and value > self.max:
                return f"{self.name}={value} is above its maximum {self.max}"
        return None


SPECS = (
    Spec("backend", "classical", "Backend", choices=("classical", "sam2")),
    Spec("checkpoint", "", "Checkpoint"),
    Spec("score_threshold", 0.5, "Score", kind=float, min=0.0, max=1.0),
    Spec("mask_threshold", 0.0, "Mask", kind=float),
    Spec("max_objects", 64, "Objects", kind=int, min=1),
    Spec("publish_overlay", True, "Overlay", kind=bool),
    Spec("camera_names", ["camera"], "Cameras", array=True),
    Spec("extrinsics", [], "Extrinsics", kind=float, array=True),
    Spec("frames", [], "Frames", array=True),
)


def test_pure_module_imports_without_ros() -> None:
    code = ("import sys; import samfusion.launch_args; "
            "bad = [m for m in ('rclpy', 'launch', 'launch_ros') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_default_strings() -> None:
    by_name = {s.name: default_string(s) for s in SPECS}
    assert by_name == {"backend": "classical", "checkpoint": "", "score_threshold": "0.5",
                       "mask_threshold": "0.0", "max_objects": "64", "publish_overlay": "true",
                       "camera_names": "[camera]", "extrinsics": "[]", "frames": "[]"}


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_default_strings_parse_back_to_the_default(spec: Spec) -> None:
    value = parse_value(spec, default_string(spec))
    assert value == spec.default and type(value) is type(spec.default)


def test_parse_scalars() -> None:
    by_name = {s.name: s for s in SPECS}
    assert parse_value(by_name["score_threshold"], "1") == 1.0
    assert isinstance(parse_value(by_name["score_threshold"], "1"), float)
    assert parse_value(by_name["max_objects"], " 12 ") == 12
    assert parse_value(by_name["publish_overlay"], "False") is False
    assert parse_value(by_name["checkpoint"], "/models/sam 2") == "/models/sam 2"
    assert [parse_bool(t) for t in ("1", "yes", "ON", "0", "no", "off")] == [True] * 3 + [False] * 3


def test_parse_lists() -> None:
    by_name = {s.name: s for s in SPECS}
    assert parse_value(by_name["camera_names"], "[front, 'left']") == ["front", "left"]
    assert parse_value(by_name["camera_names"], "front,rear") == ["front", "rear"]
    # string lists are never read as YAML: KITTI frame ids keep their zeros
    assert parse_value(by_name["frames"], "[000001, 000002]") == ["000001", "000002"]
    assert parse_value(by_name["extrinsics"], "0 0 1 0 0 0 1") == [0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    assert parse_value(by_name["extrinsics"], "[0.5, -1e-3]") == [0.5, -0.001]
    assert parse_value(by_name["extrinsics"], "[]") == []


@pytest.mark.parametrize(("name", "text", "fragment"), [
    ("backend", "sam9", "not one of"),
    ("score_threshold", "1.5", "above its maximum"),
    ("score_threshold", "high", "not a number"),
    ("score_threshold", "nan", "not a finite number"),
    ("max_objects", "2.5", "not an integer"),
    ("max_objects", "0", "below its minimum"),
    ("publish_overlay", "maybe", "not a boolean"),
    ("extrinsics", "[1, x]", "extrinsics[1]"),
])
def test_bad_values_name_the_argument(name: str, text: str, fragment: str) -> None:
    spec = {s.name: s for s in SPECS}[name]
    with pytest.raises(LaunchArgumentError) as info:
        parse_value(spec, text)
    assert fragment in str(info.value) and name in str(info.value)


def test_parameter_arguments_mirror_specs_one_to_one() -> None:
    args = parameter_arguments(SPECS)
    assert [a.name for a in args] == [s.name for s in SPECS]
    assert [a.description for a in args] == [s.description for s in SPECS]


def test_demo_defaults_replace_a_default_and_say_so() -> None:
    args = {a.name: a for a in parameter_arguments(SPECS, defaults={"publish_overlay": False})}
    assert args["publish_overlay"].default == "false"
    assert "node default: true" in args["publish_overlay"].description
    with pytest.raises(ValueError, match="unknown"):
        parameter_arguments(SPECS, defaults={"nope": 1})


def test_launch_arguments_add_the_common_ones() -> None:
    args = launch_arguments(SPECS, params_file="/x/perception.yaml")
    names = [a.name for a in args]
    assert names == [s.name for s in SPECS] + list(COMMON_ARGUMENT_NAMES)
    common = {a.name: a.default for a in args[len(SPECS):]}
    assert common == {"namespace": "", "use_sim_time": "false", "log_level": "info",
                      "params_file": "/x/perception.yaml", "remappings": ""}
    assert all(a.description for a in args)
    with pytest.raises(ValueError, match="collide"):
        launch_arguments((Spec("namespace", "", "x"),))


def test_merge_keeps_shared_names_once_and_refuses_conflicts() -> None:
    merged = merge_arguments([LaunchArgument("a", "1", "x"), LaunchArgument("b", "", "y")],
                             [LaunchArgument("a", "1", "other"), LaunchArgument("c", "z", "w")])
    assert [(a.name, a.description) for a in merged] == [("a", "x (also: other)"), ("b", "y"), ("c", "w")]
    again = merge_arguments(merged, [LaunchArgument("a", "1", "other")])
    assert again[0].description == "x (also: other)"
    with pytest.raises(ValueError, match="two defaults"):
        merge_arguments([LaunchArgument("a", "1", "x")], [LaunchArgument("a", "2", "x")])


def test_only_values_that_differ_from_the_node_default_are_passed() -> None:
    values = {a.name: a.default for a in parameter_arguments(SPECS)}
    assert parameter_overrides(SPECS, values) == {}
    values.update(backend="sam2", score_threshold="0.50", max_objects="8", camera_names="[a, b]",
                  extrinsics="0 0 0 0 0 0 1")
    assert parameter_overrides(SPECS, values) == {
        "backend": "sam2", "max_objects": 8, "camera_names": ["a", "b"],
        "extrinsics": [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]}


def test_empty_list_cannot_override_a_non_empty_default() -> None:
    with pytest.raises(LaunchArgumentError, match="camera_names: an empty list"):
        parameter_overrides(SPECS, {"camera_names": "[]"})


def test_node_settings() -> None:
    values = {a.name: a.default for a in launch_arguments(SPECS, params_file="/p.yaml")}
    values.update(namespace="robot1", use_sim_time="true", log_level="DEBUG", backend="sam2",
                  remappings="camera/image_raw:=/front/image, points:=/velodyne_points")
    settings = node_settings(SPECS, values)
    assert settings.namespace == "robot1"
    assert settings.parameters == ["/p.yaml", {"backend": "sam2", "use_sim_time": True}]
    assert settings.ros_arguments == ["--log-level", "debug"]
    assert settings.remappings == [("camera/image_raw", "/front/image"), ("points", "/velodyne_points")]
    plain = node_settings(SPECS, {"params_file": ""})
    assert plain.parameters == [{"use_sim_time": False}] and plain.namespace == ""
    with pytest.raises(LaunchArgumentError, match="log_level"):
        node_settings(SPECS, {"log_level": "verbose"})


def test_remappings_need_from_and_to() -> None:
    assert parse_remappings("") == []
    with pytest.raises(LaunchArgumentError, match="'points'"):
        parse_remappings("points")


def test_markdown_table_rows() -> None:
    table = markdown_table(common_arguments(params_file="")).splitlines()
    assert table[0] == "| argument | default | description |"
    assert table[2].startswith("| `namespace` | (empty) | ROS namespace")
    assert table[3].startswith("| `use_sim_time` | `false` |")
    assert len(table) == 2 + len(COMMON_ARGUMENT_NAMES)


def test_launch_actions_module_needs_launch() -> None:
    from launch_support import launch_missing_reason

    reason = launch_missing_reason()
    if reason is not None:
        with pytest.raises(ImportError):
            importlib.import_module("samfusion.ros.launch_actions")
    else:  # pragma: no cover - only with ROS 2 launch installed
        module = importlib.import_module("samfusion.ros.launch_actions")
        assert module.PACKAGE == "sam_fusion"


def test_system_launch_points_the_fusion_node_at_every_camera() -> None:
    from samfusion.launch_args import scene_topics_following_cameras
    from samfusion.ros.fusion_node import FUSION_PARAMS

    scene = next(s for s in FUSION_PARAMS if s.name == "scene_topics")
    default = default_string(scene)
    out = scene_topics_following_cameras({"camera_names": "[front, 'rear']", "scene_topics": default}, default)
    assert parse_value(scene, out["scene_topics"]) == ["front/segmentation", "rear/segmentation"]
    given = {"camera_names": "[front]", "scene_topics": "[mine/segmentation]"}
    assert scene_topics_following_cameras(given, default) == given  # an explicit choice is kept
    lidar_only = {"camera_names": "[]", "scene_topics": default}
    assert scene_topics_following_cameras(lidar_only, default) == lidar_only
