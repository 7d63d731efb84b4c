"""Point cloud files <-> numpy structured arrays: PCD, PLY, KITTI .bin, nuScenes .pcd.bin.

Reading
  * PCD v0.5-0.7: ``DATA ascii``, ``binary`` and ``binary_compressed`` (LZF, pure Python;
    column-major layout). Fields of size 1/2/4/8 and type I/U/F, ``COUNT > 1`` as subarray
    fields; fields named ``_`` (PCL's padding) are dropped.
  * PLY: ``binary_little_endian``, ``binary_big_endian`` and ``ascii``; the ``vertex`` element's
    scalar properties (elements before it are skipped; binary list properties before or inside
    the vertex element are not supported).
  * KITTI velodyne ``.bin``: float32 x, y, z, intensity; nuScenes ``.pcd.bin``: float32 x, y, z,
    intensity, ring (all five float32, as the nuScenes devkit stores them).
  Results are packed (no gaps), native byte order, shape ``(N,)`` (``organized=True`` gives
  ``(HEIGHT, WIDTH)`` for PCD files whose POINTS equals WIDTH*HEIGHT).

Writing
  * PCD ``binary`` (default) or ``ascii``; PLY ``binary_little_endian`` (default) or ``ascii``.
    The dtype's fields are written packed in dtype order (gaps dropped), so labeled clouds are
    readable by PCL, Open3D and CloudCompare. PLY has no COUNT: a subarray field ``f`` of n values
    becomes properties ``f_0 .. f_{n-1}``.

Malformed files raise :class:`~samfusion.errors.ConversionError` naming what is wrong.
"""

from __future__ import annotations

import io
import os
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

import numpy as np

from samfusion.convert.pointcloud2 import to_byte_order
from samfusion.errors import ConversionError

__all__ = [
    "PcdHeader",
    "read_pcd",
    "read_pcd_header",
    "write_pcd",
    "read_ply",
    "write_ply",
    "read_kitti_bin",
    "read_nuscenes_bin",
    "write_kitti_bin",
    "read_point_file",
    "lzf_decompress",
    "lzf_compress_literal",
]

PathLike = Union[str, "os.PathLike[str]"]
_NATIVE = "<" if sys.byteorder == "little" else ">"


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def _packed(dtype_fields: list[tuple[str, np.dtype, int]], order: str = "<") -> np.dtype:
    """Packed structured dtype from (name, base dtype, count)."""
    names, formats, offsets = [], [], []
    off = 0
    for name, base, count in dtype_fields:
        b = base.newbyteorder(order) if base.itemsize > 1 else base
        names.append(name)
        formats.append(b if count == 1 else (b, (count,)))
        offsets.append(off)
        off += b.itemsize * count
    return np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": off})


def _select_packed(arr: np.ndarray, names: list[str]) -> np.ndarray:
    """Copy the named fields of ``arr`` into a packed native-order array."""
    fields = []
    for n in names:
        ftype = arr.dtype.fields[n][0]
        if ftype.subdtype is not None:
            base, shape = ftype.subdtype
            fields.append((n, base, int(np.prod(shape))))
        else:
            fields.append((n, ftype, 1))
    dt = _packed(fields, _NATIVE)
    out = np.empty(arr.shape, dt)
    for n in names:
        out[n] = arr[n]
    return out


def _field_list(arr: np.ndarray) -> list[tuple[str, np.dtype, int]]:
    if arr.dtype.names is None:
        raise ConversionError(f"expected a structured array, got dtype {arr.dtype}")
    out = []
    for n in arr.dtype.names:
        ftype = arr.dtype.fields[n][0]
        if ftype.subdtype is not None:
            base, shape = ftype.subdtype
            count = int(np.prod(shape))
        else:
            base, count = ftype, 1
        if base.kind not in "iuf" or base.fields is not None:
            raise ConversionError(f"field {n!r} of dtype {base} cannot be written (int, uint and float only)")
        out.append((n, np.dtype(base), count))
    return out


