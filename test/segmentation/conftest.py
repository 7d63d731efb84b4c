"""Fixtures for the segmentation tests: tiny random SAM checkpoints and real demo images.

Checkpoints are built from tiny configs with random weights, written with ``save_pretrained``
into a temporary directory once per session and loaded through ``create_backend``, the same
code path a user's local checkpoint directory takes. Nothing is downloaded: the hub is put
offline for the whole session.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

cv2 = pytest.importorskip("cv2")
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from samfusion.segmentation.registry import create_backend  # noqa: E402
from samfusion.segmentation.sam_configs import (  # noqa: E402
    save_random_checkpoint,
    tiny_sam2_config,
    tiny_sam3_video_config,
    write_tiny_tokenizer,
)

from ._helpers import make_config  # noqa: E402

torch.set_num_threads(1)  # tiny models: thread hand-offs cost more than they gain on shared cores
transformers.logging.set_verbosity_error()


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny random checkpoints: sam2_video, sam2 (image only) and sam3_video (with tokenizer)."""
    root = tmp_path_factory.mktemp("sam_checkpoints")
    dirs = {
        "sam2_video": save_random_checkpoint(transformers.Sam2VideoModel, tiny_sam2_config(), root / "sam2_video"),
        "sam2": save_random_checkpoint(transformers.Sam2Model, tiny_sam2_config(video=False), root / "sam2"),
        "sam3_video": save_random_checkpoint(transformers.Sam3VideoModel, tiny_sam3_video_config(),
                                             root / "sam3_video"),
    }
    write_tiny_tokenizer(dirs["sam3_video"])
    return dirs


@pytest.fixture(scope="session")
def backends(checkpoints: dict[str, Path]) -> dict[str, object]:
    """One loaded backend per kind, shared by the tests that only read them."""
    return {kind: create_backend(make_config(kind, checkpoints))
            for kind in ("classical", "sam2", "sam2_image", "sam3", "sam3_tracker")}


def _read_rgb(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert image is not None, f"cannot read {path}"
    return np.ascontiguousarray(image[:, :, ::-1])


@pytest.fixture(scope="session")
def demo_images(shared_data: Path) -> dict[str, np.ndarray]:
    """The SAM demo images (RGB), plus a portrait version of the truck (rotated 90 degrees)."""
    folder = shared_data / "sam_demo" / "images"
    images = {p.stem: _read_rgb(p) for p in sorted(folder.glob("*.jpg"))}
    images["truck_portrait"] = np.ascontiguousarray(np.rot90(images["truck"]))
    return images


@pytest.fixture(scope="session")
def bedroom(shared_data: Path) -> list[np.ndarray]:
    """The 30 bedroom video frames (960 x 540 RGB), in order."""
    frames = sorted((shared_data / "sam_demo" / "videos" / "bedroom").glob("*.jpg"))
    assert len(frames) == 30
    return [_read_rgb(p) for p in frames]
