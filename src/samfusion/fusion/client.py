"""Async client for OpenRouter (or any OpenAI-compatible server) chat completions.

One shared ``AsyncClient`` per :class:`FusionClient` (connection pooling), with
explicit connect/read/write/pool timeouts, and on top of them a total deadline per call
(``timeout_s``, retries and backoff included) so a body that stalls forever still ends.
Retries: 408, 429, 5xx, errors in 200 bodies and mid-stream, malformed replies, transport
errors and timeouts, with jittered exponential backoff or the server's Retry-After (capped).
400/401/402/403/404 fail at once with their typed error. A per-model circuit breaker refuses
calls to a model that keeps failing (see :mod:`breaker`).

HTTP library (``client.http_library``): ``httpx``, or ``httpx2`` (pydantic's API-identical
fork whose connection pool does not rescan every pooled connection per request; with 60
concurrent calls httpx's pool bookkeeping was measured here to delay requests by ~0.7 s and
cost ~8x the CPU). ``auto`` uses httpx2 when it is installed, else httpx; the default is httpx.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import random
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from types import ModuleType
from typing import Any

import httpx

from samfusion.fusion.breaker import BreakerRegistry
from samfusion.fusion.config import ClientConfig
from samfusion.fusion.errors import (
    ApiError,
    CallTimeoutError,
    CircuitOpenError,
    FusionError,
    MalformedResponseError,
    PoolConfigError,
    UpstreamError,
    error_for_status,
)
from samfusion.fusion.retry import RetryPolicy, parse_retry_after
from samfusion.fusion.secrets import ApiKey, redact
from samfusion.fusion.wire import (
    Completion,
    Message,
    StreamAccumulator,
    build_body,
    iter_sse_data,
    parse_completion,
)

__all__ = ["FusionClient", "http_library"]

_log = logging.getLogger(__name__)


def _cache_missing_sniffio() -> None:
    """Remember once that ``sniffio`` is not installed.

    httpcore imports sniffio on every pool operation and falls back to asyncio when the import
    fails; a failed import is not cached by Python, so each one rescans sys.path (measured here:
    thousands of scans per second and most of the client's CPU time under 60 concurrent
    calls). Marking the module absent keeps httpcore's own fallback and removes that cost.
    """
    if "sniffio" not in sys.modules and importlib.util.find_spec("sniffio") is None:
        sys.modules["sniffio"] = None  # type: ignore[assignment]


_cache_missing_sniffio()


def http_library(name: str = "auto") -> ModuleType:
    """The HTTP module for ``name`` ("auto", "httpx" or "httpx2")."""
    if name in ("auto", "httpx2"):
        try:
            return importlib.import_module("httpx2")
        except ImportError:
            if name == "httpx2":
                raise PoolConfigError("client.http_library is httpx2 but httpx2 is not installed") from None
    if name not in ("auto", "httpx", "httpx2"):
        raise PoolConfigError(f"client.http_library must be auto, httpx or httpx2, got {name!r}")
    return httpx


class FusionClient:
    """Chat completions with timeouts, retries and per-model circuit breakers.

    ``transport``, ``rng``, ``sleep`` and ``clock`` are injectable for tests. Use as an async
    context manager, or call :meth:`aclose`.
    """

    def __init__(
        self,
        config: ClientConfig,
        *,
        api_key: ApiKey | None,
        transport: Any = None,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self._key = api_key
        self._rng = rng or random.Random()
        self._sleep = sleep
        self._clock = clock
        self.policy = RetryPolicy(
            max_retries=config.max_retries,
            base_s=config.backoff_base_s,
            max_s=config.backoff_max_s,
            retry_after_cap_s=config.retry_after_cap_s,
        )
        self.breakers = BreakerRegistry(
            failure_threshold=config.breaker_failures, cooldown_s=config.breaker_cooldown_s, clock=clock
        )
        self.lib = lib = http_library(config.http_library)
        self._http = lib.AsyncClient(
            base_url=config.base_url,
            timeout=lib.Timeout(
                connect=config.connect_timeout_s,
                read=config.read_timeout_s,
                write=config.write_timeout_s,
                pool=config.pool_timeout_s,
            ),
            limits=lib.Limits(
                max_connections=config.max_connections,
                max_keepalive_connections=config.max_connections,
            ),
            transport=transport,
            follow_redirects=False,
        )
        self.attempts_sent = 0

    async def __aenter__(self) -> FusionClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json, text/event-stream"}
        if self._key is not None:
            headers["Authorization"] = f"Bearer {self._key.reveal()}"
        if self.config.referer:
            headers["HTTP-Referer"] = self.config.referer
        if self.config.title:
            headers["X-Title"] = self.config.title
        return headers

    def _clean(self, text: str) -> str:
        return redact(text, self._key)

    async def complete(
        self,
        model: str,
        messages: Sequence[Message],
        *,
        max_tokens: int,
        temperature: float,
        timeout_s: float,
        accept_reasoning: bool = False,
        response_format: Mapping[str, Any] | None = None,
        extra: Mapping[str, Any] | None = None,
        stream: bool | None = None,
    ) -> Completion:
        """One chat completion, retried within ``timeout_s`` seconds in total.

        Raises a :class:`FusionError` subclass; cancellation propagates and closes the
        connection of the attempt in flight.
        """
        breaker = self.breakers.get(model)
        if not breaker.try_acquire():
            raise CircuitOpenError(
                f"{model}: circuit open after {breaker.failures} consecutive failures "
                f"(last: {breaker.last_error}); next probe in {breaker.remaining_cooldown_s():.1f} s",
                model=model,
            )
        start = self._clock()
        attempts = [0]
        body = build_body(
            model,
            messages,
            max_tokens=max_tokens,
            temperature=temperature,
            stream=self.config.stream if stream is None else stream,
            response_format=response_format,
            extra=extra,
        )
        try:
            completion = await asyncio.wait_for(
                self._with_retries(model, body, accept_reasoning, start + timeout_s, attempts),
                timeout_s,
            )
        except asyncio.TimeoutError:
            error = CallTimeoutError(
                f"{model}: no complete reply within {timeout_s:g} s ({attempts[0]} attempt(s))",
                model=model,
            )
            breaker.record_failure(str(error))
            raise error from None
        except FusionError as exc:
            if exc.counts_for_breaker:
                breaker.record_failure(str(exc))
            else:
                breaker.release()
            raise
        except BaseException:
            breaker.release()
            raise
        breaker.record_success()
        return replace(completion, attempts=attempts[0], latency_s=self._clock() - start)

    async def _with_retries(
        self,
        model: str,
        body: dict[str, Any],
        accept_reasoning: bool,
        deadline: float,
        attempts: list[int],
    ) -> Completion:
        attempt = 0
        while True:
            attempts[0] = attempt + 1
            try:
                return await self._attempt(model, body, accept_reasoning)
            except FusionError as exc:
                if not self.policy.should_retry(exc, attempt):
                    raise
                delay = self.policy.delay_s(exc, attempt, self._rng)
                if self._clock() + delay >= deadline:
                    raise  # waiting would overrun the call's deadline: fail with this error now
                _log.info("%s: attempt %d failed (%s); retrying in %.2f s", model, attempt + 1, exc, delay)
                await self._sleep(delay)
                attempt += 1

    async def _attempt(self, model: str, body: dict[str, Any], accept_reasoning: bool) -> Completion:
        self.attempts_sent += 1
        try:
            if body.get("stream"):
                return await self._attempt_stream(model, body, accept_reasoning)
            response = await self._http.post("chat/completions", json=body, headers=self._headers())
            if response.status_code != 200:
                raise self._status_error(response, model)
            return parse_completion(
                self._json(response, model), model=model, accept_reasoning=accept_reasoning, clean=self._clean
            )
        except self.lib.TimeoutException as exc:
            kind = type(exc).__name__.replace("Timeout", "").lower() or "total"
            raise CallTimeoutError(f"{model}: {kind} timeout", model=model) from None
        except self.lib.TransportError as exc:
            raise UpstreamError(
                f"{model}: transport error {type(exc).__name__}: {self._clean(str(exc))[:200]}", model=model
            ) from None

    async def _attempt_stream(self, model: str, body: dict[str, Any], accept_reasoning: bool) -> Completion:
        async with self._http.stream("POST", "chat/completions", json=body, headers=self._headers()) as response:
            if response.status_code != 200:
                await response.aread()
                raise self._status_error(response, model)
            if "text/event-stream" not in response.headers.get("content-type", ""):
                # A server that ignored "stream": a plain JSON body (often an error object).
                await response.aread()
                return parse_completion(
                    self._json(response, model), model=model, accept_reasoning=accept_reasoning, clean=self._clean
                )
            acc = StreamAccumulator(model=model, accept_reasoning=accept_reasoning, clean=self._clean)
            async for data in iter_sse_data(response.aiter_lines()):
                acc.feed(data)
            return acc.result()

    def _json(self, response: Any, model: str) -> Any:
        try:
            return json.loads(response.content)
        except (json.JSONDecodeError, UnicodeDecodeError):
            snippet = self._clean(response.content[:120].decode("utf-8", "replace"))
            raise MalformedResponseError(f"{model}: reply is not valid JSON: {snippet!r}", model=model) from None

    def _status_error(self, response: Any, model: str) -> ApiError:
        reason = ""
        try:
            payload = json.loads(response.content)
            err = payload.get("error") if isinstance(payload, dict) else None
            if isinstance(err, dict):
                reason = str(err.get("message") or "")
            elif isinstance(err, str):
                reason = err
            elif isinstance(payload, dict):
                reason = str(payload.get("message") or payload.get("detail") or "")
        except (json.JSONDecodeError, UnicodeDecodeError):
            reason = response.content[:200].decode("utf-8", "replace")
        reason = self._clean(" ".join(reason.split()))[:300]
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        return error_for_status(response.status_code, reason, model=model, retry_after_s=retry_after)

    async def list_models(self, *, timeout_s: float = 15.0) -> Any:
        """``GET {base_url}/models`` as decoded JSON (one attempt, bounded by ``timeout_s``)."""
        try:
            response = await asyncio.wait_for(self._http.get("models", headers=self._headers()), timeout_s)
        except (asyncio.TimeoutError, self.lib.TimeoutException):
            raise CallTimeoutError(f"models endpoint: no reply within {timeout_s:g} s") from None
        except self.lib.TransportError as exc:
            raise UpstreamError(f"models endpoint: transport error {type(exc).__name__}") from None
        if response.status_code != 200:
            raise self._status_error(response, "models endpoint")
        return self._json(response, "models endpoint")
