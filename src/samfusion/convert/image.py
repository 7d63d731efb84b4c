"""sensor_msgs/Image <-> numpy, duck-typed on the message fields.

Works with rclpy messages, rosbags messages and anything with the attributes ``height``,
``width``, ``encoding``, ``is_bigendian``, ``step`` and ``data`` (e.g. ``types.SimpleNamespace``).

Decoding (:func:`image_to_numpy`) is zero-copy where possible: for 8-bit images, or multi-byte
images whose byte order is the host's, the result is a (possibly strided, possibly read-only)
view of ``msg.data``. Pass ``copy=True`` for a private, writable, C-contiguous array.

Result shapes: ``(H, W)`` for one-channel encodings (mono8, mono16, 8UC1, 16UC1, 32FC1 ...),
``(H, W, C)`` otherwise; yuv422 / yuv422_yuy2 and the bayer encodings decode to ``(H, W, 3)``
RGB uint8 (bayer16 to RGB uint16).

Byte orders checked against OpenCV with hand-made pixels (see test/convert/test_image.py):

* ``yuv422`` (ROS name) is UYVY: bytes ``U0 Y0 V0 Y1`` -> ``cv2.COLOR_YUV2RGB_UYVY``.
* ``yuv422_yuy2`` is YUYV: bytes ``Y0 U0 Y1 V0`` -> ``cv2.COLOR_YUV2RGB_YUY2``.
* ``bayer_rggb8``: row 0 = ``R G R G ...``, row 1 = ``G B G B ...``. OpenCV's legacy Bayer
  code names are shifted by one (RGGB is ``COLOR_BayerBG2RGB`` in OpenCV 4); the code for each
  pattern is found once at first use by demosaicing a small mosaic of a known colour, so a
  renaming in a future OpenCV cannot silently swap red and blue.
"""

from __future__ import annotations

import array as _array
import sys
from typing import Any, Callable

import numpy as np

from samfusion.errors import ConversionError

__all__ = [
    "as_uint8_array",
    "to_msg_data",
    "image_to_numpy",
    "check_image_layout",
    "image_to_rgb",
    "to_rgb8",
    "numpy_to_image",
    "encoding_info",
    "SUPPORTED_ENCODINGS",
]

_NATIVE_BIG = sys.byteorder == "big"


# --------------------------------------------------------------------------------------------
# buffer normalisation (shared by every converter)
# --------------------------------------------------------------------------------------------
def as_uint8_array(data: Any) -> np.ndarray:
    """Return ``data`` as a 1-D uint8 numpy array, without copying where possible.

    Accepts bytes, bytearray, memoryview, array.array (any typecode: its raw bytes), numpy
    arrays (any dtype: their raw bytes; must be C-contiguous to be zero-copy), lists / tuples of
    ints in 0..255, and None (empty). The result may be read-only (e.g. for ``bytes``).
    """
    if data is None:
        return np.empty(0, np.uint8)
    if isinstance(data, np.ndarray):
        if data.dtype == np.uint8:
            return data.reshape(-1)
        if data.dtype.hasobject:
            raise ConversionError(f"message data is an object array ({data.dtype}), not bytes")
        return np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    if isinstance(data, (bytes, bytearray, memoryview, _array.array)):
        try:
            return np.frombuffer(data, dtype=np.uint8)
        except (ValueError, TypeError, BufferError):
            # non-contiguous memoryview or exotic buffer: copy once
            return np.frombuffer(memoryview(data).tobytes(), dtype=np.uint8)
    if isinstance(data, str):
        raise ConversionError("message data is a str; expected bytes or a sequence of ints")
    try:
        arr = np.asarray(data)
    except Exception as exc:  # pragma: no cover - exotic input
        raise ConversionError(f"cannot read message data of type {type(data).__name__}: {exc}") from exc
    if arr.size == 0:
        return np.empty(0, np.uint8)
    if arr.dtype == np.uint8:
        return arr.reshape(-1)
    if arr.dtype.kind not in "iub":
        raise ConversionError(f"message data of type {type(data).__name__} holds {arr.dtype}, not byte values")
    flat = arr.reshape(-1)
    if flat.min() < 0 or flat.max() > 255:
        raise ConversionError("message data holds integers outside 0..255")
    return flat.astype(np.uint8)


