"""sensor_msgs/PointCloud2 <-> numpy structured arrays, duck-typed on the message fields.

Layout rules (what :func:`cloud_to_structured` accepts and returns):

* The structured dtype mirrors the message exactly: one numpy field per PointField, at the
  PointField's ``offset``, ``itemsize == point_step``; gaps inside a point and padding at the end
  of ``point_step`` are preserved as unnamed bytes. ``count > 1`` fields become subarray fields
  (shape ``(count,)``); ``count == 0`` (published by some drivers) is read as 1.
  PointFields named ``"_"`` or ``""`` are padding (PCL's convention) and are skipped.
* Points are returned in **row-major order**: index ``r * width + c`` is row ``r`` (0..height-1),
  column ``c``; shape ``(height * width,)``, or ``(height, width)`` with ``organized=True``.
  ``row_step`` padding between rows is skipped (``row_step < width * point_step`` raises when
  height > 1; for height <= 1 row_step is ignored, as sensor_msgs_py does).
* Big-endian data (``is_bigendian``) is converted to native byte order bit-exactly (floats are
  swapped as unsigned integers, never through float registers, so NaN payloads and packed rgb
  survive). NaN / inf are kept.
* Without ``copy=True`` the result is, where the layout allows (native byte order, no row
  padding), a zero-copy **read-only view** of ``msg.data``.
* Invalid headers raise :class:`ConversionError` before anything is allocated: sizes are
  computed with Python ints, so ``width = 4294967295`` with empty data fails at once.
  Overlapping fields, fields past ``point_step``, duplicate names and unknown datatypes raise.

:func:`structured_to_cloud` is the inverse and keeps the dtype's layout exactly (offsets,
``point_step = itemsize``), copying bytes, so packed rgb (float32 or uint32) round-trips bit-exact.
"""

from __future__ import annotations

import sys
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from samfusion.convert.image import _py_int, _set_header, as_uint8_array, to_msg_data
from samfusion.errors import ConversionError

__all__ = [
    "INT8", "UINT8", "INT16", "UINT16", "INT32", "UINT32", "FLOAT32", "FLOAT64",
    "DATATYPE_TO_DTYPE",
    "fields_to_dtype",
    "dtype_to_fields",
    "cloud_to_structured",
    "xyz_array",
    "finite_mask",
    "structured_to_cloud",
    "add_fields",
    "labeled_cloud",
    "LABEL_FIELDS",
    "to_byte_order",
]

INT8, UINT8, INT16, UINT16, INT32, UINT32, FLOAT32, FLOAT64 = range(1, 9)

#: PointField datatype -> numpy base type (little-endian)
DATATYPE_TO_DTYPE: dict[int, np.dtype] = {
    INT8: np.dtype("i1"),
    UINT8: np.dtype("u1"),
    INT16: np.dtype("<i2"),
    UINT16: np.dtype("<u2"),
    INT32: np.dtype("<i4"),
    UINT32: np.dtype("<u4"),
    FLOAT32: np.dtype("<f4"),
    FLOAT64: np.dtype("<f8"),
}
_KIND_SIZE_TO_DATATYPE = {(dt.kind, dt.itemsize): k for k, dt in DATATYPE_TO_DTYPE.items()}

#: the fields :func:`labeled_cloud` appends, in order
LABEL_FIELDS: tuple[tuple[str, np.dtype], ...] = (
    ("label", np.dtype("<u2")),
    ("instance", np.dtype("<u4")),
    ("score", np.dtype("<f4")),
)
_DEFAULT_FIELD_DTYPES = dict(LABEL_FIELDS)
_PADDING_NAMES = ("", "_")


# --------------------------------------------------------------------------------------------
# dtype <-> PointField
# --------------------------------------------------------------------------------------------
def _field_name(f: Any) -> str:
    name = getattr(f, "name", "")
    if isinstance(name, bytes):
        name = name.decode("utf-8", "replace")
    return str(name)


