"""Fusion node: the FusionQuery service in front of the LLM fusion engine.

Threads: the engine (async httpx) runs on an asyncio loop in its own thread
(:class:`samfusion.fusion.loop_thread.LoopThread`). The service callback, in a
ReentrantCallbackGroup under a MultiThreadedExecutor, converts the request, hands the
coroutine to that loop and waits on the concurrent future; the executor's other threads keep
serving segmentation callbacks, diagnostics and further service calls meanwhile. At most
``max_concurrent`` requests run at once; more are answered at once with a "busy" error. A
request that exceeds its deadline gets an error response and its HTTP calls are cancelled.

The API key is never a parameter value: ``api_key_env`` names an environment variable and
``api_key_file`` a file. It is never logged nor put in a response (strings are redacted).
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import threading
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.node import Node
from sam_fusion.msg import ModelCandidate, Prompt, SegmentationResult
from sam_fusion.srv import FusionQuery

from samfusion.errors import SamFusionError
from samfusion.fusion.cli import POOLS_ENV, find_pools_file
from samfusion.fusion.client import FusionClient
from samfusion.fusion.config import FusionSettings, load_settings
from samfusion.fusion.engine import FusionEngine
from samfusion.fusion.loop_thread import LoopThread
from samfusion.fusion.result import FusionRequest, FusionResult
from samfusion.fusion.scene import summarize_scene
from samfusion.fusion.secrets import DEFAULT_KEY_ENV, ApiKey, RedactingFilter, load_api_key, redact
from samfusion.ros.params import ParamSpec, check_changes, declare_parameters
from samfusion.ros.runtime import spin_node
from samfusion.ros.qos import PROMPT_QOS, RESULT_QOS

__all__ = ["FUSION_PARAMS", "FusionNode", "fill_response", "segmentation_objects", "main"]

_THROTTLE_S = 5.0
_WAIT_MARGIN_S = 5.0
_U32_MAX = 2**32 - 1

FUSION_PARAMS: tuple[ParamSpec, ...] = (
    ParamSpec("pools_file", "", "Pools YAML (empty: $SAMFUSION_POOLS, share/sam_fusion/config or "
              "./config fusion_pools.yaml); live: the new file is loaded and checked first, requests in "
              "flight finish with the old pools (client settings such as base_url need a restart)",
              read_only=False),
    ParamSpec("default_pool", "", "Pool used when a request names none (empty: the file's default_pool); "
              "live: must name a pool of the loaded file", read_only=False),
    ParamSpec("base_url", "", "OpenAI-compatible base URL (empty: the pools file's client.base_url)"),
    ParamSpec("api_key_env", "", "Name of the environment variable holding the API key (empty: the pools "
              f"file's client.api_key_env, by default {DEFAULT_KEY_ENV}; the key itself is never a parameter)"),
    ParamSpec("api_key_file", "", "Path of a file holding the API key (wins over api_key_env)"),
    ParamSpec("service_name", "fusion_query", "sam_fusion/FusionQuery service name"),
    ParamSpec("max_concurrent", 4, "Requests served at once; more get a 'busy' error", kind=int, min=1, max=64),
    ParamSpec("scene_topics", ["camera/segmentation"], "SegmentationResult topics summarised for "
              "include_scene requests", kind=str, array=True),
    ParamSpec("scene_max_age_s", 5.0, "Segmentation results older than this are left out of the scene",
              kind=float, min=0.0, max=3600.0, read_only=False),
    ParamSpec("scene_max_objects", 25, "Most objects listed in a scene summary", kind=int, min=1, max=500,
              read_only=False),
    ParamSpec("prompt_topic", "prompts", "sam_fusion/Prompt output topic for publish_prompts requests"),
    ParamSpec("prompt_target", "", "Prompt.target of published concepts (empty: every stream)"),
)
_LIVE = {"scene_max_age_s", "scene_max_objects"}


def segmentation_objects(msg: Any) -> list[dict[str, Any]]:
    """Plain dicts (see samfusion.fusion.scene) from a SegmentationResult's objects."""
    out = []
    for obj in msg.objects:
        item: dict[str, Any] = {"id": int(obj.id), "label": str(obj.label), "score": float(obj.score),
                                "source": str(msg.source), "point_count": int(obj.point_count)}
        if obj.point_count > 0:
            item["centroid"] = (obj.centroid.x, obj.centroid.y, obj.centroid.z)
            item["box_size"] = (obj.box_size.x, obj.box_size.y, obj.box_size.z)
        out.append(item)
    return out


