#!/usr/bin/env python3
"""Print a node's parameters as a Markdown table (README reference tables are made with this).

Usage: python scripts/param_table.py perception|player|fusion
"""

from __future__ import annotations

import importlib
import sys

SPECS = {
    "perception": ("samfusion.ros.perception_params", "PERCEPTION_PARAMS"),
    "player": ("samfusion.ros.kitti_player", "PLAYER_PARAMS"),
    "fusion": ("samfusion.ros.fusion_node", "FUSION_PARAMS"),
}


def table(specs) -> str:
    rows = ["| parameter | type | default | live | description |", "|---|---|---|---|---|"]
    for s in specs:
        kind = s.kind.__name__ + ("[]" if s.array else "")
        extra = f" ({', '.join(s.choices)})" if s.choices else ""
        if s.min is not None or s.max is not None:
            extra += f" [{s.min}, {s.max}]"
        default = repr(s.default) if not isinstance(s.default, str) else f'"{s.default}"'
        rows.append(f"| `{s.name}` | {kind} | `{default}` | {'yes' if not s.read_only else ''} | "
                    f"{s.description}{extra} |")
    return "\n".join(rows)


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in SPECS:
        sys.exit(f"usage: python scripts/param_table.py {'|'.join(SPECS)}")
    module, attr = SPECS[sys.argv[1]]
    print(table(getattr(importlib.import_module(module), attr)))