def to_msg_data(array: Any) -> _array.array:
    """The raw bytes of ``array`` (numpy array or bytes-like) as ``array.array('B')``: one memcpy.

    This is what every builder assigns to ``msg.data``. rclpy stores an ``array.array('B')``
    as is (or with one memcpy), whereas ``bytes`` is validated element by element in Python
    when ``ROS_PYTHON_CHECK_FIELDS=1`` (0.4 s for a 3 MB image) and a numpy array is converted
    element by element always (~100x slower).
    """
    out = _array.array("B")
    if isinstance(array, np.ndarray):
        flat = np.ascontiguousarray(array).reshape(-1)
        if flat.size:
            out.frombytes(flat.view(np.uint8))
    else:
        out.frombytes(array)
    return out


def _py_int(value: Any, what: str) -> int:
    try:
        out = int(value)
    except Exception as exc:
        raise ConversionError(f"{what} is not an integer: {value!r}") from exc
    if out < 0:
        raise ConversionError(f"{what} is negative: {out}")
    return out


def _encoding_str(value: Any) -> str:
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    return str(value).strip()


# --------------------------------------------------------------------------------------------
# encoding table
# --------------------------------------------------------------------------------------------
# name -> (base dtype char, channels, kind); kind: "plain" | "yuv_uyvy" | "yuv_yuyv" | "bayer"
_TABLE: dict[str, tuple[str, int, str]] = {
    "rgb8": ("u1", 3, "plain"),
    "bgr8": ("u1", 3, "plain"),
    "rgba8": ("u1", 4, "plain"),
    "bgra8": ("u1", 4, "plain"),
    "rgb16": ("u2", 3, "plain"),
    "bgr16": ("u2", 3, "plain"),
    "rgba16": ("u2", 4, "plain"),
    "bgra16": ("u2", 4, "plain"),
    "mono8": ("u1", 1, "plain"),
    "mono16": ("u2", 1, "plain"),
    "yuv422": ("u1", 2, "yuv_uyvy"),
    "uyvy": ("u1", 2, "yuv_uyvy"),
    "yuv422_yuy2": ("u1", 2, "yuv_yuyv"),
    "yuyv": ("u1", 2, "yuv_yuyv"),
}
for _pat in ("rggb", "bggr", "gbrg", "grbg"):
    _TABLE[f"bayer_{_pat}8"] = ("u1", 1, "bayer")
    _TABLE[f"bayer_{_pat}16"] = ("u2", 1, "bayer")

_CV_DEPTHS = {"8U": "u1", "8S": "i1", "16U": "u2", "16S": "i2", "32S": "i4", "32F": "f4", "64F": "f8"}
for _d, _c in _CV_DEPTHS.items():
    for _n in range(1, 5):
        _TABLE[f"{_d}C{_n}"] = (_c, _n, "plain")

#: Every encoding :func:`image_to_numpy` decodes.
SUPPORTED_ENCODINGS: tuple[str, ...] = tuple(_TABLE)

# ROS 2 (image_encodings.hpp) lower-case spellings of the OpenCV-style names are also seen.
_ALIASES = {k.lower(): k for k in _TABLE}


def encoding_info(encoding: str) -> tuple[np.dtype, int, str]:
    """(base dtype in little-endian order, channels, kind) of a ROS image encoding."""
    enc = _encoding_str(encoding)
    key = enc if enc in _TABLE else _ALIASES.get(enc.lower())
    if key is None:
        raise ConversionError(
            f"unsupported image encoding {enc!r}; supported: {', '.join(SUPPORTED_ENCODINGS)}"
        )
    base, ch, kind = _TABLE[key]
    return np.dtype("<" + base), ch, kind


def _canonical(encoding: str) -> str:
    enc = _encoding_str(encoding)
    return enc if enc in _TABLE else _ALIASES.get(enc.lower(), enc)


