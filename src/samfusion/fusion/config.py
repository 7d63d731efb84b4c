"""Configuration of the fusion client and pools, and the pools-file (YAML) schema.

The same frozen objects are filled from ``config/fusion_pools.yaml`` (terminal, offline) and
from ROS parameters (the fusion node), so validation and defaults live here only. See
docs/fusion.md for the file format.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from samfusion.fusion.catalog import ModelPrice
from samfusion.fusion.errors import PoolConfigError
from samfusion.fusion.secrets import DEFAULT_KEY_ENV
from samfusion.io.yaml_file import load_yaml

__all__ = [
    "FusionMode",
    "ClientConfig",
    "PoolConfig",
    "FusionSettings",
    "DEFAULT_BASE_URL",
    "DEFAULT_SERVER_MODEL",
    "load_settings",
    "parse_settings",
]

DEFAULT_BASE_URL = "https://openrouter.ai/api/v1"
#: OpenRouter's server-side fusion alias: a panel of models plus an analyst, run by OpenRouter.
DEFAULT_SERVER_MODEL = "openrouter/fusion"


class FusionMode(str, enum.Enum):
    """How member answers become one answer."""

    BEST_OF = "best_of"  # the judge picks one candidate (two passes, reversed order)
    MERGE = "merge"  # the judge writes one answer from the candidates and names those used
    DEBATE = "debate"  # members revise after seeing each other's answers, then best-of
    SERVER = "server"  # one call to OpenRouter's server-side fusion model

    @classmethod
    def parse(cls, value: str | FusionMode) -> FusionMode:
        if isinstance(value, FusionMode):
            return value
        text = value.strip().lower().replace("-", "_")
        try:
            return cls(text)
        except ValueError:
            names = ", ".join(m.value for m in cls)
            raise PoolConfigError(f"unknown fusion mode {value!r} (expected one of {names})") from None


@dataclass(frozen=True)
class ClientConfig:
    """HTTP client settings shared by every pool."""

    base_url: str = DEFAULT_BASE_URL
    api_key_env: str = DEFAULT_KEY_ENV
    api_key_file: str = ""
    referer: str = ""  # optional HTTP-Referer attribution header
    title: str = ""  # optional X-Title attribution header
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 30.0  # longest silence between two bytes of a reply
    write_timeout_s: float = 10.0
    pool_timeout_s: float = 5.0
    max_connections: int = 64
    max_retries: int = 2
    backoff_base_s: float = 0.5
    backoff_max_s: float = 8.0
    retry_after_cap_s: float = 10.0
    stream: bool = True
    http_library: str = "httpx"  # "httpx", "httpx2" or "auto" (httpx2 when installed)
    catalog_ttl_s: float = 3600.0
    breaker_failures: int = 3
    breaker_cooldown_s: float = 30.0

    def __post_init__(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise PoolConfigError(f"client.base_url must be an http(s) URL, got {self.base_url!r}")
        for name in ("connect_timeout_s", "read_timeout_s", "write_timeout_s", "pool_timeout_s"):
            _positive(f"client.{name}", getattr(self, name))
        _non_negative("client.max_retries", self.max_retries)
        _non_negative("client.backoff_base_s", self.backoff_base_s)
        _non_negative("client.retry_after_cap_s", self.retry_after_cap_s)
        _positive("client.max_connections", self.max_connections)
        _positive("client.breaker_failures", self.breaker_failures)
        _non_negative("client.breaker_cooldown_s", self.breaker_cooldown_s)
        if self.http_library not in ("auto", "httpx", "httpx2"):
            raise PoolConfigError(
                f"client.http_library must be auto, httpx or httpx2, got {self.http_library!r}"
            )


@dataclass(frozen=True)
class PoolConfig:
    """A named pool: members, judge and the limits of one fusion request."""

    name: str
    members: tuple[str, ...]
    judge: str = ""
    mode: FusionMode = FusionMode.BEST_OF
    timeout_s: float = 30.0  # per model call, retries included
    request_timeout_s: float = 90.0  # whole request
    max_tokens: int = 512
    judge_max_tokens: int = 1024
    temperature: float = 0.7
    judge_temperature: float = 0.0
    max_cost_usd: float = 0.0  # 0 = no cap
    quorum: int = 0  # k of N; 0 = wait for every member
    quorum_deadline_s: float = 0.0  # return once k answered and this much time has passed
    debate_rounds: int = 1
    judge_passes: int = 2  # best-of: 2 = second pass with reversed order
    accept_reasoning: bool = False
    server_model: str = DEFAULT_SERVER_MODEL
    system_prompt: str = ""

    def __post_init__(self) -> None:
        where = f"pools.{self.name}"
        object.__setattr__(self, "mode", FusionMode.parse(self.mode))
        object.__setattr__(self, "members", tuple(self.members))
        if not self.members:
            raise PoolConfigError(f"{where}.members is empty")
        if len(set(self.members)) != len(self.members):
            raise PoolConfigError(f"{where}.members lists a model twice: {list(self.members)}")
        for model in self.members:
            if not isinstance(model, str) or not model.strip():
                raise PoolConfigError(f"{where}.members has an empty model id")
        _positive(f"{where}.timeout_s", self.timeout_s)
        _positive(f"{where}.request_timeout_s", self.request_timeout_s)
        _positive(f"{where}.max_tokens", self.max_tokens)
        _positive(f"{where}.judge_max_tokens", self.judge_max_tokens)
        if not 0.0 <= self.temperature <= 2.0 or not 0.0 <= self.judge_temperature <= 2.0:
            raise PoolConfigError(f"{where}: temperatures must lie in [0, 2]")
        _non_negative(f"{where}.max_cost_usd", self.max_cost_usd)
        if not 0 <= self.quorum <= len(self.members):
            raise PoolConfigError(
                f"{where}.quorum must lie in [0, {len(self.members)}], got {self.quorum}"
            )
        _non_negative(f"{where}.quorum_deadline_s", self.quorum_deadline_s)
        if not 0 <= self.debate_rounds <= 5:
            raise PoolConfigError(f"{where}.debate_rounds must lie in [0, 5]")
        if self.judge_passes not in (1, 2):
            raise PoolConfigError(f"{where}.judge_passes must be 1 or 2")
        if self.mode is not FusionMode.SERVER and len(self.members) > 1 and not self.judge:
            raise PoolConfigError(f"{where}.judge is required for a pool of several members")

    @property
    def quorum_k(self) -> int:
        """Members needed for an early return (all of them when quorum is 0)."""
        return self.quorum or len(self.members)

    def with_overrides(
        self,
        *,
        mode: str | FusionMode | None = None,
        members: tuple[str, ...] | list[str] | None = None,
        judge: str | None = None,
        request_timeout_s: float | None = None,
        max_cost_usd: float | None = None,
    ) -> PoolConfig:
        """A copy with per-request overrides; empty / zero / None values keep the pool's."""
        changes: dict[str, Any] = {}
        if mode:
            changes["mode"] = FusionMode.parse(mode)
        if members:
            changes["members"] = tuple(members)
            if self.quorum > len(members):
                changes["quorum"] = len(members)
        if judge:
            changes["judge"] = judge
        if request_timeout_s:
            changes["request_timeout_s"] = float(request_timeout_s)
        if max_cost_usd:
            changes["max_cost_usd"] = float(max_cost_usd)
        return replace(self, **changes) if changes else self


