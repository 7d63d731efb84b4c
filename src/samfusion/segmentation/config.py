"""Backend and tracker configuration: one schema filled from ROS parameters or YAML/CLI."""

from __future__ import annotations

from dataclasses import dataclass

from samfusion.errors import ConfigError

__all__ = ["BackendConfig", "TrackerConfig", "BACKEND_NAMES", "DTYPES"]

BACKEND_NAMES = ("classical", "sam2", "sam3", "sam3_tracker")
DTYPES = ("fp32", "fp16", "bf16")


@dataclass(frozen=True)
class BackendConfig:
    """Which model runs and how.

    ``checkpoint`` is a local directory (as written by ``save_pretrained``) or a hub id that is
    already in the user's cache; nothing is downloaded unless ``allow_download`` is set.
    """

    backend: str = "classical"
    checkpoint: str = ""
    device: str = "cpu"
    dtype: str = "fp32"
    score_threshold: float = 0.5
    mask_threshold: float = 0.0
    max_objects: int = 64
    compile: bool = False
    allow_download: bool = False

    def validate(self) -> BackendConfig:
        if self.backend not in BACKEND_NAMES:
            raise ConfigError(f"backend '{self.backend}' is unknown; choose one of {BACKEND_NAMES}")
        if self.dtype not in DTYPES:
            raise ConfigError(f"dtype '{self.dtype}' is unknown; choose one of {DTYPES}")
        if not (self.device == "cpu" or self.device == "cuda" or self.device.startswith("cuda:")):
            raise ConfigError(f"device '{self.device}' must be 'cpu', 'cuda' or 'cuda:N'")
        if not 0.0 <= self.score_threshold <= 1.0:
            raise ConfigError(f"score_threshold {self.score_threshold} must be in [0, 1]")
        if not 1 <= self.max_objects <= 65535:
            raise ConfigError(f"max_objects {self.max_objects} must be in [1, 65535]")
        if self.backend != "classical" and not self.checkpoint:
            raise ConfigError(
                f"backend '{self.backend}' needs a checkpoint (a local directory or a cached hub id)"
            )
        return self


@dataclass(frozen=True)
class TrackerConfig:
    """Per-stream id bookkeeping.

    ``lost_after``: frames below ``score_threshold`` before an object is reported lost (it keeps
    its prompts and is re-acquired when it scores again). ``forget_after``: frames after which an
    unseen concept detection gives up its id. ``match_iou``: mask IoU for a concept detection to
    keep the id of the previous frame's detection.
    """

    score_threshold: float = 0.5
    lost_after: int = 3
    forget_after: int = 30
    match_iou: float = 0.3
    max_objects: int = 64

    def validate(self) -> TrackerConfig:
        if self.lost_after < 1 or self.forget_after < 1:
            raise ConfigError("lost_after and forget_after must be >= 1")
        if not 0.0 < self.match_iou <= 1.0:
            raise ConfigError(f"match_iou {self.match_iou} must be in (0, 1]")
        if not 1 <= self.max_objects <= 65535:
            raise ConfigError(f"max_objects {self.max_objects} must be in [1, 65535]")
        return self
