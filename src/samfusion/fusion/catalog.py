"""Model catalog: prices (and context lengths) from ``GET {base_url}/models``, cached with a TTL.

OpenRouter lists each model with ``pricing.prompt`` / ``pricing.completion`` as decimal strings
in US dollars per token. Servers without a catalog (a local vLLM or Ollama) simply yield no
prices; a model without a price counts as free in estimates, unless the pools file gives one
(``prices:``), which always wins over the fetched catalog.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["ModelPrice", "ModelCatalog", "parse_models_payload"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelPrice:
    """US dollars per token for prompt and completion tokens."""

    prompt_usd_per_token: float = 0.0
    completion_usd_per_token: float = 0.0
    context_length: int = 0

    def cost(self, prompt_tokens: float, completion_tokens: float) -> float:
        return (
            prompt_tokens * self.prompt_usd_per_token
            + completion_tokens * self.completion_usd_per_token
        )

    @classmethod
    def per_million(cls, prompt: float, completion: float) -> ModelPrice:
        """A price given in dollars per million tokens (the unit of the pools file)."""
        return cls(prompt / 1e6, completion / 1e6)


def _price_value(raw: Any) -> float:
    try:
        value = float(raw)
    except (TypeError, ValueError):
        return 0.0
    # OpenRouter uses "-1" for routers whose price is only known after the call.
    return value if value > 0 else 0.0


def parse_models_payload(payload: Any) -> dict[str, ModelPrice]:
    """Prices by model id from a models-endpoint body; entries without an id are skipped."""
    data = payload.get("data") if isinstance(payload, Mapping) else payload
    if not isinstance(data, list):
        raise ValueError("models payload has no 'data' list")
    prices: dict[str, ModelPrice] = {}
    for entry in data:
        if not isinstance(entry, Mapping) or not isinstance(entry.get("id"), str):
            continue
        pricing = entry.get("pricing") if isinstance(entry.get("pricing"), Mapping) else {}
        context = entry.get("context_length")
        prices[entry["id"]] = ModelPrice(
            prompt_usd_per_token=_price_value(pricing.get("prompt")),
            completion_usd_per_token=_price_value(pricing.get("completion")),
            context_length=int(context) if isinstance(context, int) else 0,
        )
    return prices


class ModelCatalog:
    """Cached model prices.

    ``fetch`` returns the models-endpoint JSON (usually :meth:`FusionClient.list_models`). The
    cache is refreshed when older than ``ttl_s``; concurrent callers share one fetch. A failed
    fetch keeps the previous prices (or none) and is retried after ``retry_after_failure_s``,
    so a catalog outage never fails a query: estimates then use the configured prices only.
    """

    def __init__(
        self,
        fetch: Callable[[], Awaitable[Any]] | None,
        *,
        ttl_s: float = 3600.0,
        overrides: Mapping[str, ModelPrice] | None = None,
        retry_after_failure_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._ttl_s = ttl_s
        self._overrides = dict(overrides or {})
        self._retry_after_failure_s = retry_after_failure_s
        self._clock = clock
        self._prices: dict[str, ModelPrice] = {}
        self._next_refresh = float("-inf")
        self._lock = asyncio.Lock()
        self.fetch_count = 0
        self.last_error = ""

    async def refresh_if_stale(self) -> None:
        """Fetch the catalog when the cache is older than the TTL (never raises)."""
        if self._fetch is None or self._clock() < self._next_refresh:
            return
        async with self._lock:
            if self._clock() < self._next_refresh:
                return
            self.fetch_count += 1
            try:
                self._prices = parse_models_payload(await self._fetch())
                self._next_refresh = self._clock() + self._ttl_s
                self.last_error = ""
            except Exception as exc:  # noqa: BLE001 - any failure keeps the old prices (e.g. a client closed meanwhile)
                self.last_error = str(exc)
                self._next_refresh = self._clock() + self._retry_after_failure_s
                _log.warning("model catalog unavailable, using configured prices: %s", exc)

    def price(self, model: str) -> ModelPrice | None:
        """The configured or fetched price of ``model``; None when unknown."""
        return self._overrides.get(model) or self._prices.get(model)

    def known_models(self) -> set[str]:
        return set(self._prices) | set(self._overrides)

    async def get_price(self, model: str) -> ModelPrice | None:
        await self.refresh_if_stale()
        return self.price(model)