# --------------------------------------------------------------------------------------------
# bayer code calibration
# --------------------------------------------------------------------------------------------
_BAYER_CODES: dict[str, int] | None = None


def _bayer_codes() -> dict[str, int]:
    """Map pattern ('rggb', ...) -> cv2 code producing RGB, found by demosaicing known colours."""
    global _BAYER_CODES
    if _BAYER_CODES is not None:
        return _BAYER_CODES
    import cv2

    candidates = [getattr(cv2, n) for n in ("COLOR_BayerBG2RGB", "COLOR_BayerGB2RGB",
                                            "COLOR_BayerRG2RGB", "COLOR_BayerGR2RGB")]
    colour = {"r": 200, "g": 110, "b": 20}
    found: dict[str, int] = {}
    for pat in ("rggb", "bggr", "gbrg", "grbg"):
        mosaic = np.zeros((8, 8), np.uint8)
        mosaic[0::2, 0::2] = colour[pat[0]]
        mosaic[0::2, 1::2] = colour[pat[1]]
        mosaic[1::2, 0::2] = colour[pat[2]]
        mosaic[1::2, 1::2] = colour[pat[3]]
        for code in candidates:
            px = cv2.cvtColor(mosaic, code)[4, 4]
            if abs(int(px[0]) - 200) <= 2 and abs(int(px[1]) - 110) <= 2 and abs(int(px[2]) - 20) <= 2:
                found[pat] = code
                break
        else:  # pragma: no cover - would mean OpenCV changed behaviour completely
            raise ConversionError(f"could not find an OpenCV demosaicing code for bayer_{pat}")
    _BAYER_CODES = found
    return found


# --------------------------------------------------------------------------------------------
# decode
# --------------------------------------------------------------------------------------------
def _raw_view(msg: Any) -> tuple[np.ndarray, str, str]:
    """(H x W [x C] array in the wire byte order, canonical encoding, kind). Validates sizes."""
    encoding = _canonical(getattr(msg, "encoding", ""))
    base, channels, kind = encoding_info(encoding)
    height = _py_int(getattr(msg, "height", 0), "image height")
    width = _py_int(getattr(msg, "width", 0), "image width")
    step = _py_int(getattr(msg, "step", 0), "image step")
    big = bool(getattr(msg, "is_bigendian", 0)) and base.itemsize > 1
    dtype = base.newbyteorder(">" if big else "<")
    bpp = base.itemsize * channels
    row_bytes = width * bpp
    shape: tuple[int, ...] = (height, width) if channels == 1 else (height, width, channels)
    if kind.startswith("yuv"):
        shape = (height, width, 2)
        if width % 2:
            raise ConversionError(f"{encoding} image width must be even, got {width}")
    if height == 0 or width == 0:
        if step and step < row_bytes:
            raise ConversionError(f"{encoding} image step {step} < width*bytes_per_pixel = {row_bytes}")
        return np.empty(shape, dtype), encoding, kind
    if step < row_bytes:
        raise ConversionError(
            f"{encoding} image step {step} < width*bytes_per_pixel = {width}*{bpp} = {row_bytes}"
        )
    buf = as_uint8_array(getattr(msg, "data", None))
    needed = step * (height - 1) + row_bytes  # the last row's padding may be absent
    if buf.size < needed:
        raise ConversionError(
            f"truncated {encoding} image {width}x{height}: expected {step * height} bytes "
            f"(step {step} x height {height}), got {buf.size}"
        )
    strides = (step, bpp) if channels == 1 else (step, bpp, base.itemsize)
    if kind.startswith("yuv"):
        strides = (step, 2, 1)
    arr = np.ndarray(shape, dtype=dtype, buffer=buf, offset=0, strides=strides)
    return arr, encoding, kind


