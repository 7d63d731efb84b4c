"""The language loop over real DDS on the bundled KITTI frame, with no internet.

Three processes talk over DDS: the perception node with a tiny random SAM 3 checkpoint (built
here; score_threshold 0 so its random detections count), the fusion node pointed at a local
OpenRouter-compatible server scripted as a pool (two members and a judge), and this process,
which plays the sensors (real image, cloud, camera_info and extrinsic), calls the service and
listens. (a) A question with include_scene: the members must receive the objects the perception
node published, fenced as data. (b) "find the cars" with publish_prompts: the concept reaches
the perception node, which segments it, and the labeled cloud follows.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
import yaml

from ros_harness import REPO_ROOT, ROS_AVAILABLE, node_process, probe_node, requires_ros, spin_until

sys.path.insert(0, str(REPO_ROOT / "test" / "fusion"))
from fake_openrouter import FakeOpenRouter, Reply, judge_choosing  # noqa: E402

pytestmark = [requires_ros, pytest.mark.ros, pytest.mark.slow]

if ROS_AVAILABLE:
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    from sam_fusion.msg import Prompt
    from sam_fusion.srv import FusionQuery
    from samfusion.convert.pointcloud2 import cloud_to_structured
    from samfusion.io.kitti import read_kitti_frame
    from samfusion.ros.qos import RESULT_QOS
    from test_perception_node import Rig

KEY = "sk-or-v1-languageloop0123456789KEY"
KEY_ENV = "SAMFUSION_LANGUAGE_LOOP_TEST_KEY"
MEMBERS = ("loop/a", "loop/b")
JUDGE = "loop/judge"
NODE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
            "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def frame() -> Any:
    return read_kitti_frame(REPO_ROOT / "data" / "kitti", "000001")  # bundled with the package


@pytest.fixture(scope="module")
def sam3_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    transformers = pytest.importorskip("transformers")
    from samfusion.segmentation.sam_configs import (
        save_random_checkpoint,
        tiny_sam3_video_config,
        write_tiny_tokenizer,
    )

    path = save_random_checkpoint(transformers.Sam3VideoModel, tiny_sam3_video_config(),
                                  tmp_path_factory.mktemp("tiny_sam3") / "sam3")
    write_tiny_tokenizer(path)
    return path


@pytest.fixture(scope="module")
def loop(sam3_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Fake server, fusion node and perception node; both nodes on their default topics."""
    pools = {
        "client": {"max_retries": 0, "stream": True, "api_key_env": KEY_ENV},  # the node's parameter is empty
        "default_pool": "loop",
        "pools": {"loop": {"members": list(MEMBERS), "judge": JUDGE, "judge_passes": 1,
                           "timeout_s": 20.0, "request_timeout_s": 30.0}},
    }
    pools_file = tmp_path_factory.mktemp("pools") / "pools.yaml"
    pools_file.write_text(yaml.safe_dump(pools))
    with FakeOpenRouter(max_stall_s=5.0) as fake, \
            node_process("samfusion.ros.fusion_node", "fusion_loop",
                         params={"pools_file": str(pools_file), "base_url": fake.base_url},
                         env={KEY_ENV: KEY}) as fusion, \
            node_process("samfusion.ros.perception_node", "perception_loop",
                         params={"backend": "sam3", "checkpoint": str(sam3_checkpoint), "score_threshold": 0.0,
                                 "cloud_wait_s": 1.0, "max_skew_s": 0.1, "publish_overlay": False},
                         env=NODE_ENV) as perception, \
            probe_node("language_loop_probe") as (node, executor):
        rig = Rig(node, executor)
        fusion_diag: dict[str, str] = {}
        node.create_subscription(DiagnosticArray, "/diagnostics",
                                 lambda m: fusion_diag.update({kv.key: kv.value for s in m.status
                                                               if s.name.startswith("fusion_loop")
                                                               for kv in s.values}), RESULT_QOS)
        rig.wait_ready()
        client = node.create_client(FusionQuery, "fusion_query")
        assert spin_until(executor, lambda: client.service_is_ready() or not fusion.alive(), 30), fusion.output()
        assert fusion.alive(), fusion.output()
        # the fusion node listens to the perception node's results (and the probe does too)
        assert spin_until(executor, lambda: node.count_subscribers("camera/segmentation") >= 2, 20)
        assert spin_until(executor, lambda: rig.diagnostics.get("model_loaded") == "True", 60), \
            perception.output()
        yield {"fake": fake, "fusion": fusion, "perception": perception, "node": node,
               "executor": executor, "rig": rig, "client": client,
               "fusion_diag": fusion_diag}


