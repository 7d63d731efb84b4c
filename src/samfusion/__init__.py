"""SAM Fusion: prompted segmentation for cameras and LiDAR, and LLM fusion.

Everything outside ``samfusion.ros`` is pure Python + numpy (+ torch for the SAM backends) and
never imports rclpy, so the same core runs inside ROS nodes and offline.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
