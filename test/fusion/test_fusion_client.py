"""FusionClient against the real local HTTP server: answers, retries, typed errors, timeouts."""

from __future__ import annotations

import asyncio
import importlib.util
import random
import time
from typing import Any

import pytest
from conftest import TEST_KEY, with_changes
from fake_openrouter import (
    ErrorIn200,
    FakeOpenRouter,
    HttpError,
    MalformedJson,
    MidStreamError,
    Reply,
    StallAfterHeaders,
    StalledBody,
)

from samfusion.fusion.client import FusionClient, http_library
from samfusion.fusion.config import ClientConfig
from samfusion.fusion.errors import (
    AuthenticationError,
    BadRequestError,
    CallTimeoutError,
    CircuitOpenError,
    EmptyAnswerError,
    FusionError,
    InsufficientCreditsError,
    MalformedResponseError,
    ModelNotFoundError,
    PoolConfigError,
    PermissionDeniedError,
    RateLimitedError,
    UpstreamError,
)
from samfusion.fusion.secrets import ApiKey

MSG = [{"role": "user", "content": "What is on the table?"}]
KEY = ApiKey(TEST_KEY, source="test")
LIBRARIES = ["httpx"] + (["httpx2"] if importlib.util.find_spec("httpx2") else [])


@pytest.fixture(params=LIBRARIES)
def client_config(request: pytest.FixtureRequest, client_config: ClientConfig) -> ClientConfig:
    """Every client test runs on each installed HTTP library."""
    return with_changes(client_config, http_library=request.param)