def fields_to_dtype(fields: Iterable[Any], point_step: int, is_bigendian: bool = False) -> np.dtype:
    """Structured dtype for PointField-like ``fields`` (attributes name, offset, datatype, count).

    ``itemsize == point_step``; the byte order is big-endian when ``is_bigendian``.
    Raises :class:`ConversionError` for unknown datatypes, duplicate names, fields extending past
    ``point_step`` and overlapping fields.
    """
    point_step = _py_int(point_step, "point_step")
    order = ">" if is_bigendian else "<"
    names: list[str] = []
    formats: list[Any] = []
    offsets: list[int] = []
    spans: list[tuple[int, int, str]] = []
    for f in fields:
        name = _field_name(f)
        offset = _py_int(getattr(f, "offset", 0), f"offset of field {name!r}")
        datatype = _py_int(getattr(f, "datatype", 0), f"datatype of field {name!r}")
        count = _py_int(getattr(f, "count", 1), f"count of field {name!r}")
        count = max(count, 1)
        if datatype not in DATATYPE_TO_DTYPE:
            raise ConversionError(
                f"field {name!r} has unknown PointField datatype {datatype} (expected 1..8: INT8..FLOAT64)"
            )
        base = DATATYPE_TO_DTYPE[datatype].newbyteorder(order) if DATATYPE_TO_DTYPE[datatype].itemsize > 1 \
            else DATATYPE_TO_DTYPE[datatype]
        end = offset + base.itemsize * count
        if end > point_step:
            raise ConversionError(
                f"field {name!r} (offset {offset}, {count} x {base.itemsize} bytes) ends at byte {end}, "
                f"past point_step {point_step}"
            )
        spans.append((offset, end, name or "_"))
        if name in _PADDING_NAMES:
            continue
        if name in names:
            raise ConversionError(f"duplicate PointField name {name!r}")
        names.append(name)
        formats.append(base if count == 1 else (base, (count,)))
        offsets.append(offset)
    spans.sort()
    for (o1, e1, n1), (o2, _e2, n2) in zip(spans, spans[1:]):
        if o2 < e1:
            raise ConversionError(f"PointFields {n1!r} (bytes {o1}..{e1 - 1}) and {n2!r} (from byte {o2}) overlap")
    try:
        return np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": point_step})
    except (ValueError, TypeError) as exc:  # pragma: no cover - guarded above
        raise ConversionError(f"invalid PointField layout: {exc}") from exc


def _base_and_count(ftype: np.dtype, name: str) -> tuple[np.dtype, int]:
    if ftype.subdtype is not None:
        base, shape = ftype.subdtype
        count = int(np.prod(shape, dtype=np.int64))
    else:
        base, count = ftype, 1
    if base.fields is not None or base.subdtype is not None:
        raise ConversionError(f"field {name!r}: nested structured fields cannot be PointFields")
    if (base.kind, base.itemsize) not in _KIND_SIZE_TO_DATATYPE:
        raise ConversionError(
            f"field {name!r} has dtype {base} which no PointField datatype represents "
            "(int8/16/32, uint8/16/32, float32/64)"
        )
    return base, count


def dtype_to_fields(dtype: np.dtype, field_cls: Callable[..., Any]) -> list[Any]:
    """PointField-like objects (made with ``field_cls``) describing ``dtype``, in dtype order."""
    dtype = np.dtype(dtype)
    if dtype.names is None:
        raise ConversionError(f"expected a structured dtype, got {dtype}")
    out = []
    for name in dtype.names:
        ftype, offset = dtype.fields[name][:2]
        base, count = _base_and_count(ftype, name)
        out.append(_make_field(field_cls, name, int(offset), _KIND_SIZE_TO_DATATYPE[(base.kind, base.itemsize)], count))
    return out


def _make_field(field_cls: Callable[..., Any], name: str, offset: int, datatype: int, count: int) -> Any:
    try:
        return field_cls(name=name, offset=offset, datatype=datatype, count=count)
    except TypeError:
        f = field_cls()
        f.name = name
        f.offset = offset
        f.datatype = datatype
        f.count = count
        return f


# --------------------------------------------------------------------------------------------
# byte order (bit-exact)
# --------------------------------------------------------------------------------------------
def _map_bases(dtype: np.dtype, fn: Callable[[np.dtype], np.dtype]) -> np.dtype:
    names = list(dtype.names)
    formats = []
    offsets = []
    for n in names:
        ftype, off = dtype.fields[n][:2]
        if ftype.subdtype is not None:
            base, shape = ftype.subdtype
            formats.append((fn(base), shape))
        else:
            formats.append(fn(ftype))
        offsets.append(off)
    return np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": dtype.itemsize})


