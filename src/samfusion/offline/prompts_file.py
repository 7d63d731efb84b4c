"""Prompts for offline runs, from the command line or a YAML file, with optional frame ranges.

YAML (a list, or a mapping with a ``prompts`` list)::

    prompts:
      - camera: CAM_FRONT            # optional; default: every camera
        id: 7                        # optional; default: a fresh id shared by all its cameras
        label: car                   # optional
        box: [x_min, y_min, x_max, y_max]
        points: [[x, y], [x, y, 0]]  # optional clicks; third value 1 = positive (default), 0 = negative
        concepts: [car]              # optional text concepts (SAM 3 backends)
        frames: [10, 200]            # optional first and last frame, inclusive; [10] = from 10 on

Frame numbers count each camera's images from 0 in the input's order. A prompt is added before
its first frame is segmented and removed after its last one. Command line:
``--box [CAM:]x0,y0,x1,y1[:LABEL]``, ``--point [CAM:]x,y[,0|1][:LABEL]``, ``--concept [CAM:]TEXT``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

from samfusion.errors import ConfigError, PromptError
from samfusion.io.yaml_file import load_yaml
from samfusion.segmentation.prompts import BoxPrompt, PointPrompt, PromptAction, PromptUpdate

__all__ = ["ScheduledPrompt", "PromptSchedule", "load_prompts_file", "parse_prompts", "dump_prompts",
           "parse_box_arg", "parse_point_arg", "parse_concept_arg"]

_KEYS = {"camera", "id", "label", "box", "points", "concepts", "frames"}


@dataclass(frozen=True)
class ScheduledPrompt:
    """One object (or concept) prompt and the frames it is active on."""

    camera: str = ""
    object_id: int = 0
    label: str = ""
    box: BoxPrompt | None = None
    points: tuple[PointPrompt, ...] = ()
    concepts: tuple[str, ...] = ()
    first_frame: int = 0
    last_frame: int | None = None

    def active(self, frame: int) -> bool:
        return frame >= self.first_frame and (self.last_frame is None or frame <= self.last_frame)

    def update(self, camera: str, object_id: int) -> PromptUpdate:
        return PromptUpdate(action=PromptAction.ADD, object_id=object_id, label=self.label,
                            points=self.points, boxes=(self.box,) if self.box else (),
                            concepts=self.concepts, target=camera)


def _numbers(value: Any, count: Sequence[int], where: str) -> list[float]:
    if not isinstance(value, (list, tuple)) or len(value) not in count:
        raise ConfigError(f"{where}: expected a list of {' or '.join(map(str, count))} numbers, got {value!r}")
    try:
        return [float(v) for v in value]
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: expected numbers, got {value!r}") from None


def _entry(item: Any, index: int) -> ScheduledPrompt:
    where = f"prompt {index}"
    if not isinstance(item, dict):
        raise ConfigError(f"{where}: expected a mapping, got {item!r}")
    unknown = set(item) - _KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(_KEYS)}")
    box = None
    if item.get("box") is not None:
        box = BoxPrompt(*_numbers(item["box"], (4,), f"{where}.box"))
        if box.x_max <= box.x_min or box.y_max <= box.y_min:
            raise ConfigError(f"{where}.box {list(box.as_array())} is empty (need x_min < x_max, y_min < y_max)")
    points = []
    for j, p in enumerate(item.get("points") or []):
        vals = _numbers(p, (2, 3), f"{where}.points[{j}]")
        points.append(PointPrompt(vals[0], vals[1], bool(vals[2]) if len(vals) == 3 else True))
    concepts = item.get("concepts") or []
    if isinstance(concepts, str) or not all(isinstance(c, str) and c.strip() for c in concepts):
        raise ConfigError(f"{where}.concepts: expected a list of non-empty strings, got {concepts!r}")
    if box is None and not points and not concepts:
        raise ConfigError(f"{where}: needs a box, points or concepts")
    object_id = item.get("id", 0)
    if not isinstance(object_id, int) or not 0 <= object_id <= 0xFFFF:
        raise ConfigError(f"{where}.id: expected an integer in 0..65535, got {object_id!r}")
    first, last = 0, None
    if item.get("frames") is not None:
        frames = item["frames"]
        if not isinstance(frames, (list, tuple)) or len(frames) not in (1, 2) \
                or not all(isinstance(f, int) and f >= 0 for f in frames):
            raise ConfigError(f"{where}.frames: expected [first] or [first, last] (frame numbers >= 0), got {frames!r}")
        first = frames[0]
        last = frames[1] if len(frames) == 2 else None
        if last is not None and last < first:
            raise ConfigError(f"{where}.frames: last frame {last} is before first frame {first}")
    if concepts and last is not None:
        raise ConfigError(f"{where}: a concept prompt cannot end at a frame (its detections get ids as they "
                          "appear); give frames: [first] only")
    return ScheduledPrompt(camera=str(item.get("camera") or ""), object_id=object_id,
                           label=str(item.get("label") or ""), box=box, points=tuple(points),
                           concepts=tuple(str(c).strip() for c in concepts), first_frame=first, last_frame=last)


def parse_prompts(tree: Any) -> list[ScheduledPrompt]:
    """Prompts from a parsed YAML document (see module docstring)."""
    if isinstance(tree, dict):
        unknown = set(tree) - {"prompts"}
        if unknown:
            raise ConfigError(f"prompts file: unknown top-level key(s) {sorted(unknown)}; expected 'prompts'")
        tree = tree.get("prompts") or []
    if not isinstance(tree, list):
        raise ConfigError(f"prompts file: expected a list of prompts, got {type(tree).__name__}")
    return [_entry(item, i) for i, item in enumerate(tree)]


def dump_prompts(prompts: Sequence[ScheduledPrompt]) -> dict[str, Any]:
    """The YAML document (as Python data) that :func:`parse_prompts` reads back to ``prompts``."""
    items = []
    for p in prompts:
        item: dict[str, Any] = {}
        if p.camera:
            item["camera"] = p.camera
        if p.object_id:
            item["id"] = p.object_id
        if p.label:
            item["label"] = p.label
        if p.box is not None:
            item["box"] = [p.box.x_min, p.box.y_min, p.box.x_max, p.box.y_max]
        if p.points:
            item["points"] = [[q.x, q.y, int(q.positive)] for q in p.points]
        if p.concepts:
            item["concepts"] = list(p.concepts)
        if p.first_frame or p.last_frame is not None:
            item["frames"] = [p.first_frame] + ([p.last_frame] if p.last_frame is not None else [])
        items.append(item)
    return {"prompts": items}


def load_prompts_file(path: str | Path) -> list[ScheduledPrompt]:
    tree = load_yaml(path, "prompts file", ConfigError)
    try:
        return parse_prompts(tree or [])
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def _split(arg: str, n_numbers: Sequence[int], what: str) -> tuple[str, list[float], str]:
    """``[CAM:]numbers[:LABEL]`` -> (camera, numbers, label)."""
    parts = arg.split(":")
    for i, part in enumerate(parts):
        try:
            values = [float(v) for v in part.split(",")]
        except ValueError:
            continue
        if len(values) in n_numbers and i <= 1 and len(parts) - i <= 2:
            return (parts[0] if i == 1 else ""), values, (parts[i + 1] if len(parts) > i + 1 else "")
    counts = " or ".join(map(str, n_numbers))
    raise ConfigError(f"{what} '{arg}': expected [CAMERA:]<{counts} comma-separated numbers>[:LABEL]")


def parse_box_arg(arg: str) -> ScheduledPrompt:
    camera, (x0, y0, x1, y1), label = _split(arg, (4,), "--box")
    if x1 <= x0 or y1 <= y0:
        raise ConfigError(f"--box '{arg}' is empty (need x0 < x1 and y0 < y1)")
    return ScheduledPrompt(camera=camera, label=label, box=BoxPrompt(x0, y0, x1, y1))


def parse_point_arg(arg: str) -> ScheduledPrompt:
    camera, vals, label = _split(arg, (2, 3), "--point")
    return ScheduledPrompt(camera=camera, label=label,
                           points=(PointPrompt(vals[0], vals[1], bool(vals[2]) if len(vals) == 3 else True),))


def parse_concept_arg(arg: str) -> ScheduledPrompt:
    camera, sep, text = arg.rpartition(":")
    text = text.strip()
    if not text:
        raise ConfigError(f"--concept '{arg}': expected [CAMERA:]TEXT")
    return ScheduledPrompt(camera=camera if sep else "", label=text, concepts=(text,))


class PromptSchedule:
    """Adds and removes scheduled prompts on a pipeline as each camera's frames go by."""

    def __init__(self, prompts: Sequence[ScheduledPrompt] = ()) -> None:
        self.prompts = list(prompts)
        self._ids: dict[int, int] = {}  # prompt index -> object id given by the pipeline
        self._active: set[tuple[int, str]] = set()

    def __bool__(self) -> bool:
        return bool(self.prompts)

    def check_cameras(self, cameras: Sequence[str]) -> None:
        for i, p in enumerate(self.prompts):
            if p.camera and p.camera not in cameras:
                raise ConfigError(f"prompt {i} targets camera '{p.camera}', which is not an input; "
                                  f"cameras: {list(cameras)}")

    def before_frame(self, pipeline: Any, camera: str, frame: int, image_size: tuple[int, int]) -> int:
        """Apply the prompt changes due before ``frame`` of ``camera``; returns how many were applied."""
        applied = 0
        for i, p in enumerate(self.prompts):
            if p.camera and p.camera != camera:
                continue
            key = (i, camera)
            if p.active(frame) and key not in self._active:
                object_id = p.object_id or self._ids.get(i, 0)
                if not object_id and not p.concepts:
                    object_id = self._ids[i] = pipeline.ids.fresh()
                try:
                    pipeline.apply_prompt(p.update(camera, object_id), {camera: image_size})
                except PromptError as exc:
                    raise PromptError(f"prompt {i} on camera '{camera}' frame {frame}: {exc}") from exc
                self._active.add(key)
                applied += 1
            elif not p.active(frame) and key in self._active:
                object_id = p.object_id or self._ids.get(i, 0)
                pipeline.apply_prompt(replace(p.update(camera, object_id), action=PromptAction.REMOVE),
                                      {camera: image_size})
                self._active.discard(key)
                applied += 1
        return applied
