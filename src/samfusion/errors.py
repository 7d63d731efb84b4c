"""Typed exceptions of the core. Messages name the offending input; nodes log and count them."""

from __future__ import annotations

__all__ = [
    "SamFusionError",
    "ConversionError",
    "CalibrationError",
    "PromptError",
    "BackendError",
    "CheckpointError",
    "ConfigError",
]


class SamFusionError(Exception):
    """Base class of every error raised on purpose by samfusion."""


class ConversionError(SamFusionError, ValueError):
    """A message could not be converted (bad encoding, truncated data, inconsistent layout)."""


class CalibrationError(SamFusionError, ValueError):
    """A camera model or extrinsic calibration is unusable (all-zero K/P, bad file)."""


class PromptError(SamFusionError, ValueError):
    """A prompt is invalid: outside the image, unknown object id, unsupported prompt kind."""


class BackendError(SamFusionError, RuntimeError):
    """A segmentation backend failed to run or was misconfigured."""


class CheckpointError(BackendError):
    """Model weights are missing, gated or incompatible; the message says what to fetch."""


class ConfigError(SamFusionError, ValueError):
    """A configuration value is out of range or inconsistent."""
