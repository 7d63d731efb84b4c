"""sensor_msgs/PointCloud2 <-> numpy structured arrays."""

from __future__ import annotations

import array
import struct
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from samfusion.convert import (
    add_fields,
    cloud_to_structured,
    finite_mask,
    labeled_cloud,
    read_kitti_bin,
    structured_to_cloud,
    xyz_array,
)
from samfusion.convert.pointcloud2 import (
    DATATYPE_TO_DTYPE,
    FLOAT32,
    FLOAT64,
    INT8,
    INT16,
    INT32,
    UINT8,
    UINT16,
    UINT32,
    fields_to_dtype,
    to_byte_order,
)
from samfusion.errors import ConversionError

from ._helpers import Field, Msg, cloud_msg, same_values


# ------------------------------------------------------------------------------------------
# required cases
# ------------------------------------------------------------------------------------------
def test_32_byte_stride_gap_after_z_intensity_at_16():
    pts = [(1.0, 2.0, 3.0, 0.5), (-4.0, 5.5, np.nan, 100.0), (7.0, 8.0, 9.0, -1.0)]
    data = bytearray()
    for x, y, z, i in pts:
        rec = bytearray(b"\xee" * 32)  # gap bytes 12..15 and padding 20..31 are garbage
        struct.pack_into("<fff", rec, 0, x, y, z)
        struct.pack_into("<f", rec, 16, i)
        data += rec
    fields = [Field("x", 0, FLOAT32), Field("y", 4, FLOAT32), Field("z", 8, FLOAT32), Field("intensity", 16, FLOAT32)]
    arr = cloud_to_structured(cloud_msg(fields, 32, bytes(data), width=3))
    assert arr.shape == (3,) and arr.dtype.itemsize == 32
    assert arr.dtype.fields["intensity"][1] == 16
    assert same_values(arr["x"], np.array([p[0] for p in pts], np.float32))
    assert same_values(arr["z"], np.array([p[2] for p in pts], np.float32))
    assert same_values(arr["intensity"], np.array([p[3] for p in pts], np.float32))
    xyz = xyz_array(arr)
    assert xyz.shape == (3, 3) and xyz.dtype == np.float32
    assert same_values(xyz, np.array([p[:3] for p in pts], np.float32))
    assert xyz_array(arr, remove_nans=True).shape == (2, 3)
    # round trip keeps the layout (point_step 32, intensity at 16) and every field byte
    msg = structured_to_cloud(arr, Msg, Field)
    assert msg.point_step == 32 and [(f.name, f.offset) for f in msg.fields] == [
        ("x", 0), ("y", 4), ("z", 8), ("intensity", 16)]
    assert msg.is_dense is False
    back = np.frombuffer(msg.data, np.uint8).reshape(3, 32)
    orig = np.frombuffer(bytes(data), np.uint8).reshape(3, 32)
    np.testing.assert_array_equal(back[:, :12], orig[:, :12])
    np.testing.assert_array_equal(back[:, 16:20], orig[:, 16:20])


def test_organized_4x8_nan_holes_row_major():
    h, w = 4, 8
    xs = np.zeros((h, w), np.float32)
    holes = {(0, 3), (1, 0), (2, 7), (3, 4), (3, 5)}
    data = bytearray()
    for r in range(h):
        for c in range(w):
            if (r, c) in holes:
                x = y = z = float("nan")
            else:
                x, y, z = r * 100.0 + c, -float(c), float(r)
            xs[r, c] = x
            data += struct.pack("<ffff", x, y, z, r * w + c)
    fields = [Field("x", 0, FLOAT32), Field("y", 4, FLOAT32), Field("z", 8, FLOAT32), Field("idx", 12, FLOAT32)]
    msg = cloud_msg(fields, 16, bytes(data), width=w, height=h)
    flat = cloud_to_structured(msg)
    org = cloud_to_structured(msg, organized=True)
    assert flat.shape == (32,) and org.shape == (4, 8)
    for r in range(h):
        for c in range(w):
            i = r * w + c
            assert flat["idx"][i] == i and org["idx"][r, c] == i
            if (r, c) in holes:
                assert np.isnan(flat["x"][i]) and np.isnan(org["z"][r, c])
            else:
                assert flat["x"][i] == r * 100.0 + c and org["y"][r, c] == -c and org["z"][r, c] == r
    mask = finite_mask(org)
    assert mask.shape == (4, 8) and (~mask).sum() == len(holes)
    assert all(not mask[rc] for rc in holes)
    assert xyz_array(org).shape == (32, 3)
    assert xyz_array(org, remove_nans=True).shape == (32 - len(holes), 3)
    back = structured_to_cloud(org, Msg, Field)
    assert (back.height, back.width, back.row_step, back.is_dense) == (4, 8, 128, False)
    assert bytes(back.data) == bytes(data)


