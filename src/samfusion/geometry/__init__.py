"""Camera geometry: rigid transforms, camera models (CameraInfo), calibration files, projection.

Pure numpy / OpenCV; no ROS imports. Conventions: ``T_a_from_b`` maps points from frame b to
frame a; camera optical frames have z forward, x right, y down; pixel ``(u, v)`` index is the
floor of the raw (distorted) pixel coordinate in the published (ROI / binned) image.
"""

from samfusion.geometry.calibration import (
    CameraRig,
    KittiCalibration,
    image_size_of,
    load_kitti_calib,
    load_nuscenes_calib,
    load_opencalib,
    rig_from_parameters,
)
from samfusion.geometry.camera_info import camera_info_to_model, camera_model_to_camera_info
from samfusion.geometry.camera_model import DISTORTION_MODELS, CameraModel, Roi
from samfusion.geometry.projection import (
    OcclusionConfig,
    PixelHits,
    Projection,
    nearest_surface,
    nearest_surface_mask,
    project_points,
    project_to_cameras,
    visible_from_pixels,
)
from samfusion.geometry.transform import ROTATION_ATOL, RigidTransform

__all__ = [
    "CameraModel",
    "CameraRig",
    "DISTORTION_MODELS",
    "KittiCalibration",
    "OcclusionConfig",
    "PixelHits",
    "Projection",
    "ROTATION_ATOL",
    "RigidTransform",
    "Roi",
    "camera_info_to_model",
    "camera_model_to_camera_info",
    "image_size_of",
    "load_kitti_calib",
    "load_nuscenes_calib",
    "load_opencalib",
    "nearest_surface",
    "nearest_surface_mask",
    "project_points",
    "project_to_cameras",
    "rig_from_parameters",
    "visible_from_pixels",
]
