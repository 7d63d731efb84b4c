"""Stable class ids for the ``label`` field of labeled clouds (0 = unlabeled)."""

from __future__ import annotations

from typing import Iterable

__all__ = ["LabelMap"]


class LabelMap:
    """Maps class names to uint16 ids: configured names first (1..n), new names appended.

    Ids never change once given, so downstream consumers can cache them; ``names`` lists them in
    id order (``names[i - 1]`` is the name of id ``i``).
    """

    def __init__(self, names: Iterable[str] = ()) -> None:
        self._ids: dict[str, int] = {}
        self.names: list[str] = []
        for name in names:
            self.id_for(name)

    def id_for(self, name: str) -> int:
        key = name.strip()
        if not key:
            return 0
        found = self._ids.get(key)
        if found is None:
            if len(self.names) >= 0xFFFF:
                return 0
            self.names.append(key)
            found = self._ids[key] = len(self.names)
        return found

    def name_of(self, label_id: int) -> str:
        return self.names[label_id - 1] if 1 <= label_id <= len(self.names) else ""