# --------------------------------------------------------------------------------------------
# LZF (PCD binary_compressed)
# --------------------------------------------------------------------------------------------
def lzf_decompress(data: bytes, expected_size: int) -> bytes:
    """Decompress LZF data (liblzf format, as PCL writes it) of ``expected_size`` bytes."""
    src = memoryview(bytes(data))
    n = len(src)
    out = bytearray()
    ip = 0
    while ip < n:
        ctrl = src[ip]
        ip += 1
        if ctrl < 32:
            length = ctrl + 1
            if ip + length > n:
                raise ConversionError("corrupt LZF data: literal run past the end of the input")
            out += src[ip:ip + length]
            ip += length
        else:
            length = ctrl >> 5
            if length == 7:
                if ip >= n:
                    raise ConversionError("corrupt LZF data: truncated back-reference")
                length += src[ip]
                ip += 1
            if ip >= n:
                raise ConversionError("corrupt LZF data: truncated back-reference")
            ref = len(out) - ((ctrl & 0x1F) << 8) - src[ip] - 1
            ip += 1
            length += 2
            if ref < 0:
                raise ConversionError("corrupt LZF data: back-reference before the start of the output")
            if ref + length <= len(out):
                out += out[ref:ref + length]
            else:  # overlapping copy (run-length style)
                for i in range(length):
                    out.append(out[ref + i])
        if len(out) > expected_size:
            raise ConversionError(f"corrupt LZF data: more than the announced {expected_size} bytes")
    if len(out) != expected_size:
        raise ConversionError(f"corrupt LZF data: decompressed {len(out)} bytes, header announced {expected_size}")
    return bytes(out)


def lzf_compress_literal(data: bytes) -> bytes:
    """Valid (uncompressed, literal-only) LZF encoding of ``data``; for writing test files."""
    out = bytearray()
    for i in range(0, len(data), 32):
        chunk = data[i:i + 32]
        out.append(len(chunk) - 1)
        out += chunk
    return bytes(out)


# --------------------------------------------------------------------------------------------
# PCD
# --------------------------------------------------------------------------------------------
@dataclass
class PcdHeader:
    version: str = "0.7"
    fields: list[str] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    types: list[str] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)
    width: int = 0
    height: int = 1
    viewpoint: tuple[float, ...] = (0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0)
    points: int = 0
    data: str = "ascii"
    data_offset: int = 0  # byte offset of the data section in the file

    def base_dtypes(self) -> list[np.dtype]:
        out = []
        for name, size, typ in zip(self.fields, self.sizes, self.types):
            code = {"F": "f", "I": "i", "U": "u"}.get(typ.upper())
            if code is None or (code == "f" and size not in (2, 4, 8)) or size not in (1, 2, 4, 8):
                raise ConversionError(f"PCD field {name!r}: unsupported TYPE {typ} SIZE {size}")
            out.append(np.dtype(f"<{code}{size}"))
        return out


def _parse_pcd_header(raw: bytes, where: str) -> PcdHeader:
    hdr = PcdHeader()
    pos = 0
    seen_points = False
    while True:
        nl = raw.find(b"\n", pos)
        if nl < 0:
            raise ConversionError(f"{where}: PCD header has no DATA line")
        line = raw[pos:nl].decode("ascii", "replace").strip()
        pos = nl + 1
        if not line or line.startswith("#"):
            continue
        key, _, rest = line.partition(" ")
        key = key.upper()
        vals = rest.split()
        try:
            if key == "VERSION":
                hdr.version = rest.strip()
            elif key == "FIELDS" or key == "COLUMNS":
                hdr.fields = vals
            elif key == "SIZE":
                hdr.sizes = [int(v) for v in vals]
            elif key == "TYPE":
                hdr.types = vals
            elif key == "COUNT":
                hdr.counts = [int(v) for v in vals]
            elif key == "WIDTH":
                hdr.width = int(vals[0])
            elif key == "HEIGHT":
                hdr.height = int(vals[0])
            elif key == "VIEWPOINT":
                hdr.viewpoint = tuple(float(v) for v in vals)
            elif key == "POINTS":
                hdr.points = int(vals[0])
                seen_points = True
            elif key == "DATA":
                hdr.data = vals[0].lower() if vals else ""
                hdr.data_offset = pos
                break
            else:
                raise ConversionError(f"{where}: unknown PCD header line {line!r}")
        except (ValueError, IndexError) as exc:
            raise ConversionError(f"{where}: bad PCD header line {line!r}") from exc
    n = len(hdr.fields)
    if not hdr.counts:
        hdr.counts = [1] * n
    if not hdr.types and n:
        raise ConversionError(f"{where}: PCD header has no TYPE line")
    if not (len(hdr.sizes) == len(hdr.types) == len(hdr.counts) == n):
        raise ConversionError(
            f"{where}: PCD header FIELDS/SIZE/TYPE/COUNT lengths differ "
            f"({n}/{len(hdr.sizes)}/{len(hdr.types)}/{len(hdr.counts)})"
        )
    if not seen_points:
        hdr.points = hdr.width * hdr.height
    if hdr.data not in ("ascii", "binary", "binary_compressed"):
        raise ConversionError(f"{where}: unsupported PCD DATA {hdr.data!r}")
    return hdr