def test_uint16_ring_and_unaligned_float64_time():
    # x y z float32 | ring uint16 @12 | time float64 @14 (unaligned) | point_step 22
    recs = [(1.0, 2.0, 3.0, 7, 1.25e-3), (4.0, 5.0, 6.0, 127, -9.5), (0.0, 0.0, 0.0, 65535, 1e300)]
    data = b"".join(struct.pack("<fffHd", *r) for r in recs)
    assert len(data) == 66
    fields = [Field("x", 0, FLOAT32), Field("y", 4, FLOAT32), Field("z", 8, FLOAT32),
              Field("ring", 12, UINT16), Field("time", 14, FLOAT64)]
    arr = cloud_to_structured(cloud_msg(fields, 22, data, width=3))
    assert arr.dtype["ring"] == np.uint16 and arr.dtype["time"] == np.float64
    assert arr.dtype.fields["time"][1] == 14
    np.testing.assert_array_equal(arr["ring"], [7, 127, 65535])
    np.testing.assert_array_equal(arr["time"], [1.25e-3, -9.5, 1e300])
    assert bytes(structured_to_cloud(arr, Msg, Field).data) == data


def test_header_claiming_4294967295_points_with_empty_data():
    fields = [Field("x", 0, FLOAT32), Field("y", 4, FLOAT32), Field("z", 8, FLOAT32)]
    msg = cloud_msg(fields, 16, b"", width=4294967295, height=1, row_step=16 * 4294967295 % 2**32)
    t0 = time.perf_counter()
    with pytest.raises(ConversionError) as ei:
        cloud_to_structured(msg)
    assert time.perf_counter() - t0 < 0.5
    assert "expected 68719476720 bytes" in str(ei.value) and "got 0" in str(ei.value)
    msg.height = 4294967295
    msg.row_step = 16
    with pytest.raises(ConversionError):
        cloud_to_structured(msg)


# ------------------------------------------------------------------------------------------
# layouts
# ------------------------------------------------------------------------------------------
def test_row_step_padding_is_skipped():
    w, h, ps, rs = 3, 2, 8, 8 * 3 + 5
    data = bytearray(b"\xaa" * (rs * h))
    for r in range(h):
        for c in range(w):
            struct.pack_into("<fI", data, r * rs + c * ps, r + c / 10, r * 10 + c)
    fields = [Field("x", 0, FLOAT32), Field("n", 4, UINT32)]
    arr = cloud_to_structured(cloud_msg(fields, ps, bytes(data), width=w, height=h, row_step=rs))
    np.testing.assert_array_equal(arr["n"], [0, 1, 2, 10, 11, 12])
    assert arr.flags.writeable  # a copy was needed
    # the last row's padding may be missing
    arr2 = cloud_to_structured(cloud_msg(fields, ps, bytes(data[:-5]), width=w, height=h, row_step=rs))
    np.testing.assert_array_equal(arr2["n"], arr["n"])
    with pytest.raises(ConversionError, match="row_step 20 < width"):
        cloud_to_structured(cloud_msg(fields, ps, bytes(data), width=w, height=h, row_step=20))


