"""`samfusion query` through add_query_parser / run_query against the local server."""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import pytest
import yaml
from conftest import TEST_KEY
from fake_openrouter import FakeOpenRouter, HttpError, Reply, judge_choosing

from samfusion.fusion.result import FusionResult
from samfusion.fusion.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, add_query_parser, format_result, run_query


def pools_file(tmp_path: Path, base_url: str, **pool: object) -> Path:
    data = {
        "client": {"base_url": base_url, "max_retries": 0, "api_key_env": "SAMFUSION_TEST_KEY"},
        "default_pool": "p",
        "pools": {"p": {"members": ["m/a", "m/b"], "judge": "m/j", "timeout_s": 3.0, **pool}},
    }
    path = tmp_path / "pools.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def invoke(argv: list[str]) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="samfusion")
    add_query_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    out, err = io.StringIO(), io.StringIO()
    code = args.func(args, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAMFUSION_TEST_KEY", TEST_KEY)


def test_query_prints_answer_table_and_totals(fake: FakeOpenRouter, tmp_path: Path) -> None:
    fake.script("m/a", Reply("red mug on the left", prompt_tokens=30, completion_tokens=8, cost=0.0012))
    fake.script("m/b", HttpError(503, message="b is down"))
    path = pools_file(tmp_path, fake.base_url)
    code, out, err = invoke(["query", "Where is the mug?", "--pools", str(path), "--mode", "merge"])
    assert code == EXIT_OK and err == ""
    lines = out.splitlines()
    assert lines[0] == "red mug on the left"
    assert lines[2].split() == ["model", "ok", "latency_s", "prompt", "completion", "cost_usd", "note"]
    assert lines[3].split()[:2] == ["m/a", "yes"] and lines[3].split()[3:7] == ["30", "8", "0.001200", "selected"]
    assert lines[4].split()[:2] == ["m/b", "no"] and "HTTP 503" in lines[4]
    assert "degraded: yes (failed members: m/b)" in out
    assert "tokens 30 prompt / 8 completion, cost $0.001200" in out
    assert fake.calls_for("m/a")[0].headers["authorization"] == f"Bearer {TEST_KEY}"


def test_query_json_and_overrides(fake: FakeOpenRouter, tmp_path: Path) -> None:
    fake.script("m/x", Reply("x says 42"))
    fake.script("m/y", Reply("y says 7"))
    fake.script("m/k", judge_choosing("42"))
    path = pools_file(tmp_path, "http://127.0.0.1:9/unused")
    code, out, _ = invoke(["query", "q", "--pools", str(path), "--base-url", fake.base_url,
                           "--models", "m/x, m/y", "--judge", "m/k", "--json"])
    assert code == EXIT_OK
    data = json.loads(out)
    assert data["answer"] == "x says 42" and data["judge_model"] == "m/k"
    assert [c["model"] for c in data["candidates"]] == ["m/x", "m/y"]
    assert [c["selected"] for c in data["candidates"]] == [True, False]
    assert TEST_KEY not in out


def test_query_failure_and_usage_exit_codes(fake: FakeOpenRouter, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake.script("m/a", HttpError(401))
    fake.script("m/b", HttpError(401))
    path = pools_file(tmp_path, fake.base_url)
    code, out, _ = invoke(["query", "q", "--pools", str(path)])
    assert code == EXIT_FAILED and out.startswith("error: all 2 members failed: m/a: HTTP 401")
    code, _, err = invoke(["query", "q", "--pools", str(path), "--pool", "nope"])
    assert code == EXIT_USAGE and err == "samfusion query: unknown pool 'nope' (defined: p)\n"
    code, _, err = invoke(["query", "q", "--pools", str(tmp_path / "missing.yaml")])
    assert code == EXIT_USAGE and "cannot read pools file" in err
    openrouter = pools_file(tmp_path, "https://openrouter.ai/api/v1")
    monkeypatch.delenv("SAMFUSION_TEST_KEY")
    code, _, err = invoke(["query", "q", "--pools", str(openrouter)])
    assert code == EXIT_USAGE and "environment variable SAMFUSION_TEST_KEY is unset" in err
    code, _, err = invoke(["query", "  ", "--pools", str(path)])
    assert code == EXIT_USAGE and "empty" in err


def test_key_file_option_and_local_server_without_key(fake: FakeOpenRouter, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake.script("m/a", Reply("a"))
    fake.script("m/b", Reply("b"))
    fake.script("m/j", Reply('{"best": "A"}'))
    path = pools_file(tmp_path, fake.base_url, judge_passes=1)
    monkeypatch.delenv("SAMFUSION_TEST_KEY")
    code, _, _ = invoke(["query", "q", "--pools", str(path)])
    assert code == EXIT_OK and "authorization" not in fake.calls[0].headers  # local server, no key
    keyfile = tmp_path / "key"
    keyfile.write_text("sk-or-v1-fromfile0123456789\n")
    code, _, _ = invoke(["query", "q", "--pools", str(path), "--api-key-file", str(keyfile)])
    assert code == EXIT_OK and fake.calls[-1].headers["authorization"] == "Bearer sk-or-v1-fromfile0123456789"


def test_run_query_is_the_parser_default() -> None:
    parser = argparse.ArgumentParser()
    add_query_parser(parser.add_subparsers())
    assert parser.parse_args(["query", "x"]).func is run_query
    text = format_result(FusionResult(success=False, error="no members answered"))
    assert text.splitlines()[0] == "error: no members answered" and "totals: latency 0.00 s" in text


def test_pools_file_search_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from samfusion.fusion.cli import POOLS_ENV, find_pools_file

    installed = tmp_path / "install" / "share" / "sam_fusion" / "config" / "fusion_pools.yaml"
    installed.parent.mkdir(parents=True)
    installed.write_text("pools: {}\n")
    monkeypatch.chdir(tmp_path)  # no ./config here
    monkeypatch.delenv(POOLS_ENV, raising=False)
    monkeypatch.setenv("AMENT_PREFIX_PATH", f"/nonexistent:{tmp_path / 'install'}")
    assert find_pools_file() == installed  # a colcon / apt install's share/sam_fusion/config
    chosen = tmp_path / "mine.yaml"
    chosen.write_text("pools: {}\n")
    monkeypatch.setenv(POOLS_ENV, str(chosen))
    assert find_pools_file() == chosen
    assert find_pools_file(str(tmp_path / "explicit.yaml")) == tmp_path / "explicit.yaml"  # reported as missing later
