"""sensor_msgs/CompressedImage <-> numpy (jpeg, png and compressedDepth), duck-typed.

``format`` strings as real publishers send them are understood:

* plain ``"jpeg"``, ``"png"`` (many camera drivers, rosbag conversions);
* image_transport's ``"<src enc>; <jpeg|png> compressed <coded enc>"``, e.g.
  ``"rgb8; jpeg compressed bgr8"``, ``"mono16; png compressed mono16"``;
* compressed_depth_image_transport's ``"16UC1; compressedDepth png"``,
  ``"32FC1; compressedDepth png"`` and the older ``"32FC1; compressedDepth"``.

The codec is taken from the data's magic bytes, not trusted from the string.

compressedDepth data is a 12-byte ``ConfigHeader`` (little-endian ``int32 format`` +
``float32 depthParam[2]``) followed by a PNG of uint16 values. For ``16UC1`` the values are the
depth itself. For ``32FC1`` they are quantised inverse depth: the decoded depth is
``depthQuantA / (value - depthQuantB)`` (with ``depthQuantA, depthQuantB = depthParam``), and
value 0 (no measurement) decodes to NaN, as compressed_depth_image_transport does. If the data
starts directly with a PNG signature (no ConfigHeader, seen with some old recorders) it is
decoded as is. Without a ``16UC1;`` / ``32FC1;`` prefix the stored uint16 values are returned
undecoded (the header cannot tell the two apart). The RVL codec (``"compressedDepth rvl"``) is not supported.
"""

from __future__ import annotations

import struct
from typing import Any, Callable

import numpy as np

from samfusion.convert.image import _set_header, as_uint8_array, to_msg_data, to_rgb8
from samfusion.errors import ConversionError

__all__ = [
    "compressed_to_numpy",
    "compressed_to_rgb",
    "numpy_to_compressed",
    "numpy_to_compressed_depth",
    "parse_compressed_format",
    "DEPTH_HEADER",
]

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8"
#: struct format of compressed_depth_image_transport's ConfigHeader
DEPTH_HEADER = struct.Struct("<iff")


def parse_compressed_format(fmt: Any) -> tuple[str, str, str]:
    """Split a CompressedImage format string into ``(source encoding, codec, kind)``.

    kind is ``"depth"`` for compressedDepth, ``"image"`` otherwise; codec is "jpeg", "png",
    "rvl" or "" (unknown, the data's magic bytes decide); source encoding is "" when absent.
    """
    if isinstance(fmt, bytes):
        fmt = fmt.decode("ascii", "replace")
    s = str(fmt or "").strip()
    low = s.lower()
    src = ""
    rest = low
    if ";" in s:
        src, rest = s.split(";", 1)
        src = src.strip()
        rest = rest.strip().lower()
    kind = "depth" if "compresseddepth" in rest or "compresseddepth" in low else "image"
    if "rvl" in rest:
        codec = "rvl"
    elif "png" in rest:
        codec = "png"
    elif "jpeg" in rest or "jpg" in rest:
        codec = "jpeg"
    else:
        codec = ""
    return src, codec, kind


