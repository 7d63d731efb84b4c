"""The README stays in step with the code: commands, parameter tables, interfaces."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_first_lines_are_the_two_commands():
    lines = README.splitlines()
    block = lines[lines.index("```bash") + 1: lines.index("```bash") + 3]
    assert block[0].startswith("bash scripts/demo.sh") and block[1].startswith("bash scripts/test.sh")
    for script in ("scripts/demo.sh", "scripts/test.sh"):
        assert (ROOT / script).stat().st_mode & 0o111, f"{script} is not executable"
    assert "scripts/test.sh" in (ROOT / ".ci" / "run").read_text()


@pytest.mark.parametrize("node", ["perception", "player", "fusion"])
def test_parameter_tables_match_the_code(node):
    if importlib.util.find_spec("rclpy") is None:
        pytest.skip("rclpy is not importable; the parameter specs live in the ROS layer")
    table = subprocess.run([sys.executable, str(ROOT / "scripts" / "param_table.py"), node],
                           capture_output=True, text=True, check=True, cwd=ROOT,
                           env={**os.environ, "PYTHONPATH": os.pathsep.join(
                               [str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}).stdout.strip()
    assert table in README, f"README's {node} parameter table is stale: rerun scripts/param_table.py {node}"


def test_every_interface_is_documented():
    """Each field line has a comment on it or directly above its group of field lines."""
    for path in list((ROOT / "msg").glob("*.msg")) + list((ROOT / "srv").glob("*.srv")):
        lines = [line.strip() for line in path.read_text().splitlines()]
        for index, line in enumerate(lines):
            if not line or line.startswith("#") or line == "---" or "#" in line:
                continue
            above = index - 1
            while above >= 0 and lines[above] and not lines[above].startswith("#") and lines[above] != "---":
                above -= 1
            assert above >= 0 and lines[above].startswith("#"), f"{path.name}: undocumented field '{line}'"