def _read_bytes(path: PathLike) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConversionError(f"cannot read {path}: {exc}") from exc


def read_pcd_header(path: PathLike) -> PcdHeader:
    """Parse only the header of a PCD file."""
    with open(path, "rb") as fh:
        head = fh.read(65536)
    return _parse_pcd_header(head, str(path))


def read_pcd(path: PathLike, organized: bool = False) -> np.ndarray:
    """Read a PCD file into a packed structured array (see module doc)."""
    raw = _read_bytes(path)
    hdr = _parse_pcd_header(raw, str(path))
    bases = hdr.base_dtypes()
    file_fields = []
    keep = []
    for i, (name, base, count) in enumerate(zip(hdr.fields, bases, hdr.counts)):
        if name == "_":
            file_fields.append((f"__pad{i}", base, count))
        else:
            if name in keep:
                raise ConversionError(f"{path}: duplicate PCD field {name!r}")
            file_fields.append((name, base, count))
            keep.append(name)
    file_dt = _packed(file_fields, "<")
    n = hdr.points
    body = raw[hdr.data_offset:]
    if hdr.data == "binary":
        need = n * file_dt.itemsize
        if len(body) < need:
            raise ConversionError(
                f"{path}: truncated PCD binary data: {n} points x {file_dt.itemsize} bytes = {need} bytes expected, "
                f"got {len(body)}"
            )
        arr = np.frombuffer(body, dtype=file_dt, count=n)
    elif hdr.data == "binary_compressed":
        if len(body) < 8:
            raise ConversionError(f"{path}: truncated PCD binary_compressed header")
        csize, usize = struct.unpack_from("<II", body, 0)
        need = n * file_dt.itemsize
        if usize != need:
            raise ConversionError(f"{path}: PCD binary_compressed announces {usize} bytes, fields need {need}")
        if len(body) < 8 + csize:
            raise ConversionError(f"{path}: truncated PCD binary_compressed data: {csize} bytes expected, got {len(body) - 8}")
        plain = lzf_decompress(body[8:8 + csize], usize) if usize else b""
        arr = np.empty(n, file_dt)
        off = 0
        for name, base, count in file_fields:
            nbytes = n * base.itemsize * count
            col = np.frombuffer(plain, dtype=base.newbyteorder("<") if base.itemsize > 1 else base,
                                count=n * count, offset=off)
            arr[name] = col.reshape((n, count)) if count > 1 else col
            off += nbytes
    else:  # ascii
        if n == 0:
            arr = np.empty(0, file_dt)
        else:
            text = body.decode("ascii", "replace")
            try:
                arr = np.loadtxt(io.StringIO(text), dtype=file_dt, ndmin=1, max_rows=n)
            except ValueError as exc:
                raise ConversionError(f"{path}: bad PCD ascii data: {exc}") from exc
            if arr.shape[0] != n:
                raise ConversionError(f"{path}: PCD ascii data has {arr.shape[0]} points, header says {n}")
    out = _select_packed(arr, keep)
    if organized and hdr.height > 1 and hdr.width * hdr.height == n:
        out = out.reshape(hdr.height, hdr.width)
    return out


def _pcd_type(base: np.dtype) -> str:
    return {"f": "F", "i": "I", "u": "U"}[base.kind]


def write_pcd(
    path: PathLike,
    structured: np.ndarray,
    data: str = "binary",
    viewpoint: tuple[float, ...] = (0, 0, 0, 1, 0, 0, 0),
) -> None:
    """Write a PCD v0.7 file (``data`` = "binary" or "ascii"). 2-D input is written organized."""
    arr = np.asarray(structured)
    fields = _field_list(arr)
    if data not in ("binary", "ascii"):
        raise ConversionError(f"write_pcd supports DATA binary and ascii, not {data!r}")
    if arr.ndim == 2:
        height, width = arr.shape
    else:
        arr = arr.reshape(-1)
        height, width = 1, arr.shape[0]
    flat = arr.reshape(-1)
    n = flat.shape[0]
    lines = [
        "# .PCD v0.7 - Point Cloud Data file format",
        "VERSION 0.7",
        "FIELDS " + " ".join(f[0] for f in fields),
        "SIZE " + " ".join(str(f[1].itemsize) for f in fields),
        "TYPE " + " ".join(_pcd_type(f[1]) for f in fields),
        "COUNT " + " ".join(str(f[2]) for f in fields),
        f"WIDTH {width}",
        f"HEIGHT {height}",
        "VIEWPOINT " + " ".join(f"{float(v):g}" for v in viewpoint),
        f"POINTS {n}",
        f"DATA {data}",
    ]
    header = ("\n".join(lines) + "\n").encode("ascii")
    if data == "binary":
        packed = to_byte_order(_select_packed(flat, [f[0] for f in fields]), "<")
        payload = packed.tobytes()
    else:
        payload = _ascii_rows(flat, fields)
    with open(path, "wb") as fh:
        fh.write(header)
        fh.write(payload)


