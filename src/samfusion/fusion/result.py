"""Request and result types of the fusion engine.

:class:`FusionResult` and :class:`CandidateResult` map field for field onto the response of
``sam_fusion/srv/FusionQuery`` and ``sam_fusion/msg/ModelCandidate``, so the node copies them
without logic. :class:`FusionRequest` mirrors the service request (the scene arrives already
summarised and fenced, see :mod:`scene`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from samfusion.fusion.config import FusionMode

__all__ = ["FusionRequest", "CandidateResult", "FusionResult", "CallRecord"]


@dataclass(frozen=True)
class FusionRequest:
    """One question for a pool. Empty / zero fields take the pool's values."""

    query: str
    mode: FusionMode | str | None = None
    pool: str = ""
    models: tuple[str, ...] = ()
    judge_model: str = ""
    timeout_s: float = 0.0
    max_cost_usd: float = 0.0
    scene: str = ""  # a fenced scene block from samfusion.fusion.scene, or empty
    publish_prompts: bool = False  # also extract text concepts from the task


@dataclass(frozen=True)
class CandidateResult:
    """One member's answer (fields of ModelCandidate.msg)."""

    model: str
    text: str = ""
    ok: bool = False
    error: str = ""
    latency_s: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    selected: bool = False


@dataclass(frozen=True)
class FusionResult:
    """The fused answer with per-member details and totals (fields of FusionQuery response)."""

    success: bool
    answer: str = ""
    error: str = ""
    degraded: bool = False
    failed_models: tuple[str, ...] = ()
    candidates: tuple[CandidateResult, ...] = ()
    judge_model: str = ""
    judge_rationale: str = ""
    published_concepts: tuple[str, ...] = ()
    total_latency_s: float = 0.0
    total_prompt_tokens: int = 0
    total_completion_tokens: int = 0
    total_cost_usd: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (the ``--json`` output of the terminal command)."""
        out = asdict(self)
        out["failed_models"] = list(self.failed_models)
        out["published_concepts"] = list(self.published_concepts)
        out["candidates"] = [asdict(c) for c in self.candidates]
        return out


@dataclass
class CallRecord:
    """Accounting of one HTTP call (member, debate revision, judge pass or concepts)."""

    model: str
    role: str
    ok: bool
    latency_s: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    error: str = ""
