"""Real vision_msgs messages from the dicts of :mod:`samfusion.vision_msgs_conversion`.

vision_msgs is an optional dependency: :func:`vision_msgs_available` says whether it is
installed, and the ``*_msg`` functions raise ImportError naming the package when it is not.
:func:`fill_message` is generic (any rosidl message and a dict of its field names), so the
field mapping is the conversion module's alone.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any, Mapping

from samfusion.errors import ConversionError

__all__ = ["vision_msgs_available", "fill_message", "detection2d_array_msg", "detection3d_array_msg"]


def vision_msgs_available() -> bool:
    """True when the ``vision_msgs`` Python interfaces can be imported."""
    try:
        return importlib.util.find_spec("vision_msgs.msg") is not None
    except ModuleNotFoundError:
        return False


def _message_class(type_name: str) -> Any:
    package, _, name = type_name.partition("/")
    return getattr(importlib.import_module(f"{package}.msg"), name)


def fill_message(msg: Any, data: Mapping[str, Any]) -> Any:
    """Set ``msg``'s fields from ``data`` (nested dicts for nested messages, lists of dicts for
    sequences of messages); returns ``msg``. An unknown field name raises ConversionError."""
    fields = msg.get_fields_and_field_types()
    for key, value in data.items():
        if key not in fields:
            raise ConversionError(f"{type(msg).__name__} has no field {key!r} (fields: {sorted(fields)})")
        field_type = fields[key]
        if isinstance(value, Mapping):
            fill_message(getattr(msg, key), value)
        elif isinstance(value, (list, tuple)) and field_type.startswith("sequence<") and "/" in field_type:
            element = _message_class(field_type[len("sequence<"):].split(",")[0].rstrip(">"))
            setattr(msg, key, [fill_message(element(), item) for item in value])
        else:
            setattr(msg, key, value)
    return msg


def _vision_msgs() -> Any:
    try:
        return importlib.import_module("vision_msgs.msg")
    except ImportError as exc:
        raise ImportError("vision_msgs is not installed (apt install ros-$ROS_DISTRO-vision-msgs); "
                          "Detection2DArray / Detection3DArray output needs it") from exc


def detection2d_array_msg(data: Mapping[str, Any]) -> Any:
    """A vision_msgs/Detection2DArray from :func:`~samfusion.vision_msgs_conversion.detection_2d_array`."""
    return fill_message(_vision_msgs().Detection2DArray(), data)


def detection3d_array_msg(data: Mapping[str, Any]) -> Any:
    """A vision_msgs/Detection3DArray from :func:`~samfusion.vision_msgs_conversion.detection_3d_array`."""
    return fill_message(_vision_msgs().Detection3DArray(), data)
