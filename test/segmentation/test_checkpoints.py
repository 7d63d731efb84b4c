"""Checkpoint loading: local directories, the hub cache, and every way a checkpoint can be wrong."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from samfusion.errors import BackendError, CheckpointError, ConfigError
from samfusion.segmentation.checkpoints import DTYPES, resolve_device
from samfusion.segmentation.config import BackendConfig
from samfusion.segmentation.registry import create_backend

from ._helpers import make_config


@pytest.fixture
def empty_hub_cache(tmp_path, monkeypatch):
    import huggingface_hub.constants as constants

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_directory_without_config_is_refused_with_download_instructions(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError) as err:
        create_backend(BackendConfig(backend="sam2", checkpoint=str(tmp_path)))
    message = str(err.value)
    assert "has no config.json" in message
    assert "hf download facebook/sam2.1-hiera-large --local-dir" in message


def test_path_that_is_neither_directory_nor_hub_id(tmp_path):
    with pytest.raises(CheckpointError, match="neither an existing directory nor a hub id"):
        create_backend(BackendConfig(backend="sam2", checkpoint=str(tmp_path / "missing" / "dir")))


def test_uncached_sam3_hub_id_explains_gating_and_download(empty_hub_cache):
    with pytest.raises(CheckpointError) as err:
        create_backend(BackendConfig(backend="sam3", checkpoint="facebook/sam3"))
    message = str(err.value)
    assert "not in the local Hugging Face cache and downloads are off (node: allow_download:=true" in message
    assert "SAM 3 is gated" in message and "hf auth login" in message
    assert "hf download facebook/sam3 --local-dir ~/models/sam3" in message
    assert "checkpoint:=~/models/sam3" in message and "--checkpoint ~/models/sam3" in message


def test_hub_id_already_in_the_cache_loads_offline(empty_hub_cache, checkpoints):
    """A hub id resolves through the Hugging Face cache layout without any network access."""
    commit = "0" * 40
    repo = empty_hub_cache / "models--tiny--sam2-test"
    shutil.copytree(checkpoints["sam2_video"], repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    backend = create_backend(BackendConfig(backend="sam2", checkpoint="tiny/sam2-test"))
    assert backend.name == "sam2"
    assert type(backend.head.model).__name__ == "Sam2VideoModel"


def test_checkpoint_of_the_wrong_model_type(checkpoints):
    with pytest.raises(CheckpointError) as err:
        create_backend(BackendConfig(backend="sam2", checkpoint=str(checkpoints["sam3_video"])))
    assert "holds a 'sam3_video' model; backend 'sam2' needs one of ['sam2', 'sam2_video']" in str(err.value)
    with pytest.raises(CheckpointError, match="backend 'sam3' needs one of \\['sam3_video'\\]"):
        create_backend(BackendConfig(backend="sam3", checkpoint=str(checkpoints["sam2_video"])))


def test_checkpoint_with_missing_weights_is_refused(tmp_path, checkpoints):
    """An image-only checkpoint relabelled as a video model lacks the memory weights."""
    broken = _copy(checkpoints["sam2"], tmp_path / "relabelled")
    config = json.loads((broken / "config.json").read_text())
    config["model_type"] = "sam2_video"
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="weights missing or mismatched"):
        create_backend(BackendConfig(backend="sam2", checkpoint=str(broken)))


def test_sam3_checkpoint_without_tokenizer(tmp_path, checkpoints):
    bare = _copy(checkpoints["sam3_video"], tmp_path / "no_tokenizer")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (bare / name).unlink()
    with pytest.raises(CheckpointError, match="no usable tokenizer"):
        create_backend(BackendConfig(backend="sam3", checkpoint=str(bare)))
    # the tracker alone needs no tokenizer
    assert create_backend(BackendConfig(backend="sam3_tracker", checkpoint=str(bare))).name == "sam3_tracker"


def test_processor_config_of_the_checkpoint_is_used(tmp_path, checkpoints):
    local = _copy(checkpoints["sam2_video"], tmp_path / "with_processor")
    processor = {"image_processor_type": "Sam2ImageProcessorFast", "size": {"height": 128, "width": 128},
                 "image_mean": [0.4, 0.5, 0.6], "image_std": [0.2, 0.25, 0.3], "rescale_factor": 1 / 255}
    (local / "preprocessor_config.json").write_text(json.dumps(processor))
    backend = create_backend(BackendConfig(backend="sam2", checkpoint=str(local)))
    assert backend.transform.spec.mean == (0.4, 0.5, 0.6)
    assert backend.transform.spec.std == (0.2, 0.25, 0.3)
    processor["size"] = {"height": 1024, "width": 1024}
    (local / "preprocessor_config.json").write_text(json.dumps(processor))
    with pytest.raises(CheckpointError, match="resizes to 1024x1024 but the model takes 128x128"):
        create_backend(BackendConfig(backend="sam2", checkpoint=str(local)))


@pytest.mark.parametrize("kind", ["sam2", "sam3", "sam3_tracker"])
def test_dtype_is_applied_and_inputs_follow_it(kind, checkpoints, demo_images):
    """A bf16 model takes fp32 / bool / uint8 inputs: everything is cast to the model dtype."""
    from samfusion.segmentation.prompts import BoxPrompt, ObjectPrompt, PointPrompt, PromptSet

    backend = create_backend(make_config(kind, checkpoints, dtype="bf16"))
    assert backend.head.dtype == torch.bfloat16
    assert all(p.dtype == torch.bfloat16 for p in backend.model.parameters())
    image = demo_images["dog"]
    mask = image[:, :, 0] > 128
    prompts = PromptSet(objects=(ObjectPrompt(1, points=(PointPrompt(400.0, 260.0),)),
                                 ObjectPrompt(2, boxes=(BoxPrompt(10, 20, 300, 400),)),
                                 ObjectPrompt(3, mask=mask)))
    out = backend.segment(image, prompts)
    assert [i.instance_id for i in out] == [1, 2, 3]
    assert all(i.mask.dtype == bool and i.mask.shape == image.shape[:2] for i in out)
    stream = backend.create_stream()
    for frame in range(2):
        assert [i.instance_id for i in stream.step(image, prompts, frozenset({1, 2, 3}) if frame == 0
                                                   else frozenset())] == [1, 2, 3]


def test_dtype_names_map_to_torch_dtypes():
    assert DTYPES == {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    with pytest.raises(ConfigError, match="dtype 'int8' is unknown"):
        BackendConfig(backend="sam2", checkpoint="x/y", dtype="int8").validate()
    with pytest.raises(ConfigError, match="needs a checkpoint"):
        create_backend(BackendConfig(backend="sam3"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_device_without_cuda_is_a_clear_error(checkpoints):
    with pytest.raises(BackendError, match="CUDA is not available; use device cpu"):
        resolve_device("cuda:0")
    with pytest.raises(BackendError, match="CUDA is not available"):
        create_backend(make_config("sam2", checkpoints, device="cuda"))


def test_compile_flag_compiles_the_image_encoder(checkpoints):
    backend = create_backend(make_config("sam2", checkpoints, compile=True))
    assert backend.model.vision_encoder._compiled_call_impl is not None
    plain = create_backend(make_config("sam2", checkpoints))
    assert plain.model.vision_encoder._compiled_call_impl is None