def test_big_endian_all_datatypes_and_count():
    specs = [("a", INT8, "i1", 1), ("b", UINT8, "u1", 1), ("c", INT16, "i2", 1), ("d", UINT16, "u2", 1),
             ("e", INT32, "i4", 1), ("f", UINT32, "u4", 1), ("g", FLOAT32, "f4", 1), ("h", FLOAT64, "f8", 1),
             ("v", FLOAT32, "f4", 3)]
    names, formats, offsets, fields = [], [], [], []
    off = 0
    for name, dt, np_t, count in specs:
        names.append(name)
        formats.append((">" + np_t, (count,)) if count > 1 else ">" + np_t)
        offsets.append(off)
        fields.append(Field(name, off, dt, count))
        off += np.dtype(np_t).itemsize * count + 1  # a 1-byte gap after every field
    be = np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": off + 3})
    rng = np.random.default_rng(5)
    src = np.zeros(6, be)
    for n in names:
        col = src[n]
        if col.dtype.kind == "f":
            src[n] = rng.normal(size=col.shape)
        else:
            info = np.iinfo(col.dtype)
            src[n] = rng.integers(info.min, info.max, col.shape, endpoint=True)
    src["g"][0] = np.nan
    src["v"][1] = [np.inf, -np.inf, np.nan]
    msg = cloud_msg(fields, be.itemsize, src.tobytes(), width=6, is_bigendian=True)
    arr = cloud_to_structured(msg)
    assert all(arr.dtype[n].base.isnative or arr.dtype[n].base.itemsize == 1 for n in names)
    assert arr["v"].shape == (6, 3)
    assert same_values(arr, src)
    out = structured_to_cloud(arr, Msg, Field)
    assert out.is_bigendian is False and [f.count for f in out.fields][-1] == 3
    assert same_values(cloud_to_structured(out), src)


def test_empty_clouds_have_valid_dtype():
    fields = [Field("x", 0, FLOAT32), Field("ring", 4, UINT16)]
    for w, h in ((0, 1), (0, 0), (5, 0)):
        arr = cloud_to_structured(cloud_msg(fields, 8, b"", width=w, height=h))
        assert arr.shape == (0,) and arr.dtype.names == ("x", "ring") and arr.dtype.itemsize == 8
        assert cloud_to_structured(cloud_msg(fields, 8, b"", width=w, height=h), organized=True).shape == (h, w)
    msg = structured_to_cloud(arr, Msg, Field)
    assert msg.width == 0 and len(msg.data) == 0 and msg.point_step == 8
    assert xyz_array(np.zeros(0, [("x", "f4"), ("y", "f4"), ("z", "f4")])).shape == (0, 3)


@pytest.mark.parametrize("fields,step,match", [
    ([Field("x", 0, FLOAT32), Field("y", 2, FLOAT32)], 8, "overlap"),
    ([Field("x", 0, FLOAT32), Field("y", 4, FLOAT32)], 6, "past point_step"),
    ([Field("x", 0, FLOAT32), Field("x", 4, FLOAT32)], 8, "duplicate"),
    ([Field("x", 0, 9)], 8, "unknown PointField datatype 9"),
    ([Field("x", 0, FLOAT64, 2), Field("y", 12, FLOAT32)], 24, "overlap"),
])
def test_bad_layouts_raise(fields, step, match):
    with pytest.raises(ConversionError, match=match):
        cloud_to_structured(cloud_msg(fields, step, bytes(step * 2), width=2))


def test_padding_fields_and_count_zero():
    fields = [Field("x", 0, FLOAT32), Field("_", 4, UINT8, 4), Field("_", 8, UINT8, 4), Field("i", 12, UINT16, 0)]
    arr = cloud_to_structured(cloud_msg(fields, 16, bytes(32), width=2))
    assert arr.dtype.names == ("x", "i") and arr.dtype.itemsize == 16


