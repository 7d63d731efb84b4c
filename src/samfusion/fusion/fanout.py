"""Parallel dispatch of one call per model with a quorum / early exit.

All calls start together. The fan-out returns when every call has ended, or as soon as
``quorum_k`` calls have succeeded *and* ``quorum_deadline_s`` has passed since dispatch;
calls still running then are cancelled (their HTTP connections close) and reported as
cut off by the quorum. If the fan-out itself is cancelled (request deadline), every call is
cancelled before the cancellation propagates.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from samfusion.fusion.errors import FusionError
from samfusion.fusion.wire import Completion

__all__ = ["Outcome", "fan_out"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    """How one model's call ended."""

    model: str
    completion: Completion | None
    error: str
    latency_s: float
    cut_by_quorum: bool = False

    @property
    def ok(self) -> bool:
        return self.completion is not None


async def fan_out(
    calls: Mapping[str, Callable[[], Awaitable[Completion]]],
    *,
    quorum_k: int | None = None,
    quorum_deadline_s: float = 0.0,
    on_done: Callable[[Outcome], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    detached: list[asyncio.Future[None]] | None = None,
) -> dict[str, Outcome]:
    """Run ``calls`` (model -> coroutine factory) concurrently; outcomes by model.

    Calls cut off by the quorum are cancelled; with ``detached`` given, the fan-out does not
    wait for their clean-up (closing connections) but appends them there for the caller to
    await later, which keeps that work off the critical path.
    """
    start = clock()
    k = len(calls) if quorum_k is None else max(1, min(quorum_k, len(calls)))
    outcomes: dict[str, Outcome] = {}

    def finish(outcome: Outcome) -> None:
        outcomes[outcome.model] = outcome
        if on_done is not None:
            on_done(outcome)

    async def one(model: str, factory: Callable[[], Awaitable[Completion]]) -> None:
        try:
            completion = await factory()
        except FusionError as exc:
            finish(Outcome(model, None, str(exc), clock() - start))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug in one member must not sink the others
            _log.exception("unexpected error in call to %s", model)
            finish(Outcome(model, None, f"{model}: internal error {type(exc).__name__}: {exc}", clock() - start))
        else:
            finish(Outcome(model, completion, "", clock() - start))

    tasks = {asyncio.ensure_future(one(model, factory)): model for model, factory in calls.items()}
    pending = set(tasks)
    try:
        while pending:
            succeeded = sum(1 for o in outcomes.values() if o.ok)
            timeout = None
            if succeeded >= k:
                timeout = start + quorum_deadline_s - clock()
                if timeout <= 0:
                    break
            done, pending = await asyncio.wait(pending, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        raise
    for task in pending:
        task.cancel()
    if pending and detached is not None:
        detached.extend(pending)
    elif pending:
        await asyncio.gather(*pending, return_exceptions=True)
    for task in pending:
        model = tasks[task]
        if model not in outcomes:
            waited = clock() - start
            finish(
                Outcome(
                    model,
                    None,
                    f"{model}: cancelled after {waited:.2f} s: quorum of {k}/{len(calls)} reached",
                    waited,
                    cut_by_quorum=True,
                )
            )
    return {model: outcomes[model] for model in calls}
