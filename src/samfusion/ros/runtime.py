"""The shared ``main`` of our nodes: init, spin a multi-threaded executor, shut down cleanly."""

from __future__ import annotations

import sys
from typing import Callable

import rclpy
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node

from samfusion.errors import SamFusionError

__all__ = ["spin_node"]


def spin_node(factory: Callable[[], Node], args: list[str] | None = None,
              threads: Callable[[Node], int] = lambda node: 2) -> None:
    """Run the node ``factory()`` builds until Ctrl-C or shutdown, without a traceback.

    A configuration error while building it (bad parameters, missing files) prints one line
    naming the node and exits with status 2, so a launch file shows why instead of a stack.
    """
    rclpy.init(args=args)
    node: Node | None = None
    code = 0
    try:
        node = factory()
        executor = MultiThreadedExecutor(num_threads=threads(node))
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except (SamFusionError, ValueError, InvalidParameterValueException, InvalidParameterTypeException) as exc:
        name = node.get_name() if node is not None else getattr(factory, "__name__", "node")
        print(f"sam_fusion {name}: {exc}", file=sys.stderr)
        code = 2
    finally:
        if node is not None:
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    if code:
        sys.exit(code)