def fill_response(response: Any, result: FusionResult, key: ApiKey | None) -> Any:
    """Copy a FusionResult into a FusionQuery response, redacting every free-text field."""
    response.success = result.success
    response.answer = result.answer
    response.error = redact(result.error, key)
    response.degraded = result.degraded
    response.failed_models = list(result.failed_models)
    response.candidates = [
        ModelCandidate(
            model=c.model, text=c.text, ok=c.ok, error=redact(c.error, key), latency_s=float(c.latency_s),
            prompt_tokens=min(max(c.prompt_tokens, 0), _U32_MAX),
            completion_tokens=min(max(c.completion_tokens, 0), _U32_MAX),
            cost_usd=float(c.cost_usd), selected=c.selected,
        )
        for c in result.candidates
    ]
    response.judge_model = result.judge_model
    response.judge_rationale = redact(result.judge_rationale, key)
    response.published_concepts = list(result.published_concepts)
    response.total_latency_s = float(result.total_latency_s)
    response.total_prompt_tokens = min(max(result.total_prompt_tokens, 0), _U32_MAX)
    response.total_completion_tokens = min(max(result.total_completion_tokens, 0), _U32_MAX)
    response.total_cost_usd = float(result.total_cost_usd)
    return response


class _RosLogHandler(logging.Handler):
    """Forwards samfusion's Python log records to the node's logger (redacted by a filter)."""

    def __init__(self, node: Node) -> None:
        super().__init__(logging.INFO)
        self._logger = node.get_logger()

    def emit(self, record: logging.LogRecord) -> None:
        text = f"{record.name}: {record.getMessage()}"
        if record.levelno >= logging.ERROR:
            self._logger.error(text)
        elif record.levelno >= logging.WARNING:
            self._logger.warning(text)
        else:
            self._logger.info(text)


def _default_pools_file() -> Path | None:
    """$SAMFUSION_POOLS, then share/sam_fusion/config, then ./config or the source checkout."""
    if os.environ.get(POOLS_ENV):
        return find_pools_file()
    try:
        from ament_index_python.packages import get_package_share_directory

        shared = Path(get_package_share_directory("sam_fusion")) / "config" / "fusion_pools.yaml"
        if shared.is_file():
            return shared
    except (ImportError, LookupError, ValueError):
        pass
    return find_pools_file()


