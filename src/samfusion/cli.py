"""The samfusion command line: the same core as the nodes, without ROS.

Sub-commands: ``kitti`` (run the perception pipeline over a KITTI object folder and score it
against the 3D boxes), ``process`` (recorded bags and folders, see ``samfusion process -h``) and
``query`` (ask an LLM fusion pool).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Any, Callable

__all__ = ["main", "build_parser"]

# (module, add-parser function, run function): imported lazily so `samfusion query` does not
# import torch or open3d.
_SUBCOMMANDS: tuple[tuple[str, str, str], ...] = (
    ("samfusion.offline.kitti_cli", "add_kitti_parser", "run_kitti"),
    ("samfusion.offline.process_cli", "add_process_parser", "run_process"),
    ("samfusion.fusion.cli", "add_query_parser", "run_query"),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="samfusion", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for module_name, add_name, run_name in _SUBCOMMANDS:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:  # an optional part (e.g. bag support) is missing
            missing = sub.add_parser(module_name.rsplit(".", 1)[-1].replace("_cli", ""),
                                     help=f"unavailable: {exc}")
            missing.set_defaults(_run=_unavailable(str(exc)))
            continue
        sub_parser = getattr(module, add_name)(sub)
        sub_parser.set_defaults(_run=getattr(module, run_name))
    return parser


def _unavailable(reason: str) -> Callable[[Any], int]:
    def run(_: Any) -> int:
        print(f"samfusion: this command is unavailable here: {reason}", file=sys.stderr)
        return 2

    return run


def main(argv: list[str] | None = None) -> int:
    """Exit status: the sub-command's; 2 for bad input it reports as a typed error."""
    from samfusion.errors import SamFusionError

    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args))
    except SamFusionError as exc:
        print(f"samfusion {args.command}: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # an output folder that cannot be created or written, a full disk
        where = f": {exc.filename}" if exc.filename else ""
        print(f"samfusion {args.command}: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
