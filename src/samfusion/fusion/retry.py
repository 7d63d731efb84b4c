"""Retry policy: which failures are retried and how long to wait before the next attempt.

Backoff is "full jitter" exponential: attempt ``n`` (0-based) waits a uniform random time in
``[0, min(max_s, base_s * 2**n)]``. A ``Retry-After`` from the server replaces the jittered
delay but is capped at ``retry_after_cap_s`` so one header cannot park a call for minutes.
"""

from __future__ import annotations

import email.utils
import math
import random
import time
from dataclasses import dataclass

from samfusion.fusion.errors import FusionError, RateLimitedError

__all__ = ["RetryPolicy", "parse_retry_after"]


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta seconds or an HTTP date).

    Returns None when absent or unparseable; negative values become 0.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 2
    base_s: float = 0.5
    max_s: float = 8.0
    retry_after_cap_s: float = 10.0

    def should_retry(self, error: FusionError, attempt: int) -> bool:
        """Whether to try again after ``attempt`` (0-based) failed with ``error``."""
        return error.retryable and attempt < self.max_retries

    def delay_s(self, error: FusionError, attempt: int, rng: random.Random) -> float:
        """Wait before attempt ``attempt + 1``."""
        if isinstance(error, RateLimitedError) and error.retry_after_s is not None:
            return min(error.retry_after_s, self.retry_after_cap_s)
        ceiling = min(self.max_s, self.base_s * (2.0**attempt))
        return rng.uniform(0.0, ceiling)
