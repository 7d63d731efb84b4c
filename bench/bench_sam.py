#!/usr/bin/env python3
"""Benchmark the SAM backends: frames/s, ms/frame, peak GPU memory and the node's own overhead.

Models: SAM 3 tracker, SAM 3 concept model (one text concept on top of the object prompts),
SAM 2.1 tiny and large, each built from its default full-size transformers config with random
weights (speed does not depend on the weights), in bf16 on the GPU. For 1 / 10 / 50 objects
and 1 / 4 cameras it runs live streams (memory bank on) over 1080p frames and reports:

* frames/s (all cameras together) and ms per camera frame, model + pre/post-processing;
* peak GPU memory;
* node overhead per 1080p frame, measured apart: pre-processing (upload, resize, normalise),
  post-processing (mask upsampling, threshold, copy to host) and the id-image conversion.

``--tiny`` runs tiny random configs on the CPU instead (what CI and machines without a GPU can
do). Prints a table, appends it to bench/RESULTS.md under '## bench_sam.py', and writes it to
$OUT/bench_sam.md when $OUT is set. The GPU run is sized to finish in well under 8 minutes;
``--budget-s`` stops starting new runs when the time is spent.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from samfusion.segmentation.base import instances_to_id_image  # noqa: E402
from samfusion.segmentation.checkpoints import SAM2_IMAGE_SPEC, SAM3_IMAGE_SPEC, DTYPES  # noqa: E402
from samfusion.segmentation.config import BackendConfig  # noqa: E402
from samfusion.segmentation.preprocess import ImageSpec  # noqa: E402
from samfusion.segmentation.prompts import BoxPrompt, ConceptPrompt, ObjectPrompt, PromptSet  # noqa: E402
from samfusion.segmentation.sam_head import to_instances  # noqa: E402
from samfusion.segmentation import sam_configs  # noqa: E402

FRAME_SIZE = (1920, 1080)


@dataclass
class Row:
    model: str
    input_px: int
    objects: int
    cameras: int
    fps: float
    ms_frame: float
    peak_mib: float
    detections: int


def _frames(count: int) -> list[np.ndarray]:
    """Real video frames (the SAM 2 bedroom demo) upscaled to 1080p, RGB."""
    folder = REPO.parent / "shared" / "data" / "sam_demo" / "videos" / "bedroom"
    paths = sorted(folder.glob("*.jpg"))[:count]
    if not paths:
        rng = np.random.default_rng(0)
        return [rng.integers(0, 255, (FRAME_SIZE[1], FRAME_SIZE[0], 3), dtype=np.uint8) for _ in range(count)]
    return [np.ascontiguousarray(cv2.resize(cv2.imread(str(p)), FRAME_SIZE)[:, :, ::-1]) for p in paths]


def _objects(count: int) -> tuple[ObjectPrompt, ...]:
    """Boxes on a grid over the 1080p frame."""
    side = int(np.ceil(np.sqrt(count)))
    w, h = FRAME_SIZE[0] / side, FRAME_SIZE[1] / side
    return tuple(ObjectPrompt(k + 1, boxes=(BoxPrompt((k % side) * w + 4, (k // side) * h + 4,
                                                      (k % side + 1) * w - 4, (k // side + 1) * h - 4),))
                 for k in range(count))


def _build(name: str, tiny: bool, device: torch.device, dtype: str, tokenizer_dir: Path):
    """(backend, input size) for a model name, random weights, directly on the device."""
    import transformers

    from samfusion.segmentation.sam2_backend import Sam2Backend
    from samfusion.segmentation.sam3_backend import Sam3Backend, Sam3TrackerBackend

    if name.startswith("sam2.1"):
        config = sam_configs.tiny_sam2_config() if tiny else sam_configs.sam2_config(name.split("-")[1])
        cls, backend_cls, spec, backend = transformers.Sam2VideoModel, Sam2Backend, SAM2_IMAGE_SPEC, "sam2"
    elif name == "sam3_tracker":
        full = sam_configs.tiny_sam3_video_config() if tiny else sam_configs.sam3_video_config()
        config, cls = full.tracker_config, transformers.Sam3TrackerVideoModel
        backend_cls, spec, backend = Sam3TrackerBackend, SAM3_IMAGE_SPEC, "sam3_tracker"
    else:
        config = sam_configs.tiny_sam3_video_config() if tiny else sam_configs.sam3_video_config()
        cls, backend_cls, spec, backend = transformers.Sam3VideoModel, Sam3Backend, SAM3_IMAGE_SPEC, "sam3"
    torch.manual_seed(0)
    with torch.device(device):
        model = cls(config)
    model = model.to(DTYPES[dtype]).eval()
    options = BackendConfig(backend=backend, checkpoint="random", device=str(device), dtype=dtype,
                            score_threshold=0.5, max_objects=64)
    size = int((model.tracker_model if name == "sam3" else model).prompt_encoder.input_image_size)
    spec = ImageSpec(size, size, spec.mean, spec.std, spec.rescale_factor)
    if name == "sam3":
        return Sam3Backend(model, spec, options, tokenizer=transformers.AutoTokenizer.from_pretrained(
            str(tokenizer_dir))), size
    return backend_cls(model, spec, options), size


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _run_stream(backend, name: str, objects: int, cameras: int, frames: list[np.ndarray], warmup: int,
                measured: int, device: torch.device) -> tuple[float, float, float, int]:
    prompts = PromptSet(objects=_objects(objects),
                        concepts=(ConceptPrompt("person"),) if name == "sam3" else ())
    streams = [backend.create_stream() for _ in range(cameras)]
    ids = frozenset(o.object_id for o in prompts.objects)
    detections = 0
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for index in range(warmup + measured):
        if index == warmup:
            _sync(device)
            start = time.perf_counter()
        batch = [frames[(index + cam) % len(frames)] for cam in range(cameras)]
        features: list = [None] * cameras
        if cameras > 1 and streams[0].accepts_features:  # one encoder call for every camera
            with backend.lock, torch.inference_mode():
                features = backend.encode_many(batch)
        for cam, stream in enumerate(streams):
            out = stream.step(batch[cam], prompts, ids if index == 0 else frozenset(), features[cam])
            detections = sum(1 for i in out if i.instance_id == 0)
    _sync(device)
    elapsed = time.perf_counter() - start
    steps = measured * cameras
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else float("nan")
    return steps / elapsed, 1000 * elapsed / steps, peak, detections


def _overhead(backend, objects: int, frame: np.ndarray, repeats: int, device: torch.device) -> tuple[float, ...]:
    """Median ms of pre-processing, post-processing of N masks, and the id-image conversion."""
    head = backend.head
    low = torch.randn(objects, *head.mask_input_size, device=device, dtype=head.dtype)
    scores = torch.rand(objects, device=device)
    pre, post, ids = [], [], []
    with torch.inference_mode():
        for _ in range(repeats + 1):
            _sync(device)
            t0 = time.perf_counter()
            _, geometry = backend.transform(frame)
            _sync(device)
            t1 = time.perf_counter()
            instances = to_instances(low, scores, geometry, list(range(1, objects + 1)), [""] * objects, 0.0)
            t2 = time.perf_counter()
            instances_to_id_image(instances, geometry.height, geometry.width)
            t3 = time.perf_counter()
            pre.append(t1 - t0)
            post.append(t2 - t1)
            ids.append(t3 - t2)
    return tuple(1000 * float(np.median(v[1:])) for v in (pre, post, ids))


def _machine(device: torch.device) -> str:
    if device.type == "cuda":
        return f"GPU: {torch.cuda.get_device_name(device)}"
    cpu = platform.processor() or platform.machine()
    return f"CPU: {cpu}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tiny", action="store_true", help="tiny random configs on the CPU")
    ap.add_argument("--device", default=None, help="cuda / cuda:N / cpu (default: cuda if available)")
    ap.add_argument("--dtype", default=None, choices=sorted(DTYPES), help="default bf16 (GPU), fp32 (--tiny)")
    ap.add_argument("--models", default=None, help="comma list of sam3_tracker,sam3,sam2.1-tiny,sam2.1-large")
    ap.add_argument("--objects", default="1,10,50")
    ap.add_argument("--cameras", default="1,4")
    ap.add_argument("--warmup", type=int, default=None)
    ap.add_argument("--frames", type=int, default=None, help="measured frames per camera")
    ap.add_argument("--budget-s", type=float, default=420.0, help="start no new run after this many seconds")
    ap.add_argument("--results", type=Path, default=REPO / "bench" / "RESULTS.md")
    ap.add_argument("--no-append", action="store_true")
    args = ap.parse_args(argv)

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() and not args.tiny else "cpu"))
    dtype = args.dtype or ("fp32" if args.tiny or device.type == "cpu" else "bf16")
    models = (args.models or ("sam3_tracker,sam3,sam2.1-tiny" if args.tiny
                              else "sam3_tracker,sam3,sam2.1-tiny,sam2.1-large")).split(",")
    warmup = args.warmup if args.warmup is not None else (1 if args.tiny else 3)
    measured = args.frames if args.frames is not None else (3 if args.tiny else 10)
    object_counts = [int(v) for v in args.objects.split(",")]
    camera_counts = [int(v) for v in args.cameras.split(",")]
    if device.type == "cpu":
        torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)) if not args.tiny else 1)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    frames = _frames(8)
    started = time.perf_counter()
    rows: list[Row] = []
    overheads: list[tuple[str, int, tuple[float, ...]]] = []
    skipped: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        sam_configs.write_tiny_tokenizer(Path(tmp))
        for name in models:
            if time.perf_counter() - started > args.budget_s:
                skipped.append(name)
                continue
            backend, size = _build(name, args.tiny, device, dtype, Path(tmp))
            for objects in object_counts:
                overheads.append((name, objects, _overhead(backend, objects, frames[0], 5, device)))
                for cameras in camera_counts:
                    if time.perf_counter() - started > args.budget_s:
                        skipped.append(f"{name} {objects} obj {cameras} cam")
                        continue
                    fps, ms, peak, det = _run_stream(backend, name, objects, cameras, frames, warmup, measured,
                                                     device)
                    rows.append(Row(name, size, objects, cameras, fps, ms, peak, det))
                    print(f"{name:13s} {objects:3d} obj {cameras} cam: {fps:8.2f} frames/s {ms:9.1f} ms/frame",
                          flush=True)
            del backend
            if device.type == "cuda":
                torch.cuda.empty_cache()
    text = _report(rows, overheads, skipped, device, dtype, args, load, warmup, measured,
                   time.perf_counter() - started)
    print(text)
    if not args.no_append:
        with args.results.open("a") as fh:
            fh.write("\n" + text)
    if os.environ.get("OUT"):
        Path(os.environ["OUT"], "bench_sam.md").write_text(text)
    return 0


def _report(rows, overheads, skipped, device, dtype, args, load, warmup, measured, total_s) -> str:
    import transformers

    now = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    mode = "tiny random configs (CPU)" if args.tiny else "default full-size configs, random weights"
    lines = [
        "## bench_sam.py",
        "",
        f"- date: {now}",
        f"- {_machine(device)}; dtype {dtype}; {mode}",
        f"- Python {platform.python_version()}, torch {torch.__version__}, transformers {transformers.__version__}",
        f"- load average at start: {load:.2f}; {warmup} warm-up + {measured} measured frames per camera; "
        f"1080p frames (SAM 2 bedroom demo, upscaled); total {total_s:.0f} s",
        "- streams with memory; objects = box prompts on a grid; sam3 adds one text concept ('person'); "
        "cameras share one model and encode all cameras' frames in one batch",
        "",
        "| model | input px | objects | cameras | frames/s | ms / frame | peak GPU MiB | concept dets |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        peak = "n/a" if np.isnan(r.peak_mib) else f"{r.peak_mib:,.0f}"
        lines.append(f"| {r.model} | {r.input_px} | {r.objects} | {r.cameras} | {r.fps:.2f} | {r.ms_frame:.1f} "
                     f"| {peak} | {r.detections if r.model == 'sam3' else ''} |")
    lines += ["", "Node overhead per 1080p frame (median of 5; pre = upload + resize + normalise, post = "
              "upsample + threshold + copy N masks to host, id image = mono16 painting):", "",
              "| model | objects | pre ms | post ms | id image ms | total ms |", "|---|---:|---:|---:|---:|---:|"]
    for name, objects, (pre, post, ids) in overheads:
        lines.append(f"| {name} | {objects} | {pre:.2f} | {post:.2f} | {ids:.2f} | {pre + post + ids:.2f} |")
    if skipped:
        lines += ["", f"Skipped for the time budget ({args.budget_s:.0f} s): {', '.join(skipped)}"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