def test_packed_rgb_bit_exact():
    # rgb packed into float32 (PCL), including bit patterns that are NaNs / denormals as floats
    rgb_u32 = np.array([0x00FF0000, 0xFFFFFFFF, 0x7FA00001, 0xFF800001, 0x00000001, 0x00123456], np.uint32)
    dt = np.dtype({"names": ["x", "y", "z", "rgb"], "formats": ["<f4"] * 4, "offsets": [0, 4, 8, 16], "itemsize": 32})
    src = np.zeros(rgb_u32.size, dt)
    src["rgb"] = rgb_u32.view(np.float32)
    msg = structured_to_cloud(src, Msg, Field)
    arr = cloud_to_structured(msg)
    np.testing.assert_array_equal(arr["rgb"].view(np.uint32), rgb_u32)
    # through big-endian wire data and back
    be = to_byte_order(src, ">")
    np.testing.assert_array_equal(be["rgb"].view(">u4"), rgb_u32)
    arr = cloud_to_structured(cloud_msg(msg.fields, 32, be.tobytes(), width=src.size, is_bigendian=True))
    np.testing.assert_array_equal(arr["rgb"].view(np.uint32), rgb_u32)
    out = structured_to_cloud(arr, Msg, Field)
    assert bytes(out.data) == bytes(msg.data)
    # uint32 rgba and labeled output keep the bytes
    src2 = np.zeros(rgb_u32.size, [("x", "f4"), ("y", "f4"), ("z", "f4"), ("rgba", "u4")])
    src2["rgba"] = rgb_u32
    lab = labeled_cloud(structured_to_cloud(src2, Msg, Field), np.arange(6), np.arange(6) * 2, np.full(6, 0.5),
                        msg_cls=Msg, field_cls=Field)
    np.testing.assert_array_equal(cloud_to_structured(lab)["rgba"], rgb_u32)


# ------------------------------------------------------------------------------------------
# data containers
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview, lambda b: array.array("B", b), list,
                                  lambda b: np.frombuffer(b, np.uint8)],
                         ids=["bytes", "bytearray", "memoryview", "array", "list", "numpy"])
def test_data_containers(wrap):
    src = np.zeros(4, [("x", "<f4"), ("y", "<f4"), ("z", "<f4")])
    src["x"] = [1, 2, 3, 4]
    m = structured_to_cloud(src, Msg, Field)
    m.data = wrap(bytes(m.data))
    assert same_values(cloud_to_structured(m), src)


def test_zero_copy_and_copy_flag():
    src = np.zeros(4, [("x", "<f4"), ("y", "<f4"), ("z", "<f4")])
    m = structured_to_cloud(src, Msg, Field)
    m.data = bytearray(m.data)
    view = cloud_to_structured(m)
    m.data[0:4] = struct.pack("<f", 42.0)
    assert view["x"][0] == 42.0
    own = cloud_to_structured(m, copy=True)
    m.data[0:4] = struct.pack("<f", 1.0)
    assert own["x"][0] == 42.0 and own.flags.writeable


# ------------------------------------------------------------------------------------------
# add_fields / labeled_cloud
# ------------------------------------------------------------------------------------------
def test_add_fields_keeps_bytes_and_aligns():
    dt = np.dtype({"names": ["x", "y", "z", "t"], "formats": ["<f4", "<f4", "<f4", "<u2"],
                   "offsets": [0, 4, 8, 12], "itemsize": 14})
    src = np.zeros(3, dt)
    src["x"] = [1, np.nan, 3]
    src["t"] = [1, 2, 65535]
    out = add_fields(src, label=[1, 2, 3], instance=np.array([10, 20, 30], np.uint32), score=0.25)
    offs = {n: out.dtype.fields[n][1] for n in out.dtype.names}
    assert offs == {"x": 0, "y": 4, "z": 8, "t": 12, "label": 16, "instance": 20, "score": 24}
    assert out.dtype.itemsize == 28
    assert out.dtype["label"] == np.uint16 and out.dtype["instance"] == np.uint32 and out.dtype["score"] == np.float32
    raw_src = src.view(np.uint8).reshape(3, 14)
    raw_out = out.view(np.uint8).reshape(3, 28)
    np.testing.assert_array_equal(raw_out[:, :14], raw_src)
    np.testing.assert_array_equal(out["score"], [0.25] * 3)
    with pytest.raises(ConversionError, match="already exists"):
        add_fields(src, t=[1, 2, 3])
    with pytest.raises(ConversionError, match="does not fit"):
        add_fields(src, label=[1, 2])
    with pytest.raises(ConversionError, match="no PointField datatype"):
        add_fields(src, big=np.zeros(3, np.int64))


