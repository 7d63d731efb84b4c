"""LLM fusion: an async OpenRouter client and an engine that fuses a pool of models' answers.

Pure core (no rclpy): :mod:`client` talks to OpenRouter or any OpenAI-compatible server,
:mod:`engine` runs best-of / merge / debate / server-side fusion over a pool from
:mod:`config`. See docs/fusion.md.

    settings = load_settings("config/fusion_pools.yaml")
    async with FusionClient(settings.client, api_key=load_api_key()) as client:
        result = await FusionEngine(client, settings).query(FusionRequest("Where is the mug?"))
"""

from samfusion.fusion.client import FusionClient
from samfusion.fusion.config import ClientConfig, FusionMode, FusionSettings, PoolConfig, load_settings
from samfusion.fusion.engine import FusionEngine
from samfusion.fusion.errors import FusionError
from samfusion.fusion.result import CandidateResult, FusionRequest, FusionResult
from samfusion.fusion.scene import summarize_scene
from samfusion.fusion.secrets import ApiKey, load_api_key

__all__ = [
    "ApiKey",
    "CandidateResult",
    "ClientConfig",
    "FusionClient",
    "FusionEngine",
    "FusionError",
    "FusionMode",
    "FusionRequest",
    "FusionResult",
    "FusionSettings",
    "PoolConfig",
    "load_api_key",
    "load_settings",
    "summarize_scene",
]
