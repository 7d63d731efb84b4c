"""The fusion node over real DDS, talking real HTTP to the local OpenRouter-compatible server.

The node runs as its own process; this process hosts the scripted HTTP server and a probe node
that calls the service, publishes segmentation results and listens for prompts.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from ros_harness import ROS_AVAILABLE, node_process, probe_node, requires_ros, spin_until, wait_for_match

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fusion"))
from fake_openrouter import FakeOpenRouter, HttpError, Reply, StallAfterHeaders, judge_choosing  # noqa: E402

pytestmark = requires_ros

if ROS_AVAILABLE:
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sam_fusion.msg import ObjectInstance, Prompt, SegmentationResult
    from sam_fusion.srv import FusionQuery

KEY = "sk-or-v1-nodetest0123456789SECRETKEY"
SERVICE = "fusion_query"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenRouter]:
    server = FakeOpenRouter(max_stall_s=5.0).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def node(fake: FakeOpenRouter, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    pools = {
        "client": {"base_url": fake.base_url, "max_retries": 0, "api_key_env": "IGNORED_BY_NODE"},
        "default_pool": "p",
        "pools": {"p": {"members": ["n/a", "n/b"], "judge": "n/j", "timeout_s": 10.0,
                        "request_timeout_s": 20.0, "judge_passes": 1}},
    }
    path = tmp_path_factory.mktemp("fusion") / "pools.yaml"
    path.write_text(yaml.safe_dump(pools))
    params = {"pools_file": str(path), "api_key_env": "SAMFUSION_NODE_TEST_KEY", "max_concurrent": 3,
              "scene_topics": ["cam/segmentation"], "prompt_topic": "test_prompts", "prompt_target": "cam"}
    with node_process("samfusion.ros.fusion_node", "fusion_under_test", params=params,
                      env={"SAMFUSION_NODE_TEST_KEY": KEY}) as proc:
        yield proc


@pytest.fixture()
def probe(node: Any) -> Iterator[tuple[Any, Any, Any]]:
    with probe_node("fusion_probe") as (probe_nd, executor):
        client = probe_nd.create_client(FusionQuery, SERVICE)
        ok = spin_until(executor, lambda: client.service_is_ready() or not node.alive(), timeout=30)
        assert ok and node.alive(), node.output()
        yield probe_nd, executor, client


def request(query: str, **fields: Any) -> Any:
    req = FusionQuery.Request()
    req.query = query
    for name, value in fields.items():
        setattr(req, name, value)
    return req


def call(executor: Any, client: Any, req: Any, timeout: float = 30.0) -> Any:
    future = client.call_async(req)
    assert spin_until(executor, future.done, timeout), "no response"
    return future.result()


def test_query_returns_fused_answer_with_candidates(fake: FakeOpenRouter, probe: Any) -> None:
    _, executor, client = probe
    fake.script("n/a", Reply("mug left of laptop", prompt_tokens=20, completion_tokens=5, cost=0.001))
    fake.script("n/b", Reply("no mug", prompt_tokens=22, completion_tokens=3, cost=0.002))
    fake.script("n/j", judge_choosing("laptop", cost=0.004))
    res = call(executor, client, request("Where is the mug?"))
    assert res.success and not res.degraded and res.error == ""
    assert res.answer == "mug left of laptop" and res.judge_model == "n/j"
    assert [(c.model, c.ok, c.selected, c.prompt_tokens, c.completion_tokens) for c in res.candidates] == [
        ("n/a", True, True, 20, 5), ("n/b", True, False, 22, 3)]
    assert res.candidates[0].cost_usd == pytest.approx(0.001)
    assert res.total_cost_usd == pytest.approx(0.007)
    assert res.total_prompt_tokens == 20 + 22 + 12 and res.total_latency_s > 0
    assert fake.calls_for("n/a")[-1].headers["authorization"] == f"Bearer {KEY}"


def test_other_calls_and_topics_served_while_a_call_waits_on_a_slow_model(fake: FakeOpenRouter, probe: Any) -> None:
    probe_nd, executor, client = probe
    fake.script("s/slow", Reply("slow answer", latency_s=3.0))
    fake.script("s/ok", Reply("quick part"))
    fake.script("f/1", Reply("fast one: red mug at 1.2 m"))
    fake.script("f/2", Reply("fast two"))
    fake.script("n/j", judge_choosing("red mug"))
    pub = probe_nd.create_publisher(SegmentationResult, "cam/segmentation",
                                    QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE))
    assert wait_for_match(executor, pub)

    done: list[str] = []
    futures: dict[str, Any] = {}

    def note_done() -> bool:
        done.extend(name for name, f in futures.items() if f.done() and name not in done)
        return True

    def spin_until_done(name: str, timeout: float) -> bool:
        return spin_until(executor, lambda: note_done() and futures[name].done(), timeout)

    slow = futures["slow"] = client.call_async(request("slow question", models=["s/slow", "s/ok"]))
    assert spin_until(executor, lambda: len(fake.calls_for("s/slow")) == 1, 10)

    seg = SegmentationResult(source="cam", backend="classical")
    seg.header.frame_id = "base_link"
    obj = ObjectInstance(id=7, label="red mug", score=0.9, point_count=40)
    obj.centroid.x, obj.centroid.y, obj.centroid.z = 1.2, 0.0, 0.7
    seg.objects = [obj]
    pub.publish(seg)

    fast = futures["fast"] = client.call_async(request("fast question", models=["f/1", "f/2"]))
    assert spin_until_done("fast", 10)
    futures["scene"] = client.call_async(request("which objects?", models=["f/1", "f/2"], include_scene=True))
    assert spin_until_done("scene", 10)
    assert not slow.done()  # both answered while the slow call was still waiting
    assert spin_until_done("slow", 20)
    assert done == ["fast", "scene", "slow"]
    assert fast.result().success and slow.result().success and slow.result().answer in ("slow answer", "quick part")
    prompt = fake.calls_for("f/1")[-1].body["messages"][-1]["content"]
    assert "```scene" in prompt and 'id 7 "red mug"' in prompt and "at (1.20, 0.00, 0.70) m" in prompt
    assert prompt.rstrip().endswith("which objects?")


def test_request_timeout_returns_error_and_cancels_http(fake: FakeOpenRouter, probe: Any) -> None:
    _, executor, client = probe
    fake.script("t/stall", StallAfterHeaders(5.0))
    fake.script("t/ok", Reply("fine"))
    started = time.monotonic()
    res = call(executor, client, request("q", models=["t/stall", "t/ok"], timeout_s=0.5))
    assert time.monotonic() - started < 5.0
    assert not res.success and res.answer == ""
    assert res.error == "request deadline of 0.5 s exceeded during the members stage"
    stalled = next(c for c in res.candidates if c.model == "t/stall")
    assert stalled.error == "t/stall: cancelled: request deadline exceeded"
    deadline = time.monotonic() + 3
    while not fake.calls_for("t/stall")[0].disconnected and time.monotonic() < deadline:
        time.sleep(0.02)
    assert fake.calls_for("t/stall")[0].disconnected


def test_publish_prompts_sends_validated_concepts(fake: FakeOpenRouter, probe: Any) -> None:
    probe_nd, executor, client = probe
    received: list[Any] = []
    probe_nd.create_subscription(Prompt, "test_prompts", received.append,
                                 QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))

    def member(text: str, concepts: list[str]) -> Any:
        return lambda body: Reply(json.dumps({"concepts": concepts}) if "response_format" in body else text)

    fake.script("c/1", member("grab the mug", ["red mug", "laptop"]))
    fake.script("c/2", member("mug first", ["red mug", "laptop", "desk"]))
    fake.script("n/j", judge_choosing("mug"))
    assert spin_until(executor, lambda: probe_nd.count_publishers("test_prompts") > 0, 10)
    res = call(executor, client, request("pick up the red mug next to the laptop", models=["c/1", "c/2"],
                                         publish_prompts=True))
    assert res.success and list(res.published_concepts) == ["red mug", "laptop"]
    assert spin_until(executor, lambda: len(received) == 1, 10)
    msg = received[0]
    assert list(msg.text_concepts) == ["red mug", "laptop"]
    assert (msg.action, msg.object_id, msg.target) == (Prompt.ACTION_ADD, 0, "cam")


def test_busy_when_max_concurrent_requests_in_flight(fake: FakeOpenRouter, probe: Any) -> None:
    _, executor, client = probe
    fake.script("b/slow", Reply("slow", latency_s=1.5))
    futures = [client.call_async(request(f"q{i}", models=["b/slow"])) for i in range(4)]
    assert spin_until(executor, lambda: all(f.done() for f in futures), 20)
    results = [f.result() for f in futures]
    busy = [r for r in results if not r.success]
    assert len(busy) == 1 and busy[0].error == "busy: 3 requests in flight (max_concurrent=3)"
    assert sum(r.success for r in results) == 3


def test_key_never_in_responses_or_node_log(fake: FakeOpenRouter, probe: Any, node: Any) -> None:
    _, executor, client = probe
    fake.script("k/1", HttpError(401, message=f"rejected {KEY}", echo_auth=True))
    fake.script("k/2", HttpError(401, echo_auth=True))
    res = call(executor, client, request("q", models=["k/1", "k/2"]))
    assert not res.success and res.error.startswith("all 2 members failed: k/1: HTTP 401")
    text = " ".join([res.error, res.judge_rationale, *[c.error for c in res.candidates]])
    assert "***" in text and KEY not in text and "SECRETKEY" not in text
    log = node.output()
    assert "fusion request failed" in log and "ready: service=fusion_query" in log
    assert KEY not in log and "SECRETKEY" not in log


def test_pools_change_live_and_bad_changes_are_refused(fake: FakeOpenRouter, probe: Any, tmp_path: Any) -> None:
    from rcl_interfaces.msg import Parameter as ParameterMsg
    from rcl_interfaces.msg import ParameterType, ParameterValue
    from rcl_interfaces.srv import SetParameters

    probe_nd, executor, client = probe
    setter = probe_nd.create_client(SetParameters, "/fusion_under_test/set_parameters")
    assert setter.wait_for_service(timeout_sec=10.0)

    def set_string(name: str, value: str) -> Any:
        req = SetParameters.Request(parameters=[ParameterMsg(name=name, value=ParameterValue(
            type=ParameterType.PARAMETER_STRING, string_value=value))])
        return call(executor, setter, req).results[0]

    refused = set_string("default_pool", "nope")
    assert not refused.successful and "nope" in refused.reason
    pools = {"client": {"base_url": fake.base_url, "max_retries": 0}, "default_pool": "q",
             "pools": {"q": {"members": ["n/c"], "judge": "n/j", "timeout_s": 10.0, "judge_passes": 1}}}
    path = tmp_path / "other_pools.yaml"
    path.write_text(yaml.safe_dump(pools))
    broken = tmp_path / "broken.yaml"
    broken.write_text("pools: [this is not a mapping")
    assert not set_string("pools_file", str(broken)).successful
    fake.script("n/a", Reply("still the old pool"))
    fake.script("n/b", Reply("old b"))
    fake.script("n/j", judge_choosing("old pool"))
    assert call(executor, client, request("which pool?")).answer == "still the old pool"
    # a new file and its default pool, in one change
    req = SetParameters.Request(parameters=[
        ParameterMsg(name="pools_file", value=ParameterValue(type=ParameterType.PARAMETER_STRING,
                                                             string_value=str(path))),
        ParameterMsg(name="default_pool", value=ParameterValue(type=ParameterType.PARAMETER_STRING,
                                                               string_value="q"))])
    assert all(r.successful for r in call(executor, setter, req).results)
    fake.script("n/c", Reply("the new pool answers"))
    res = call(executor, client, request("which pool?"))
    assert res.success and res.answer == "the new pool answers"
    assert [c.model for c in res.candidates] == ["n/c"]
