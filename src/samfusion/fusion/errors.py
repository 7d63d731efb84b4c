"""Typed errors of the LLM fusion client and engine.

Every message names the model, the HTTP status and the server's reason. None of them ever
contains the API key: messages are built from server replies, which are passed through
:func:`samfusion.fusion.secrets.redact` before they are stored, and the key itself is never
formatted into any text.
"""

from __future__ import annotations

from samfusion.errors import ConfigError, SamFusionError

__all__ = [
    "FusionError",
    "ApiError",
    "BadRequestError",
    "AuthenticationError",
    "InsufficientCreditsError",
    "PermissionDeniedError",
    "ModelNotFoundError",
    "RequestTimeoutError",
    "RateLimitedError",
    "UpstreamError",
    "MalformedResponseError",
    "EmptyAnswerError",
    "CallTimeoutError",
    "CircuitOpenError",
    "CostCapExceededError",
    "PoolConfigError",
    "ApiKeyError",
    "error_for_status",
]


class FusionError(SamFusionError, RuntimeError):
    """Base class of every fusion failure.

    ``retryable`` tells the client whether another attempt may succeed; ``counts_for_breaker``
    whether the failure says something about the model (and so feeds its circuit breaker),
    rather than about the account or the request.
    """

    retryable: bool = False
    counts_for_breaker: bool = True

    def __init__(self, message: str, *, model: str = "", status: int | None = None) -> None:
        super().__init__(message)
        self.model = model
        self.status = status


class ApiError(FusionError):
    """The server answered with an error status (or an error object inside a 200 body)."""


class BadRequestError(ApiError):
    """400: the request is invalid (bad parameters, context too long). Never retried."""

    counts_for_breaker = False


class AuthenticationError(ApiError):
    """401: the API key is missing, invalid or disabled. Never retried."""

    counts_for_breaker = False


class InsufficientCreditsError(ApiError):
    """402: the account or key has run out of credits. Never retried."""

    counts_for_breaker = False


class PermissionDeniedError(ApiError):
    """403: moderation flag, guardrail or permission problem. Never retried."""

    counts_for_breaker = False


class ModelNotFoundError(ApiError):
    """404: the model id is unknown to the server. Never retried."""


class RequestTimeoutError(ApiError):
    """408: the server timed the request out. Retried."""

    retryable = True


class RateLimitedError(ApiError):
    """429: rate limited. Retried, honouring ``retry_after_s`` (capped) when the server sent it."""

    retryable = True

    def __init__(
        self,
        message: str,
        *,
        model: str = "",
        status: int | None = 429,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message, model=model, status=status)
        self.retry_after_s = retry_after_s


class UpstreamError(ApiError):
    """5xx, an error inside a 200 body, or an error chunk in the middle of a stream. Retried."""

    retryable = True


class MalformedResponseError(FusionError):
    """The body is not valid JSON or lacks the expected fields. Retried."""

    retryable = True


class EmptyAnswerError(FusionError):
    """The model returned no usable text (see the reasoning rule in docs/fusion.md)."""


class CallTimeoutError(FusionError):
    """A connect/read/write/pool timeout, or the per-call total deadline passed."""

    retryable = True


class CircuitOpenError(FusionError):
    """The model's circuit breaker is open after repeated failures; no request was sent."""

    counts_for_breaker = False


class CostCapExceededError(FusionError):
    """The estimated cost of a request exceeds its cap; nothing was dispatched."""

    counts_for_breaker = False

    def __init__(self, message: str, *, estimate_usd: float, cap_usd: float) -> None:
        super().__init__(message)
        self.estimate_usd = estimate_usd
        self.cap_usd = cap_usd


class PoolConfigError(ConfigError):
    """The pools file or a request override is invalid; the message names the key."""


class ApiKeyError(SamFusionError, ValueError):
    """No API key could be loaded (unset variable, unreadable or empty key file)."""


_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    402: InsufficientCreditsError,
    403: PermissionDeniedError,
    404: ModelNotFoundError,
    408: RequestTimeoutError,
    429: RateLimitedError,
}

_REASONS: dict[int, str] = {
    400: "bad request",
    401: "invalid or missing API key",
    402: "insufficient credits",
    403: "forbidden (moderation or permissions)",
    404: "unknown model id",
    408: "request timed out on the server",
    429: "rate limited",
}


def error_for_status(
    status: int, reason: str, *, model: str, retry_after_s: float | None = None
) -> ApiError:
    """The typed error for an HTTP (or in-body) error ``status`` with the server's ``reason``.

    5xx and unknown codes become :class:`UpstreamError`; other 4xx become
    :class:`BadRequestError`.
    """
    summary = _REASONS.get(status, "upstream error" if status >= 500 else "client error")
    text = f"{model}: HTTP {status} {summary}"
    if reason:
        text += f": {reason}"
    if status == 429:
        if retry_after_s is not None:
            text += f" (Retry-After {retry_after_s:g} s)"
        return RateLimitedError(text, model=model, status=status, retry_after_s=retry_after_s)
    cls = _BY_STATUS.get(status)
    if cls is None:
        cls = BadRequestError if 400 <= status < 500 else UpstreamError
    return cls(text, model=model, status=status)
