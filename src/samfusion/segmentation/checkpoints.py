"""Finding and loading SAM checkpoints: local directory or cached hub id, dtype, device, compile.

Nothing is downloaded unless ``BackendConfig.allow_download`` is set: a hub id must already be
in the user's Hugging Face cache (``local_files_only=True``). Every failure raises
:class:`~samfusion.errors.CheckpointError` with what to download and where to put it, so the
node can report it and stay up. A checkpoint whose ``model_type`` does not fit the backend, or
whose weights do not cover the model (missing keys), is refused rather than run with random
weights.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

import torch

from samfusion.errors import BackendError, CheckpointError
from samfusion.segmentation.config import BackendConfig
from samfusion.segmentation.preprocess import ImageSpec

__all__ = [
    "DTYPES",
    "SAM2_IMAGE_SPEC",
    "SAM3_IMAGE_SPEC",
    "resolve_checkpoint",
    "read_model_type",
    "resolve_device",
    "load_model",
    "load_image_spec",
    "load_tokenizer",
    "maybe_compile",
    "download_hint",
]

DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}

# Defaults of Sam2ImageProcessor / Sam3ImageProcessor when a checkpoint ships no processor config.
SAM2_IMAGE_SPEC = ImageSpec(1024, 1024, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
SAM3_IMAGE_SPEC = ImageSpec(1008, 1008, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))

_EXAMPLES = {
    "sam2": "facebook/sam2.1-hiera-large",
    "sam3": "facebook/sam3",
    "sam3_tracker": "facebook/sam3",
}


def download_hint(checkpoint: str, backend: str) -> str:
    """How to fetch a checkpoint for an offline robot (SAM 3 is gated on the hub)."""
    repo = checkpoint if _looks_like_hub_id(checkpoint) else _EXAMPLES.get(backend, "facebook/sam3")
    target = f"~/models/{repo.split('/')[-1]}"
    gated = ""
    if "sam3" in repo:
        gated = (f"SAM 3 is gated: accept the licence on https://huggingface.co/{repo}, run "
                 "`hf auth login`, then ")
    return (f"{gated}download it with `hf download {repo} --local-dir {target}` and set the checkpoint "
            f"to it (node: checkpoint:={target}, command line: --checkpoint {target}), or keep the hub "
            "id: it is then read from the Hugging Face cache")


def _looks_like_hub_id(checkpoint: str) -> bool:
    parts = checkpoint.split("/")
    return len(parts) == 2 and all(parts) and not checkpoint.startswith((".", "~"))


def resolve_checkpoint(config: BackendConfig) -> Path:
    """Local directory holding ``config.json`` and weights for ``config.checkpoint``."""
    checkpoint = os.path.expanduser(config.checkpoint)
    if os.path.isdir(checkpoint):
        path = Path(checkpoint)
        if not (path / "config.json").is_file():
            raise CheckpointError(
                f"checkpoint directory {path} has no config.json (not a save_pretrained / "
                f"`hf download` directory); {download_hint(config.checkpoint, config.backend)}"
            )
        return path
    if not _looks_like_hub_id(checkpoint):
        raise CheckpointError(
            f"checkpoint '{config.checkpoint}' is neither an existing directory nor a hub id "
            f"(owner/name); {download_hint(config.checkpoint, config.backend)}"
        )
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(checkpoint, local_files_only=not config.allow_download))
    except Exception as exc:  # hub errors differ between huggingface_hub versions
        kind = type(exc).__name__
        if "Gated" in kind:
            reason = "is gated and this account has no access"
        elif "RepositoryNotFound" in kind:
            reason = "does not exist on the hub (or is private)"
        elif not config.allow_download:
            reason = ("is not in the local Hugging Face cache and downloads are off (node: allow_download:=true, "
                      "command line: --allow-download)")
        else:
            reason = f"could not be downloaded ({kind}: {exc})"
        raise CheckpointError(
            f"checkpoint '{checkpoint}' {reason}; {download_hint(checkpoint, config.backend)}"
        ) from exc


def read_model_type(path: Path) -> str:
    try:
        data = json.loads((path / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read {path / 'config.json'}: {exc}") from exc
    model_type = data.get("model_type")
    if not isinstance(model_type, str):
        raise CheckpointError(f"{path / 'config.json'} has no model_type")
    return model_type


def resolve_device(device: str) -> torch.device:
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise BackendError(f"device '{device}' requested but CUDA is not available; use device cpu "
                                 "(node: device:=cpu, command line: --device cpu)")
        index = dev.index or 0
        if index >= torch.cuda.device_count():
            raise BackendError(
                f"device '{device}' requested but only {torch.cuda.device_count()} CUDA device(s) exist"
            )
    return dev


def load_model(path: Path, classes: Mapping[str, type], config: BackendConfig) -> Any:
    """Load the model class that ``classes`` maps the checkpoint's model_type to.

    Weights are loaded in the configured dtype, moved to the device and put in eval mode.
    Raises CheckpointError for a model type the backend cannot use or incomplete weights.
    """
    model_type = read_model_type(path)
    cls = classes.get(model_type)
    if cls is None:
        raise CheckpointError(
            f"checkpoint {path} holds a '{model_type}' model; backend '{config.backend}' needs one "
            f"of {sorted(classes)} (for example {_EXAMPLES.get(config.backend, 'facebook/sam3')})"
        )
    device = resolve_device(config.device)
    try:
        model, info = cls.from_pretrained(str(path), dtype=DTYPES[config.dtype], local_files_only=True,
                                          output_loading_info=True)
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise CheckpointError(
            f"cannot load {cls.__name__} from {path}: {exc}; {download_hint(config.checkpoint, config.backend)}"
        ) from exc
    missing = list(info.get("missing_keys", ())) + list(info.get("mismatched_keys", ()))
    if missing:
        raise CheckpointError(
            f"checkpoint {path} does not cover {cls.__name__}: {len(missing)} weights missing or "
            f"mismatched (first: {missing[0]}); it is not a complete '{model_type}' checkpoint"
        )
    return model.to(device).eval()


def load_image_spec(path: Path, default: ImageSpec, image_size: int) -> ImageSpec:
    """Image processor numerics of the checkpoint (its processor config, else the defaults)."""
    data: dict[str, Any] = {}
    for name in ("preprocessor_config.json", "processor_config.json"):
        file = path / name
        if file.is_file():
            try:
                raw = json.loads(file.read_text())
            except ValueError as exc:
                raise CheckpointError(f"cannot parse {file}: {exc}") from exc
            data = raw.get("image_processor", raw) if isinstance(raw, dict) else {}
            break
    fallback = ImageSpec(image_size, image_size, default.mean, default.std, default.rescale_factor)
    spec = ImageSpec.from_processor_dict(data, fallback)
    if (spec.height, spec.width) != (image_size, image_size):
        raise CheckpointError(
            f"processor config in {path} resizes to {spec.width}x{spec.height} but the model takes "
            f"{image_size}x{image_size}; the checkpoint is inconsistent"
        )
    return spec


def load_tokenizer(path: Path) -> Any:
    from transformers import AutoTokenizer

    if not any((path / name).is_file() for name in ("tokenizer.json", "vocab.json")):
        # AutoTokenizer would silently build an empty CLIP tokenizer from the model config
        raise CheckpointError(
            f"checkpoint {path} has no usable tokenizer for text concepts (no tokenizer.json or "
            f"vocab.json); download the complete SAM 3 checkpoint (tokenizer files included)"
        )
    try:
        return AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise CheckpointError(
            f"checkpoint {path} has no usable tokenizer for text concepts ({exc}); download the "
            "complete SAM 3 checkpoint (tokenizer files included)"
        ) from exc


def maybe_compile(module: torch.nn.Module, enabled: bool) -> torch.nn.Module:
    """torch.compile the module in place when enabled (first frames then pay the compile time)."""
    if enabled:
        module.compile(dynamic=False)
    return module
