"""``samfusion process``: recorded bags (.db3 / .mcap), KITTI folders and image folders, offline.

Each input gives one output next to the others in ``--out`` (``<input name>_samfusion``): a bag
for a bag (same storage unless ``--storage``), a directory of overlays / id images / results for a
folder. Outputs appear only when complete; a rerun replaces them, ``--resume`` skips inputs whose
output exists. Exit status: 0 done, 1 some input had clouds but none could be labeled (no
calibration), 2 bad arguments or input, 130 interrupted. See docs/offline.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from samfusion.errors import ConfigError, SamFusionError
from samfusion.io.yaml_file import load_yaml

__all__ = ["add_process_parser", "run_process", "input_kind", "output_for", "load_config"]

_FLAT_EXTRAS = ("max_skew_s", "extrinsics_file", "extrinsics_format")


def add_process_parser(subparsers: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "process", help="run the perception pipeline over bags, KITTI folders or image folders",
        description=__doc__.splitlines()[0].replace("``", ""), formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="camera names default to the image topic without /image_raw[/compressed]; "
               "prompt syntax: --box [CAM:]x0,y0,x1,y1[:LABEL], --point [CAM:]x,y[,0|1][:LABEL], "
               "--concept [CAM:]TEXT")
    p.add_argument("inputs", nargs="+", help="rosbag2 directory, .mcap / .db3 file, KITTI folder or image folder")
    out = p.add_argument_group("output")
    out.add_argument("--out", default="samfusion_out", help="output directory (default: %(default)s)")
    out.add_argument("--output", default="", help="exact output path (one input only)")
    out.add_argument("--resume", action="store_true", help="skip inputs whose output already exists")
    out.add_argument("--storage", choices=("same", "sqlite3", "mcap"), default="same", help="output bag storage")
    out.add_argument("--output-prefix", default="", help="namespace of the result topics, e.g. /offline")
    out.add_argument("--no-overlay", action="store_true", help="do not write overlay images")
    out.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    out.add_argument("--json", action="store_true", help="print the per-input counters as JSON")
    model = p.add_argument_group("pipeline")
    model.add_argument("--config", default="", help="YAML of perception parameters (flat, or a ROS params file)")
    model.add_argument("--backend", default=None, help="classical, sam2, sam3 or sam3_tracker (default: classical)")
    model.add_argument("--checkpoint", default=None, help="SAM checkpoint directory or cached hub id")
    model.add_argument("--device", default=None, help="cpu, cuda or cuda:N")
    model.add_argument("--allow-download", action="store_true",
                       help="let transformers download a hub checkpoint that is not in the local cache")
    model.add_argument("--no-cleanup", action="store_true", help="skip the 3D instance cleanup")
    model.add_argument("--seed", type=int, default=0, help="OpenCV RNG seed for reproducible runs (-1: none)")
    topics = p.add_argument_group("bag topics")
    topics.add_argument("--camera", action="append", default=[], metavar="NAME=TOPIC[,INFO]",
                        help="a camera's image topic (and CameraInfo topic); default: every image topic")
    topics.add_argument("--lidar", default=None, metavar="TOPIC", help="PointCloud2 topic (default: the only one)")
    topics.add_argument("--prompt-topic", action="append", default=None, metavar="TOPIC",
                        help="sam_fusion/Prompt topic (default: every one)")
    topics.add_argument("--no-bag-prompts", action="store_true", help="ignore Prompt messages in the bag")
    calib = p.add_argument_group("calibration and time")
    calib.add_argument("--extrinsics", default=None, help="KITTI calib txt, nuScenes calib.json or OpenCalib json")
    calib.add_argument("--extrinsics-format", default=None, choices=("auto", "kitti", "nuscenes", "opencalib"))
    calib.add_argument("--extrinsic", action="append", default=[], metavar="NAME=x,y,z,qx,qy,qz,qw",
                       help="T_camera_from_lidar of one camera")
    calib.add_argument("--time-offset", action="append", default=[], metavar="NAME=SECONDS",
                       help="expected camera stamp minus LiDAR stamp, removed before pairing "
                            "(as the node's time_offsets_s)")
    calib.add_argument("--max-skew", type=float, default=None, help="largest |image - cloud| time for pairing (s)")
    prompts = p.add_argument_group("prompts")
    prompts.add_argument("--prompts", default="", help="YAML prompts file")
    prompts.add_argument("--box", action="append", default=[])
    prompts.add_argument("--point", action="append", default=[])
    prompts.add_argument("--concept", action="append", default=[])
    prompts.add_argument("--label-prompts", action="store_true", help="KITTI folders: prompt with the label boxes")
    return p


def input_kind(path: Path) -> str:
    """``bag``, ``kitti`` or ``images``; raises ConfigError for anything else."""
    from samfusion.offline.folders import folder_kind

    if path.is_file() and path.suffix in (".mcap", ".db3"):
        return "bag"
    if path.is_dir() and ((path / "metadata.yaml").is_file() or any(path.glob("*.mcap")) or any(path.glob("*.db3"))):
        return "bag"
    kind = folder_kind(path)
    if kind is None:
        raise ConfigError(f"input {path} is not a bag, a KITTI folder or a folder of images")
    return kind


def output_for(path: Path, out_dir: Path) -> Path:
    name = path.stem if path.is_file() else path.name
    return out_dir / f"{name}_samfusion"


def load_config(path: str) -> dict[str, Any]:
    """Flat parameters from YAML: a flat mapping, or ``<node>: {ros__parameters: {...}}``."""
    tree = load_yaml(path, "config", ConfigError) or {}
    if not isinstance(tree, dict):
        raise ConfigError(f"config {path}: expected a mapping")
    for value in tree.values():
        if isinstance(value, dict) and isinstance(value.get("ros__parameters"), dict):
            return dict(value["ros__parameters"])
    return tree


def _pairs(items: list[str], what: str) -> dict[str, str]:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise ConfigError(f"{what} '{item}': expected NAME=VALUE")
        out[name.strip()] = value.strip()
    return out


def _config_offsets(flat: dict[str, Any]) -> dict[str, float]:
    """The node parameters time_offsets_s (camera_names order) as camera -> seconds."""
    values = list(flat.get("time_offsets_s") or [])
    if not values:
        return {}
    names = list(flat.get("camera_names") or [])
    if len(names) != len(values):
        raise ConfigError(f"config: time_offsets_s has {len(values)} values for camera_names {names}")
    return {str(n): float(v) for n, v in zip(names, values)}


def _schedule(args: argparse.Namespace) -> Any:
    from samfusion.offline.prompts_file import (PromptSchedule, load_prompts_file, parse_box_arg,
                                                parse_concept_arg, parse_point_arg)

    prompts = load_prompts_file(args.prompts) if args.prompts else []
    prompts += [parse_box_arg(a) for a in args.box] + [parse_point_arg(a) for a in args.point]
    prompts += [parse_concept_arg(a) for a in args.concept]
    return PromptSchedule(prompts)


def _extrinsics(args: argparse.Namespace, flat: dict[str, Any], cameras: list[str]) -> dict[str, Any]:
    from samfusion.pipeline.extrinsics import extrinsics_from_flat, load_extrinsics

    out: dict[str, Any] = {}
    path = args.extrinsics if args.extrinsics is not None else flat.get("extrinsics_file", "")
    fmt = args.extrinsics_format or flat.get("extrinsics_format", "auto")
    if path:
        out.update(load_extrinsics(path, fmt, cameras))
    for name, value in _pairs(args.extrinsic, "--extrinsic").items():
        try:
            numbers = [float(v) for v in value.split(",")]
        except ValueError:
            raise ConfigError(f"--extrinsic {name}: expected 7 numbers x,y,z,qx,qy,qz,qw") from None
        out.update(extrinsics_from_flat(numbers, [name]))
    return out


def _run_one(path: Path, output: Path, kind: str, args: argparse.Namespace, config: Any, backend: Any,
             flat: dict[str, Any], options: Any) -> Any:
    from samfusion.offline.bags import bag_typestore, parse_camera_spec
    from samfusion.offline.folders import process_image_folder, process_kitti_folder
    from samfusion.offline.runner import process_bag
    from samfusion.pipeline.perception import PerceptionPipeline

    pipeline = PerceptionPipeline(config, backend=backend)
    schedule = _schedule(args)
    if kind == "images":
        return process_image_folder(path, output, pipeline, schedule, options)
    if kind == "kitti":
        return process_kitti_folder(path, output, pipeline, schedule, options, label_prompts=args.label_prompts)
    from rosbags.rosbag2 import StoragePlugin

    from samfusion.offline.bags import BagReader, select_topics

    cameras = [parse_camera_spec(s) for s in args.camera]
    with BagReader(path, bag_typestore()) as reader:  # camera names are needed for the extrinsics
        names = [c.name for c in select_topics(reader.topic_types, cameras=cameras, lidar=args.lidar,
                                               prompts=[] if args.no_bag_prompts else args.prompt_topic).cameras]
    storage = {"sqlite3": StoragePlugin.SQLITE3, "mcap": StoragePlugin.MCAP}.get(args.storage)
    return process_bag(path, output, pipeline, cameras=cameras, lidar=args.lidar,
                       prompt_topics=[] if args.no_bag_prompts else args.prompt_topic, schedule=schedule,
                       extrinsics=_extrinsics(args, flat, names), storage=storage, options=options)


def run_process(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except KeyboardInterrupt:
        print("\nsamfusion process: interrupted; unfinished outputs were removed", file=sys.stderr)
        return 130
    except (SamFusionError, ImportError) as exc:
        print(f"samfusion process: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    from samfusion.offline.runner import RunOptions
    from samfusion.pipeline.perception import perception_config_from_flat
    from samfusion.segmentation.registry import create_backend

    flat = load_config(args.config) if args.config else {}
    for key in ("backend", "checkpoint", "device"):
        if getattr(args, key) is not None:
            flat[key] = getattr(args, key)
    if args.no_cleanup:
        flat["cleanup"] = False
    if args.allow_download:
        flat["allow_download"] = True
    config = perception_config_from_flat(flat)
    offsets = _config_offsets(flat)
    for name, value in _pairs(args.time_offset, "--time-offset").items():
        try:
            offsets[name] = float(value)
        except ValueError:
            raise ConfigError(f"--time-offset {name}: '{value}' is not a number of seconds") from None
    options = RunOptions(max_skew_s=float(args.max_skew if args.max_skew is not None else flat.get("max_skew_s", 0.05)),
                         time_offsets=offsets, overlays=not args.no_overlay, output_prefix=args.output_prefix,
                         seed=None if args.seed < 0 else args.seed, progress=not args.no_progress).validate()
    inputs = [Path(p) for p in args.inputs]
    if args.output and len(inputs) != 1:
        raise ConfigError("--output names one output; use --out DIR for several inputs")
    kinds = [input_kind(p) for p in inputs]  # check every input before the first long run
    outputs = [Path(args.output) if args.output else output_for(p, Path(args.out)) for p in inputs]
    if len(set(outputs)) != len(outputs):
        raise ConfigError(f"two inputs would write the same output: {[str(o) for o in outputs]}")
    backend = create_backend(config.backend)
    report: dict[str, Any] = {}
    status = 0
    for path, kind, output in zip(inputs, kinds, outputs):
        if args.resume and output.exists():
            report[str(path)] = {"output": str(output), "skipped": True}
            continue
        stats = _run_one(path, output, kind, args, config, backend, flat, options)
        report[str(path)] = {"output": str(output), "kind": kind, **stats.as_dict()}
        c = stats.counters
        if c["clouds"] and not c["clouds_labeled"] and c["camera_not_calibrated"]:
            print(f"samfusion process: {path}: no cloud was labeled (cameras lack CameraInfo or extrinsics)",
                  file=sys.stderr)
            status = 1
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print_table(report)
    return status


def _print_table(report: dict[str, Any]) -> None:
    print(f"{'input':28} {'kind':6} {'images':>6} {'clouds':>6} {'labeled':>7} {'unlab.':>6} "
          f"{'points':>8} {'bad':>4} {'s':>6}  output")
    for name, r in report.items():
        if r.get("skipped"):
            print(f"{Path(name).name[:28]:28} skipped (output exists: {r['output']})")
            continue
        bad = sum(v for k, v in r.items() if k.startswith("bad_") and isinstance(v, int))
        print(f"{Path(name).name[:28]:28} {r['kind']:6} {r.get('images_segmented', 0):>6} {r.get('clouds', 0):>6} "
              f"{r.get('clouds_labeled', 0):>7} {r.get('clouds_unlabeled', 0):>6} {r.get('points_labeled', 0):>8} "
              f"{bad:>4} {r['seconds']:>6.1f}  {r['output']}")
        if r.get("prompts_skipped"):
            print(f"{'':28} prompts skipped on frames they did not fit: {r['prompts_skipped']} "
                  "(the first are printed above)")
        if r.get("unpaired"):
            print(f"{'':28} clouds without an image in range, per camera: {r['unpaired']}")
