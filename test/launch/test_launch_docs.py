"""docs/launch.md documents every launch argument, and its parameter tables (and
config/perception.yaml) are what scripts/update_launch_docs.py generates from the nodes."""

from __future__ import annotations

import importlib.util

import pytest

from launch_support import LAUNCH_FILES, REPO_ROOT, load_launch_file

DOCS = (REPO_ROOT / "docs" / "launch.md").read_text()
HOW = "run `python scripts/update_launch_docs.py` (after `source scripts/env.sh`)"


def generator():
    spec = importlib.util.spec_from_file_location("update_launch_docs",
                                                  REPO_ROOT / "scripts" / "update_launch_docs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def node_modules_or_skip():
    try:
        from samfusion.ros.fusion_node import FUSION_PARAMS  # noqa: F401
        from samfusion.ros.kitti_player import PLAYER_PARAMS  # noqa: F401
        from samfusion.ros.perception_params import PERCEPTION_PARAMS
    except ImportError as exc:
        pytest.skip(f"node modules not importable here ({exc}); source scripts/env.sh")
    return PERCEPTION_PARAMS


def test_generated_tables_are_current() -> None:
    node_modules_or_skip()
    gen = generator()
    assert gen.update_docs(DOCS, gen.tables()) == DOCS, f"docs/launch.md tables are stale: {HOW}"


def test_perception_yaml_is_current() -> None:
    specs = node_modules_or_skip()
    current = (REPO_ROOT / "config" / "perception.yaml").read_text()
    assert generator().params_yaml(specs) == current, f"config/perception.yaml is stale: {HOW}"


@pytest.mark.parametrize("name", LAUNCH_FILES)
def test_every_argument_is_in_the_docs(name: str) -> None:
    try:
        module = load_launch_file(name)
    except ImportError as exc:
        pytest.skip(f"{name}.launch.py not importable here ({exc}); source scripts/env.sh")
    assert f"`{name}.launch.py`" in DOCS
    missing = [a.name for a in module.ARGUMENTS if f"`{a.name}`" not in DOCS]
    assert not missing, f"{name}.launch.py arguments missing from docs/launch.md: {missing}"


def test_docs_name_the_example_commands() -> None:
    for command in ("ros2 launch sam_fusion perception.launch.py", "ros2 launch sam_fusion system.launch.py",
                    "ros2 launch sam_fusion simulation.launch.py", "ros2 launch sam_fusion kitti_demo.launch.py",
                    "ros2 bag play"):
        assert command in DOCS