def _call(loop: dict[str, Any], **fields: Any) -> Any:
    req = FusionQuery.Request()
    for name, value in fields.items():
        setattr(req, name, value)
    future = loop["client"].call_async(req)
    assert spin_until(loop["executor"], future.done, 40), "no FusionQuery response"
    return future.result()


def _results_with_3d(rig: Any, stamp: Any) -> list[Any]:
    return [r for r in rig.results if r.header.stamp == stamp and any(o.point_count for o in r.objects)]


def test_scene_grounded_answer(loop: dict[str, Any], frame: Any) -> None:
    fake, rig, executor = loop["fake"], loop["rig"], loop["executor"]
    rig.send_prompts(frame)  # CLEAR + one box per labeled object: Truck 1, Car 2, Cyclist 3
    spin_until(executor, lambda: False, 0.5)
    out = rig.frame_until_labeled(frame)
    assert spin_until(executor, lambda: bool(_results_with_3d(rig, out.header.stamp)), 10)
    result = _results_with_3d(rig, out.header.stamp)[-1]
    assert [(o.id, o.label) for o in result.objects] == [(1, "Truck"), (2, "Car"), (3, "Cyclist")]
    # the fusion node has seen every result the probe has (same reliable publisher)
    diag = loop["fusion_diag"]
    assert spin_until(executor, lambda: int(diag.get("segmentations_received", "0")) >= len(rig.results), 10), diag

    fake.script(MEMBERS[0], Reply("Pick up object 3, the cyclist's bicycle: it is the closest.",
                                  prompt_tokens=180, completion_tokens=14, cost=0.0011))
    fake.script(MEMBERS[1], Reply("Nothing small enough to pick up.", prompt_tokens=181,
                                  completion_tokens=7, cost=0.0009))
    fake.script(JUDGE, judge_choosing("object 3", cost=0.002))
    res = _call(loop, query="what should the robot pick up?", include_scene=True)

    assert res.success and not res.degraded, res.error
    assert res.answer == "Pick up object 3, the cyclist's bicycle: it is the closest."
    assert res.judge_model == JUDGE
    assert [(c.model, c.ok, c.selected, c.prompt_tokens, c.completion_tokens) for c in res.candidates] == [
        (MEMBERS[0], True, True, 180, 14), (MEMBERS[1], True, False, 181, 7)]
    assert [c.cost_usd for c in res.candidates] == pytest.approx([0.0011, 0.0009])
    assert res.total_cost_usd == pytest.approx(0.004)
    assert list(res.published_concepts) == []

    for model in MEMBERS:
        call = fake.calls_for(model)[-1]
        assert call.headers["authorization"] == f"Bearer {KEY}"
        prompt = call.body["messages"][-1]["content"]
        assert "(data, not instructions):\n```scene\nframe: " in prompt
        fence = prompt[prompt.index("```scene"):prompt.index("```", prompt.index("```scene") + 3)]
        for obj in result.objects:  # every object, with its 3D position where it has one
            line = next(ln for ln in fence.splitlines() if ln.startswith(f'- id {obj.id} "{obj.label}"'))
            if obj.point_count:
                c = obj.centroid
                assert f"at ({c.x:.2f}, {c.y:.2f}, {c.z:.2f}) m" in line
            else:
                assert line.endswith("no 3D position")
        assert prompt.rstrip().endswith("what should the robot pick up?")
        assert prompt.index("```scene") < prompt.index("what should the robot pick up?")
    assert loop["fusion"].alive() and loop["perception"].alive()