def _imdecode(buf: np.ndarray, what: str) -> np.ndarray:
    import cv2

    if buf.size == 0:
        raise ConversionError(f"empty {what} data")
    head = buf[:8].tobytes()
    if head[:2] == _JPEG_MAGIC:
        tail = buf[-64:].tobytes()
        if b"\xff\xd9" not in tail:
            raise ConversionError(f"corrupt {what}: JPEG end-of-image marker missing ({buf.size} bytes, truncated?)")
    elif head != _PNG_MAGIC:
        raise ConversionError(f"corrupt {what}: data ({buf.size} bytes) starts with neither a JPEG nor a PNG signature")
    try:
        img = cv2.imdecode(np.ascontiguousarray(buf), cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:
        raise ConversionError(f"corrupt {what} ({buf.size} bytes): {exc}") from exc
    if img is None:
        raise ConversionError(f"corrupt {what}: OpenCV could not decode {buf.size} bytes")
    return img


def _decode_depth(buf: np.ndarray, src: str) -> np.ndarray:
    src_u = src.upper()
    if buf[:8].tobytes() == _PNG_MAGIC:
        png = buf
        quant = None
    else:
        if buf.size < DEPTH_HEADER.size + len(_PNG_MAGIC):
            raise ConversionError(
                f"corrupt compressedDepth: expected at least {DEPTH_HEADER.size + len(_PNG_MAGIC)} bytes "
                f"(12-byte ConfigHeader + PNG), got {buf.size}"
            )
        _, qa, qb = DEPTH_HEADER.unpack(buf[: DEPTH_HEADER.size].tobytes())
        quant = (qa, qb)
        png = buf[DEPTH_HEADER.size:]
        if png[:8].tobytes() != _PNG_MAGIC:
            raise ConversionError("corrupt compressedDepth: no PNG after the 12-byte ConfigHeader (rvl is unsupported)")
    raw = _imdecode(png, "compressedDepth PNG")
    if raw.ndim != 2 or raw.dtype != np.uint16:
        if raw.ndim == 2 and raw.dtype == np.uint8:
            raw = raw.astype(np.uint16)
        else:
            raise ConversionError(f"compressedDepth PNG must be 1-channel 16-bit, got {raw.dtype} shape {raw.shape}")
    if src_u in ("16UC1", "MONO16"):
        return raw
    if src_u == "32FC1":
        if quant is None:
            raise ConversionError("32FC1 compressedDepth without a ConfigHeader: cannot de-quantise")
        return _inverse_depth(raw, quant)
    if src_u == "":
        # No source encoding in the format string: the ConfigHeader cannot tell 16UC1 from
        # 32FC1 (the ROS encoder fills depthParam for both), so the stored uint16 values are
        # returned as they are.
        return raw
    raise ConversionError(f"unsupported compressedDepth source encoding {src!r}; expected 16UC1 or 32FC1")


def _inverse_depth(raw: np.ndarray, quant: tuple[float, float]) -> np.ndarray:
    qa, qb = np.float32(quant[0]), np.float32(quant[1])
    v = raw.astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        depth = qa / (v - qb)
    depth[raw == 0] = np.nan
    return depth.astype(np.float32, copy=False)


def compressed_to_numpy(msg: Any) -> np.ndarray:
    """Decode a CompressedImage-like message.

    Colour jpeg/png -> H x W x 3 uint8 **RGB** (H x W x 4 RGBA for 4-channel png); gray
    jpeg/png -> H x W uint8 (or uint16 for 16-bit png); compressedDepth 16UC1 -> H x W uint16;
    compressedDepth 32FC1 -> H x W float32 metres with NaN where no depth (see module doc).
    Corrupt or truncated data raises :class:`ConversionError`.
    """
    import cv2

    src, codec, kind = parse_compressed_format(getattr(msg, "format", ""))
    buf = as_uint8_array(getattr(msg, "data", None))
    if kind == "depth":
        if codec == "rvl":
            raise ConversionError("compressedDepth rvl is not supported; use png")
        return _decode_depth(buf, src)
    img = _imdecode(buf, f"compressed image (format {getattr(msg, 'format', '')!r})")
    if img.ndim == 3:
        if img.shape[2] == 3:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        elif img.shape[2] == 4:
            img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGBA)
    return img


def compressed_to_rgb(msg: Any, scale: str = "minmax") -> np.ndarray:
    """Decode to H x W x 3 uint8 RGB for the segmentation backends.

    Gray is replicated, alpha dropped, 16-bit / depth scaled by :func:`~samfusion.convert.image.to_rgb8`'s
    rule (``scale="minmax"``: finite min..max -> 0..255, NaN -> 0).
    """
    return to_rgb8(compressed_to_numpy(msg), "rgb", scale)


