"""Helpers for tests that run real nodes over real DDS.

Nodes under test run as separate processes (``python -m samfusion.ros.<node>``, the same
``main`` the installed executables call); the test talks to them from its own rclpy context.
Every process inherits ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST and the run's ROS_DOMAIN_ID
from test/conftest.py. Waits poll a predicate with a deadline instead of sleeping fixed times.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

try:  # rclpy from an apt install or the pip wheels, and our generated interfaces
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node

    import sam_fusion.msg  # noqa: F401  (built by colcon: scripts/setup.sh)

    ROS_AVAILABLE = True
    ROS_MISSING_REASON = ""
except ImportError as exc:  # pragma: no cover - depends on the machine
    ROS_AVAILABLE = False
    ROS_MISSING_REASON = f"rclpy or the sam_fusion interfaces are not importable ({exc}); run scripts/setup.sh and source scripts/env.sh"

requires_ros = pytest.mark.skipif(not ROS_AVAILABLE, reason=ROS_MISSING_REASON or "ros")


def node_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for node processes: loopback-only discovery, this run's domain, src first."""
    env = dict(os.environ)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env.pop("ROS_LOCALHOST_ONLY", None)
    env.setdefault("ROS_DOMAIN_ID", "42")
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO_ROOT / "src")] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    )
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("RCUTILS_COLORIZED_OUTPUT", "0")
    if extra:
        env.update(extra)
    return env


def _param_arg(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_param_arg(v) if not isinstance(v, str) else f"'{v}'" for v in value) + "]"
    return str(value)


class NodeProcess:
    """A node running in its own process; output goes to a log file for assertions."""

    def __init__(self, module: str, name: str, params: Mapping[str, Any] | None = None,
                 remaps: Mapping[str, str] | None = None, env: Mapping[str, str] | None = None,
                 args: list[str] | None = None) -> None:
        self.module = module
        self.name = name
        self._log = tempfile.NamedTemporaryFile(prefix=f"{name}-", suffix=".log", delete=False)
        cmd = [sys.executable, "-m", module, *(args or []), "--ros-args", "-r", f"__node:={name}"]
        for key, value in (params or {}).items():
            cmd += ["-p", f"{key}:={_param_arg(value)}"]
        for src, dst in (remaps or {}).items():
            cmd += ["-r", f"{src}:={dst}"]
        self.cmd = cmd
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT,
                                     env=node_env(env), cwd=str(REPO_ROOT),
                                     start_new_session=True)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def output(self) -> str:
        self._log.flush()
        return Path(self._log.name).read_text(errors="replace")

    def stop(self, timeout: float = 10.0) -> int:
        if self.alive():
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        return int(self.proc.returncode)


@contextmanager
def node_process(module: str, name: str, **kwargs: Any) -> Iterator[NodeProcess]:
    proc = NodeProcess(module, name, **kwargs)
    try:
        yield proc
    finally:
        code = proc.stop()
        if code not in (0, -signal.SIGINT, 130):
            print(f"--- {name} exited with {code}; output:\n{proc.output()}")


@contextmanager
def probe_node(name: str = "test_probe") -> Iterator[tuple[Node, SingleThreadedExecutor]]:
    """An rclpy node in this process with its own context and executor."""
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node(name, context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    try:
        yield node, executor
    finally:
        executor.remove_node(node)
        node.destroy_node()
        executor.shutdown()
        rclpy.shutdown(context=context)


def spin_until(executor: SingleThreadedExecutor, predicate: Callable[[], bool],
               timeout: float = 20.0) -> bool:
    """Spin until ``predicate()`` is true or ``timeout`` seconds pass; returns the predicate.

    The wait also needs ``timeout / 0.05`` spins, so a jump of the machine clock (suspended VMs)
    cannot cut it short.
    """
    start = time.monotonic()
    spins = 0
    while time.monotonic() - start < timeout or spins < timeout * 20:
        if predicate():
            return True
        executor.spin_once(timeout_sec=0.05)
        spins += 1
    return bool(predicate())


def wait_for_match(executor: SingleThreadedExecutor, endpoint: Any, count: int = 1,
                   timeout: float = 20.0) -> bool:
    """Wait until a publisher has ``count`` subscribers (or a subscription that many publishers)."""
    getter = (endpoint.get_subscription_count if hasattr(endpoint, "get_subscription_count")
              else endpoint.get_publisher_count)
    return spin_until(executor, lambda: getter() >= count, timeout)
