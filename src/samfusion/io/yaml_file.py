"""Read a YAML file for a user-facing command: every failure becomes one line naming the file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from samfusion.errors import SamFusionError

__all__ = ["load_yaml"]


def load_yaml(path: str | Path, what: str, error: type[SamFusionError]) -> Any:
    """Parse ``path`` (UTF-8 YAML); raise ``error`` with a one-line reason ("<what> <path>: ...")."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise error(f"{what} {path} is not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise error(f"{what} {path} is not valid YAML: {exc.problem or exc.context}{where}") from None
    except yaml.YAMLError as exc:
        raise error(f"{what} {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
