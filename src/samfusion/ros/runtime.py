"""The shared ``main`` of our nodes: init, spin a multi-threaded executor, shut down cleanly."""

from __future__ import annotations

import sys
from typing import Callable

import rclpy
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node

from samfusion.errors import SamFusionError

__all__ = ["spin_node"]


def spin_node(factory: Callable[[], Node], args: list[str] | None = None,
              threads: Callable[[Node], int] = lambda node: 2,
              run: Callable[[Node], None] | None = None) -> None:
    """Run the node ``factory()`` builds until Ctrl-C or shutdown, without a traceback.

    ``run`` drives the node (default: spin a multi-threaded executor until shutdown). A
    configuration error (bad parameters, an unreadable parameter file, missing files) prints one
    line naming the node and exits with status 2, so a launch file shows why instead of a stack.
    """
    name = getattr(factory, "NODE_NAME", getattr(factory, "__name__", "node"))
    try:
        rclpy.init(args=args)
    except _rclpy.RCLError as exc:  # e.g. --params-file that does not exist or does not parse
        print(f"sam_fusion {name}: {str(exc).split(', at ')[0]}", file=sys.stderr)
        sys.exit(2)
    node: Node | None = None
    code = 0
    try:
        node = factory()
        if run is not None:
            run(node)
        else:
            executor = MultiThreadedExecutor(num_threads=threads(node))
            executor.add_node(node)
            executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except (SamFusionError, ValueError, InvalidParameterValueException, InvalidParameterTypeException) as exc:
        print(f"sam_fusion {node.get_name() if node is not None else name}: {exc}", file=sys.stderr)
        code = 2
    finally:
        if node is not None:
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    if code:
        sys.exit(code)
