"""``samfusion query``: ask a fusion pool from the terminal.

    samfusion query "Where is the red mug?" --pool balanced --mode merge [--pools FILE]
                    [--base-url URL] [--models a,b] [--judge M] [--timeout S] [--max-cost USD]
                    [--concepts] [--json]

Prints the answer, a per-model table (model, ok, latency, tokens, cost) and totals, or with
``--json`` the whole result as one JSON object.

Exit codes: 0 answered (also when degraded: a note says so), 1 the request failed (all
members failed, deadline, cost cap, ...; the reason is printed), 2 usage or configuration
error (pools file, unknown pool or mode, missing API key).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, TextIO

from samfusion.errors import SamFusionError
from samfusion.fusion.client import FusionClient
from samfusion.fusion.config import FusionMode, FusionSettings, load_settings
from samfusion.fusion.engine import FusionEngine
from samfusion.fusion.result import FusionRequest, FusionResult
from samfusion.fusion.secrets import ApiKey, RedactingFilter, load_api_key

__all__ = [
    "add_query_parser",
    "run_query",
    "format_result",
    "find_pools_file",
    "POOLS_ENV",
    "EXIT_OK",
    "EXIT_FAILED",
    "EXIT_USAGE",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
POOLS_ENV = "SAMFUSION_POOLS"


def add_query_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``query`` sub-command to an argparse ``subparsers`` object."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "query",
        help="ask a pool of LLMs and fuse their answers",
        description="Ask a fusion pool a question. Exit codes: 0 answered (possibly degraded), "
        "1 request failed, 2 usage or configuration error.",
    )
    p.add_argument("text", help="the question or task")
    p.add_argument("--pool", default="", help="pool name (default: the file's default_pool)")
    p.add_argument("--mode", choices=[m.value for m in FusionMode], help="fusion mode (default: the pool's)")
    p.add_argument("--pools", default="", help=f"pools YAML file (default: ${POOLS_ENV} or config/fusion_pools.yaml)")
    p.add_argument("--base-url", default="", help="OpenAI-compatible base URL (default: the file's)")
    p.add_argument("--models", default="", help="comma-separated member model ids instead of the pool's")
    p.add_argument("--judge", default="", help="judge model id instead of the pool's")
    p.add_argument("--timeout", type=float, default=0.0, help="request deadline in seconds")
    p.add_argument("--max-cost", type=float, default=0.0, help="refuse when the estimate exceeds this (USD)")
    p.add_argument("--api-key-file", default="", help="file holding the API key (default: the file's, or the env var)")
    p.add_argument("--concepts", action="store_true", help="also extract text concepts for segmentation")
    p.add_argument("--json", action="store_true", help="print the whole result as JSON")
    p.add_argument("-v", "--verbose", action="store_true", help="log retries and stages to stderr")
    p.set_defaults(func=run_query)
    return p


def find_pools_file(explicit: str = "") -> Path | None:
    """The pools file: explicit path, $SAMFUSION_POOLS, ./config, an installed
    share/sam_fusion/config (on $AMENT_PREFIX_PATH), or the source checkout's."""
    installed = [str(Path(prefix) / "share" / "sam_fusion" / "config" / "fusion_pools.yaml")
                 for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if prefix]
    candidates = [explicit] if explicit else [
        os.environ.get(POOLS_ENV, ""),
        "config/fusion_pools.yaml",
        *installed,
        str(Path(__file__).resolve().parents[3] / "config" / "fusion_pools.yaml"),
    ]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return Path(explicit) if explicit else None


def _fmt_row(cells: list[str], widths: list[int]) -> str:
    return "  ".join(c.ljust(w) if i in (0, 1, 6) else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()


def format_result(result: FusionResult) -> str:
    """Human-readable answer, per-model table and totals."""
    lines = [result.answer if result.success else f"error: {result.error}", ""]
    header = ["model", "ok", "latency_s", "prompt", "completion", "cost_usd", "note"]
    rows = [header]
    for c in result.candidates:
        note = "selected" if c.selected else (c.error[:70] if not c.ok else "")
        rows.append([c.model, "yes" if c.ok else "no", f"{c.latency_s:.2f}", str(c.prompt_tokens),
                     str(c.completion_tokens), f"{c.cost_usd:.6f}", note])
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines += [_fmt_row(r, widths) for r in rows]
    lines.append("")
    if result.judge_model:
        lines.append(f"judge: {result.judge_model}")
    if result.judge_rationale:
        lines.append(f"rationale: {result.judge_rationale}")
    if result.published_concepts:
        lines.append(f"concepts: {', '.join(result.published_concepts)}")
    if result.degraded:
        failed = ", ".join(result.failed_models) or "none"
        lines.append(f"degraded: yes (failed members: {failed})")
    lines.append(
        f"totals: latency {result.total_latency_s:.2f} s, tokens {result.total_prompt_tokens} prompt / "
        f"{result.total_completion_tokens} completion, cost ${result.total_cost_usd:.6f}"
    )
    return "\n".join(lines)


def _settings(args: argparse.Namespace) -> FusionSettings:
    path = find_pools_file(args.pools)
    if path is None:
        raise SamFusionError(f"no pools file: pass --pools, set ${POOLS_ENV}, or run from the repository root")
    settings = load_settings(path)
    client = settings.client
    if args.base_url:
        client = replace(client, base_url=args.base_url)
    if args.api_key_file:
        client = replace(client, api_key_file=args.api_key_file)
    return replace(settings, client=client)


async def _query(settings: FusionSettings, request: FusionRequest, key: ApiKey | None) -> FusionResult:
    async with FusionClient(settings.client, api_key=key) as client:
        return await FusionEngine(client, settings).query(request)


def run_query(args: argparse.Namespace, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run the ``query`` sub-command; returns the exit code."""
    out = out or sys.stdout
    err = err or sys.stderr
    logger = logging.getLogger("samfusion")
    handler: logging.Handler | None = None
    try:
        settings = _settings(args)
        settings.pool(args.pool)  # fail early, naming the defined pools
        if not args.text.strip():
            raise SamFusionError("the question is empty")
        key = load_api_key(
            env_var=settings.client.api_key_env,
            key_file=settings.client.api_key_file or None,
            required="openrouter.ai" in settings.client.base_url,
        )
        request = FusionRequest(
            query=args.text,
            mode=args.mode,
            pool=args.pool,
            models=tuple(m.strip() for m in args.models.split(",") if m.strip()),
            judge_model=args.judge,
            timeout_s=args.timeout,
            max_cost_usd=args.max_cost,
            publish_prompts=args.concepts,
        )
        if getattr(args, "verbose", False):
            handler = logging.StreamHandler(err)
            handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
            handler.addFilter(RedactingFilter(key))
            logger.addHandler(handler)
            logger.setLevel(logging.INFO)
        result = asyncio.run(_query(settings, request, key))
    except SamFusionError as exc:
        print(f"samfusion query: {exc}", file=err)
        return EXIT_USAGE
    finally:
        if handler is not None:
            logger.removeHandler(handler)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2), file=out)
    else:
        print(format_result(result), file=out)
    return EXIT_OK if result.success else EXIT_FAILED
