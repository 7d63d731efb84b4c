"""Point-level accuracy against ground-truth 3D boxes (KITTI labels).

For object ``i`` prompted from label ``i`` (ids as in :func:`samfusion.io.kitti.prompts_from_labels`):
recall = labeled points inside its box / all points inside its box; precision = labeled points
inside its box / all points it labeled. Points inside a box include its ground contact, exactly
as the box defines them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from samfusion.geometry.calibration import KittiCalibration
from samfusion.io.kitti import KITTI_PROMPT_CLASSES
from samfusion.pointcloud.kitti_boxes import KittiLabel, kitti_box_to_velo, velo_from_rect
from samfusion.pointcloud.objects3d import points_in_box

__all__ = ["ObjectAccuracy", "kitti_point_accuracy", "summarize"]


@dataclass(frozen=True)
class ObjectAccuracy:
    object_id: int
    label: str
    gt_points: int
    labeled_points: int
    true_positives: int

    @property
    def recall(self) -> float:
        return self.true_positives / self.gt_points if self.gt_points else float("nan")

    @property
    def precision(self) -> float:
        return self.true_positives / self.labeled_points if self.labeled_points else float("nan")


def kitti_point_accuracy(xyz: np.ndarray, instance: np.ndarray, labels: Sequence[KittiLabel],
                         calib: KittiCalibration,
                         classes: Sequence[str] = KITTI_PROMPT_CLASSES) -> list[ObjectAccuracy]:
    t_velo_from_rect = velo_from_rect(calib.R0_rect, calib.Tr_velo_to_cam)
    out: list[ObjectAccuracy] = []
    kept = [lab for lab in labels if lab.type in classes]
    for object_id, lab in enumerate(kept, start=1):
        center, size, yaw = kitti_box_to_velo(lab, t_velo_from_rect)
        inside = points_in_box(xyz, center, size, yaw)
        predicted = instance == object_id
        out.append(ObjectAccuracy(object_id, lab.type, int(inside.sum()), int(predicted.sum()),
                                  int((inside & predicted).sum())))
    return out


def summarize(results: Sequence[ObjectAccuracy]) -> dict[str, float]:
    """Micro (pooled points) and macro (mean over objects with points) precision and recall."""
    gt = sum(r.gt_points for r in results)
    lab = sum(r.labeled_points for r in results)
    tp = sum(r.true_positives for r in results)
    recalls = [r.recall for r in results if r.gt_points]
    precisions = [r.precision for r in results if r.labeled_points]
    return {
        "objects": len(results),
        "micro_recall": tp / gt if gt else float("nan"),
        "micro_precision": tp / lab if lab else float("nan"),
        "macro_recall": float(np.mean(recalls)) if recalls else float("nan"),
        "macro_precision": float(np.mean(precisions)) if precisions else float("nan"),
    }


def json_safe(value: Any) -> Any:
    """NaN (an object with no points has no precision) as None, so written JSON is strict."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value