def _with_order(order: str) -> Callable[[np.dtype], np.dtype]:
    def fn(b: np.dtype) -> np.dtype:
        return b.newbyteorder(order) if b.itemsize > 1 else b
    return fn


def _as_uint(b: np.dtype) -> np.dtype:
    if b.kind == "f":
        return np.dtype(f"{b.str[0] if b.str[0] in '<>' else '='}u{b.itemsize}")
    return b


def to_byte_order(arr: np.ndarray, order: str = "=") -> np.ndarray:
    """Return ``arr`` (structured) with every field in byte order ``order`` ('<', '>' or '=').

    Same names, offsets and itemsize; a no-op (no copy) when already so. Floats are swapped as
    unsigned integers so every bit (NaN payloads, packed rgb) is kept.
    """
    if order == "=":
        order = "<" if sys.byteorder == "little" else ">"
    target = _map_bases(arr.dtype, _with_order(order))
    if target == arr.dtype:
        return arr
    src_u = _map_bases(arr.dtype, _as_uint)
    dst_u = _map_bases(target, _as_uint)
    out = np.zeros(arr.shape, dst_u)
    out[...] = arr.view(src_u) if arr.flags.c_contiguous or arr.ndim <= 1 else np.ascontiguousarray(arr).view(src_u)
    return out.view(target)


# --------------------------------------------------------------------------------------------
# PointCloud2 -> numpy
# --------------------------------------------------------------------------------------------
def cloud_to_structured(msg: Any, organized: bool = False, copy: bool = False) -> np.ndarray:
    """Decode a PointCloud2-like message to a structured array (layout rules: module doc).

    Returns shape ``(height * width,)`` in row-major order, or ``(height, width)`` with
    ``organized=True``. ``copy=True`` guarantees a private writable array.
    """
    height = _py_int(getattr(msg, "height", 0), "cloud height")
    width = _py_int(getattr(msg, "width", 0), "cloud width")
    point_step = _py_int(getattr(msg, "point_step", 0), "point_step")
    row_step = _py_int(getattr(msg, "row_step", 0), "row_step")
    big = bool(getattr(msg, "is_bigendian", False))
    wire = fields_to_dtype(getattr(msg, "fields", ()) or (), point_step, big)
    npoints = height * width
    shape = (height, width) if organized else (npoints,)
    if npoints == 0:
        return np.empty(shape, _map_bases(wire, _with_order("=")))
    if point_step == 0:
        raise ConversionError(f"PointCloud2 with {npoints} points has point_step 0")
    row_bytes = width * point_step
    if height > 1 and row_step < row_bytes:
        raise ConversionError(
            f"PointCloud2 row_step {row_step} < width*point_step = {width}*{point_step} = {row_bytes}"
        )
    eff_row = row_step if height > 1 else row_bytes
    expected = eff_row * height
    needed = eff_row * (height - 1) + row_bytes
    buf = as_uint8_array(getattr(msg, "data", None))
    if buf.size < needed:
        raise ConversionError(
            f"truncated PointCloud2: {height}x{width} points (point_step {point_step}, row_step {eff_row}) "
            f"expected {expected} bytes, got {buf.size}"
        )
    if eff_row == row_bytes:
        arr = np.frombuffer(buf, dtype=wire, count=npoints).reshape(shape)
    else:
        arr = np.ndarray((height, width), dtype=wire, buffer=buf, offset=0, strides=(eff_row, point_step))
        arr = np.ascontiguousarray(arr).reshape(shape)
    native = to_byte_order(arr, "=")
    if copy and native is arr:
        native = arr.copy()
    return native


# --------------------------------------------------------------------------------------------
# xyz helpers
# --------------------------------------------------------------------------------------------
def finite_mask(structured: np.ndarray, fields: Sequence[str] = ("x", "y", "z")) -> np.ndarray:
    """Boolean array (shape ``structured.shape``): True where every one of ``fields`` is finite."""
    mask = np.ones(structured.shape, dtype=bool)
    for name in fields:
        if structured.dtype.names is None or name not in structured.dtype.names:
            raise ConversionError(f"cloud has no field {name!r} (fields: {structured.dtype.names})")
        col = structured[name]
        if col.dtype.kind == "f":
            fin = np.isfinite(col)
            if fin.ndim > mask.ndim:
                fin = fin.reshape(mask.shape + (-1,)).all(axis=-1)
            mask &= fin
    return mask


