"""Fixtures of the fusion tests: a local scripted OpenRouter server and client factories."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fake_openrouter import FakeOpenRouter  # noqa: E402

from samfusion.fusion.config import ClientConfig  # noqa: E402

TEST_KEY = "sk-or-v1-test0123456789abcdefSECRET"


@pytest.fixture()
def fake() -> Iterator[FakeOpenRouter]:
    server = FakeOpenRouter(max_stall_s=5.0).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture()
def client_config(fake: FakeOpenRouter) -> ClientConfig:
    """Fast settings for tests: short backoff, short timeouts."""
    return ClientConfig(
        base_url=fake.base_url,
        referer="https://example.org/samfusion",
        title="SAM Fusion tests",
        connect_timeout_s=2.0,
        read_timeout_s=2.0,
        max_retries=2,
        backoff_base_s=0.01,
        backoff_max_s=0.05,
        retry_after_cap_s=0.2,
        breaker_failures=3,
        breaker_cooldown_s=30.0,
    )


def with_changes(config: ClientConfig, **changes: object) -> ClientConfig:
    return replace(config, **changes)
