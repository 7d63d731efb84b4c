"""Model configurations for tests and benchmarks: tiny random ones and the published full sizes.

Tests and ``bench/bench_sam.py`` build models with random weights from these configs and save
them with ``save_pretrained``, so they go through the same loading code as a downloaded
checkpoint. Tiny configs keep every dimension small but respect the architecture's fixed
constraints (the memory attention reads 64-channel memories, so hidden sizes are at least 64). Full-size configs are the transformers defaults (SAM 2.1 tiny /
large layouts, SAM 3) and need a GPU.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "TINY_SAM2_IMAGE_SIZE",
    "TINY_SAM3_IMAGE_SIZE",
    "tiny_sam2_config",
    "tiny_sam3_video_config",
    "sam2_config",
    "sam3_video_config",
    "save_random_checkpoint",
    "write_tiny_tokenizer",
]

TINY_SAM2_IMAGE_SIZE = 128
TINY_SAM3_IMAGE_SIZE = 112

def _tiny_memory(hidden: int) -> dict[str, Any]:
    """Tiny memory settings of the SAM 2-family video models (memories are always 64 channels)."""
    return dict(
        memory_attention_hidden_size=hidden, memory_attention_num_layers=1, memory_attention_num_attention_heads=1,
        memory_attention_feed_forward_hidden_size=64, memory_encoder_hidden_size=hidden,
        memory_encoder_output_channels=64, mask_downsampler_embed_dim=hidden, memory_fuser_embed_dim=hidden,
        memory_fuser_intermediate_dim=64, num_maskmem=3, max_object_pointers_in_encoder=4,
    )


def _tiny_heads(image_size: int, patch: int, hidden: int = 64) -> dict[str, Any]:
    return dict(
        prompt_encoder_config=dict(hidden_size=hidden, image_size=image_size, patch_size=patch, mask_input_channels=8),
        mask_decoder_config=dict(hidden_size=hidden, mlp_dim=64, num_attention_heads=2, iou_head_hidden_dim=32),
    )


def tiny_sam2_config(video: bool = True, hidden: int = 64) -> Any:
    """A ~1M-parameter SAM 2.1-layout config (Hiera with 4 stages, 128 px input).

    ``hidden`` > 64 makes object pointers wider than the 64-channel memories, so they are split
    into several memory tokens, as in the full-size models (256 / 64).
    """
    from transformers import Sam2Config, Sam2VideoConfig

    size = TINY_SAM2_IMAGE_SIZE
    backbone = dict(model_type="sam2_hiera_det_model", hidden_size=16, num_attention_heads=1,
                    blocks_per_stage=[1, 1, 2, 1], embed_dim_per_stage=[16, 32, 64, 128],
                    num_attention_heads_per_stage=[1, 1, 1, 1], window_size_per_stage=[4, 4, 4, 4],
                    global_attention_blocks=[3], window_positional_embedding_background_size=[2, 2],
                    image_size=[size, size])
    s = size // 4
    vision = dict(backbone_config=backbone, backbone_channel_list=[128, 64, 32, 16],
                  backbone_feature_sizes=[[s, s], [s // 2, s // 2], [s // 4, s // 4]], fpn_hidden_size=hidden)
    if not video:
        return Sam2Config(vision_config=vision, **_tiny_heads(size, 16, hidden))
    return Sam2VideoConfig(vision_config=vision, image_size=size, memory_attention_rope_feat_sizes=[s // 4, s // 4],
                           **_tiny_heads(size, 16, hidden), **_tiny_memory(hidden))


def tiny_sam3_video_config() -> Any:
    """A tiny SAM 3 (detector + tracker) config: ViT 2 layers, CLIP text 1 layer, 112 px input."""
    from transformers import Sam3VideoConfig

    size, patch = TINY_SAM3_IMAGE_SIZE, 14
    g = size // patch
    vit = dict(model_type="sam3_vit_model", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
               num_attention_heads=2, image_size=size, patch_size=patch, window_size=4, global_attn_indexes=[1],
               pretrain_image_size=56)
    vision = dict(backbone_config=vit, fpn_hidden_size=64, backbone_feature_sizes=[[4 * g] * 2, [2 * g] * 2, [g] * 2])
    detector = dict(
        vision_config=vision,
        text_config=dict(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=32, projection_dim=32,
                         bos_token_id=0, eos_token_id=1, pad_token_id=1),
        geometry_encoder_config=dict(hidden_size=64, num_layers=1, num_attention_heads=2, intermediate_size=64),
        detr_encoder_config=dict(hidden_size=64, num_layers=1, num_attention_heads=2, intermediate_size=64),
        detr_decoder_config=dict(hidden_size=64, num_layers=1, num_queries=16, num_attention_heads=2,
                                 intermediate_size=64),
        mask_decoder_config=dict(hidden_size=64, num_attention_heads=2),
    )
    tracker = dict(vision_config=vision, image_size=size, **_tiny_heads(size, patch), **_tiny_memory(64))
    return Sam3VideoConfig(detector_config=detector, tracker_config=tracker)


def sam2_config(size: str) -> Any:
    """Full-size SAM 2.1 video config: ``tiny`` or ``large`` Hiera layout (1024 px)."""
    from transformers import Sam2VideoConfig

    layouts = {
        "tiny": dict(hidden_size=96, num_attention_heads=1, blocks_per_stage=[1, 2, 7, 2],
                     embed_dim_per_stage=[96, 192, 384, 768], global_attention_blocks=[5, 7, 9],
                     window_positional_embedding_background_size=[7, 7]),
        "large": dict(hidden_size=144, num_attention_heads=2, blocks_per_stage=[2, 6, 36, 4],
                      embed_dim_per_stage=[144, 288, 576, 1152], num_attention_heads_per_stage=[2, 4, 8, 16],
                      window_size_per_stage=[8, 4, 16, 8], global_attention_blocks=[23, 33, 43],
                      window_positional_embedding_background_size=[7, 7]),
    }
    backbone = dict(model_type="sam2_hiera_det_model", **layouts[size])
    channels = list(reversed(layouts[size]["embed_dim_per_stage"]))
    return Sam2VideoConfig(vision_config=dict(backbone_config=backbone, backbone_channel_list=channels))


def sam3_video_config() -> Any:
    from transformers import Sam3VideoConfig

    return Sam3VideoConfig()


def save_random_checkpoint(model_cls: Any, config: Any, directory: Path, *, seed: int = 0,
                           object_logit_bias: float | None = 4.0) -> Path:
    """Random weights -> ``save_pretrained(directory)``.

    ``object_logit_bias`` sets the bias of the decoder's object-presence head so random
    models report objects as present (masks are otherwise all suppressed); None keeps it.
    """
    torch.manual_seed(seed)
    model = model_cls(config).eval()
    if object_logit_bias is not None:
        for module in model.modules():
            head = getattr(module, "pred_obj_score_head", None)
            if head is not None:
                with torch.no_grad():
                    head.proj_out.bias.fill_(object_logit_bias)
    model.save_pretrained(str(directory))
    return directory


def write_tiny_tokenizer(directory: Path) -> None:
    """A CLIP tokenizer over single lowercase letters (what the tiny SAM 3 text encoder reads)."""
    from transformers import CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for char in "abcdefghijklmnopqrstuvwxyz":
        vocab[char] = len(vocab)
        vocab[char + "</w>"] = len(vocab)
    CLIPTokenizer(vocab=vocab, merges=[]).save_pretrained(str(directory))
    config = directory / "tokenizer_config.json"
    data = json.loads(config.read_text())
    data["model_max_length"] = 32
    config.write_text(json.dumps(data, indent=2))
