"""package.xml declares exactly the ROS packages the code imports, with rosdep keys that exist."""

from __future__ import annotations

import ast
import re
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

#: ROS packages imported as Python modules that do not follow the *_msgs naming.
ROS_MODULES = {"rclpy", "launch", "launch_ros", "tf2_ros", "ament_index_python", "cv_bridge",
               "sensor_msgs_py", "message_filters", "rosidl_runtime_py", "rosbag2_py"}
#: Keys of rosdep's python.yaml / base.yaml that this package uses (checked by hand against
#: rosdistro); anything else must come with pip (README).
KNOWN_SYSTEM_KEYS = {"python3-numpy", "python3-opencv", "python3-yaml", "python3-pil", "python3-pytest",
                     "python3-hypothesis"}
#: Declared for the build or the generated interfaces, not imported by our Python code.
NOT_IMPORTED = {"ament_cmake", "ament_cmake_python", "rosidl_default_generators", "rosidl_default_runtime",
                "ament_cmake_pytest"}


def _is_ros(name: str) -> bool:
    return name in ROS_MODULES or re.search(r"_(msgs|srvs|interfaces)$", name) is not None


def _imports() -> set[str]:
    files = [*(REPO / "src" / "samfusion").rglob("*.py"), *(REPO / "launch").glob("*.py"),
             *(p for p in (REPO / "nodes").iterdir() if p.is_file())]
    names: set[str] = set()
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
    return names


def _declared() -> dict[str, str]:
    root = ET.parse(REPO / "package.xml").getroot()
    tags = ("depend", "exec_depend", "build_depend", "buildtool_depend", "test_depend")
    return {el.text.strip(): el.tag for tag in tags for el in root.iter(tag)}


def test_every_imported_ros_package_is_declared():
    imported = {n for n in _imports() if _is_ros(n)} - {"sam_fusion"}
    missing = sorted(imported - set(_declared()))
    assert missing == [], f"imported but not in package.xml: {missing}"


def test_every_declared_ros_package_is_used():
    imported = _imports()
    declared = {name for name in _declared() if not name.startswith("python3-")} - NOT_IMPORTED
    unused = sorted(declared - imported)
    assert unused == [], f"in package.xml but never imported: {unused}"


def test_system_dependencies_use_known_rosdep_keys():
    keys = {name for name in _declared() if name.startswith("python3-")}
    assert keys <= KNOWN_SYSTEM_KEYS, f"not a known rosdep key (use pip, see README): {sorted(keys - KNOWN_SYSTEM_KEYS)}"
    assert {"python3-torch", "python3-httpx"}.isdisjoint(keys)
