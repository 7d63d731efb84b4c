"""Pools file, key loading and redaction, cost estimates, breaker, catalog, fan-out."""

from __future__ import annotations

import asyncio
import logging
import pickle
from pathlib import Path

import pytest

from samfusion.fusion.breaker import BreakerState, CircuitBreaker
from samfusion.fusion.catalog import ModelCatalog, ModelPrice, parse_models_payload
from samfusion.fusion.config import FusionMode, PoolConfig, load_settings, parse_settings
from samfusion.fusion.cost import estimate_request_cost, estimate_tokens
from samfusion.fusion.errors import ApiKeyError, PoolConfigError, UpstreamError
from samfusion.fusion.fanout import fan_out
from samfusion.fusion.secrets import ApiKey, RedactingFilter, load_api_key, redact
from samfusion.fusion.wire import Completion

REPO = Path(__file__).resolve().parents[2]


def test_shipped_pools_file_is_valid() -> None:
    settings = load_settings(REPO / "config" / "fusion_pools.yaml")
    assert settings.default_pool in settings.pools
    for pool in settings.pools.values():
        assert pool.members and (pool.judge or len(pool.members) == 1 or pool.mode is FusionMode.SERVER)
    assert settings.client.base_url == "https://openrouter.ai/api/v1"
    assert settings.client.api_key_env == "OPENROUTER_API_KEY"


def test_parse_settings_values_and_prices() -> None:
    settings = parse_settings({
        "client": {"base_url": "http://127.0.0.1:8000/v1", "max_retries": 4, "stream": False},
        "default_pool": "local",
        "pools": {"local": {"members": ["a", "b"], "judge": "a", "mode": "merge", "quorum": 1,
                            "max_tokens": 300, "temperature": 0.1}},
        "prices": {"a": {"prompt": 0.5, "completion": 1.5}},
    })
    pool = settings.pool()
    assert (pool.name, pool.members, pool.mode, pool.quorum_k, pool.max_tokens) == ("local", ("a", "b"), FusionMode.MERGE, 1, 300)
    assert settings.client.max_retries == 4 and settings.client.stream is False
    assert settings.prices["a"] == ModelPrice(0.5e-6, 1.5e-6)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"pools": {"p": {"members": []}}}, "pools.p.members is empty"),
        ({"pools": {"p": {"members": ["a", "a"], "judge": "j"}}}, "lists a model twice"),
        ({"pools": {"p": {"members": ["a", "b"]}}}, "pools.p.judge is required"),
        ({"pools": {"p": {"members": ["a"], "quorum": 2}}}, "pools.p.quorum must lie in [0, 1]"),
        ({"pools": {"p": {"members": ["a"], "max_tokens": "many"}}}, "pools.p.max_tokens: expected int"),
        ({"pools": {"p": {"members": ["a"], "colour": 1}}}, "unknown key(s) ['colour']"),
        ({"pools": {"p": {"members": ["a"], "mode": "vote"}}}, "unknown fusion mode 'vote'"),
        ({"client": {"base_url": "openrouter.ai"}}, "client.base_url must be an http(s) URL"),
        ({"client": {"read_timeout_s": 0}}, "client.read_timeout_s must be a positive number"),
        ({"default_pool": "x", "pools": {}}, "default_pool 'x' is not a defined pool"),
        ({"api_key": "sk-or-v1-x"}, "unknown top-level key(s) ['api_key']"),
    ],
)
def test_invalid_settings_name_the_key(raw: dict, message: str) -> None:
    with pytest.raises(PoolConfigError) as info:
        parse_settings(raw)
    assert message in str(info.value)


def test_overrides_keep_pool_values_when_empty() -> None:
    pool = PoolConfig(name="p", members=("a", "b", "c"), judge="j", quorum=3, max_cost_usd=0.5)
    assert pool.with_overrides(mode="", members=(), judge="", request_timeout_s=0, max_cost_usd=0) is pool
    changed = pool.with_overrides(mode="debate", members=["x", "y"], judge="k", request_timeout_s=5, max_cost_usd=0.1)
    assert (changed.mode, changed.members, changed.judge, changed.quorum, changed.request_timeout_s, changed.max_cost_usd) == (
        FusionMode.DEBATE, ("x", "y"), "k", 2, 5.0, 0.1)


