"""Starting and stopping nodes as child processes (demo, soak, language-loop scripts).

No rclpy here: these helpers only build command lines and manage processes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import Any, Mapping

__all__ = ["node_command", "stop_process"]


def _param_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(f"'{v}'" if isinstance(v, str) else _param_value(v) for v in value) + "]"
    return str(value)


def node_command(module: str, params: Mapping[str, Any] | None = None, name: str = "") -> list[str]:
    """``python -m module --ros-args [-r __node:=name] -p key:=value ...`` for this interpreter."""
    cmd = [sys.executable, "-m", module, "--ros-args"]
    if name:
        cmd += ["-r", f"__node:={name}"]
    for key, value in (params or {}).items():
        cmd += ["-p", f"{key}:={_param_value(value)}"]
    return cmd


def stop_process(proc: subprocess.Popen[Any], timeout: float = 15.0) -> int:
    """Ctrl-C a node (clean shutdown), then kill its process group if it does not exit."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
    return int(proc.returncode)