def _ascii_rows(flat: np.ndarray, fields: list[tuple[str, np.dtype, int]]) -> bytes:
    if flat.shape[0] == 0:
        return b""
    cols = []
    fmts = []
    for name, base, count in fields:
        col = flat[name].reshape(flat.shape[0], count)
        for j in range(count):
            c = col[:, j]
            if base.kind == "f":
                cols.append(c)
                fmts.append("%.9g" if base.itemsize <= 4 else "%.17g")
            else:
                cols.append(c)
                fmts.append("%d")
    table = np.empty((flat.shape[0], len(cols)), dtype=object)
    for j, c in enumerate(cols):
        table[:, j] = c.tolist()
    buf = io.StringIO()
    np.savetxt(buf, table, fmt=fmts, delimiter=" ")
    return buf.getvalue().encode("ascii")


# --------------------------------------------------------------------------------------------
# PLY
# --------------------------------------------------------------------------------------------
_PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}
_PLY_NAMES = {"i1": "char", "u1": "uchar", "i2": "short", "u2": "ushort",
              "i4": "int", "u4": "uint", "f4": "float", "f8": "double"}


def read_ply(path: PathLike, element: str = "vertex") -> np.ndarray:
    """Read the ``vertex`` element (or ``element``) of a PLY file into a packed structured array."""
    raw = _read_bytes(path)
    if not raw.startswith(b"ply"):
        raise ConversionError(f"{path}: not a PLY file (no 'ply' magic)")
    end = raw.find(b"end_header")
    if end < 0:
        raise ConversionError(f"{path}: PLY header has no end_header")
    nl = raw.find(b"\n", end)
    if nl < 0:
        raise ConversionError(f"{path}: PLY header has no newline after end_header")
    header_lines = raw[:end].decode("ascii", "replace").splitlines()
    body_start = nl + 1
    fmt = None
    elements: list[tuple[str, int, list[tuple[str, str, bool]]]] = []
    for line in header_lines[1:]:
        parts = line.split()
        if not parts or parts[0] in ("comment", "obj_info"):
            continue
        if parts[0] == "format":
            fmt = parts[1] if len(parts) > 1 else ""
        elif parts[0] == "element":
            try:
                elements.append((parts[1], int(parts[2]), []))
            except (IndexError, ValueError) as exc:
                raise ConversionError(f"{path}: bad PLY element line {line!r}") from exc
        elif parts[0] == "property":
            if not elements:
                raise ConversionError(f"{path}: PLY property before any element")
            if len(parts) >= 5 and parts[1] == "list":
                elements[-1][2].append((parts[4], parts[3], True))
            elif len(parts) >= 3:
                if parts[1] not in _PLY_TYPES:
                    raise ConversionError(f"{path}: unknown PLY type {parts[1]!r}")
                elements[-1][2].append((parts[2], parts[1], False))
            else:
                raise ConversionError(f"{path}: bad PLY property line {line!r}")
    if fmt not in ("ascii", "binary_little_endian", "binary_big_endian"):
        raise ConversionError(f"{path}: unsupported PLY format {fmt!r}")
    order = ">" if fmt == "binary_big_endian" else "<"
    offset = body_start
    line_skip = 0
    for name, count, props in elements:
        dt = _packed([(p, np.dtype(_PLY_TYPES[t]), 1) for p, t, is_list in props if not is_list], order)
        has_list = any(is_list for _, _, is_list in props)
        if name == element:
            if has_list:
                raise ConversionError(f"{path}: PLY element {element!r} has list properties (unsupported)")
            if fmt == "ascii":
                text = raw[body_start:].decode("ascii", "replace").splitlines()
                rows = [r for r in text[line_skip:line_skip + count]]
                if len(rows) < count:
                    raise ConversionError(f"{path}: PLY ascii data has {len(rows)} {element} rows, header says {count}")
                if count == 0:
                    return np.empty(0, _packed([(p, np.dtype(_PLY_TYPES[t]), 1) for p, t, _ in props], _NATIVE))
                try:
                    arr = np.loadtxt(io.StringIO("\n".join(rows)), dtype=_packed(
                        [(p, np.dtype(_PLY_TYPES[t]), 1) for p, t, _ in props], "<"), ndmin=1)
                except ValueError as exc:
                    raise ConversionError(f"{path}: bad PLY ascii data: {exc}") from exc
                return to_byte_order(arr, "=")
            need = count * dt.itemsize
            if len(raw) - offset < need:
                raise ConversionError(
                    f"{path}: truncated PLY: {count} {element} x {dt.itemsize} bytes = {need} bytes expected, "
                    f"got {len(raw) - offset}"
                )
            arr = np.frombuffer(raw, dtype=dt, count=count, offset=offset)
            native = to_byte_order(arr, "=")
            return native.copy() if native is arr else native
        if fmt == "ascii":
            line_skip += count
        else:
            if has_list:
                raise ConversionError(f"{path}: binary PLY element {name!r} before {element!r} has list properties")
            offset += count * dt.itemsize
    raise ConversionError(f"{path}: PLY file has no element {element!r}")