class FusionNode(Node):
    """See module docstring."""

    NODE_NAME = "sam_fusion_fusion"  # default name, also used in start-up error messages

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(self.NODE_NAME, **kwargs)
        self.params = declare_parameters(self, FUSION_PARAMS)
        self.counters: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._in_flight = 0
        self._cost_usd = 0.0
        self._scene: dict[str, tuple[float, Any]] = {}

        self.settings = self._load_settings()
        client_cfg = self.settings.client
        self._key = load_api_key(
            env_var=self.params["api_key_env"] or client_cfg.api_key_env,
            key_file=self.params["api_key_file"] or client_cfg.api_key_file or None,
            required="openrouter.ai" in client_cfg.base_url,
        )
        self._log_handler = _RosLogHandler(self)
        self._log_handler.addFilter(RedactingFilter(self._key))
        logging.getLogger("samfusion").addHandler(self._log_handler)
        logging.getLogger("samfusion").setLevel(logging.INFO)

        self._loop = LoopThread("sam_fusion_llm")
        self._client: FusionClient = self._loop.call(self._make_client(), timeout_s=10.0)
        self.engine = FusionEngine(self._client, self.settings)

        self._service_group = ReentrantCallbackGroup()
        self._topic_group = MutuallyExclusiveCallbackGroup()
        self.create_service(FusionQuery, self.params["service_name"], self._on_query,
                            callback_group=self._service_group)
        for topic in self.params["scene_topics"]:
            self.create_subscription(SegmentationResult, topic, lambda m, t=topic: self._on_segmentation(t, m),
                                     RESULT_QOS, callback_group=self._topic_group)
        self._prompt_pub = self.create_publisher(Prompt, self.params["prompt_topic"], PROMPT_QOS)
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", RESULT_QOS)
        self.create_timer(1.0, self._publish_diagnostics, callback_group=self._topic_group)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        pool = self.settings.pool()
        self.get_logger().info(
            f"ready: service={self.params['service_name']} base_url={client_cfg.base_url} "
            f"default pool={pool.name} ({pool.mode.value}, {len(pool.members)} members) "
            f"key from {self._key.source if self._key else 'nowhere (none needed)'}"
        )

    # ---- set-up / tear-down ------------------------------------------------------------------
    def _load_settings(self, overrides: dict[str, Any] | None = None) -> FusionSettings:
        params = {**self.params, **(overrides or {})}
        path = Path(params["pools_file"]) if params["pools_file"] else _default_pools_file()
        if path is None:
            raise SamFusionError("no pools file found; set the pools_file parameter")
        settings = load_settings(path)
        if params["base_url"]:
            settings = replace(settings, client=replace(settings.client, base_url=params["base_url"]))
        if params["default_pool"]:
            settings = replace(settings, default_pool=params["default_pool"])
        settings.pool()  # the default pool must exist
        return settings

    async def _make_client(self) -> FusionClient:
        return FusionClient(self.settings.client, api_key=self._key)

    def destroy_node(self) -> None:
        self._loop.stop(cleanup=self._client.aclose)
        logging.getLogger("samfusion").removeHandler(self._log_handler)
        super().destroy_node()

    def _on_set_parameters(self, params: list[Any]) -> Any:
        result = check_changes(FUSION_PARAMS, params)
        if not result.successful:
            return result
        pool_changes = {p.name: p.value for p in params if p.name in ("pools_file", "default_pool")}
        if pool_changes:
            try:  # validate by loading: a bad file or an unknown pool is refused, nothing changes
                settings = self._load_settings(pool_changes)
            except (SamFusionError, ValueError, OSError) as exc:
                result.successful, result.reason = False, f"pools not changed: {exc}"
                return result
            self.settings = settings
            self.engine = FusionEngine(self._client, settings)  # in-flight requests keep the old one
            self.get_logger().info(f"pools reloaded: default pool {settings.pool().name}, "
                                   f"pools {sorted(settings.pools)}")
        for p in params:
            if p.name in _LIVE or p.name in pool_changes:
                self.params[p.name] = p.value
        return result

    # ---- callbacks ------------------------------------------------------------------------
    def _on_segmentation(self, topic: str, msg: SegmentationResult) -> None:
        with self._lock:
            self.counters["segmentations_received"] += 1
            self._scene[msg.source or topic] = (time.monotonic(), msg)

    def _scene_text(self) -> str:
        now, max_age = time.monotonic(), float(self.params["scene_max_age_s"])
        with self._lock:
            fresh = [msg for (t, msg) in self._scene.values() if now - t <= max_age]
        limit = int(self.params["scene_max_objects"])
        if not fresh:
            return summarize_scene([], note=f"no segmentation results in the last {max_age:g} s")
        by_frame: dict[str, list[dict[str, Any]]] = {}
        stamps: dict[str, float] = {}
        for msg in fresh:
            # 3D positions are in the labeled cloud's frame (cloud_header), not the camera's.
            cloud = getattr(msg, "cloud_header", None)
            header = cloud if cloud is not None and cloud.frame_id else msg.header
            frame = header.frame_id
            by_frame.setdefault(frame, []).extend(segmentation_objects(msg))
            stamps[frame] = max(stamps.get(frame, 0.0), header.stamp.sec + header.stamp.nanosec * 1e-9)
        return "\n".join(summarize_scene(objs, frame_id=frame, stamp_s=stamps[frame], max_objects=limit)
                         for frame, objs in by_frame.items())

    def _deadline_s(self, request: Any) -> float:
        if request.timeout_s > 0:
            return float(request.timeout_s)
        try:
            return self.settings.pool(request.pool).request_timeout_s
        except SamFusionError:
            return 10.0

    def _on_query(self, request: Any, response: Any) -> Any:
        with self._lock:
            if self._in_flight >= self.params["max_concurrent"]:
                self.counters["busy"] += 1
                response.success = False
                response.error = (f"busy: {self._in_flight} requests in flight "
                                  f"(max_concurrent={self.params['max_concurrent']})")
                return response
            self._in_flight += 1
            self.counters["requests"] += 1
        try:
            result = self._serve(request)
        except Exception as exc:  # an escaping exception would end spin(): answer with an error
            self.get_logger().error(f"fusion request failed: {type(exc).__name__}: {redact(str(exc), self._key)}",
                                    throttle_duration_sec=_THROTTLE_S)
            result = FusionResult(success=False, error=f"internal error: {type(exc).__name__}: {exc}")
        finally:
            with self._lock:
                self._in_flight -= 1
        with self._lock:
            self.counters["succeeded" if result.success else "failed"] += 1
            self.counters["degraded"] += int(result.degraded and result.success)
            self._cost_usd += result.total_cost_usd
        if not result.success:
            self.get_logger().warning(f"fusion request failed: {redact(result.error, self._key)}",
                                      throttle_duration_sec=_THROTTLE_S)
        return fill_response(response, result, self._key)

    def _serve(self, request: Any) -> FusionResult:
        fusion_request = FusionRequest(
            query=request.query,
            mode=request.mode or None,
            pool=request.pool,
            models=tuple(request.models),
            judge_model=request.judge_model,
            timeout_s=float(request.timeout_s),
            max_cost_usd=float(request.max_cost_usd),
            scene=self._scene_text() if request.include_scene else "",
            publish_prompts=bool(request.publish_prompts),
        )
        future = self._loop.submit(self.engine.query(fusion_request))
        wait_s = self._deadline_s(request) + _WAIT_MARGIN_S
        try:
            result = future.result(timeout=wait_s)
        except concurrent.futures.TimeoutError:
            future.cancel()  # cancels the coroutine and its HTTP calls on the loop
            return FusionResult(success=False, error=f"no result within {wait_s:g} s; request cancelled")
        if result.success and result.published_concepts:
            self._publish_concepts(result.published_concepts)
        return result

    def _publish_concepts(self, concepts: tuple[str, ...]) -> None:
        msg = Prompt()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.target = self.params["prompt_target"]
        msg.action = Prompt.ACTION_ADD
        msg.object_id = 0
        msg.text_concepts = list(concepts)
        self._prompt_pub.publish(msg)
        with self._lock:
            self.counters["prompts_published"] += 1

    def _publish_diagnostics(self) -> None:
        with self._lock:
            counters, in_flight, cost = dict(self.counters), self._in_flight, self._cost_usd
        status = DiagnosticStatus(name=f"{self.get_name()}: fusion", hardware_id="openrouter")
        failed = counters.get("failed", 0)
        status.level = DiagnosticStatus.WARN if failed > counters.get("succeeded", 0) else DiagnosticStatus.OK
        status.message = f"{counters.get('requests', 0)} requests, {failed} failed, {in_flight} in flight"
        values = {**{k: str(v) for k, v in sorted(counters.items())}, "in_flight": str(in_flight),
                  "total_cost_usd": f"{cost:.6f}"}
        status.values = [KeyValue(key=k, value=v) for k, v in values.items()]
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self._diag_pub.publish(array)


def main(args: list[str] | None = None) -> None:
    spin_node(FusionNode, args, threads=lambda node: int(node.params["max_concurrent"]) + 2)


if __name__ == "__main__":
    main()