def check_image_layout(msg: Any) -> None:
    """Refuse an Image whose header cannot describe its data, without decoding any pixel.

    Cheap (no copy): unknown encoding, zero width or height, ``step`` shorter than a row,
    truncated data. A node runs it in the subscription callback so malformed frames never take
    a slot in the latest-frame buffer that a good frame needs.
    """
    arr, encoding, _ = _raw_view(msg)
    if arr.size == 0:
        raise ConversionError(f"empty {encoding} image {arr.shape[1]}x{arr.shape[0]}: nothing to segment")


def _to_native(arr: np.ndarray) -> np.ndarray:
    if arr.dtype.byteorder in ("=", "|") or arr.dtype.isnative:
        return arr
    return arr.astype(arr.dtype.newbyteorder("="))


def image_to_numpy(msg: Any, copy: bool = False) -> np.ndarray:
    """Decode a sensor_msgs/Image-like message into a numpy array (native byte order).

    ``step`` padding is honoured (``step < width * bytes_per_pixel`` raises), ``is_bigendian``
    is honoured for 16/32/64-bit encodings, truncated data raises :class:`ConversionError`
    naming the expected and actual byte counts; unknown encodings raise with the supported list.
    yuv422 / yuv422_yuy2 / bayer_* decode to RGB (H x W x 3).
    """
    arr, encoding, kind = _raw_view(msg)
    if kind == "plain":
        out = _to_native(arr)
        if copy and out is arr:
            return np.array(arr, order="C", copy=True)
        return out
    import cv2

    if arr.size == 0:
        dt = np.uint16 if arr.dtype.itemsize == 2 else np.uint8
        return np.empty(arr.shape[:2] + (3,), dt)
    if kind == "yuv_uyvy":
        return cv2.cvtColor(np.ascontiguousarray(arr), cv2.COLOR_YUV2RGB_UYVY)
    if kind == "yuv_yuyv":
        return cv2.cvtColor(np.ascontiguousarray(arr), cv2.COLOR_YUV2RGB_YUY2)
    # bayer
    pattern = encoding[len("bayer_"):len("bayer_") + 4]
    src = np.ascontiguousarray(_to_native(arr))
    if src.shape[0] < 2 or src.shape[1] < 2:
        raise ConversionError(f"{encoding} image must be at least 2x2 to demosaic, got {src.shape[1]}x{src.shape[0]}")
    return cv2.cvtColor(src, _bayer_codes()[pattern])


# --------------------------------------------------------------------------------------------
# to RGB for the segmentation backends
# --------------------------------------------------------------------------------------------
def to_rgb8(arr: np.ndarray, order: str = "rgb", scale: str = "minmax") -> np.ndarray:
    """Convert a decoded H x W [x C] array to H x W x 3 uint8 RGB.

    ``order`` is the channel order of ``arr`` ("rgb", "bgr"; alpha, if any, is dropped).

    Scaling rule for non-uint8 data (``scale``):

    * ``"minmax"`` (default): per frame, the finite values are mapped linearly so that their
      minimum becomes 0 and their maximum 255 (rounded); NaN / +-inf become 0; a constant
      image becomes all 0. Suits depth (16UC1 mm, 32FC1 m) and IR images.
    * ``"full"``: the dtype's nominal range: uint16 / int16 by ``value / 257`` (65535 -> 255),
      float in [0, 1] times 255, clipped; NaN -> 0.
    """
    a = np.asarray(arr)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in (1, 2, 3, 4):
        raise ConversionError(f"cannot convert an array of shape {np.shape(arr)} to RGB")
    if a.shape[2] == 2:
        raise ConversionError("cannot convert a 2-channel array to RGB")
    if a.dtype != np.uint8:
        a = _scale_to_u8(a, scale)
    if a.shape[2] == 1:
        return np.repeat(a, 3, axis=2)
    if order == "bgr":
        return np.ascontiguousarray(a[:, :, 2::-1])
    if order != "rgb":
        raise ConversionError(f"unknown channel order {order!r}")
    return np.ascontiguousarray(a[:, :, :3])


