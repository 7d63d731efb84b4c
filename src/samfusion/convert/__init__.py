"""Message <-> numpy conversion: Image, CompressedImage, PointCloud2 and point files.

Everything is duck-typed on message fields, so rclpy messages, rosbags messages and
``types.SimpleNamespace`` objects all work; nothing here imports rclpy. Builders take a message
factory (``msg_cls()`` returns an empty message whose attributes are then set; PointFields are
made with ``field_cls(name=..., offset=..., datatype=..., count=...)``). Message ``data`` is
read through :func:`as_uint8_array` (zero-copy for bytes, bytearray, memoryview, array.array and
numpy arrays) and written as ``array.array('B')`` by :func:`to_msg_data` (fast for rclpy, also
with ``ROS_PYTHON_CHECK_FIELDS=1``). Errors raise
:class:`samfusion.errors.ConversionError`.
"""

from samfusion.convert.compressed import (
    compressed_to_numpy,
    compressed_to_rgb,
    numpy_to_compressed,
    numpy_to_compressed_depth,
    parse_compressed_format,
)
from samfusion.convert.image import (
    SUPPORTED_ENCODINGS,
    as_uint8_array,
    check_image_layout,
    encoding_info,
    to_msg_data,
    image_to_numpy,
    image_to_rgb,
    numpy_to_image,
    to_rgb8,
)
from samfusion.convert.pcd_io import (
    read_kitti_bin,
    read_nuscenes_bin,
    read_pcd,
    read_ply,
    read_point_file,
    write_kitti_bin,
    write_pcd,
    write_ply,
)
from samfusion.convert.pointcloud2 import (
    LABEL_FIELDS,
    add_fields,
    cloud_to_structured,
    dtype_to_fields,
    fields_to_dtype,
    finite_mask,
    labeled_cloud,
    structured_to_cloud,
    to_byte_order,
    xyz_array,
)

__all__ = [
    "SUPPORTED_ENCODINGS",
    "as_uint8_array",
    "check_image_layout",
    "to_msg_data",
    "encoding_info",
    "image_to_numpy",
    "image_to_rgb",
    "numpy_to_image",
    "to_rgb8",
    "compressed_to_numpy",
    "compressed_to_rgb",
    "numpy_to_compressed",
    "numpy_to_compressed_depth",
    "parse_compressed_format",
    "LABEL_FIELDS",
    "add_fields",
    "cloud_to_structured",
    "dtype_to_fields",
    "fields_to_dtype",
    "finite_mask",
    "labeled_cloud",
    "structured_to_cloud",
    "to_byte_order",
    "xyz_array",
    "read_kitti_bin",
    "read_nuscenes_bin",
    "read_pcd",
    "read_ply",
    "read_point_file",
    "write_kitti_bin",
    "write_pcd",
    "write_ply",
]
