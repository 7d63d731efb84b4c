"""Helpers shared by the segmentation tests (configs, call counting, mask geometry)."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch

from samfusion.segmentation.config import BackendConfig

__all__ = ["BACKEND_CHECKPOINT", "SAM_KINDS", "make_config", "count_calls", "vision_module"]

SAM_KINDS = ("sam2", "sam2_image", "sam3", "sam3_tracker")

BACKEND_CHECKPOINT = {"sam2": "sam2_video", "sam2_image": "sam2", "sam3": "sam3_video",
                      "sam3_tracker": "sam3_video"}


def make_config(kind: str, checkpoints: dict[str, Path], **overrides: object) -> BackendConfig:
    """BackendConfig for a backend kind ('sam2_image' = sam2 backend on an image-only checkpoint)."""
    backend = "sam2" if kind == "sam2_image" else kind
    checkpoint = str(checkpoints[BACKEND_CHECKPOINT[kind]]) if kind != "classical" else ""
    values: dict[str, object] = dict(backend=backend, checkpoint=checkpoint, score_threshold=0.0)
    values.update(overrides)
    return BackendConfig(**values)  # type: ignore[arg-type]


def vision_module(backend: object) -> torch.nn.Module:
    """The module that runs once per frame (the image encoder) of a SAM backend."""
    detector = getattr(backend, "detector", None)
    if detector is not None:
        return detector.vision_encoder
    return backend.head.model.vision_encoder  # type: ignore[attr-defined]


@contextmanager
def count_calls(module: torch.nn.Module) -> Iterator[list[int]]:
    """Count forward calls of ``module`` inside the block: yields a one-element list."""
    calls = [0]

    def hook(*_: object) -> None:
        calls[0] += 1

    handle = module.register_forward_pre_hook(hook)
    try:
        yield calls
    finally:
        handle.remove()
