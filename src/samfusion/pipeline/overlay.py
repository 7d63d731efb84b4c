"""Overlay images for people: coloured masks, outlines, labels and optional LiDAR points."""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from samfusion.pointcloud.markers import instance_colors
from samfusion.segmentation.base import Instance

__all__ = ["render_overlay", "draw_points"]


def render_overlay(image: np.ndarray, id_image: np.ndarray, instances: Sequence[Instance],
                   alpha: float = 0.5, draw_labels: bool = True) -> np.ndarray:
    """Blend each instance's colour over its pixels, outline it and write "id label score".

    ``image`` is H x W x 3 uint8 RGB; colours come from the same palette as the rviz markers,
    so an object has one colour everywhere.
    """
    out = image.copy()
    if id_image.shape != image.shape[:2]:
        raise ValueError(f"id image {id_image.shape} does not match image {image.shape[:2]}")
    ids = id_image.astype(np.int64)
    present = ids > 0
    if np.any(present):
        unique, inverse = np.unique(ids[present], return_inverse=True)
        palette = instance_colors(unique).astype(np.float32)
        blended = (1.0 - alpha) * out[present].astype(np.float32) + alpha * palette[inverse]
        out[present] = np.clip(blended, 0, 255).astype(np.uint8)
        edges = cv2.morphologyEx(id_image, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
        edge_ids = ids[edges]
        edge_ok = edge_ids > 0
        edge_pos = np.searchsorted(unique, edge_ids[edge_ok])
        edge_pixels = out[edges]
        edge_pixels[edge_ok] = instance_colors(unique)[edge_pos]
        out[edges] = edge_pixels
    if draw_labels:
        scale = max(0.4, min(image.shape[:2]) / 900.0)
        for inst in instances:
            x0, y0, _, _ = inst.box
            text = f"{inst.instance_id} {inst.label} {inst.score:.2f}".strip()
            color = tuple(int(c) for c in instance_colors(np.array([inst.instance_id]))[0])
            org = (int(x0), max(int(y0) - 4, 12))
            cv2.putText(out, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
            cv2.putText(out, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, color, 1, cv2.LINE_AA)
    return out


def draw_points(image: np.ndarray, u: np.ndarray, v: np.ndarray, instance: np.ndarray,
                radius: int = 1) -> np.ndarray:
    """Draw projected LiDAR points: labeled points in their instance colour, others grey."""
    out = image.copy()
    h, w = out.shape[:2]
    ok = (u >= 0) & (u < w) & (v >= 0) & (v < h)
    u, v, inst = u[ok].astype(np.int64), v[ok].astype(np.int64), instance[ok].astype(np.int64)
    colors = np.full((u.size, 3), 160, np.uint8)
    labeled = inst > 0
    colors[labeled] = instance_colors(inst[labeled])
    order = np.argsort(labeled, kind="stable")  # labeled points drawn last, on top
    for du in range(-radius + 1, radius):
        for dv in range(-radius + 1, radius):
            uu = np.clip(u[order] + du, 0, w - 1)
            vv = np.clip(v[order] + dv, 0, h - 1)
            out[vv, uu] = colors[order]
    return out
