"""Helpers for the launch-file tests: load a launch file as a module, read its Node calls.

The launch files import ``launch`` only inside generate_launch_description(), so their module
constants (ARGUMENTS, executables, config paths) are readable without ROS 2 launch installed.
Note: this folder must stay without __init__.py (a package here would be named ``launch``).
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
LAUNCH_DIR = REPO_ROOT / "launch"
LAUNCH_FILES = ("perception", "fusion", "system", "simulation", "kitti_demo")


def launch_path(name: str) -> Path:
    return LAUNCH_DIR / f"{name}.launch.py"


def load_launch_file(name: str) -> ModuleType:
    """Import ``launch/<name>.launch.py`` under a private module name."""
    path = launch_path(name)
    spec = importlib.util.spec_from_file_location(f"samfusion_launchfile_{name}", path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def launch_missing_reason() -> str | None:
    """Why the real ROS 2 launch packages cannot be used here, or None when they can."""
    try:
        from launch import LaunchDescription  # noqa: F401
        from launch_ros.actions import Node  # noqa: F401
    except ImportError as exc:
        return (f"ROS 2 'launch'/'launch_ros' are not installed ({exc}); the launch files are "
                "checked statically instead")
    return None


def node_calls(path: Path, module: Any) -> list[tuple[str, str]]:
    """(package, executable) of every call with an ``executable=`` keyword in ``path``.

    Names are resolved against ``module``; a call without ``package=`` is a
    ``node_action(...)``, whose package is sam_fusion.
    """
    tree = ast.parse(path.read_text(), filename=str(path))
    calls = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        keywords = {k.arg: k.value for k in node.keywords if k.arg}
        if "executable" not in keywords:
            continue

        def value(expr: ast.expr) -> str:
            if isinstance(expr, ast.Constant) and isinstance(expr.value, str):
                return expr.value
            if isinstance(expr, ast.Name):
                return str(getattr(module, expr.id))
            raise AssertionError(f"{path.name}: executable/package must be a literal or a module "
                                 f"constant, got {ast.dump(expr)}")

        package = value(keywords["package"]) if "package" in keywords else "sam_fusion"
        calls.append((package, value(keywords["executable"])))
    return calls
