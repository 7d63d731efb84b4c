"""Cost estimates before dispatch (for the cap) and actual costs after each call.

Estimate of one call: ``prompt price * estimated prompt tokens + completion price * max
tokens``, with prompt tokens estimated as characters / 4 plus 4 per message. A request's
estimate sums every call its mode can make:

- members: one call each;
- best_of: ``judge_passes`` judge calls seeing all N answers of ``max_tokens`` each;
- merge: one such judge call;
- debate: ``debate_rounds`` revision calls per member (each seeing N answers), then best_of;
- server: the panel (members) plus one judge call (what OpenRouter bills for its fusion);
- concepts (publish_prompts): one small call per member.

The actual cost of a call is ``usage.cost`` when the server reports it, otherwise the catalog
price times the reported tokens, otherwise 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from samfusion.fusion.catalog import ModelPrice
from samfusion.fusion.config import FusionMode, PoolConfig
from samfusion.fusion.wire import Completion, Message

__all__ = [
    "estimate_tokens",
    "CostEstimate",
    "estimate_request_cost",
    "actual_cost",
    "CONCEPT_MAX_TOKENS",
]

PriceLookup = Callable[[str], "ModelPrice | None"]
CONCEPT_MAX_TOKENS = 200
_JUDGE_TEMPLATE_TOKENS = 160
_CONCEPT_TEMPLATE_TOKENS = 160


def estimate_tokens(messages: Sequence[Message] | str) -> int:
    """Rough prompt size: 1 token per 4 characters plus 4 per message."""
    if isinstance(messages, str):
        return math.ceil(len(messages) / 4)
    return sum(math.ceil(len(m.get("content", "")) / 4) + 4 for m in messages)


@dataclass(frozen=True)
class CostEstimate:
    total_usd: float
    calls: int
    unpriced_models: tuple[str, ...]  # models without a price (counted as free)


def _call(prices: PriceLookup, model: str, prompt_tokens: float, completion_tokens: float, missing: set[str]) -> float:
    price = prices(model)
    if price is None:
        missing.add(model)
        return 0.0
    return price.cost(prompt_tokens, completion_tokens)


def estimate_request_cost(
    pool: PoolConfig, prompt_tokens: int, prices: PriceLookup, *, with_concepts: bool = False
) -> CostEstimate:
    """Upper-bound style estimate of one request over ``pool`` (see module docstring)."""
    missing: set[str] = set()
    n = len(pool.members)
    answers = n * pool.max_tokens
    judge_prompt = prompt_tokens + answers + _JUDGE_TEMPLATE_TOKENS
    total, calls = 0.0, 0
    for model in pool.members:
        total += _call(prices, model, prompt_tokens, pool.max_tokens, missing)
        calls += 1
    if pool.mode is FusionMode.DEBATE:
        for _ in range(pool.debate_rounds):
            for model in pool.members:
                total += _call(prices, model, judge_prompt, pool.max_tokens, missing)
                calls += 1
    if n > 1 or pool.mode is FusionMode.SERVER:
        passes = pool.judge_passes if pool.mode in (FusionMode.BEST_OF, FusionMode.DEBATE) else 1
        judge = pool.judge or pool.members[0]
        for _ in range(passes):
            total += _call(prices, judge, judge_prompt, pool.judge_max_tokens, missing)
            calls += 1
    if with_concepts:
        for model in pool.members:
            total += _call(prices, model, prompt_tokens + _CONCEPT_TEMPLATE_TOKENS, CONCEPT_MAX_TOKENS, missing)
            calls += 1
    return CostEstimate(total, calls, tuple(sorted(missing)))


def actual_cost(completion: Completion, price: ModelPrice | None) -> float:
    """Reported cost when present, else the catalog price of the reported tokens, else 0."""
    if completion.cost_usd is not None:
        return completion.cost_usd
    if price is None:
        return 0.0
    return price.cost(completion.prompt_tokens, completion.completion_tokens)