def xyz_array(structured: np.ndarray, dtype: Any = np.float32, remove_nans: bool = False) -> np.ndarray:
    """(N, 3) array of the x, y, z fields, N = ``structured.size`` in row-major order.

    With ``remove_nans`` the rows with a non-finite coordinate are dropped. Always a new array.
    """
    names = structured.dtype.names or ()
    for n in ("x", "y", "z"):
        if n not in names:
            raise ConversionError(f"cloud has no field {n!r} (fields: {names})")
    flat = structured.reshape(-1)
    n = flat.shape[0]
    # three strided column copies are faster than one (n, 3) strided block copy
    out = np.empty((n, 3), dtype=dtype)
    for i, name in enumerate(("x", "y", "z")):
        col = flat[name]
        if col.ndim != 1:
            raise ConversionError(f"field {name!r} is a subarray field; expected one value per point")
        out[:, i] = col
    if remove_nans:
        out = out[np.isfinite(out).all(axis=1)]
    return out


# --------------------------------------------------------------------------------------------
# numpy -> PointCloud2
# --------------------------------------------------------------------------------------------
def _raw_bytes(arr: np.ndarray) -> np.ndarray:
    """uint8 view ``arr.shape + (itemsize,)`` of a structured array's memory (copy if needed)."""
    a = np.ascontiguousarray(arr)
    if a.size == 0:
        return np.zeros(a.shape + (a.dtype.itemsize,), np.uint8)
    return a.reshape(-1).view(np.uint8).reshape(a.shape + (a.dtype.itemsize,))


def structured_to_cloud(
    array: np.ndarray,
    msg_cls: Callable[[], Any],
    field_cls: Callable[..., Any],
    header: Any = None,
    is_dense: bool | None = None,
) -> Any:
    """Build a PointCloud2-like message (``msg_cls()``) from a structured array.

    The dtype layout is kept exactly: PointField offsets are the dtype's offsets and
    ``point_step`` its itemsize; data is little-endian (``is_bigendian = False``) and copied as
    bytes (bit-exact) into an ``array.array('B')``. A 1-D array gives ``height = 1``; a 2-D array gives an organized cloud.
    ``is_dense=None`` means: True iff x, y, z (when present) are finite everywhere.
    ``field_cls`` is called with keyword arguments name/offset/datatype/count (rclpy, rosbags,
    SimpleNamespace), or with none and the attributes set afterwards.
    """
    a = np.asarray(array)
    if a.dtype.names is None:
        raise ConversionError(f"structured_to_cloud needs a structured array, got dtype {a.dtype}")
    if a.ndim == 0:
        a = a.reshape(1)
    if a.ndim == 1:
        height, width = 1, a.shape[0]
    elif a.ndim == 2:
        height, width = a.shape
    else:
        raise ConversionError(f"structured_to_cloud needs a 1-D or 2-D array, got shape {a.shape}")
    fields = dtype_to_fields(a.dtype, field_cls)  # validates every field type
    le = to_byte_order(a, "<")
    if is_dense is None:
        names = a.dtype.names
        is_dense = bool(finite_mask(a).all()) if all(n in names for n in ("x", "y", "z")) else True
    msg = msg_cls()
    _set_header(msg, header)
    msg.height = int(height)
    msg.width = int(width)
    msg.fields = fields
    msg.is_bigendian = False
    msg.point_step = int(a.dtype.itemsize)
    msg.row_step = int(a.dtype.itemsize * width)
    msg.data = to_msg_data(le)
    msg.is_dense = bool(is_dense)
    return msg


# --------------------------------------------------------------------------------------------
# appending fields / labeled output cloud
# --------------------------------------------------------------------------------------------
def _align(value: int, to: int) -> int:
    return (value + to - 1) // to * to


