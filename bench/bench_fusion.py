#!/usr/bin/env python3
"""Benchmark: orchestration overhead of the fusion engine, sequential calls, and quorum.

A local OpenRouter-compatible server (test/fusion/fake_openrouter.py, in a subprocess so its
work does not share the client's interpreter) answers a 3-model pool with scripted latencies:
lognormal with medians 0.2 / 0.4 / 0.8 s and sigma 0.35, all scaled by --scale (default 0.5,
so the whole bench runs in about half a minute); the judge answers after a fixed 0.1 s * scale.
Replies are streamed (SSE, 3 content chunks, usage with cost).

Scenarios: "one at a time" (--rounds single queries, the engine's own overhead without
contention), then each of these with --concurrency queries in flight at once (default 20),
--rounds times:

  fused      best_of, 2 judge passes, wait for all members. Overhead per query =
             fused latency - slowest member call - judge stage (first judge start to last judge
             end): everything the engine adds on the critical path (dispatch, accounting,
             prompts, parsing, scheduling). Target: median <= 50 ms and <= 5 % of the fused time.
  sequential the same calls made one after another (members, then the two judge passes): what
             a naive loop over the pool costs.
  quorum     best_of with quorum 2 of 3 and a 0 s quorum deadline: return as soon as two
             members answered; p95 compared with the second-slowest member + judge.

Call durations are measured on the client side around FusionClient.complete. Prints a table and
appends it to bench/RESULTS.md under '## bench_fusion'.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as _dt
import math
import os
import platform
import random
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchlib import cpu_model
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "test" / "fusion"))

MEDIANS_S = {"bench/fast": 0.2, "bench/mid": 0.4, "bench/slow": 0.8}
JUDGE = "bench/judge"
JUDGE_S = 0.1
SIGMA = 0.35
ANSWERS = {"bench/fast": "The mug is left of the laptop.", "bench/mid": "Red mug, next to the laptop.",
           "bench/slow": "A red mug stands beside the laptop on the desk."}


# ---------------------------------------------------------------------------- server process
def serve(scale: float, seed: int, lifetime_s: float) -> None:
    """Run the scripted server until stdin closes (or lifetime_s passes); print its URL."""
    from fake_openrouter import FakeOpenRouter, Reply, judge_choosing

    rng = random.Random(seed)
    server = FakeOpenRouter(max_stall_s=30.0)

    def member(model: str) -> Any:
        median = MEDIANS_S[model] * scale

        def respond(body: dict[str, Any]) -> Reply:
            latency = rng.lognormvariate(math.log(median), SIGMA)
            return Reply(ANSWERS[model], latency_s=latency, prompt_tokens=60, completion_tokens=12, cost=2e-5)

        return respond

    for model in MEDIANS_S:
        server.script(model, member(model))
    server.script(JUDGE, judge_choosing("beside", latency_s=JUDGE_S * scale, cost=5e-5))
    with server:
        print(server.base_url, flush=True)
        done = threading.Event()
        threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
        done.wait(lifetime_s)


# ---------------------------------------------------------------------------- measurement
@dataclass
class Sample:
    fused_s: float
    ok_member_s: list[float]  # call durations of members that answered
    judge_stage_s: float
    ok: bool

    @property
    def critical_s(self) -> float:
        """Slowest answering member + judge stage: the time the calls themselves need."""
        return max(self.ok_member_s, default=0.0) + self.judge_stage_s

    @property
    def overhead_s(self) -> float:
        return self.fused_s - self.critical_s


@dataclass
class Recorder:
    """Call intervals per query id, captured around FusionClient.complete."""

    calls: dict[int, list[tuple[str, float, float]]] = field(default_factory=dict)


def make_client(base_url: str, recorder: Recorder, current: Any, library: str) -> Any:
    from samfusion.fusion.client import FusionClient
    from samfusion.fusion.config import ClientConfig

    class TimedClient(FusionClient):
        async def complete(self, model: str, messages: Any, **kw: Any) -> Any:  # type: ignore[override]
            start = time.perf_counter()
            try:
                return await super().complete(model, messages, **kw)
            finally:
                recorder.calls.setdefault(current.get(), []).append((model, start, time.perf_counter()))

    config = ClientConfig(base_url=base_url, max_connections=128, read_timeout_s=30.0, http_library=library)
    return TimedClient(config, api_key=None)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q
    lo, hi = math.floor(k), math.ceil(k)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


async def fused_round(engine: Any, recorder: Recorder, current: Any, ids: range, request: Any) -> list[Sample]:
    async def one(qid: int) -> Sample:
        current.set(qid)
        start = time.perf_counter()
        result = await engine.query(request)
        fused = time.perf_counter() - start
        calls = recorder.calls.get(qid, [])
        answered = {c.model for c in result.candidates if c.ok}
        members = [end - begin for model, begin, end in calls if model in answered]
        judges = [(begin, end) for model, begin, end in calls if model == JUDGE]
        judge_stage = (max(e for _, e in judges) - min(b for b, _ in judges)) if judges else 0.0
        return Sample(fused, sorted(members), judge_stage, result.success)

    return list(await asyncio.gather(*(one(i) for i in ids)))


async def sequential_round(client: Any, ids: range) -> list[float]:
    from samfusion.fusion.prompts import best_of_messages, member_messages

    async def one(_: int) -> float:
        start = time.perf_counter()
        messages = member_messages("Where is the red mug?")
        texts = []
        for model in MEDIANS_S:
            texts.append((await client.complete(model, messages, max_tokens=256, temperature=0.7, timeout_s=30)).text)
        labeled = [(chr(65 + i), t) for i, t in enumerate(texts)]
        for order in (labeled, labeled[::-1]):
            await client.complete(JUDGE, best_of_messages("Where is the red mug?", order), max_tokens=256,
                                  temperature=0.0, timeout_s=30)
        return time.perf_counter() - start

    return list(await asyncio.gather(*(one(i) for i in ids)))


async def run_bench(base_url: str, concurrency: int, rounds: int, library: str) -> dict[str, Any]:
    import contextvars

    from samfusion.fusion.config import ClientConfig, FusionSettings, PoolConfig
    from samfusion.fusion.engine import FusionEngine
    from samfusion.fusion.result import FusionRequest

    current: contextvars.ContextVar[int] = contextvars.ContextVar("query_id", default=-1)
    recorder = Recorder()
    members = tuple(MEDIANS_S)
    pools = {
        "all": PoolConfig(name="all", members=members, judge=JUDGE, max_tokens=256, timeout_s=30,
                          request_timeout_s=60),
        "quorum": PoolConfig(name="quorum", members=members, judge=JUDGE, max_tokens=256, timeout_s=30,
                             request_timeout_s=60, quorum=2, quorum_deadline_s=0.0),
    }
    settings = FusionSettings(client=ClientConfig(base_url=base_url), pools=pools, default_pool="all")
    out: dict[str, Any] = {"single": [], "fused": [], "sequential": [], "quorum": []}
    client = make_client(base_url, recorder, current, library)
    args_library = client.lib.__name__
    async with client:
        engine = FusionEngine(client, settings, rng=random.Random(1))
        # warm-up: connections, catalog fetch (empty), code paths
        await fused_round(engine, recorder, current, range(-concurrency, 0), FusionRequest("warm up"))
        cpu: dict[str, float] = {"single": 0.0, "fused": 0.0, "sequential": 0.0, "quorum": 0.0}
        qid = 0
        for _ in range(rounds):  # one query at a time: the engine's own overhead, no contention
            c0 = time.process_time()
            out["single"] += await fused_round(engine, recorder, current, range(qid, qid + 1),
                                               FusionRequest("Where is the red mug?"))
            cpu["single"] += time.process_time() - c0
            qid += 1
        for _ in range(rounds):
            ids = range(qid, qid + concurrency)
            qid += concurrency
            c0 = time.process_time()
            out["fused"] += await fused_round(engine, recorder, current, ids, FusionRequest("Where is the red mug?"))
            c1 = time.process_time()
            out["sequential"] += await sequential_round(client, ids)
            c2 = time.process_time()
            ids = range(qid, qid + concurrency)
            qid += concurrency
            out["quorum"] += await fused_round(engine, recorder, current, ids,
                                               FusionRequest("Where is the red mug?", pool="quorum"))
            c3 = time.process_time()
            cpu["fused"] += c1 - c0
            cpu["sequential"] += c2 - c1
            cpu["quorum"] += c3 - c2
        out["cpu_ms_per_query"] = {k: 1000.0 * v / max(1, len(out[k])) for k, v in cpu.items()}
    out["library"] = args_library
    return out


# ---------------------------------------------------------------------------- report


def report(data: dict[str, Any], args: argparse.Namespace, wall_s: float) -> str:
    import httpx

    single: list[Sample] = data["single"]
    fused: list[Sample] = data["fused"]
    quorum: list[Sample] = data["quorum"]
    seq: list[float] = data["sequential"]
    ms = 1000.0
    f_total = [s.fused_s for s in fused]
    f_slowest = [max(s.ok_member_s) for s in fused]
    f_judge = [s.judge_stage_s for s in fused]
    f_over = [s.overhead_s for s in fused]
    f_pct = [100.0 * s.overhead_s / s.fused_s for s in fused]
    q_total = [s.fused_s for s in quorum]
    q_second = [s.critical_s for s in quorum]  # the slowest answering member is the 2nd-slowest
    q_over = [s.overhead_s for s in quorum]
    rows = [
        ("fused best_of, one query at a time", [x.fused_s for x in single]),
        ("  orchestration overhead", [x.overhead_s for x in single]),
        (f"fused best_of (wait for all 3), {args.concurrency} concurrent", f_total),
        ("  slowest member call", f_slowest),
        ("  judge stage (2 passes, concurrent)", f_judge),
        ("  orchestration overhead", f_over),
        (f"sequential calls (3 members + 2 judge passes), {args.concurrency} concurrent", seq),
        (f"quorum 2/3, deadline 0 s, {args.concurrency} concurrent", q_total),
        ("  second-slowest member + judge stage", q_second),
        ("  orchestration overhead (quorum)", q_over),
    ]
    med_over, med_pct = statistics.median(f_over) * ms, statistics.median(f_pct)
    verdict = "met" if med_over <= 50.0 and med_pct <= 5.0 else "NOT met"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines = [
        "## bench_fusion",
        "",
        f"- date: {_dt.datetime.now():%Y-%m-%d %H:%M}",
        f"- CPU: {cpu_model()}, {os.cpu_count()} cores; load average at start: {args.load_at_start:.2f}, at end: {load:.2f}",
        f"- Python {platform.python_version()}, httpx {httpx.__version__}; server in a subprocess on 127.0.0.1",
        f"- member latency lognormal, medians {', '.join(f'{m * args.scale * ms:.0f}' for m in MEDIANS_S.values())} ms "
        f"(0.2/0.4/0.8 s x scale {args.scale:g}), sigma {SIGMA}; judge {JUDGE_S * args.scale * ms:.0f} ms; streamed replies",
        f"- {args.concurrency} concurrent queries x {args.rounds} rounds per concurrent scenario "
        f"({len(f_total)} queries each; 'one at a time': {len(single)} queries); all fused queries succeeded: "
        f"{all(s.ok for s in single + fused + quorum)}; HTTP library {args.http_library}; "
        f"bench wall time {wall_s:.1f} s",
        "",
        "| scenario | median ms | p95 ms | max ms |",
        "|---|---:|---:|---:|",
    ]
    for name, values in rows:
        lines.append(f"| {name} | {statistics.median(values) * ms:.1f} | {percentile(values, 0.95) * ms:.1f} | "
                     f"{max(values) * ms:.1f} |")
    cpu = data["cpu_ms_per_query"]
    lines += [
        "",
        "Client CPU per query (whole client process, 5 HTTP calls each): "
        + ", ".join(f"{name} {cpu[name]:.1f} ms" for name in ("single", "fused", "sequential", "quorum"))
        + ".",
        "",
        f"Overhead at the median ({args.concurrency} concurrent): {med_over:.1f} ms = {med_pct:.2f} % of the fused latency "
        f"(target <= 50 ms and <= 5 %: {verdict}). "
        f"Fused vs sequential (median): {statistics.median(seq) / statistics.median(f_total):.2f}x faster. "
        f"Quorum p95 {percentile(q_total, 0.95) * ms:.0f} ms vs waiting for all p95 "
        f"{percentile(f_total, 0.95) * ms:.0f} ms; quorum p95 minus (second-slowest + judge) p95: "
        f"{(percentile(q_total, 0.95) - percentile(q_second, 0.95)) * ms:.1f} ms.",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=0.5, help="latency scale (1.0 = 0.2/0.4/0.8 s medians)")
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--http-library", default="auto", choices=("auto", "httpx", "httpx2"),
                        help="client.http_library of the fusion client")
    parser.add_argument("--no-record", action="store_true", help="do not append to bench/RESULTS.md")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.scale, args.seed, lifetime_s=600.0)
        return 0
    args.load_at_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", "--scale", str(args.scale), "--seed", str(args.seed)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert server.stdout is not None
        base_url = server.stdout.readline().strip()
        if not base_url.startswith("http://127.0.0.1:"):
            raise SystemExit(f"bench server did not start (got {base_url!r})")
        started = time.perf_counter()
        data = asyncio.run(run_bench(base_url, args.concurrency, args.rounds, args.http_library))
        args.http_library = data["library"]
        text = report(data, args, time.perf_counter() - started)
    finally:
        if server.stdin is not None:
            server.stdin.close()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
    print(text)
    if not args.no_record:
        results = REPO / "bench" / "RESULTS.md"
        with results.open("a", encoding="utf-8") as fh:
            fh.write("\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
