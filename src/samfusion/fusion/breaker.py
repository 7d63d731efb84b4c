"""Per-model circuit breaker (cooldown after repeated failures).

States: *closed* (calls pass), *open* after ``failure_threshold`` consecutive failures (calls
are refused without touching the network for ``cooldown_s``), then *half-open*: exactly one
probe call is let through; its success closes the breaker, its failure re-opens it for another
cooldown. Only failures that say something about the model count (see
``FusionError.counts_for_breaker``); a bad key or an empty account does not open it.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["BreakerState", "CircuitBreaker", "BreakerRegistry"]


class BreakerState(str, enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass
class CircuitBreaker:
    """Breaker of one model. Not thread-safe: used from one asyncio loop."""

    failure_threshold: int = 3
    cooldown_s: float = 30.0
    clock: Callable[[], float] = time.monotonic
    failures: int = 0
    opened_at: float = float("-inf")
    probe_in_flight: bool = False
    last_error: str = ""

    @property
    def state(self) -> BreakerState:
        if self.failures < self.failure_threshold:
            return BreakerState.CLOSED
        if self.clock() - self.opened_at < self.cooldown_s:
            return BreakerState.OPEN
        return BreakerState.HALF_OPEN

    def remaining_cooldown_s(self) -> float:
        if self.state is not BreakerState.OPEN:
            return 0.0
        return max(0.0, self.cooldown_s - (self.clock() - self.opened_at))

    def try_acquire(self) -> bool:
        """Whether a call may go out now; in half-open state only one probe at a time."""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.OPEN or self.probe_in_flight:
            return False
        self.probe_in_flight = True
        return True

    def record_success(self) -> None:
        self.failures = 0
        self.probe_in_flight = False
        self.last_error = ""

    def record_failure(self, reason: str) -> None:
        was_probe = self.probe_in_flight
        self.probe_in_flight = False
        self.last_error = reason
        self.failures += 1
        if was_probe or self.failures >= self.failure_threshold:
            self.failures = max(self.failures, self.failure_threshold)
            self.opened_at = self.clock()

    def release(self) -> None:
        """Forget a probe that ended without a verdict (cancelled, or a non-model error)."""
        self.probe_in_flight = False


class BreakerRegistry:
    """One breaker per model id, created on first use."""

    def __init__(
        self,
        *,
        failure_threshold: int = 3,
        cooldown_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._threshold = failure_threshold
        self._cooldown_s = cooldown_s
        self._clock = clock
        self._breakers: dict[str, CircuitBreaker] = {}

    def get(self, model: str) -> CircuitBreaker:
        breaker = self._breakers.get(model)
        if breaker is None:
            breaker = CircuitBreaker(self._threshold, self._cooldown_s, self._clock)
            self._breakers[model] = breaker
        return breaker

    def states(self) -> dict[str, BreakerState]:
        return {model: b.state for model, b in self._breakers.items()}
