"""Parameters of the perception node (names, defaults, ranges); launch arguments mirror them."""

from __future__ import annotations

from samfusion.ros.params import ParamSpec
from samfusion.segmentation.config import BACKEND_NAMES, DTYPES

__all__ = ["PERCEPTION_PARAMS", "LIVE_PARAMS"]

PERCEPTION_PARAMS: tuple[ParamSpec, ...] = (
    # --- streams and topics (read-only) ---
    ParamSpec("camera_names", ["camera"], "Camera stream names; each subscribes to "
              "<name>/image_raw (or <name>/image_raw/compressed) and <name>/camera_info, and publishes "
              "<name>/segmentation and <name>/overlay (may be empty with range_stream set)",
              kind=str, array=True),
    ParamSpec("image_transport", "raw", "raw: sensor_msgs/Image; compressed: sensor_msgs/CompressedImage "
              "on <name>/image_raw/compressed", choices=("raw", "compressed")),
    ParamSpec("lidar_topic", "points", "LiDAR PointCloud2 input topic"),
    ParamSpec("prompt_topic", "prompts", "sam_fusion/Prompt input topic"),
    ParamSpec("labeled_cloud_topic", "points_labeled", "PointCloud2 output: input fields plus "
              "label (uint16), instance (uint32), score (float32)"),
    ParamSpec("markers_topic", "objects", "visualization_msgs/MarkerArray output (3D boxes, centroids, text)"),
    ParamSpec("publish_detections", True, "Also publish vision_msgs Detection2DArray on "
              "<name>/detections and Detection3DArray on detections_3d (when vision_msgs is installed)",
              kind=bool),
    ParamSpec("publish_overlay", True, "Publish <name>/overlay images (masks over the camera image)", kind=bool),
    # --- LiDAR-only segmentation (range image) ---
    ParamSpec("range_stream", "", "Name of a LiDAR-only stream (e.g. lidar): every cloud is also rendered "
              "as a range image and segmented with the prompts targeted at this name; results on "
              "<name>/segmentation and <name>/overlay. Empty = off"),
    ParamSpec("range_width", 1024, "Range image columns (azimuth bins)", kind=int, min=16, max=8192),
    ParamSpec("range_height", 64, "Range image rows (beams)", kind=int, min=1, max=512),
    ParamSpec("range_fov_up_deg", 2.0, "Upper edge of the vertical field of view", kind=float,
              min=-90.0, max=90.0),
    ParamSpec("range_fov_down_deg", -24.8, "Lower edge of the vertical field of view", kind=float,
              min=-90.0, max=90.0),
    ParamSpec("range_use_ring_field", True, "Take rows from a ring field when the cloud has one",
              kind=bool),
    # --- extrinsics ---
    ParamSpec("extrinsics_file", "", "Calibration file with LiDAR->camera extrinsics: KITTI calib txt, "
              "nuScenes calib.json or an OpenCalib extrinsic json (empty = none)"),
    ParamSpec("extrinsics_format", "auto", "Format of extrinsics_file",
              choices=("auto", "kitti", "nuscenes", "opencalib")),
    ParamSpec("extrinsics", [], "Static LiDAR->camera extrinsics, 7 numbers per camera in camera_names "
              "order: x y z qx qy qz qw of T_camera_from_lidar (camera optical frame)", kind=float, array=True),
    # --- backend (read-only: reload the node to change the model) ---
    ParamSpec("autostart", True, "Load the model at start-up; false = start without it and load on demand "
              "with the ~/load_model service (~/unload_model frees it)", kind=bool),
    ParamSpec("backend", "classical", "Segmentation backend", choices=BACKEND_NAMES),
    ParamSpec("checkpoint", "", "Local checkpoint directory or a hub id already in the cache "
              "(SAM backends)"),
    ParamSpec("allow_download", False, "Let transformers download a hub checkpoint that is not in the "
              "local cache (off: robots run offline; pre-fetch instead)", kind=bool),
    ParamSpec("device", "cpu", "Torch device: cpu, cuda or cuda:N"),
    ParamSpec("dtype", "fp32", "Model dtype", choices=DTYPES),
    ParamSpec("compile", False, "torch.compile the model (SAM backends)", kind=bool),
    ParamSpec("max_objects", 64, "Maximum tracked objects per camera", kind=int, min=1, max=65535),
    # --- live-tunable ---
    ParamSpec("score_threshold", 0.5, "Instances below this score are dropped / counted as lost",
              kind=float, min=0.0, max=1.0, read_only=False),
    ParamSpec("mask_threshold", 0.0, "Mask logit threshold (SAM backends)", kind=float, min=-20.0,
              max=20.0),
    ParamSpec("lost_after", 3, "Frames below threshold before an object is reported lost", kind=int,
              min=1, max=10000),
    ParamSpec("forget_after", 30, "Frames after which an unseen concept detection gives up its id",
              kind=int, min=1, max=100000),
    ParamSpec("match_iou", 0.3, "Mask IoU for a concept detection to keep its id", kind=float,
              min=0.01, max=1.0),
    ParamSpec("max_skew_s", 0.05, "Largest |image stamp - cloud stamp| for pairing", kind=float,
              min=0.0, max=10.0, read_only=False),
    ParamSpec("time_offsets_s", [], "Expected camera stamp minus LiDAR stamp per camera (camera_names "
              "order), removed before pairing; empty = all zero", kind=float, array=True),
    ParamSpec("use_tf", False, "Look LiDAR->camera extrinsics up in TF (needs tf2_ros) at each cloud's "
              "stamp; they replace the static ones", kind=bool),
    ParamSpec("cloud_wait_s", 0.3, "How long a cloud waits for a matching image before it is published "
              "unlabeled", kind=float, min=0.0, max=10.0, read_only=False),
    ParamSpec("min_depth_m", 0.5, "Points closer to a camera than this are not labeled by it",
              kind=float, min=0.0, max=100.0),
    ParamSpec("occlusion_radius_px", 2, "Pixel neighbourhood radius of the nearest-surface test",
              kind=int, min=0, max=32),
    ParamSpec("occlusion_depth_tolerance_m", 0.5, "Depth tolerance of the nearest-surface test",
              kind=float, min=0.01, max=100.0),
    ParamSpec("cleanup", True, "Clean each instance in 3D (ground plane removal, keep the cluster that "
              "matches the mask); assumes a z-up LiDAR frame, set false otherwise",
              kind=bool),
    ParamSpec("cleanup_eps_m", 0.6, "Clustering distance of the 3D cleanup", kind=float, min=0.01,
              max=10.0),
    ParamSpec("cleanup_min_points", 3, "Minimum cluster size of the 3D cleanup", kind=int, min=1,
              max=10000),
    ParamSpec("log_throttle_s", 2.0, "Bad-input warnings of one kind are logged at most once per this "
              "many seconds (every one is counted on /diagnostics)", kind=float, min=0.0, max=3600.0,
              read_only=False),
    ParamSpec("labeling_backend", "numpy", "Point labeling implementation: numpy (CPU, fastest on CPU) or "
              "torch (batched over cameras, on the GPU when one is available; for large clouds)",
              choices=("numpy", "torch")),
    ParamSpec("class_names", [], "Class names with fixed label ids 1..n (others are appended)",
              kind=str, array=True),
)

# Parameters whose live change the node applies without a restart.
LIVE_PARAMS = frozenset(p.name for p in PERCEPTION_PARAMS if not p.read_only)
