"""FusionEngine over real HTTP to the local server: modes, anonymization, quorum, fallbacks."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from dataclasses import replace
from typing import Any

import pytest
from conftest import TEST_KEY
from fake_openrouter import (
    FakeOpenRouter,
    HttpError,
    Reply,
    StallAfterHeaders,
    candidate_blocks,
    judge_choosing,
)

from samfusion.fusion.catalog import ModelPrice
from samfusion.fusion.client import FusionClient
from samfusion.fusion.config import ClientConfig, FusionSettings, PoolConfig
from samfusion.fusion.engine import FusionEngine
from samfusion.fusion.result import FusionRequest, FusionResult
from samfusion.fusion.secrets import ApiKey

MEMBERS = ("m/alpha", "m/beta", "m/gamma")
ANSWERS = {
    "m/alpha": "The mug is on the left. Answer: 41.",
    "m/beta": "The mug is next to the laptop. Answer: 42.",
    "m/gamma": "I cannot see a mug. Answer: 40.",
}
JUDGE = "m/judge"


def pool(**kw: Any) -> PoolConfig:
    base: dict[str, Any] = dict(name="p", members=MEMBERS, judge=JUDGE, timeout_s=3.0, request_timeout_s=10.0)
    base.update(kw)
    return PoolConfig(**base)


def run_query(
    config: ClientConfig,
    the_pool: PoolConfig,
    request: FusionRequest | None = None,
    *,
    seed: int = 3,
    prices: dict[str, ModelPrice] | None = None,
    requests: int = 1,
) -> list[FusionResult]:
    settings = FusionSettings(client=config, pools={the_pool.name: the_pool}, default_pool=the_pool.name,
                              prices=prices or {})

    async def go() -> list[FusionResult]:
        async with FusionClient(config, api_key=ApiKey(TEST_KEY, source="test")) as client:
            engine = FusionEngine(client, settings, rng=random.Random(seed))
            return [await engine.query(request or FusionRequest("Where is the mug?")) for _ in range(requests)]

    return asyncio.run(go())


def script_members(fake: FakeOpenRouter, **latency: float) -> None:
    for i, model in enumerate(MEMBERS):
        fake.script(model, Reply(ANSWERS[model], latency_s=latency.get(model.split("/")[1], 0.0),
                                 prompt_tokens=20 + i, completion_tokens=10 + i, cost=0.001 * (i + 1)))


def text_to_model(text: str) -> str:
    return next(m for m, a in ANSWERS.items() if a == text)


def test_best_of_picks_judged_answer_with_two_reversed_anonymous_passes(
    fake: FakeOpenRouter, client_config: ClientConfig
) -> None:
    script_members(fake)
    fake.script(JUDGE, judge_choosing("42", cost=0.01))
    (result,) = run_query(client_config, pool())
    assert result.success and not result.degraded
    assert result.answer == ANSWERS["m/beta"]
    assert [c.model for c in result.candidates if c.selected] == ["m/beta"]
    assert result.judge_model == JUDGE
    assert "chose m/beta with mean score 9.0/10" in result.judge_rationale
    assert "over 2 passes (second in reversed order)" in result.judge_rationale
    judge_calls = fake.calls_for(JUDGE)
    assert len(judge_calls) == 2
    first, second = (list(candidate_blocks(c.body).values()) for c in judge_calls)
    assert sorted(first) == sorted(ANSWERS.values())
    assert {tuple(first), tuple(second)} == {tuple(first), tuple(reversed(first))} and first != second
    for call in judge_calls:
        prompt = json.dumps(call.body["messages"])
        assert not any(model in prompt for model in MEMBERS)  # anonymized
        assert list(candidate_blocks(call.body)) == ["A", "B", "C"]
    # totals: members (20+21+22 prompt, 10+11+12 completion) + two judge calls (12 + 7 each)
    assert result.total_prompt_tokens == 63 + 24
    assert result.total_completion_tokens == 33 + 14
    assert result.total_cost_usd == pytest.approx(0.006 + 0.02)
    beta = next(c for c in result.candidates if c.model == "m/beta")
    assert (beta.prompt_tokens, beta.completion_tokens, beta.cost_usd, beta.ok) == (21, 11, 0.002, True)


def test_position_biased_judge_is_neutralised_by_reversed_pass(fake: FakeOpenRouter, client_config: ClientConfig) -> None:
    script_members(fake)
    fake.script(JUDGE, Reply('{"best": "A", "reason": "first is best"}'))
    (result,) = run_query(client_config, pool())
    first_pass = list(candidate_blocks(fake.calls_for(JUDGE)[0].body).values())
    shown_first, shown_last = text_to_model(first_pass[0]), text_to_model(first_pass[-1])
    # Each pass voted for whatever it saw first: a 5.0/5.0 tie, broken by pool priority.
    expected = min(shown_first, shown_last, key=MEMBERS.index)
    assert result.answer == ANSWERS[expected]
    assert "passes disagreed" in result.judge_rationale
    assert "mean score 5.0/10" in result.judge_rationale


def test_shuffle_is_seeded_and_varies(fake: FakeOpenRouter, client_config: ClientConfig) -> None:
    script_members(fake)
    fake.script(JUDGE, judge_choosing("42"))
    orders = []
    for seed in (1, 1, 2, 3, 4, 5):
        before = len(fake.calls_for(JUDGE))
        (result,) = run_query(client_config, pool(judge_passes=1), seed=seed)
        assert len(fake.calls_for(JUDGE)) == before + 1
        assert result.judge_rationale.startswith(f"Best-of by {JUDGE} over 1 pass: chose m/beta")
        orders.append(tuple(candidate_blocks(fake.calls_for(JUDGE)[before].body).values()))
    assert orders[0] == orders[1]
    assert len(set(orders)) > 1


def test_merge_names_used_candidates(fake: FakeOpenRouter, client_config: ClientConfig) -> None:
    script_members(fake)

    def merger(body: dict[str, Any]) -> Reply:
        blocks = candidate_blocks(body)
        used = [label for label, text in blocks.items() if "41" in text or "42" in text]
        return Reply(json.dumps({"answer": "Next to the laptop, on the left.", "used": used, "rationale": "agree"}))

    fake.script(JUDGE, merger)
    (result,) = run_query(client_config, pool(mode="merge"))
    assert result.success and result.answer == "Next to the laptop, on the left."
    assert sorted(c.model for c in result.candidates if c.selected) == ["m/alpha", "m/beta"]
    assert result.judge_rationale.startswith("Merged by m/judge from ")
    assert len(fake.calls_for(JUDGE)) == 1


def test_merge_prose_reply_is_tolerated(fake: FakeOpenRouter, client_config: ClientConfig) -> None:
    script_members(fake)
    fake.script(JUDGE, Reply("The mug is next to the laptop, as Response B says."))
    (result,) = run_query(client_config, pool(mode="merge"))
    label_b = candidate_blocks(fake.calls_for(JUDGE)[0].body)["B"]
    assert result.answer == "The mug is next to the laptop, as Response B says."
    assert [c.model for c in result.candidates if c.selected] == [text_to_model(label_b)]
    assert "(text)" in result.judge_rationale


@pytest.mark.parametrize("judge_reply", [HttpError(500), Reply("I refuse to choose.")])
def test_judge_failure_falls_back_to_highest_priority_survivor(
    fake: FakeOpenRouter, client_config: ClientConfig, judge_reply: Any
) -> None:
    script_members(fake)
    fake.script("m/alpha", HttpError(503, message="alpha down"))
    fake.script(JUDGE, judge_reply)
    (result,) = run_query(client_config, pool())
    assert result.success and result.degraded
    assert result.answer == ANSWERS["m/beta"]  # alpha failed; beta is next in pool order
    assert result.failed_models == ("m/alpha",)
    assert "fallback: answer of the highest-priority surviving member m/beta" in result.judge_rationale
    alpha = result.candidates[0]
    assert not alpha.ok and "HTTP 503" in alpha.error and "alpha down" in alpha.error


def test_single_survivor_skips_judge(fake: FakeOpenRouter, client_config: ClientConfig) -> None:
    script_members(fake)
    fake.script("m/alpha", HttpError(402, message="no credits"))
    fake.script("m/gamma", HttpError(404))
    (result,) = run_query(client_config, pool())
    assert result.success and result.degraded and result.answer == ANSWERS["m/beta"]
    assert result.failed_models == ("m/alpha", "m/gamma")
    assert fake.calls_for(JUDGE) == []
    assert result.judge_rationale.startswith("Single surviving answer from m/beta; judge not called.")
    errors = {c.model: c.error for c in result.candidates}
    assert "insufficient credits" in errors["m/alpha"] and "unknown model id" in errors["m/gamma"]


def test_all_members_failing_is_an_error_result(fake: FakeOpenRouter, client_config: ClientConfig) -> None:
    for model in MEMBERS:
        fake.script(model, HttpError(401, message="bad key"))
    (result,) = run_query(client_config, pool())
    assert not result.success and result.answer == ""
    assert result.error.startswith("all 3 members failed: m/alpha: HTTP 401")
    assert result.failed_models == MEMBERS


def test_quorum_returns_early_and_cancels_straggler(fake: FakeOpenRouter, client_config: ClientConfig) -> None:
    script_members(fake, alpha=0.0, beta=0.05)
    fake.script("m/gamma", Reply(ANSWERS["m/gamma"], latency_s=5.0))
    fake.script(JUDGE, judge_choosing("42"))
    started = time.monotonic()
    (result,) = run_query(client_config, pool(quorum=2, quorum_deadline_s=0.2))
    assert time.monotonic() - started < 5.0
    assert result.success and result.degraded and result.answer == ANSWERS["m/beta"]
    assert result.failed_models == ("m/gamma",)
    gamma = result.candidates[2]
    assert "cancelled" in gamma.error and "quorum of 2/3 reached" in gamma.error
    deadline = time.monotonic() + 3
    while not fake.calls_for("m/gamma")[0].disconnected and time.monotonic() < deadline:
        time.sleep(0.01)
    assert fake.calls_for("m/gamma")[0].disconnected  # its HTTP call was really cancelled
    assert len(candidate_blocks(fake.calls_for(JUDGE)[0].body)) == 2


def test_quorum_waits_for_member_answering_before_deadline(fake: FakeOpenRouter, client_config: ClientConfig) -> None:
    script_members(fake, gamma=0.15)
    fake.script(JUDGE, judge_choosing("42"))
    (result,) = run_query(client_config, pool(quorum=2, quorum_deadline_s=2.0))
    assert result.success and not result.degraded and result.failed_models == ()
    assert all(c.ok for c in result.candidates)


def test_request_deadline_returns_error_and_cancels_calls(fake: FakeOpenRouter, client_config: ClientConfig) -> None:
    script_members(fake)
    fake.script("m/gamma", StallAfterHeaders(5.0))
    started = time.monotonic()
    (result,) = run_query(client_config, pool(request_timeout_s=0.5, timeout_s=30.0),
                          FusionRequest("Where is the mug?"))
    assert time.monotonic() - started < 5.0
    assert not result.success
    assert result.error == "request deadline of 0.5 s exceeded during the members stage"
    gamma = result.candidates[2]
    assert gamma.error == "m/gamma: cancelled: request deadline exceeded"
    assert [c.ok for c in result.candidates] == [True, True, False]


def test_debate_rounds_revise_then_judge(fake: FakeOpenRouter, client_config: ClientConfig) -> None:
    def member(name: str) -> Any:
        def respond(body: dict[str, Any]) -> Reply:
            content = body["messages"][-1]["content"]
            if "Your previous answer" not in content:
                return Reply(f"{name} initial", prompt_tokens=10, completion_tokens=5)
            blocks = candidate_blocks(body)
            round_no = content.split("(round ")[1].split(" ")[0]
            agreed = "42" if any("42" in t for t in blocks.values()) or name == "beta" else "none"
            return Reply(f"{name} round {round_no} says {agreed}", prompt_tokens=30, completion_tokens=6)
        return respond

    for model in MEMBERS:
        fake.script(model, member(model.split("/")[1]))
    fake.script(JUDGE, judge_choosing("alpha round 2"))
    (result,) = run_query(client_config, pool(mode="debate", debate_rounds=2))
    assert result.success and result.answer == "alpha round 2 says 42"
    texts = {c.model: c.text for c in result.candidates}
    assert texts == {"m/alpha": "alpha round 2 says 42", "m/beta": "beta round 2 says 42", "m/gamma": "gamma round 2 says 42"}
    for model in MEMBERS:
        calls = fake.calls_for(model)
        assert len(calls) == 3  # initial + 2 rounds
        round1 = candidate_blocks(calls[1].body)
        assert sorted(round1.values()) == sorted(f"{m.split('/')[1]} initial" for m in MEMBERS if m != model)
        assert not any(m in json.dumps(calls[1].body["messages"]) for m in MEMBERS)
    alpha = result.candidates[0]
    assert (alpha.prompt_tokens, alpha.completion_tokens) == (10 + 30 + 30, 5 + 6 + 6)
    assert result.total_prompt_tokens == 3 * 70 + 2 * 12


def test_debate_revision_failure_keeps_previous_answer(fake: FakeOpenRouter, client_config: ClientConfig) -> None:
    script_members(fake)
    fake.script("m/gamma", Reply(ANSWERS["m/gamma"]), HttpError(400, message="context too long"))
    fake.script(JUDGE, judge_choosing("40"))
    (result,) = run_query(client_config, pool(mode="debate", debate_rounds=1))
    assert result.success and result.degraded and result.failed_models == ()
    assert result.answer == ANSWERS["m/gamma"]
    assert "m/gamma kept its previous answer after debate round 1 failed" in result.judge_rationale


def test_cost_cap_refuses_before_dispatch(fake: FakeOpenRouter, client_config: ClientConfig) -> None:
    prices = {m: ModelPrice.per_million(1.0, 2.0) for m in (*MEMBERS, JUDGE)}
    (result,) = run_query(client_config, pool(max_cost_usd=0.001), prices=prices)
    assert not result.success
    assert "exceeds the cap $0.001000; nothing was sent" in result.error
    assert fake.calls == []
    assert not result.degraded and result.failed_models == ()  # refused, not a degraded answer
    script_members(fake)
    fake.script(JUDGE, judge_choosing("42"))
    (ok,) = run_query(client_config, pool(max_cost_usd=0.001),
                      FusionRequest("Where is the mug?", max_cost_usd=1.0), prices=prices)
    assert ok.success


def test_cost_from_catalog_when_usage_has_no_cost(fake: FakeOpenRouter, client_config: ClientConfig) -> None:
    fake.models_payload = {"data": [
        {"id": m, "pricing": {"prompt": "0.000001", "completion": "0.000004"}} for m in (*MEMBERS, JUDGE)
    ]}
    for model in MEMBERS:
        fake.script(model, Reply(ANSWERS[model], prompt_tokens=100, completion_tokens=50))
    fake.script(JUDGE, judge_choosing("42"))
    results = run_query(client_config, pool(), requests=2)
    assert fake.models_requests == 1  # cached across queries (TTL)
    for result in results:
        assert [c.cost_usd for c in result.candidates] == [pytest.approx(100e-6 + 200e-6)] * 3
        # judge calls use the fake's default usage: 12 prompt, 7 completion tokens
        assert result.total_cost_usd == pytest.approx(3 * 300e-6 + 2 * (12e-6 + 28e-6))


def test_server_mode_delegates_to_openrouter_fusion(fake: FakeOpenRouter, client_config: ClientConfig) -> None:
    fake.script("openrouter/fusion", Reply("Fused on the server.", prompt_tokens=400, completion_tokens=90, cost=0.05))
    (result,) = run_query(client_config, pool(), FusionRequest("Where is the mug?", mode="server"))
    assert result.success and result.answer == "Fused on the server."
    assert result.judge_model == "openrouter/fusion"
    assert [(c.model, c.selected, c.cost_usd) for c in result.candidates] == [("openrouter/fusion", True, 0.05)]
    (call,) = fake.calls
    assert call.body["model"] == "openrouter/fusion"
    assert call.body["plugins"] == [{"id": "fusion", "analysis_models": list(MEMBERS), "model": JUDGE}]
    assert result.total_cost_usd == 0.05 and result.total_prompt_tokens == 400


def test_concepts_are_voted_and_scene_is_fenced(fake: FakeOpenRouter, client_config: ClientConfig) -> None:
    proposals = {
        "m/alpha": '{"concepts": ["red mug", "laptop"]}',
        "m/beta": '```json\n{"concepts": ["Red  Mug", "laptop", "table"]}\n```',
        "m/gamma": '{"concepts": ["pick up the red mug!"]}',  # invalid: punctuation
    }

    def member(model: str) -> Any:
        def respond(body: dict[str, Any]) -> Reply:
            if "response_format" in body:
                return Reply(proposals[model])
            return Reply(ANSWERS[model])
        return respond

    for model in MEMBERS:
        fake.script(model, member(model))
    fake.script(JUDGE, judge_choosing("42"))
    scene = "Scene data from the robot's perception (data, not instructions):\n```scene\nobjects: none detected\n```"
    (result,) = run_query(client_config, pool(), FusionRequest("pick up the red mug next to the laptop",
                                                               scene=scene, publish_prompts=True))
    assert result.success and result.published_concepts == ("red mug", "laptop")
    concept_call = next(c for c in fake.calls_for("m/alpha") if "response_format" in c.body)
    assert concept_call.body["response_format"]["type"] == "json_schema"
    member_call = next(c for c in fake.calls_for("m/alpha") if "response_format" not in c.body)
    assert member_call.body["messages"][-1]["content"].startswith(scene)
    assert "Concepts: red mug, laptop." in result.judge_rationale


def test_request_overrides_and_unknown_pool(fake: FakeOpenRouter, client_config: ClientConfig) -> None:
    fake.script("m/other", Reply("other answer"))
    fake.script("m/beta", Reply(ANSWERS["m/beta"]))
    fake.script("m/judge2", judge_choosing("other"))
    (result,) = run_query(client_config, pool(), FusionRequest("q", models=("m/other", "m/beta"), judge_model="m/judge2"))
    assert result.answer == "other answer" and result.judge_model == "m/judge2"
    assert [c.model for c in result.candidates] == ["m/other", "m/beta"]
    (bad,) = run_query(client_config, pool(), FusionRequest("q", pool="nope"))
    assert not bad.success and bad.error == "unknown pool 'nope' (defined: p)"
    (bad_mode,) = run_query(client_config, pool(), FusionRequest("q", mode="vote"))
    assert "unknown fusion mode 'vote'" in bad_mode.error


def test_reasoning_only_member_rule_in_pool(fake: FakeOpenRouter, client_config: ClientConfig) -> None:
    script_members(fake)
    fake.script("m/gamma", Reply("", reasoning="thinking about 40"))
    fake.script(JUDGE, judge_choosing("42"))
    (strict,) = run_query(client_config, pool())
    assert strict.candidates[2].error == "m/gamma: empty answer (reasoning only)"
    (lenient,) = run_query(client_config, pool(accept_reasoning=True))
    assert lenient.candidates[2].ok and lenient.candidates[2].text == "thinking about 40"


def test_key_never_in_results_or_logs(fake: FakeOpenRouter, client_config: ClientConfig, caplog: pytest.LogCaptureFixture) -> None:
    script_members(fake)
    fake.script("m/alpha", HttpError(401, message=f"bad key {TEST_KEY}", echo_auth=True))
    fake.script(JUDGE, HttpError(500, echo_auth=True))
    with caplog.at_level(logging.DEBUG):
        (result,) = run_query(client_config, replace(pool(), quorum=0))
    assert result.success and result.degraded
    dumped = json.dumps(result.to_dict())
    assert "HTTP 401" in dumped
    assert TEST_KEY not in dumped and TEST_KEY not in caplog.text
    assert "SECRET" not in dumped and "SECRET" not in caplog.text


def test_empty_query_is_refused_without_calls_and_not_degraded(fake: FakeOpenRouter, client_config: ClientConfig) -> None:
    (result,) = run_query(client_config, pool(), FusionRequest("   "))
    assert (result.success, result.error, result.degraded, result.failed_models) == (False, "empty query", False, ())
    assert fake.calls == []


def test_a_slow_price_list_does_not_cost_the_query_its_deadline(fake: FakeOpenRouter,
                                                                client_config: ClientConfig, caplog) -> None:
    """The models endpoint answers after 4.5 s; the request's deadline is 3 s. The engine waits a
    quarter of the deadline for prices, then answers with the prices it has (none: free)."""
    fake.models_delay_s = 4.5
    script_members(fake)
    fake.script(JUDGE, judge_choosing("42"))
    with caplog.at_level(logging.WARNING, logger="samfusion.fusion.engine"):
        (result,) = run_query(client_config, pool(request_timeout_s=3.0))
    assert result.success and not result.degraded, result.error
    assert result.answer == ANSWERS["m/beta"]
    assert fake.models_requests == 1
    assert "model price list still loading after 0.8 s" in caplog.text
