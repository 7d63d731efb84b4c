"""The fusion engine: fan a question out to a pool, then fuse the answers with a judge.

Stages (each documented in docs/fusion.md):

1. Cost cap: the request's estimated cost (:mod:`cost`) is checked before anything is sent.
2. Members: all pool members are asked in parallel (:mod:`fanout`); with a quorum the stage
   ends once k answered and the quorum deadline passed, and the stragglers are cancelled.
3. Debate (mode ``debate``): for ``debate_rounds`` rounds each surviving member sees the
   others' anonymized answers and revises its own.
4. Decision: ``best_of`` (the judge scores anonymized candidates in shuffled order, then again
   in reversed order; mean scores decide, ties go to the higher-priority member), ``merge``
   (the judge writes one answer and names the candidates it used). ``debate`` ends with
   best-of. ``server`` replaces 2-4 by one call to OpenRouter's server-side fusion model.

Fallback rules: one surviving member -> its answer, no judge call; judge failed or its reply
unusable -> the answer of the highest-priority surviving member (pool order). Both are
flagged ``degraded`` and explained in ``judge_rationale``. Failures never raise: they come
back as a result with ``success=False`` and ``error`` set.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from samfusion.fusion.catalog import ModelCatalog
from samfusion.fusion.client import FusionClient
from samfusion.fusion.concepts import (
    CONCEPT_RESPONSE_FORMAT,
    combine_proposals,
    concept_messages,
    proposal_from,
)
from samfusion.fusion.config import FusionMode, FusionSettings, PoolConfig
from samfusion.fusion.cost import CONCEPT_MAX_TOKENS, actual_cost, estimate_request_cost, estimate_tokens
from samfusion.fusion.errors import CostCapExceededError, FusionError, PoolConfigError
from samfusion.fusion.fanout import Outcome, fan_out
from samfusion.fusion.prompts import (
    LABELS,
    best_of_messages,
    debate_messages,
    member_messages,
    merge_messages,
    parse_best_of,
    parse_merge,
)
from samfusion.fusion.result import CallRecord, CandidateResult, FusionRequest, FusionResult
from samfusion.fusion.wire import Completion, Message

__all__ = ["FusionEngine"]

_log = logging.getLogger(__name__)

_PRICE_WAIT_S = 5.0  # longest a request waits for a stale price list (see _refresh_prices)


class _AllMembersFailed(Exception):
    pass


def _sentence(text: str) -> str:
    """``text`` ending in sentence punctuation, so rationale parts read apart when joined."""
    text = text.strip()
    return text if text.endswith((".", "!", "?")) else text + "."


@dataclass
class _Member:
    model: str
    text: str = ""
    ok: bool = False
    error: str = "not started"
    latency_s: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    selected: bool = False


@dataclass
class _Run:
    """Mutable state of one request; becomes a FusionResult."""

    pool: PoolConfig
    request: FusionRequest
    members: dict[str, _Member]
    records: list[CallRecord] = field(default_factory=list)
    stage: str = "setup"
    answer: str = ""
    error: str = ""
    degraded: bool = False
    judge_model: str = ""
    rationale: list[str] = field(default_factory=list)
    concepts: tuple[str, ...] = ()
    detached: list[asyncio.Future[None]] = field(default_factory=list)  # cancelled stragglers
    dispatched: bool = False  # False: refused before any model was asked (not a degraded answer)

    def ok_members(self) -> list[_Member]:
        """Members with an answer, in pool (priority) order."""
        return [m for m in self.members.values() if m.ok]

    def result(self, latency_s: float) -> FusionResult:
        success = not self.error and bool(self.answer)
        candidates = tuple(
            CandidateResult(
                model=m.model,
                text=m.text if m.ok else "",
                ok=m.ok,
                error="" if m.ok else m.error,
                latency_s=m.latency_s,
                prompt_tokens=m.prompt_tokens,
                completion_tokens=m.completion_tokens,
                cost_usd=m.cost_usd,
                selected=m.selected and success,
            )
            for m in self.members.values()
        )
        failed = tuple(m.model for m in self.members.values() if not m.ok) if self.dispatched else ()
        return FusionResult(
            success=success,
            answer=self.answer if success else "",
            error=self.error,
            degraded=self.degraded or bool(failed),
            failed_models=failed,
            candidates=candidates,
            judge_model=self.judge_model,
            judge_rationale=" ".join(self.rationale),
            published_concepts=self.concepts if success else (),
            total_latency_s=latency_s,
            total_prompt_tokens=sum(r.prompt_tokens for r in self.records),
            total_completion_tokens=sum(r.completion_tokens for r in self.records),
            total_cost_usd=sum(r.cost_usd for r in self.records),
        )


class FusionEngine:
    """Answers :class:`FusionRequest` objects over the pools of ``settings``.

    ``rng`` drives the anonymization shuffles (seed it in tests); ``catalog`` defaults to one
    fed by the client's models endpoint with the pools file's prices as overrides.
    """

    def __init__(
        self,
        client: FusionClient,
        settings: FusionSettings,
        *,
        catalog: ModelCatalog | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._settings = settings
        self.catalog = catalog or ModelCatalog(
            client.list_models, ttl_s=settings.client.catalog_ttl_s, overrides=settings.prices
        )
        self._rng = rng or random.Random()
        self._clock = clock
        self._catalog_task: asyncio.Future[None] | None = None

    async def query(self, request: FusionRequest) -> FusionResult:
        """Run one request to completion, deadline or failure; never raises FusionError."""
        start = self._clock()
        try:
            pool = self._settings.pool(request.pool).with_overrides(
                mode=request.mode,
                members=request.models,
                judge=request.judge_model,
                request_timeout_s=request.timeout_s,
                max_cost_usd=request.max_cost_usd,
            )
        except PoolConfigError as exc:
            return FusionResult(success=False, error=str(exc), total_latency_s=self._clock() - start)
        run = _Run(pool, request, {m: _Member(m) for m in pool.members})
        if not request.query.strip():
            run.error = "empty query"
            return run.result(self._clock() - start)
        try:
            await asyncio.wait_for(self._execute(run), pool.request_timeout_s)
        except asyncio.TimeoutError:
            run.error = f"request deadline of {pool.request_timeout_s:g} s exceeded during the {run.stage} stage"
            for member in run.members.values():
                if not member.ok and member.error == "in flight":
                    member.error = f"{member.model}: cancelled: request deadline exceeded"
        except CostCapExceededError as exc:
            run.error = str(exc)
        except _AllMembersFailed as exc:
            run.error = str(exc)
        result = run.result(self._clock() - start)
        _log.info(
            "fusion %s pool=%s success=%s degraded=%s failed=%s cost=$%.5f latency=%.2fs",
            pool.mode.value, pool.name, result.success, result.degraded,
            list(result.failed_models), result.total_cost_usd, result.total_latency_s,
        )
        return result

    async def _refresh_prices(self, pool: PoolConfig) -> None:
        """Give a stale price list at most min(5 s, a quarter of the deadline) to arrive.

        A slower fetch goes on in the background (the next request gets its prices) and this one
        is estimated with the prices known so far, so a slow models endpoint never costs a query
        its deadline.
        """
        task = self._catalog_task
        if task is None or task.done() or task.get_loop() is not asyncio.get_running_loop():
            task = self._catalog_task = asyncio.ensure_future(self.catalog.refresh_if_stale())
        wait = min(_PRICE_WAIT_S, 0.25 * pool.request_timeout_s)
        try:
            await asyncio.wait_for(asyncio.shield(task), wait)
        except asyncio.TimeoutError:
            _log.warning("model price list still loading after %.1f s; estimating with the prices known so far", wait)

    # -- stages ----------------------------------------------------------------------
    async def _execute(self, run: _Run) -> None:
        pool, request = run.pool, run.request
        run.stage = "cost estimate"
        await self._refresh_prices(pool)
        messages = member_messages(request.query, system_prompt=pool.system_prompt, scene=request.scene)
        estimate = estimate_request_cost(
            pool, estimate_tokens(messages), self.catalog.price, with_concepts=request.publish_prompts
        )
        if pool.max_cost_usd and estimate.total_usd > pool.max_cost_usd:
            raise CostCapExceededError(
                f"estimated cost ${estimate.total_usd:.6f} of {estimate.calls} calls exceeds the cap "
                f"${pool.max_cost_usd:.6f}; nothing was sent",
                estimate_usd=estimate.total_usd,
                cap_usd=pool.max_cost_usd,
            )
        run.dispatched = True
        concepts = asyncio.ensure_future(self._concepts(run)) if request.publish_prompts else None
        try:
            if pool.mode is FusionMode.SERVER:
                await self._server(run, messages)
            else:
                await self._members(run, messages)
                if pool.mode is FusionMode.DEBATE:
                    await self._debate(run, messages)
                await self._decide(run, messages)
            if concepts is not None:
                run.stage = "concepts"
                run.concepts = await concepts
        finally:
            if concepts is not None and not concepts.done():
                concepts.cancel()
                await asyncio.gather(concepts, return_exceptions=True)
            if run.detached:  # stragglers cut by the quorum finish closing their connections
                await asyncio.gather(*run.detached, return_exceptions=True)

    async def _call(
        self,
        run: _Run,
        model: str,
        messages: Sequence[Message],
        *,
        role: str,
        max_tokens: int,
        temperature: float,
        timeout_s: float | None = None,
        **kw: Any,
    ) -> Completion:
        """One client call with accounting; raises the client's FusionError."""
        started = self._clock()
        try:
            completion = await self._client.complete(
                model,
                messages,
                max_tokens=max_tokens,
                temperature=temperature,
                timeout_s=timeout_s or run.pool.timeout_s,
                accept_reasoning=run.pool.accept_reasoning,
                **kw,
            )
        except FusionError as exc:
            run.records.append(CallRecord(model, role, False, self._clock() - started, error=str(exc)))
            raise
        cost = actual_cost(completion, self.catalog.price(model))
        run.records.append(
            CallRecord(
                model, role, True, completion.latency_s, completion.prompt_tokens,
                completion.completion_tokens, cost,
            )
        )
        return completion

    def _account(self, member: _Member, completion: Completion, latency_s: float) -> None:
        member.latency_s += latency_s
        member.prompt_tokens += completion.prompt_tokens
        member.completion_tokens += completion.completion_tokens
        member.cost_usd += actual_cost(completion, self.catalog.price(member.model))

    def _quorum(self, run: _Run, n: int) -> dict[str, Any]:
        return {"quorum_k": min(run.pool.quorum_k, n), "quorum_deadline_s": run.pool.quorum_deadline_s,
                "detached": run.detached}

    async def _members(self, run: _Run, messages: Sequence[Message]) -> None:
        run.stage = "members"
        pool = run.pool
        for member in run.members.values():
            member.error = "in flight"

        def done(outcome: Outcome) -> None:
            member = run.members[outcome.model]
            if outcome.completion is not None:
                member.ok, member.text, member.error = True, outcome.completion.text, ""
                self._account(member, outcome.completion, outcome.latency_s)
            else:
                member.error, member.latency_s = outcome.error, outcome.latency_s

        calls = {
            m: (lambda m=m: self._call(run, m, messages, role="member", max_tokens=pool.max_tokens,
                                        temperature=pool.temperature))
            for m in pool.members
        }
        await fan_out(calls, on_done=done, clock=self._clock, **self._quorum(run, len(calls)))
        if not run.ok_members():
            reasons = "; ".join(m.error for m in run.members.values())
            raise _AllMembersFailed(f"all {len(run.members)} members failed: {reasons}")

    async def _debate(self, run: _Run, messages: Sequence[Message]) -> None:
        pool, question = run.pool, str(messages[-1]["content"])
        for round_index in range(1, pool.debate_rounds + 1):
            survivors = run.ok_members()
            if len(survivors) < 2:
                run.rationale.append(f"Debate skipped from round {round_index}: fewer than 2 answers.")
                return
            run.stage = f"debate round {round_index}"
            snapshot = {m.model: m.text for m in survivors}
            calls = {}
            for member in survivors:
                others = [m for m in survivors if m is not member]
                self._rng.shuffle(others)
                labeled = [(LABELS[i], snapshot[o.model]) for i, o in enumerate(others)]
                prompt = debate_messages(question, snapshot[member.model], labeled,
                                         round_index=round_index, rounds=pool.debate_rounds)
                calls[member.model] = (
                    lambda m=member.model, p=prompt: self._call(
                        run, m, p, role=f"debate {round_index}", max_tokens=pool.max_tokens,
                        temperature=pool.temperature)
                )
            outcomes = await fan_out(calls, clock=self._clock, **self._quorum(run, len(calls)))
            for model, outcome in outcomes.items():
                member = run.members[model]
                if outcome.completion is not None:
                    member.text = outcome.completion.text
                    self._account(member, outcome.completion, outcome.latency_s)
                else:
                    member.latency_s += outcome.latency_s
                    run.degraded = True
                    run.rationale.append(
                        f"{model} kept its previous answer after debate round {round_index} failed ({outcome.error})."
                    )

    async def _decide(self, run: _Run, messages: Sequence[Message]) -> None:
        pool, survivors = run.pool, run.ok_members()
        if len(pool.members) == 1:
            self._choose(run, survivors[0], "Single-member pool: no judge.")
            return
        if len(survivors) == 1:
            run.degraded = True
            self._choose(run, survivors[0], f"Single surviving answer from {survivors[0].model}; judge not called.")
            return
        run.judge_model = pool.judge
        run.stage = "judge"
        question = str(messages[-1]["content"])
        if pool.mode is FusionMode.MERGE:
            await self._merge(run, question, survivors)
        else:
            await self._best_of(run, question, survivors)

    def _choose(self, run: _Run, member: _Member, rationale: str) -> None:
        member.selected = True
        run.answer = member.text
        run.rationale.insert(0, rationale)

    def _fallback(self, run: _Run, reason: str) -> None:
        run.degraded = True
        first = run.ok_members()[0]
        self._choose(
            run, first,
            f"Judge {run.pool.judge} failed ({reason}); fallback: answer of the highest-priority "
            f"surviving member {first.model}.",
        )

    async def _judge_pass(
        self, run: _Run, order: list[_Member], question: str, build: Callable[..., list[Message]], max_tokens: int
    ) -> tuple[str, dict[str, str]]:
        """One judge call over ``order``; returns its text and the label -> model map."""
        labeled = [(LABELS[i], m.text) for i, m in enumerate(order)]
        mapping = {LABELS[i]: m.model for i, m in enumerate(order)}
        completion = await self._call(
            run, run.pool.judge, build(question, labeled), role="judge",
            max_tokens=max_tokens, temperature=run.pool.judge_temperature,
        )
        return completion.text, mapping

    async def _best_of(self, run: _Run, question: str, survivors: list[_Member]) -> None:
        pool = run.pool
        order = survivors[:]
        self._rng.shuffle(order)
        orders = [order, order[::-1]][: pool.judge_passes]
        replies = await asyncio.gather(
            *(self._judge_pass(run, o, question, best_of_messages, pool.judge_max_tokens) for o in orders),
            return_exceptions=True,
        )
        scores: dict[str, list[float]] = {m.model: [] for m in survivors}
        votes = {m.model: 0 for m in survivors}
        notes, problems = [], []
        for index, reply in enumerate(replies, start=1):
            if isinstance(reply, FusionError):
                problems.append(f"pass {index}: {reply}")
                continue
            if isinstance(reply, BaseException):
                raise reply
            text, mapping = reply
            decision = parse_best_of(text, list(mapping))
            if decision is None:
                problems.append(f"pass {index}: unparseable judge reply {text[:120]!r}")
                continue
            for label, model in mapping.items():
                default = 10.0 if label == decision.best else 0.0
                scores[model].append(decision.scores.get(label, default) if decision.scores else default)
            votes[mapping[decision.best]] += 1
            legend = ", ".join(f"{label}={model}" for label, model in mapping.items())
            notes.append(_sentence(f"Pass {index} [{legend}] ({decision.method}): {decision.reason or 'no reason given'}"))
        if not notes:
            self._fallback(run, "; ".join(problems))
            return
        priority = {m.model: i for i, m in enumerate(survivors)}
        mean = {model: sum(s) / len(s) for model, s in scores.items() if s}
        winner = max(mean, key=lambda model: (mean[model], votes[model], -priority[model]))
        disagreed = len(notes) > 1 and max(votes.values()) < len(notes)
        summary = (
            f"Best-of by {pool.judge} over "
            + ("1 pass" if len(notes) == 1 else f"{len(notes)} passes (second in reversed order)")
            + ": chose "
            f"{winner} with mean score {mean[winner]:.1f}/10"
            + (" (passes disagreed; mean score, then votes, then pool priority decided)" if disagreed else "")
            + "."
        )
        if problems:
            run.degraded = True
            notes.append(_sentence("Failed " + "; ".join(problems)))
        run.rationale.extend(notes)
        self._choose(run, run.members[winner], summary)

    async def _merge(self, run: _Run, question: str, survivors: list[_Member]) -> None:
        order = survivors[:]
        self._rng.shuffle(order)
        try:
            text, mapping = await self._judge_pass(run, order, question, merge_messages, run.pool.judge_max_tokens)
        except FusionError as exc:
            self._fallback(run, str(exc))
            return
        decision = parse_merge(text, list(mapping))
        if decision is None:
            self._fallback(run, f"unusable merge reply {text[:120]!r}")
            return
        used = [mapping[label] for label in decision.used]
        for model in used:
            run.members[model].selected = True
        run.answer = decision.answer
        sources = ", ".join(used) if used else "no candidates named"
        run.rationale.insert(
            0, _sentence(f"Merged by {run.pool.judge} from {sources} ({decision.method}): "
                         f"{decision.rationale or 'no rationale given'}")
        )

    async def _server(self, run: _Run, messages: Sequence[Message]) -> None:
        pool = run.pool
        run.stage = "server-side fusion"
        run.judge_model = pool.server_model
        plugin: dict[str, Any] = {"id": "fusion", "analysis_models": list(pool.members)}
        if pool.judge:
            plugin["model"] = pool.judge
        run.members = {pool.server_model: _Member(pool.server_model, error="in flight")}
        member = run.members[pool.server_model]
        started = self._clock()
        try:
            completion = await self._call(
                run, pool.server_model, messages, role="server", max_tokens=pool.judge_max_tokens,
                temperature=pool.temperature, timeout_s=pool.request_timeout_s, extra={"plugins": [plugin]},
            )
        except FusionError as exc:
            member.error, member.latency_s = str(exc), self._clock() - started
            raise _AllMembersFailed(f"server-side fusion failed: {exc}") from None
        member.ok, member.text, member.error = True, completion.text, ""
        self._account(member, completion, completion.latency_s)
        self._choose(
            run, member,
            f"Server-side fusion by {pool.server_model} (panel: {', '.join(pool.members)}"
            + (f"; analyst: {pool.judge}" if pool.judge else "") + ").",
        )

    async def _concepts(self, run: _Run) -> tuple[str, ...]:
        pool, request = run.pool, run.request
        messages = concept_messages(request.query, scene=request.scene)
        calls = {
            m: (lambda m=m: self._call(run, m, messages, role="concepts", max_tokens=CONCEPT_MAX_TOKENS,
                                        temperature=0.0, response_format=CONCEPT_RESPONSE_FORMAT))
            for m in pool.members
        }
        outcomes = await fan_out(calls, clock=self._clock)
        proposals = [proposal_from(m, o.completion, o.error) for m, o in outcomes.items()]
        try:
            concepts = combine_proposals(proposals)
        except FusionError as exc:
            run.rationale.append(f"Concepts: none ({exc}).")
            return ()
        run.rationale.append(f"Concepts: {', '.join(concepts)}.")
        return concepts