@dataclass(frozen=True)
class FusionSettings:
    """Everything in a pools file."""

    client: ClientConfig = field(default_factory=ClientConfig)
    pools: Mapping[str, PoolConfig] = field(default_factory=dict)
    default_pool: str = ""
    prices: Mapping[str, ModelPrice] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.default_pool and self.default_pool not in self.pools:
            raise PoolConfigError(f"default_pool {self.default_pool!r} is not a defined pool")

    def pool(self, name: str = "") -> PoolConfig:
        """The named pool, or the default pool when ``name`` is empty."""
        key = name or self.default_pool or (next(iter(self.pools)) if len(self.pools) == 1 else "")
        if not key:
            raise PoolConfigError("no pool named and no default_pool configured")
        try:
            return self.pools[key]
        except KeyError:
            known = ", ".join(sorted(self.pools)) or "none"
            raise PoolConfigError(f"unknown pool {key!r} (defined: {known})") from None


def _positive(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise PoolConfigError(f"{name} must be a positive number, got {value!r}")


def _non_negative(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
        raise PoolConfigError(f"{name} must be a non-negative number, got {value!r}")


def _typed_fields(cls: type, raw: Mapping[str, Any], where: str, skip: set[str]) -> dict[str, Any]:
    """Map YAML keys onto dataclass fields, checking names and basic types."""
    known = {f.name: f for f in fields(cls) if f.name not in skip}
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise PoolConfigError(f"{where}: unknown key(s) {unknown} (known: {sorted(known)})")
    out: dict[str, Any] = {}
    for key, value in raw.items():
        default = known[key].default
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, (int, float)):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            if ok and isinstance(default, int) and not isinstance(default, bool):
                ok = float(value).is_integer()
                value = int(value)
            elif ok:
                value = float(value)
        elif isinstance(default, str):
            ok = isinstance(value, str)
        else:
            ok = True
        if not ok:
            raise PoolConfigError(f"{where}.{key}: expected {type(default).__name__}, got {value!r}")
        out[key] = value
    return out


def parse_settings(raw: Mapping[str, Any] | None) -> FusionSettings:
    """Validate a parsed pools file (see docs/fusion.md) into :class:`FusionSettings`."""
    raw = raw or {}
    if not isinstance(raw, Mapping):
        raise PoolConfigError("pools file must be a mapping at the top level")
    unknown = sorted(set(raw) - {"client", "pools", "default_pool", "prices"})
    if unknown:
        raise PoolConfigError(f"pools file: unknown top-level key(s) {unknown}")
    client = ClientConfig(**_typed_fields(ClientConfig, raw.get("client") or {}, "client", set()))
    pools: dict[str, PoolConfig] = {}
    raw_pools = raw.get("pools") or {}
    if not isinstance(raw_pools, Mapping):
        raise PoolConfigError("pools must be a mapping of pool name to pool")
    for name, body in raw_pools.items():
        where = f"pools.{name}"
        if not isinstance(body, Mapping):
            raise PoolConfigError(f"{where} must be a mapping")
        if "name" in body:
            raise PoolConfigError(f"{where}: 'name' is the pool's key, not a field")
        plain = {k: v for k, v in body.items() if k not in ("members", "mode")}
        values = _typed_fields(PoolConfig, plain, where, {"name", "members", "mode"})
        members = body.get("members")
        if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
            raise PoolConfigError(f"{where}.members must be a list of model ids")
        values["members"] = tuple(m.strip() for m in members)
        if "mode" in body:
            values["mode"] = FusionMode.parse(str(body["mode"]))
        pools[str(name)] = PoolConfig(name=str(name), **values)
    prices: dict[str, ModelPrice] = {}
    for model, entry in (raw.get("prices") or {}).items():
        if not isinstance(entry, Mapping) or set(entry) - {"prompt", "completion"}:
            raise PoolConfigError(f"prices.{model} must map 'prompt'/'completion' to USD per 1M")
        try:
            prices[str(model)] = ModelPrice.per_million(
                float(entry.get("prompt", 0.0)), float(entry.get("completion", 0.0))
            )
        except (TypeError, ValueError):
            raise PoolConfigError(f"prices.{model}: prices must be numbers") from None
    return FusionSettings(
        client=client, pools=pools, default_pool=str(raw.get("default_pool") or ""), prices=prices
    )


def load_settings(path: str | Path) -> FusionSettings:
    """Read and validate a pools YAML file."""
    path = Path(path)
    raw = load_yaml(path, "pools file", PoolConfigError)
    try:
        return parse_settings(raw)
    except PoolConfigError as exc:
        raise PoolConfigError(f"{path}: {exc}") from None