def _scale_to_u8(a: np.ndarray, scale: str) -> np.ndarray:
    if a.dtype == np.bool_:
        return a.astype(np.uint8) * 255
    if scale == "full":
        if a.dtype.kind == "f":
            f = np.nan_to_num(a.astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0)
            return np.clip(np.rint(f * 255.0), 0, 255).astype(np.uint8)
        info = np.iinfo(a.dtype)
        f = (a.astype(np.float64) - info.min) * (255.0 / (info.max - info.min))
        return np.clip(np.rint(f), 0, 255).astype(np.uint8)
    if scale != "minmax":
        raise ConversionError(f"unknown scale rule {scale!r}; use 'minmax' or 'full'")
    f = a.astype(np.float64) if a.dtype.itemsize > 4 or a.dtype.kind in "iu" else a.astype(np.float32)
    finite = np.isfinite(f)
    if not finite.any():
        return np.zeros(a.shape, np.uint8)
    lo = float(f[finite].min())
    hi = float(f[finite].max())
    if hi <= lo:
        return np.zeros(a.shape, np.uint8)
    out = (f - lo) * (255.0 / (hi - lo))
    out[~finite] = 0
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def image_to_rgb(msg: Any, scale: str = "minmax") -> np.ndarray:
    """Decode an Image-like message to H x W x 3 uint8 RGB (always a fresh contiguous array).

    mono -> gray replicated; bgr/bgra swapped; alpha dropped; 8UC3 / 8UC4 are taken as BGR(A)
    (OpenCV's convention, as cv_bridge does); 16-bit and float images are scaled to 8 bit by
    the rule documented in :func:`to_rgb8` (``scale="minmax"`` by default).
    """
    arr = image_to_numpy(msg)
    encoding = _canonical(msg.encoding)
    _, _, kind = encoding_info(encoding)
    if kind != "plain":  # yuv / bayer already RGB
        return to_rgb8(arr, "rgb", scale) if arr.dtype != np.uint8 else np.ascontiguousarray(arr)
    order = "bgr" if encoding.startswith("bgr") or encoding[-2:] in ("C3", "C4") else "rgb"
    return to_rgb8(arr, order, scale)


# --------------------------------------------------------------------------------------------
# encode
# --------------------------------------------------------------------------------------------
def _set_header(msg: Any, header: Any) -> None:
    if header is not None:
        msg.header = header


def numpy_to_image(array: np.ndarray, encoding: str, msg_cls: Callable[[], Any], header: Any = None) -> Any:
    """Build an Image-like message from ``array`` with ``msg_cls()``.

    Supported: every plain encoding of :data:`SUPPORTED_ENCODINGS` (rgb8, bgr8, rgba8, bgra8,
    mono8, mono16, rgb16 ..., 8UC1..64FC4) plus the raw bayer (H x W) and yuv422 (H x W x 2)
    layouts. The array's dtype must be the encoding's (e.g. uint16 for mono16; no silent
    casting) and its channel count must match. The message gets ``step = width * bpp``,
    ``is_bigendian = 0`` (little-endian data) and ``data`` as ``array.array('B')`` (see
    :func:`to_msg_data`).
    """
    enc = _canonical(encoding)
    base, channels, kind = encoding_info(enc)
    a = np.asarray(array)
    if a.ndim == 3 and a.shape[2] == 1 and channels == 1:
        a = a[:, :, 0]
    expect_ndim = 2 if channels == 1 else 3
    if a.ndim != expect_ndim or (channels > 1 and a.shape[2] != channels):
        want = "H x W" if channels == 1 else f"H x W x {channels}"
        raise ConversionError(f"encoding {enc} needs an {want} array, got shape {a.shape}")
    if a.dtype.newbyteorder("<") != base and a.dtype != base:
        raise ConversionError(f"encoding {enc} needs dtype {base.name}, got {a.dtype}")
    le = np.ascontiguousarray(a, dtype=base)  # little-endian, contiguous
    msg = msg_cls()
    _set_header(msg, header)
    msg.height = int(a.shape[0])
    msg.width = int(a.shape[1])
    msg.encoding = enc
    msg.is_bigendian = 0
    msg.step = int(a.shape[1]) * base.itemsize * channels
    msg.data = to_msg_data(le)
    return msg