def add_fields(structured: np.ndarray, **columns: Any) -> np.ndarray:
    """Return a copy of ``structured`` with new fields appended after its itemsize.

    Every source field keeps its offset and bytes (the whole source point, gaps included, is
    copied byte for byte). New fields start at ``itemsize`` rounded up to 4, each aligned to
    ``min(its size, 4)``; the new itemsize is rounded up to 4. A column is a numpy array (its
    dtype is used), a ``(values, dtype)`` tuple, or a scalar / list, typed by the defaults
    label=uint16, instance=uint32, score=float32 (other names: numpy's own inference). Values
    broadcast to ``structured.shape`` (a flat array of ``structured.size`` values is accepted
    for organized input).
    """
    src = np.asarray(structured)
    if src.dtype.names is None:
        raise ConversionError(f"add_fields needs a structured array, got dtype {src.dtype}")
    names = list(src.dtype.names)
    formats = [src.dtype.fields[n][0] for n in names]
    offsets = [src.dtype.fields[n][1] for n in names]
    cursor = _align(src.dtype.itemsize, 4)
    values: list[tuple[str, np.ndarray]] = []
    for name, col in columns.items():
        if name in names:
            raise ConversionError(f"field {name!r} already exists in the cloud")
        if isinstance(col, tuple) and len(col) == 2 and isinstance(col[1], (np.dtype, type, str)):
            vals = np.asarray(col[0], dtype=np.dtype(col[1]))
        elif isinstance(col, np.ndarray):
            vals = col
        elif name in _DEFAULT_FIELD_DTYPES:
            vals = np.asarray(col, dtype=_DEFAULT_FIELD_DTYPES[name])
        else:
            vals = np.asarray(col)
        base, count = _base_and_count(np.dtype(vals.dtype), name)
        if vals.size == src.size and vals.shape != src.shape:
            vals = vals.reshape(src.shape)
        try:
            vals = np.broadcast_to(vals, src.shape)
        except ValueError as exc:
            raise ConversionError(f"column {name!r} of shape {np.shape(vals)} does not fit cloud shape {src.shape}") from exc
        cursor = _align(cursor, min(base.itemsize, 4))
        names.append(name)
        formats.append(base)
        offsets.append(cursor)
        cursor += base.itemsize * count
        values.append((name, vals))
    itemsize = _align(cursor, 4)
    new = np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": itemsize})
    out = np.empty(src.shape, new)
    if out.size:
        raw = _raw_bytes(out)
        raw[..., : src.dtype.itemsize] = _raw_bytes(src)
        # zero the alignment bytes between and after the new fields (they are not written below)
        covered = np.zeros(itemsize, bool)
        covered[: src.dtype.itemsize] = True
        for name in names[len(src.dtype.names):]:
            ftype, off = new.fields[name][:2]
            covered[off: off + ftype.itemsize] = True
        for start, stop in _false_runs(covered):
            raw[..., start:stop] = 0
    for name, vals in values:
        out[name] = vals
    return out


def _false_runs(mask: np.ndarray) -> list[tuple[int, int]]:
    runs = []
    start = None
    for i, m in enumerate(mask.tolist() + [True]):
        if not m and start is None:
            start = i
        elif m and start is not None:
            runs.append((start, i))
            start = None
    return runs


def labeled_cloud(
    source: Any,
    labels: Any = None,
    instances: Any = None,
    scores: Any = None,
    *,
    msg_cls: Callable[[], Any],
    field_cls: Callable[..., Any],
    header: Any = None,
    is_dense: bool | None = None,
) -> Any:
    """Build the labeled output cloud: the source points' bytes + ``label`` (uint16),
    ``instance`` (uint32), ``score`` (float32) appended after the original point_step (aligned
    to 4; see :func:`add_fields`).

    ``source`` is a PointCloud2-like message (its organized shape, header and is_dense are kept
    unless overridden) or a structured array. Missing label/instance/score columns are zeros.
    """
    if isinstance(source, np.ndarray):
        pts = source
        src_dense = None
    else:
        pts = cloud_to_structured(source, organized=True)
        if int(getattr(source, "height", 1)) <= 1:
            pts = pts.reshape(-1)
        if header is None:
            header = getattr(source, "header", None)
        src_dense = getattr(source, "is_dense", None)
    cols: dict[str, Any] = {}
    for (name, dt), vals in zip(LABEL_FIELDS, (labels, instances, scores)):
        if vals is None:
            vals = np.zeros(pts.shape, dt)
        cols[name] = (vals, dt)
    out = add_fields(pts, **cols)
    if is_dense is None and src_dense is not None:
        is_dense = bool(src_dense)
    return structured_to_cloud(out, msg_cls, field_cls, header=header, is_dense=is_dense)