def test_labeled_cloud_layout_and_values():
    src = np.zeros((2, 3), [("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("ring", "<u2")])  # itemsize 14
    src["x"] = np.arange(6).reshape(2, 3)
    src["x"][1, 1] = np.nan
    msg = structured_to_cloud(src, Msg, Field, header="hdr")
    assert msg.point_step == 14 and msg.height == 2
    lab = labeled_cloud(msg, labels=np.arange(6), instances=np.arange(6).reshape(2, 3) + 100,
                        scores=np.linspace(0, 1, 6), msg_cls=Msg, field_cls=Field)
    assert lab.header == "hdr" and (lab.height, lab.width) == (2, 3) and lab.is_dense is False
    assert [(f.name, f.offset, f.datatype) for f in lab.fields] == [
        ("x", 0, FLOAT32), ("y", 4, FLOAT32), ("z", 8, FLOAT32), ("ring", 12, UINT16),
        ("label", 16, UINT16), ("instance", 20, UINT32), ("score", 24, FLOAT32)]
    assert lab.point_step == 28 and lab.row_step == 84
    out = cloud_to_structured(lab, organized=True)
    np.testing.assert_array_equal(out["label"].reshape(-1), np.arange(6))
    np.testing.assert_array_equal(out["instance"], np.arange(6).reshape(2, 3) + 100)
    np.testing.assert_allclose(out["score"].reshape(-1), np.linspace(0, 1, 6).astype(np.float32))
    raw_src = np.frombuffer(msg.data, np.uint8).reshape(6, 14)
    raw_out = np.frombuffer(lab.data, np.uint8).reshape(6, 28)
    np.testing.assert_array_equal(raw_out[:, :14], raw_src)
    # labels shaped (H, W) for a flat source and flat for an organized one are accepted
    flat_lab = labeled_cloud(src.reshape(-1), labels=np.arange(6).reshape(2, 3), msg_cls=Msg, field_cls=Field)
    np.testing.assert_array_equal(cloud_to_structured(flat_lab)["label"], np.arange(6))
    # defaults: zeros; a structured array as the source
    lab2 = labeled_cloud(src.reshape(-1), msg_cls=Msg, field_cls=Field)
    assert lab2.height == 1 and not cloud_to_structured(lab2)["label"].any()


def test_kitti_scan_round_trip(shared_data):
    scan = read_kitti_bin(shared_data / "kitti_object" / "velodyne" / "000001.bin")
    assert scan.shape == (120268,) and scan.dtype.itemsize == 16
    msg = structured_to_cloud(scan, Msg, Field)
    assert (msg.point_step, msg.row_step, msg.height, msg.width) == (16, 16 * 120268, 1, 120268)
    assert bytes(msg.data) == (shared_data / "kitti_object" / "velodyne" / "000001.bin").read_bytes()
    arr = cloud_to_structured(msg)
    assert same_values(arr, scan)
    xyz = xyz_array(arr)
    raw = np.fromfile(shared_data / "kitti_object" / "velodyne" / "000001.bin", np.float32).reshape(-1, 4)
    np.testing.assert_array_equal(xyz, raw[:, :3])
    np.testing.assert_array_equal(xyz_array(arr, dtype=np.float64), raw[:, :3].astype(np.float64))
    lab = labeled_cloud(msg, labels=(raw[:, 3] * 10).astype(np.uint16), msg_cls=Msg, field_cls=Field)
    assert lab.point_step == 28
    np.testing.assert_array_equal(xyz_array(cloud_to_structured(lab)), raw[:, :3])


# ------------------------------------------------------------------------------------------
# property tests: random layouts
# ------------------------------------------------------------------------------------------
_TYPES = sorted(DATATYPE_TO_DTYPE)


@st.composite
def cloud_layouts(draw):
    nfields = draw(st.integers(1, 6))
    fields = []
    off = 0
    for i in range(nfields):
        off += draw(st.integers(0, 5))  # gap (unaligned offsets included)
        dtype = draw(st.sampled_from(_TYPES))
        count = draw(st.sampled_from([1, 1, 1, 2, 3]))
        fields.append(Field(f"f{i}", off, dtype, count))
        off += DATATYPE_TO_DTYPE[dtype].itemsize * count
    if draw(st.booleans()):
        draw_order = draw(st.permutations(fields))  # field list order need not follow offsets
        fields = list(draw_order)
    point_step = off + draw(st.integers(0, 7))
    height = draw(st.integers(0, 4))
    width = draw(st.integers(0, 6))
    row_pad = draw(st.integers(0, 9)) if height > 1 else 0
    big = draw(st.booleans())
    seed = draw(st.integers(0, 2**32 - 1))
    return fields, point_step, height, width, row_pad, big, seed


def _build(fields, point_step, height, width, row_pad, big, seed):
    dtype = fields_to_dtype(fields, point_step, big)
    rng = np.random.default_rng(seed)
    n = height * width
    pts = np.zeros(n, dtype)
    for name in dtype.names:
        col = pts[name]
        if col.dtype.kind == "f":
            v = rng.normal(0, 1e4, col.shape)
            special = rng.random(col.shape) < 0.15
            v[special] = rng.choice([np.nan, np.inf, -np.inf, -0.0], size=int(special.sum()))
            pts[name] = v
        else:
            info = np.iinfo(col.dtype)
            pts[name] = rng.integers(info.min, info.max, col.shape, endpoint=True)
    raw = np.full((height, width * point_step + row_pad), 0xCD, np.uint8)
    if n:
        raw[:, : width * point_step] = pts.view(np.uint8).reshape(height, width * point_step)
    row_step = width * point_step + row_pad
    msg = cloud_msg(fields, point_step, raw.tobytes(), width=width, height=height, row_step=row_step, is_bigendian=big)
    return msg, pts


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cloud_layouts())
def test_property_random_layouts_round_trip(layout):
    msg, pts = _build(*layout)
    height, width = layout[2], layout[3]
    arr = cloud_to_structured(msg)
    assert arr.shape == (height * width,)
    assert arr.dtype.itemsize == msg.point_step
    assert same_values(arr, pts)
    org = cloud_to_structured(msg, organized=True)
    assert org.shape == (height, width)
    assert same_values(org.reshape(-1), pts)
    # numpy -> PointCloud2 -> numpy, bit exact per field
    out = structured_to_cloud(org, Msg, Field)
    assert out.point_step == msg.point_step and out.height == height and out.width == width
    assert {(f.name, f.offset, f.datatype, f.count) for f in out.fields} == {
        (f.name, f.offset, f.datatype, f.count) for f in msg.fields}
    back = cloud_to_structured(out)
    for name in pts.dtype.names:
        a = back[name].view(np.dtype(f"u{back.dtype[name].base.itemsize}")) if back[name].size else back[name]
        b = to_byte_order(pts, "=")[name]
        b = b.view(np.dtype(f"u{b.dtype.base.itemsize}")) if b.size else b
        assert np.array_equal(a, b)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cloud_layouts(), st.integers(1, 1000))
def test_property_truncated_clouds_raise_with_counts(layout, cut):
    msg, _ = _build(*layout)
    height, width = layout[2], layout[3]
    if height * width == 0:
        return
    row_step = msg.row_step if height > 1 else width * msg.point_step
    needed = row_step * (height - 1) + width * msg.point_step
    keep = max(0, needed - cut)
    msg.data = bytes(msg.data)[:keep]
    with pytest.raises(ConversionError) as ei:
        cloud_to_structured(msg)
    text = str(ei.value)
    assert f"expected {row_step * height} bytes" in text and f"got {keep}" in text