def test_load_settings_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "pools.yaml"
    bad.write_text("pools: [unclosed")
    with pytest.raises(PoolConfigError, match="pools.yaml is not valid YAML"):
        load_settings(bad)
    with pytest.raises(PoolConfigError, match="cannot read pools file"):
        load_settings(tmp_path / "missing.yaml")


def test_api_key_from_env_and_file_never_printed(tmp_path: Path) -> None:
    key = load_api_key(environ={"OPENROUTER_API_KEY": " sk-or-v1-envkey123456 "})
    assert key is not None and key.reveal() == "sk-or-v1-envkey123456"
    assert "envkey" not in repr(key) and "envkey" not in str(key) and "environment variable" in key.source
    path = tmp_path / "key"
    path.write_text("\n  sk-or-v1-filekey123456\n")
    from_file = load_api_key(key_file=path, environ={"OPENROUTER_API_KEY": "ignored-when-file-given"})
    assert from_file is not None and from_file.reveal() == "sk-or-v1-filekey123456"
    with pytest.raises(TypeError):
        pickle.dumps(from_file)
    assert load_api_key(environ={}, required=False) is None
    with pytest.raises(ApiKeyError, match="environment variable OPENROUTER_API_KEY is unset"):
        load_api_key(environ={})
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ApiKeyError, match="is empty"):
        load_api_key(key_file=tmp_path / "empty")
    with pytest.raises(ApiKeyError, match="cannot read API key file"):
        load_api_key(key_file=tmp_path / "nope")


def test_redact_and_logging_filter(caplog: pytest.LogCaptureFixture) -> None:
    key = ApiKey("customsecretvalue", source="test")
    assert redact("a customsecretvalue b", key) == "a *** b"
    assert redact("Authorization: Bearer abcdefghijkl") == "Authorization: Bearer ***"
    assert redact("key sk-or-v1-0123456789abcdef leaked") == "key *** leaked"
    logger = logging.getLogger("samfusion.test.redact")
    logger.addFilter(RedactingFilter(key))
    with caplog.at_level(logging.INFO, logger="samfusion.test.redact"):
        logger.info("calling with %s", "customsecretvalue")
    assert "customsecretvalue" not in caplog.text and "calling with ***" in caplog.text


def test_cost_estimate_per_mode() -> None:
    prices = {"a": ModelPrice(1e-6, 2e-6), "b": ModelPrice(1e-6, 2e-6), "j": ModelPrice(3e-6, 4e-6)}
    pool = PoolConfig(name="p", members=("a", "b"), judge="j", max_tokens=100, judge_max_tokens=50)
    members = 2 * (1000 * 1e-6 + 100 * 2e-6)
    judge_call = (1000 + 200 + 160) * 3e-6 + 50 * 4e-6
    best_of = estimate_request_cost(pool, 1000, prices.get)
    assert best_of.total_usd == pytest.approx(members + 2 * judge_call) and best_of.calls == 4
    merge = estimate_request_cost(PoolConfig(**{**pool.__dict__, "mode": FusionMode.MERGE}), 1000, prices.get)
    assert merge.total_usd == pytest.approx(members + judge_call)
    debate = estimate_request_cost(PoolConfig(**{**pool.__dict__, "mode": FusionMode.DEBATE, "debate_rounds": 2}), 1000, prices.get)
    revision = (1000 + 200 + 160) * 1e-6 + 100 * 2e-6
    assert debate.total_usd == pytest.approx(members + 4 * revision + 2 * judge_call) and debate.calls == 8
    unpriced = estimate_request_cost(pool, 1000, {"a": prices["a"]}.get)
    assert unpriced.unpriced_models == ("b", "j")
    assert estimate_tokens([{"role": "user", "content": "x" * 40}]) == 14


def test_breaker_states_with_clock() -> None:
    now = [0.0]
    b = CircuitBreaker(failure_threshold=2, cooldown_s=10.0, clock=lambda: now[0])
    assert b.try_acquire() and b.state is BreakerState.CLOSED
    b.record_failure("x")
    b.record_failure("y")
    assert b.state is BreakerState.OPEN and not b.try_acquire() and b.remaining_cooldown_s() == 10.0
    now[0] = 10.0
    assert b.state is BreakerState.HALF_OPEN
    assert b.try_acquire() and not b.try_acquire()  # a single probe
    b.release()
    assert b.try_acquire()
    b.record_success()
    assert b.state is BreakerState.CLOSED and b.failures == 0


