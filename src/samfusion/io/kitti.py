"""KITTI object-benchmark folders: frames (image, scan, calibration, labels) and box prompts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import cv2
import numpy as np

from samfusion.convert.pcd_io import read_kitti_bin
from samfusion.errors import ConversionError
from samfusion.geometry.calibration import KittiCalibration, load_kitti_calib
from samfusion.pointcloud.kitti_boxes import KittiLabel, parse_label_file
from samfusion.segmentation.prompts import BoxPrompt, PromptAction, PromptUpdate

__all__ = ["KittiFrame", "kitti_frame_ids", "read_kitti_frame", "iter_kitti", "prompts_from_labels",
           "KITTI_PROMPT_CLASSES"]

# Classes that become box prompts (DontCare regions never do).
KITTI_PROMPT_CLASSES = ("Car", "Van", "Truck", "Pedestrian", "Person_sitting", "Cyclist", "Tram", "Misc")


@dataclass
class KittiFrame:
    frame_id: str
    image: np.ndarray  # H x W x 3 uint8 RGB (image_2)
    cloud: np.ndarray  # structured x, y, z, intensity float32 (velodyne frame)
    calib: KittiCalibration
    labels: list[KittiLabel]


def kitti_frame_ids(root: str | Path) -> list[str]:
    """Frame ids that have an image, a scan and a calibration file under ``root``."""
    root = Path(root)
    images = {p.stem for p in (root / "image_2").glob("*.png")}
    scans = {p.stem for p in (root / "velodyne").glob("*.bin")}
    calibs = {p.stem for p in (root / "calib").glob("*.txt")}
    ids = sorted(images & scans & calibs)
    if not ids:
        raise ConversionError(f"no complete KITTI frames (image_2 + velodyne + calib) under {root}")
    return ids


def read_kitti_frame(root: str | Path, frame_id: str) -> KittiFrame:
    root = Path(root)
    bgr = cv2.imread(str(root / "image_2" / f"{frame_id}.png"), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ConversionError(f"cannot read {root / 'image_2' / f'{frame_id}.png'}")
    image = np.ascontiguousarray(bgr[:, :, ::-1])
    calib = load_kitti_calib(root / "calib" / f"{frame_id}.txt",
                             image_size=(image.shape[1], image.shape[0]))
    label_path = root / "label_2" / f"{frame_id}.txt"
    labels = parse_label_file(label_path.read_text()) if label_path.exists() else []
    return KittiFrame(frame_id=frame_id, image=image,
                      cloud=read_kitti_bin(root / "velodyne" / f"{frame_id}.bin"),
                      calib=calib, labels=labels)


def iter_kitti(root: str | Path, frame_ids: Sequence[str] | None = None) -> Iterator[KittiFrame]:
    for frame_id in frame_ids or kitti_frame_ids(root):
        yield read_kitti_frame(root, frame_id)


def prompts_from_labels(labels: Sequence[KittiLabel], target: str = "",
                        classes: Sequence[str] = KITTI_PROMPT_CLASSES) -> list[PromptUpdate]:
    """CLEAR, then one box-prompt ADD per labeled object; object ids are 1.. in file order.

    The id of label ``i`` (0-based over the kept labels) is ``i + 1``, so evaluations can match
    predicted instances to ground-truth boxes.
    """
    updates = [PromptUpdate(action=PromptAction.CLEAR, target=target)]
    kept = [lab for lab in labels if lab.type in classes]
    for index, lab in enumerate(kept, start=1):
        x0, y0, x1, y1 = lab.bbox
        updates.append(PromptUpdate(action=PromptAction.ADD, object_id=index, label=lab.type,
                                    boxes=(BoxPrompt(x0, y0, x1, y1),), target=target))
    return updates
