"""Fixtures for the offline tests: real bags written from the shared KITTI and nuScenes data."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from samfusion.offline.nuscenes_sample import NuscenesSample, load_sample, sample_prompts
from samfusion.offline.prompts_file import PromptSchedule, dump_prompts
from samfusion.pipeline.perception import CloudLabeling, PerceptionPipeline, perception_config_from_flat

from ._bags import write_kitti_bag, write_nuscenes_bag

# Objects of the nuScenes sample with at least this many LiDAR points get box prompts in the
# bag tests (22 prompts over 6 cameras for 17 objects; the accuracy script uses all of them).
NU_MIN_POINTS = 8


@pytest.fixture(scope="session")
def kitti_root(shared_data: Path) -> Path:
    return shared_data / "kitti_object"


@pytest.fixture(scope="session")
def nu_sample(shared_data: Path) -> NuscenesSample:
    return load_sample(shared_data / "nuscenes_mini_sample")


@pytest.fixture(scope="session")
def kitti_bags(tmp_path_factory: pytest.TempPathFactory, kitti_root: Path) -> dict[str, Path]:
    """Frame 000000 (its own calibration) and frames 000001-000002 (one calibration), each storage."""
    root = tmp_path_factory.mktemp("kitti_bags")
    bags = {}
    for storage in ("db3", "mcap"):
        bags[f"k0_{storage}"] = root / f"k0_{storage}"
        write_kitti_bag(bags[f"k0_{storage}"], kitti_root, ["000000"], storage)
        bags[f"k12_{storage}"] = root / f"k12_{storage}"
        write_kitti_bag(bags[f"k12_{storage}"], kitti_root, ["000001", "000002"], storage)
    return bags


@pytest.fixture(scope="session")
def nu_prompts_file(tmp_path_factory: pytest.TempPathFactory, nu_sample: NuscenesSample) -> Path:
    path = tmp_path_factory.mktemp("nu_prompts") / "prompts.yaml"
    path.write_text(yaml.safe_dump(dump_prompts(sample_prompts(nu_sample, NU_MIN_POINTS))))
    return path


@pytest.fixture(scope="session")
def nu_bags(tmp_path_factory: pytest.TempPathFactory, nu_sample: NuscenesSample) -> dict[str, Path]:
    """db3 with /tf_static; mcap without it (extrinsics then come from calib.json)."""
    root = tmp_path_factory.mktemp("nu_bags")
    write_nuscenes_bag(root / "nu_db3", nu_sample, "db3")
    write_nuscenes_bag(root / "nu_mcap", nu_sample, "mcap", tf_static=False)
    return {"db3": root / "nu_db3", "mcap": root / "nu_mcap"}


def nuscenes_in_memory(sample: NuscenesSample, min_points: int = NU_MIN_POINTS) -> tuple[CloudLabeling, np.ndarray]:
    """The pipeline on the sample without any bag, in the order a bag run takes: images by stamp
    (the GrabCut seed is consumed in that order), segmentations passed in camera-name order."""
    from samfusion.convert.pcd_io import read_nuscenes_bin
    from samfusion.convert.pointcloud2 import xyz_array

    cv2.setRNGSeed(0)
    pipeline = PerceptionPipeline(perception_config_from_flat({}))
    for name, rig in sample.rigs.items():
        pipeline.set_camera_model(name, rig.camera_model)
        pipeline.set_extrinsic(name, rig.T_cam_from_lidar)
    schedule = PromptSchedule(sample_prompts(sample, min_points))
    segs = {}
    for name in sorted(sample.rigs, key=lambda c: sample.camera_stamps[c]):
        rgb = np.ascontiguousarray(cv2.imread(str(sample.images[name]))[:, :, ::-1])
        schedule.before_frame(pipeline, name, 0, (rgb.shape[1], rgb.shape[0]))
        segs[name] = pipeline.segment(name, rgb)
    xyz = xyz_array(read_nuscenes_bin(sample.cloud_path))
    return pipeline.label_cloud(xyz, [segs[n] for n in sorted(segs)]), xyz


@pytest.fixture(scope="session")
def nu_reference(nu_sample: NuscenesSample) -> tuple[CloudLabeling, np.ndarray]:
    return nuscenes_in_memory(nu_sample)