def test_catalog_ttl_and_failure_keeps_overrides() -> None:
    now = [0.0]
    calls = []

    async def fetch() -> dict:
        calls.append(now[0])
        if len(calls) == 2:
            raise UpstreamError("models endpoint: HTTP 503")
        return {"data": [{"id": "a", "pricing": {"prompt": "0.000002", "completion": "-1"}, "context_length": 8192},
                         {"name": "no id"}]}

    catalog = ModelCatalog(fetch, ttl_s=100, overrides={"b": ModelPrice(1, 1)}, retry_after_failure_s=30, clock=lambda: now[0])

    async def go() -> None:
        await asyncio.gather(catalog.refresh_if_stale(), catalog.refresh_if_stale())
        assert len(calls) == 1
        assert catalog.price("a") == ModelPrice(2e-6, 0.0, 8192) and catalog.price("b") == ModelPrice(1, 1)
        now[0] = 150
        await catalog.refresh_if_stale()  # fails: keeps old prices
        assert "HTTP 503" in catalog.last_error and catalog.price("a") is not None
        now[0] = 160
        await catalog.refresh_if_stale()  # within retry_after_failure_s: no fetch
        assert len(calls) == 2
        now[0] = 181
        await catalog.refresh_if_stale()
        assert len(calls) == 3 and catalog.last_error == ""

    asyncio.run(go())
    with pytest.raises(ValueError):
        parse_models_payload({"models": []})


def test_fan_out_quorum_cancels_and_reports() -> None:
    cancelled = []

    def call(delay: float, fail: bool = False):
        async def run() -> Completion:
            try:
                await asyncio.sleep(delay)
            except asyncio.CancelledError:
                cancelled.append(delay)
                raise
            if fail:
                raise UpstreamError(f"failed after {delay}")
            return Completion(model=str(delay), text=f"t{delay}")
        return run

    async def go() -> dict:
        return await fan_out({"fast": call(0.01), "err": call(0.02, True), "mid": call(0.05), "slow": call(5.0)},
                             quorum_k=2, quorum_deadline_s=0.1)

    out = asyncio.run(go())
    assert [m for m, o in out.items() if o.ok] == ["fast", "mid"]
    assert out["err"].error == "failed after 0.02" and not out["err"].cut_by_quorum
    assert out["slow"].cut_by_quorum and "quorum of 2/4 reached" in out["slow"].error
    assert cancelled == [5.0]


def test_loop_thread_runs_cancels_and_cleans_up() -> None:
    from samfusion.fusion.loop_thread import LoopThread

    loop = LoopThread("test-loop")
    events: list[str] = []

    async def add(a: int, b: int) -> int:
        await asyncio.sleep(0)
        return a + b

    async def forever() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            events.append("cancelled")
            raise

    async def cleanup() -> None:
        events.append("cleanup")

    assert loop.call(add(2, 3), timeout_s=5) == 5
    pending = loop.submit(forever())
    loop.stop(cleanup=cleanup)
    assert events == ["cancelled", "cleanup"] and pending.cancelled()
    assert not loop.running
    with pytest.raises(RuntimeError, match="stopped"):
        loop.submit(add(1, 1))


def _interface_fields(text: str) -> list[str]:
    names = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line and "=" not in line:
            names.append(line.split()[1])
    return names


def test_result_types_map_one_to_one_onto_the_interfaces() -> None:
    from dataclasses import fields

    from samfusion.fusion.result import CandidateResult, FusionRequest, FusionResult

    request_text, response_text = (REPO / "srv" / "FusionQuery.srv").read_text().split("---")
    assert [f.name for f in fields(FusionResult)] == _interface_fields(response_text)
    assert [f.name for f in fields(CandidateResult)] == _interface_fields((REPO / "msg" / "ModelCandidate.msg").read_text())
    request_fields = _interface_fields(request_text)
    mapped = {"models": "models", "judge_model": "judge_model", "include_scene": "scene"}
    for name in request_fields:
        assert mapped.get(name, name) in {f.name for f in fields(FusionRequest)}, name
