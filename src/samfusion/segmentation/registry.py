"""Build a backend from a BackendConfig; heavy modules are imported only when chosen."""

from __future__ import annotations

import importlib

from samfusion.errors import ConfigError
from samfusion.segmentation.base import SegmentationBackend
from samfusion.segmentation.config import BackendConfig

__all__ = ["create_backend", "BACKENDS"]

# name -> "module:factory"; each factory takes a validated BackendConfig.
BACKENDS: dict[str, str] = {
    "classical": "samfusion.segmentation.classical:ClassicalBackend.from_config",
    "sam2": "samfusion.segmentation.sam2_backend:Sam2Backend.from_config",
    "sam3": "samfusion.segmentation.sam3_backend:Sam3Backend.from_config",
    "sam3_tracker": "samfusion.segmentation.sam3_backend:Sam3TrackerBackend.from_config",
}


def create_backend(config: BackendConfig) -> SegmentationBackend:
    """Validate ``config`` and build the backend it names (loading weights for SAM)."""
    config.validate()
    target = BACKENDS.get(config.backend)
    if target is None:
        raise ConfigError(f"backend '{config.backend}' is not registered; known: {sorted(BACKENDS)}")
    module_name, attr_path = target.split(":")
    obj: object = importlib.import_module(module_name)
    for attr in attr_path.split("."):
        obj = getattr(obj, attr)
    backend = obj(config)  # type: ignore[operator]
    assert isinstance(backend, SegmentationBackend)
    return backend