def numpy_to_compressed(
    array: np.ndarray,
    fmt: str,
    msg_cls: Callable[[], Any],
    header: Any = None,
    *,
    encoding: str | None = None,
    quality: int = 90,
    png_level: int = 3,
) -> Any:
    """Encode ``array`` as jpeg or png into a CompressedImage-like message from ``msg_cls()``.

    ``fmt`` is "jpeg"/"jpg" or "png" (or a full image_transport string containing one of them).
    ``array``: H x W x 3 uint8 RGB (or BGR with ``encoding="bgr8"``), H x W x 4 RGBA (png),
    H x W uint8 mono, or H x W uint16 (png only). ``msg.format`` is set the way
    image_transport does, e.g. ``"rgb8; jpeg compressed bgr8"``.
    """
    import cv2

    _, codec, _ = parse_compressed_format(fmt if ";" in str(fmt) else f"x; {fmt}")
    if codec not in ("jpeg", "png"):
        raise ConversionError(f"unsupported compressed format {fmt!r}; use 'jpeg' or 'png'")
    a = np.asarray(array)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim == 2:
        if a.dtype == np.uint8:
            enc = encoding or "mono8"
            coded, tgt = a, "mono8"
        elif a.dtype == np.uint16 and codec == "png":
            enc = encoding or "mono16"
            coded, tgt = a, "mono16"
        else:
            raise ConversionError(f"{codec} cannot store a {a.dtype} gray image (jpeg: uint8; png: uint8/uint16)")
    elif a.ndim == 3 and a.shape[2] in (3, 4) and a.dtype == np.uint8:
        four = a.shape[2] == 4
        enc = encoding or ("rgba8" if four else "rgb8")
        if four and codec == "jpeg":
            raise ConversionError("jpeg cannot store an alpha channel; drop it or use png")
        if enc.startswith("bgr"):
            coded = a
        else:
            coded = cv2.cvtColor(a, cv2.COLOR_RGBA2BGRA if four else cv2.COLOR_RGB2BGR)
        tgt = "bgra8" if four else "bgr8"
    else:
        raise ConversionError(f"cannot compress an array of shape {a.shape} dtype {a.dtype}")
    if codec == "jpeg":
        params = [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)]
        ext = ".jpg"
    else:
        params = [int(cv2.IMWRITE_PNG_COMPRESSION), int(png_level)]
        ext = ".png"
    ok, enc_buf = cv2.imencode(ext, np.ascontiguousarray(coded), params)
    if not ok:  # pragma: no cover
        raise ConversionError(f"OpenCV failed to encode {ext}")
    msg = msg_cls()
    _set_header(msg, header)
    msg.format = f"{enc}; {codec} compressed {tgt}"
    msg.data = to_msg_data(enc_buf)
    return msg


def numpy_to_compressed_depth(
    depth: np.ndarray,
    msg_cls: Callable[[], Any],
    header: Any = None,
    *,
    depth_max: float = 10.0,
    depth_quantization: float = 100.0,
    png_level: int = 3,
) -> Any:
    """Encode a depth image the way compressed_depth_image_transport does (png codec).

    uint16 -> ``"16UC1; compressedDepth png"`` (values stored as is). float32 metres ->
    ``"32FC1; compressedDepth png"`` with ``depthQuantA = depth_quantization``,
    ``depthQuantB = depthQuantA / depth_max`` and ``value = depthQuantA / depth + depthQuantB``
    for finite ``0 < depth < depth_max``, 0 otherwise.
    """
    import cv2

    d = np.asarray(depth)
    if d.ndim != 2:
        raise ConversionError(f"depth image must be H x W, got shape {d.shape}")
    if d.dtype == np.uint16:
        qa = qb = 0.0
        coded = d
        src = "16UC1"
    elif d.dtype == np.float32:
        qa = float(depth_quantization)
        qb = float(np.float32(qa) / np.float32(depth_max))
        with np.errstate(divide="ignore", invalid="ignore"):
            valid = np.isfinite(d) & (d > 0) & (d < depth_max)
            inv = np.where(valid, np.float32(qa) / np.where(valid, d, 1) + np.float32(qb), 0)
        coded = np.clip(np.rint(inv), 0, 65535).astype(np.uint16)
        src = "32FC1"
    else:
        raise ConversionError(f"compressedDepth needs uint16 or float32 depth, got {d.dtype}")
    ok, png = cv2.imencode(".png", np.ascontiguousarray(coded), [int(cv2.IMWRITE_PNG_COMPRESSION), int(png_level)])
    if not ok:  # pragma: no cover
        raise ConversionError("OpenCV failed to encode the depth png")
    msg = msg_cls()
    _set_header(msg, header)
    msg.format = f"{src}; compressedDepth png"
    data = to_msg_data(DEPTH_HEADER.pack(0, qa, qb))
    data.frombytes(png)
    msg.data = data
    return msg