def write_ply(path: PathLike, structured: np.ndarray, binary: bool = True) -> None:
    """Write a PLY file with one ``vertex`` element (binary_little_endian or ascii)."""
    arr = np.asarray(structured).reshape(-1)
    fields = _field_list(arr)
    props: list[tuple[str, np.dtype]] = []
    cols: list[tuple[str, str, int]] = []  # prop name, source field, index
    for name, base, count in fields:
        if count == 1:
            props.append((name, base))
            cols.append((name, name, -1))
        else:
            for j in range(count):
                props.append((f"{name}_{j}", base))
                cols.append((f"{name}_{j}", name, j))
    n = arr.shape[0]
    lines = ["ply", f"format {'binary_little_endian' if binary else 'ascii'} 1.0",
             "comment written by samfusion", f"element vertex {n}"]
    for pname, base in props:
        lines.append(f"property {_PLY_NAMES[base.str[1:]]} {pname}")
    lines.append("end_header")
    header = ("\n".join(lines) + "\n").encode("ascii")
    out_dt = _packed([(p, b, 1) for p, b in props], "<")
    out = np.empty(n, out_dt)
    for pname, src, j in cols:
        out[pname] = arr[src] if j < 0 else arr[src][:, j]
    if binary:
        payload = out.tobytes()
    else:
        payload = _ascii_rows(out, [(p, b, 1) for p, b in props])
    with open(path, "wb") as fh:
        fh.write(header)
        fh.write(payload)


# --------------------------------------------------------------------------------------------
# KITTI / nuScenes
# --------------------------------------------------------------------------------------------
_KITTI_DT = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("intensity", "<f4")])
_NUSCENES_DT = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("intensity", "<f4"), ("ring", "<f4")])


def _read_fixed(path: PathLike, dt: np.dtype, what: str) -> np.ndarray:
    raw = _read_bytes(path)
    if not raw:  # a spinning LiDAR scan always has points: an empty file is a broken copy
        raise ConversionError(f"{path}: {what} file is empty (0 bytes)")
    if len(raw) % dt.itemsize:
        raise ConversionError(
            f"{path}: {what} file size {len(raw)} is not a multiple of the {dt.itemsize}-byte point"
        )
    return to_byte_order(np.frombuffer(raw, dtype=dt), "=").copy()


def read_kitti_bin(path: PathLike) -> np.ndarray:
    """KITTI velodyne scan: float32 x, y, z, intensity (reflectance 0..1)."""
    return _read_fixed(path, _KITTI_DT, "KITTI .bin")


def read_nuscenes_bin(path: PathLike) -> np.ndarray:
    """nuScenes LIDAR_TOP ``.pcd.bin``: float32 x, y, z, intensity, ring."""
    return _read_fixed(path, _NUSCENES_DT, "nuScenes .pcd.bin")


def write_kitti_bin(path: PathLike, structured: np.ndarray) -> None:
    """Write x, y, z, intensity (0 when absent) as KITTI float32 records."""
    arr = np.asarray(structured).reshape(-1)
    out = np.zeros(arr.shape[0], _KITTI_DT)
    for n in _KITTI_DT.names:
        if arr.dtype.names and n in arr.dtype.names:
            out[n] = arr[n]
    Path(path).write_bytes(out.tobytes())


def read_point_file(path: PathLike) -> np.ndarray:
    """Read any supported point file by its extension (.pcd, .ply, .pcd.bin, .bin)."""
    name = str(path).lower()
    if name.endswith(".pcd.bin"):
        return read_nuscenes_bin(path)
    if name.endswith(".pcd"):
        return read_pcd(path)
    if name.endswith(".ply"):
        return read_ply(path)
    if name.endswith(".bin"):
        return read_kitti_bin(path)
    raise ConversionError(f"unknown point file type: {path} (expected .pcd, .ply, .bin, .pcd.bin)")