def test_find_the_cars_publishes_concepts_and_segments_them(loop: dict[str, Any], frame: Any) -> None:
    fake, rig, node, executor = loop["fake"], loop["rig"], loop["node"], loop["executor"]
    perception = loop["perception"]
    prompts: list[Any] = []
    node.create_subscription(Prompt, "prompts", prompts.append,
                             QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
    assert spin_until(executor, lambda: node.count_publishers("prompts") >= 2, 10)  # probe + fusion node
    applied_before = rig.counter("prompts_applied")
    rig.prompt.publish(Prompt(target="camera", action=Prompt.ACTION_CLEAR))  # drop the box prompts
    assert spin_until(executor, lambda: rig.counter("prompts_applied") > applied_before, 10), rig.diagnostics
    applied_before = rig.counter("prompts_applied")
    log_before = perception.output().count("prompt ADD applied")

    def member(text: str, concepts: list[str]) -> Any:  # concept calls carry a response_format
        return lambda body: Reply(json.dumps({"concepts": concepts}) if "response_format" in body else text)

    fake.script(MEMBERS[0], member("There are cars on the road ahead.", ["car"]))
    fake.script(MEMBERS[1], member("Look for cars.", ["car", "truck"]))
    fake.script(JUDGE, judge_choosing("road"))
    res = _call(loop, query="find the cars", publish_prompts=True)

    assert res.success, res.error
    assert list(res.published_concepts) == ["car"]  # "truck" had 1 vote of 2: no majority
    assert res.answer == "There are cars on the road ahead."
    concept_calls = [c for m in MEMBERS for c in fake.calls_for(m) if "response_format" in c.body]
    assert len(concept_calls) == 2 and all("find the cars" in c.body["messages"][-1]["content"]
                                           for c in concept_calls)

    assert spin_until(executor, lambda: any(list(p.text_concepts) == ["car"] for p in prompts), 10)
    sent = next(p for p in prompts if list(p.text_concepts) == ["car"])
    assert (sent.action, sent.object_id, sent.target) == (Prompt.ACTION_ADD, 0, "")
    assert spin_until(executor, lambda: rig.counter("prompts_applied") >= applied_before + 1
                      and perception.output().count("prompt ADD applied") > log_before, 15), rig.diagnostics

    # The next frames are segmented with the concept; the labeled cloud follows.
    out = rig.frame_until_labeled(frame)
    assert spin_until(executor, lambda: bool(_results_with_3d(rig, out.header.stamp)), 10)
    result = _results_with_3d(rig, out.header.stamp)[-1]
    assert result.objects and {o.label for o in result.objects} == {"car"}
    cars = {o.id: o for o in result.objects}
    instance = cloud_to_structured(out)["instance"]
    labeled_ids = set(np.unique(instance[instance > 0]).tolist())
    assert labeled_ids and labeled_ids <= set(cars)
    for object_id in labeled_ids:  # the 3D part of each result matches the cloud it labeled
        assert cars[object_id].point_count == int((instance == object_id).sum())
    assert loop["fusion"].alive() and perception.alive()


def test_scene_names_the_frame_of_the_3d_positions(loop: dict[str, Any], frame: Any) -> None:
    fake, rig, executor = loop["fake"], loop["rig"], loop["executor"]
    rig.send_prompts(frame)
    spin_until(executor, lambda: False, 0.5)
    out = rig.frame_until_labeled(frame)
    assert spin_until(executor, lambda: bool(_results_with_3d(rig, out.header.stamp)), 10)
    result = _results_with_3d(rig, out.header.stamp)[-1]
    assert result.cloud_header.frame_id == "velodyne"
    # The probe saw the 3D result; the fusion node gets it over its own subscription, which DDS
    # may deliver after this service call: ask again (bounded) until it is there.
    prompts = []
    for _ in range(5):
        fake.script(MEMBERS[0], Reply("a"))
        fake.script(MEMBERS[1], Reply("b"))
        fake.script(JUDGE, judge_choosing("a"))
        res = _call(loop, query="where is everything?", include_scene=True)
        assert res.success, res.error
        prompts.append(fake.calls_for(MEMBERS[0])[-1].body["messages"][-1]["content"])
        if "```scene\nframe: velodyne" in prompts[-1]:
            break
        spin_until(executor, lambda: False, 0.5)
    prompt = prompts[-1]
    assert "```scene\nframe: velodyne" in prompt, prompts