class SleepRecorder:
    """Records backoff delays instead of waiting them out."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        await asyncio.sleep(0)


def run(config: ClientConfig, model: str, **kw: Any) -> Any:
    sleep = kw.pop("sleep", None) or SleepRecorder()

    async def go() -> Any:
        async with FusionClient(config, api_key=KEY, sleep=sleep, rng=random.Random(7)) as client:
            return await client.complete(
                model, MSG, max_tokens=64, temperature=0.2, timeout_s=kw.pop("timeout_s", 5.0), **kw
            )

    return asyncio.run(go())


@pytest.mark.parametrize("stream", [True, False])
def test_answer_usage_cost_and_headers(fake: FakeOpenRouter, client_config: ClientConfig, stream: bool) -> None:
    fake.script("m/a", Reply("The red mug is left of the laptop.", prompt_tokens=31, completion_tokens=9, cost=0.00042, keepalives=3))
    out = run(with_changes(client_config, stream=stream), "m/a")
    assert out.text == "The red mug is left of the laptop."
    assert (out.prompt_tokens, out.completion_tokens, out.cost_usd) == (31, 9, 0.00042)
    assert out.attempts == 1 and out.finish_reason == "stop"
    (call,) = fake.calls_for("m/a")
    assert call.headers["authorization"] == f"Bearer {TEST_KEY}"
    assert call.headers["http-referer"] == "https://example.org/samfusion"
    assert call.headers["x-title"] == "SAM Fusion tests"
    assert call.body["max_tokens"] == 64 and call.body["temperature"] == 0.2
    assert call.body["stream"] is stream
    assert call.body["messages"] == MSG


def test_no_usage_block_gives_zero_tokens_and_unknown_cost(fake: FakeOpenRouter, client_config: ClientConfig) -> None:
    fake.script("m/a", Reply("fine", usage=False))
    out = run(client_config, "m/a")
    assert (out.text, out.prompt_tokens, out.completion_tokens, out.cost_usd) == ("fine", 0, 0, None)


def test_429_retry_after_is_honoured_and_capped(fake: FakeOpenRouter, client_config: ClientConfig) -> None:
    fake.script("m/a", HttpError(429, retry_after="0.05"), HttpError(429, retry_after="120"), Reply("after limits"))
    sleep = SleepRecorder()
    out = run(client_config, "m/a", sleep=sleep)
    assert out.text == "after limits" and out.attempts == 3
    assert sleep.delays == [0.05, 0.2]  # second one capped at retry_after_cap_s
    assert len(fake.calls_for("m/a")) == 3


@pytest.mark.parametrize("status", [500, 502, 503, 408])
def test_retryable_status_then_success_with_jittered_backoff(
    fake: FakeOpenRouter, client_config: ClientConfig, status: int
) -> None:
    fake.script("m/a", HttpError(status), HttpError(status), Reply("third time"))
    sleep = SleepRecorder()
    out = run(client_config, "m/a", sleep=sleep)
    assert out.text == "third time" and out.attempts == 3
    assert len(sleep.delays) == 2
    assert 0.0 <= sleep.delays[0] <= 0.01 and 0.0 <= sleep.delays[1] <= 0.02
    assert sleep.delays[0] != sleep.delays[1]  # jitter


def test_retries_exhausted_raises_last_error(fake: FakeOpenRouter, client_config: ClientConfig) -> None:
    fake.script("m/a", HttpError(503, message="no provider available"))
    with pytest.raises(UpstreamError, match=r"m/a: HTTP 503 upstream error: no provider available"):
        run(client_config, "m/a")
    assert len(fake.calls_for("m/a")) == 3  # 1 + max_retries


@pytest.mark.parametrize(
    ("status", "cls", "text"),
    [
        (400, BadRequestError, "bad request"),
        (401, AuthenticationError, "invalid or missing API key"),
        (402, InsufficientCreditsError, "insufficient credits"),
        (403, PermissionDeniedError, "forbidden (moderation or permissions)"),
        (404, ModelNotFoundError, "unknown model id"),
    ],
)
def test_non_retryable_status_fails_at_once(
    fake: FakeOpenRouter, client_config: ClientConfig, status: int, cls: type, text: str
) -> None:
    fake.script("m/a", HttpError(status, message="scripted reason"))
    with pytest.raises(cls) as info:
        run(client_config, "m/a")
    assert str(info.value) == f"m/a: HTTP {status} {text}: scripted reason"
    assert info.value.status == status
    assert len(fake.calls_for("m/a")) == 1


def test_key_echoed_by_server_never_reaches_the_error(fake: FakeOpenRouter, client_config: ClientConfig) -> None:
    fake.script("m/a", HttpError(401, message=f"key {TEST_KEY} rejected", echo_auth=True))
    with pytest.raises(AuthenticationError) as info:
        run(client_config, "m/a")
    assert TEST_KEY not in str(info.value) and "SECRET" not in repr(info.value)
    assert "***" in str(info.value)


@pytest.mark.parametrize("stream", [True, False])
def test_error_inside_200_body_is_a_failure_and_retried(
    fake: FakeOpenRouter, client_config: ClientConfig, stream: bool
) -> None:
    fake.script("m/a", ErrorIn200(502, "provider overloaded"), Reply("recovered"))
    out = run(with_changes(client_config, stream=stream), "m/a")
    assert out.text == "recovered" and out.attempts == 2


def test_credits_error_inside_200_body_is_typed_and_not_retried(fake: FakeOpenRouter, client_config: ClientConfig) -> None:
    fake.script("m/a", ErrorIn200(402, "out of credits"))
    with pytest.raises(InsufficientCreditsError, match="out of credits"):
        run(with_changes(client_config, stream=False), "m/a")
    assert len(fake.calls_for("m/a")) == 1


@pytest.mark.parametrize("stream", [True, False])
def test_mid_stream_error_is_not_an_answer(fake: FakeOpenRouter, client_config: ClientConfig, stream: bool) -> None:
    fake.script("m/a", MidStreamError("The mug is", "provider disconnected"))
    with pytest.raises(UpstreamError) as info:
        run(with_changes(client_config, stream=stream, max_retries=1), "m/a")
    expected = "provider disconnected" if stream else "finish_reason 'error'"
    assert expected in str(info.value)
    assert len(fake.calls_for("m/a")) == 2


@pytest.mark.parametrize("stream", [True, False])
def test_malformed_json_is_retried_then_typed(fake: FakeOpenRouter, client_config: ClientConfig, stream: bool) -> None:
    fake.script("m/a", MalformedJson(), Reply("clean"))
    assert run(with_changes(client_config, stream=stream), "m/a").text == "clean"
    fake.script("m/b", MalformedJson())
    with pytest.raises(MalformedResponseError, match="m/b: .*(not valid JSON|malformed stream chunk)"):
        run(with_changes(client_config, stream=stream), "m/b")
    assert len(fake.calls_for("m/b")) == 3


@pytest.mark.parametrize("stream", [True, False])
def test_reasoning_only_reply_rule(fake: FakeOpenRouter, client_config: ClientConfig, stream: bool) -> None:
    fake.script("m/r", Reply("", reasoning="The user wants the mug; answer: left of laptop."))
    config = with_changes(client_config, stream=stream)
    with pytest.raises(EmptyAnswerError, match=r"^m/r: empty answer \(reasoning only\)$"):
        run(config, "m/r")
    assert len(fake.calls_for("m/r")) == 1  # not retried
    out = run(config, "m/r", accept_reasoning=True)
    assert out.text == "The user wants the mug; answer: left of laptop." and out.from_reasoning


def test_stall_after_headers_ends_by_read_timeout(fake: FakeOpenRouter, client_config: ClientConfig) -> None:
    fake.script("m/s", StallAfterHeaders(5.0))
    config = with_changes(client_config, read_timeout_s=0.2, max_retries=1)
    started = time.monotonic()
    with pytest.raises(CallTimeoutError, match="m/s: read timeout"):
        run(config, "m/s")
    assert time.monotonic() - started < 5.0  # did not wait for the scripted 5 s stall
    assert len(fake.calls_for("m/s")) == 2


@pytest.mark.parametrize("stream", [True, False])
def test_stalled_body_ends_by_total_deadline(fake: FakeOpenRouter, client_config: ClientConfig, stream: bool) -> None:
    # Read timeout longer than the deadline: only the per-call total deadline can end this.
    fake.script("m/s", StalledBody(5.0))
    config = with_changes(client_config, read_timeout_s=30.0, stream=stream)
    started = time.monotonic()
    with pytest.raises(CallTimeoutError, match=r"^m/s: no complete reply within 0.4 s \(1 attempt\(s\)\)$"):
        run(config, "m/s", timeout_s=0.4)
    assert time.monotonic() - started < 5.0
    deadline = time.monotonic() + 3.0
    while not fake.calls_for("m/s")[0].disconnected and time.monotonic() < deadline:
        time.sleep(0.01)
    assert fake.calls_for("m/s")[0].disconnected  # the connection was really closed


def test_circuit_breaker_opens_then_half_open_probe(fake: FakeOpenRouter, client_config: ClientConfig) -> None:
    now = [100.0]
    config = with_changes(client_config, max_retries=0, breaker_failures=2, breaker_cooldown_s=10.0)
    fake.script("m/f", HttpError(500), HttpError(500), HttpError(500), Reply("back"))

    async def go() -> list[str]:
        outcomes = []
        async with FusionClient(config, api_key=KEY, clock=lambda: now[0]) as client:
            for advance in (0.0, 0.0, 0.0, 5.0, 6.0, 0.0, 11.0, 0.0):
                now[0] += advance
                try:
                    out = await client.complete("m/f", MSG, max_tokens=8, temperature=0, timeout_s=5)
                    outcomes.append(out.text)
                except FusionError as exc:
                    outcomes.append(type(exc).__name__)
        return outcomes

    outcomes = asyncio.run(go())
    assert outcomes == [
        "UpstreamError",  # failure 1
        "UpstreamError",  # failure 2 -> open
        "CircuitOpenError",  # refused, no request
        "CircuitOpenError",  # still cooling down (5 s)
        "UpstreamError",  # half-open probe at 11 s fails -> open again
        "CircuitOpenError",
        "back",  # next probe succeeds -> closed
        "back",
    ]
    assert len(fake.calls_for("m/f")) == 5


def test_auth_failures_do_not_open_the_breaker(fake: FakeOpenRouter, client_config: ClientConfig) -> None:
    config = with_changes(client_config, breaker_failures=1)
    fake.script("m/a", HttpError(401))

    async def go() -> list[type]:
        kinds = []
        async with FusionClient(config, api_key=KEY) as client:
            for _ in range(3):
                with pytest.raises(FusionError) as info:
                    await client.complete("m/a", MSG, max_tokens=8, temperature=0, timeout_s=5)
                kinds.append(type(info.value))
        return kinds

    assert asyncio.run(go()) == [AuthenticationError] * 3
    assert len(fake.calls_for("m/a")) == 3


def test_circuit_open_message_names_last_error(fake: FakeOpenRouter, client_config: ClientConfig) -> None:
    config = with_changes(client_config, max_retries=0, breaker_failures=1)
    fake.script("m/x", HttpError(404, message="no such model"))

    async def go() -> str:
        async with FusionClient(config, api_key=KEY) as client:
            with pytest.raises(ModelNotFoundError):
                await client.complete("m/x", MSG, max_tokens=8, temperature=0, timeout_s=5)
            with pytest.raises(CircuitOpenError) as info:
                await client.complete("m/x", MSG, max_tokens=8, temperature=0, timeout_s=5)
            return str(info.value)

    text = asyncio.run(go())
    assert text.startswith("m/x: circuit open after 1 consecutive failures (last: m/x: HTTP 404 unknown model id: no such model)")


def test_cancelling_a_call_closes_its_connection(fake: FakeOpenRouter, client_config: ClientConfig) -> None:
    fake.script("m/slow", Reply("late", latency_s=5.0))

    async def go() -> None:
        async with FusionClient(client_config, api_key=KEY) as client:
            task = asyncio.create_task(client.complete("m/slow", MSG, max_tokens=8, temperature=0, timeout_s=10))
            while not fake.calls_for("m/slow"):
                await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert client.breakers.get("m/slow").failures == 0

    asyncio.run(go())
    deadline = time.monotonic() + 3.0
    while not fake.calls_for("m/slow")[0].disconnected and time.monotonic() < deadline:
        time.sleep(0.01)
    assert fake.calls_for("m/slow")[0].disconnected


def test_rate_limit_without_time_left_fails_with_retry_after(fake: FakeOpenRouter, client_config: ClientConfig) -> None:
    fake.script("m/a", HttpError(429, retry_after="3"))
    config = with_changes(client_config, retry_after_cap_s=10.0)
    with pytest.raises(RateLimitedError, match=r"Retry-After 3 s") as info:
        run(config, "m/a", timeout_s=1.0)
    assert info.value.retry_after_s == 3.0
    assert len(fake.calls_for("m/a")) == 1


def test_http_library_selection(client_config: ClientConfig) -> None:
    assert http_library(client_config.http_library).__name__ == client_config.http_library
    assert http_library("auto").__name__ == LIBRARIES[-1]
    with pytest.raises(PoolConfigError, match="must be auto, httpx or httpx2"):
        http_library("requests")


def test_stream_connection_is_reused(fake: FakeOpenRouter, client_config: ClientConfig) -> None:
    fake.script("m/a", Reply("pooled", keepalives=1))

    async def go() -> None:
        async with FusionClient(client_config, api_key=KEY) as client:
            for _ in range(5):
                await client.complete("m/a", MSG, max_tokens=8, temperature=0, timeout_s=5)

    asyncio.run(go())
    assert fake.connections == 1  # the SSE body is drained after [DONE], so the socket is pooled
