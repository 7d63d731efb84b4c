"""PCD / PLY / KITTI / nuScenes files <-> structured arrays."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from samfusion.convert import (
    read_kitti_bin,
    read_nuscenes_bin,
    read_pcd,
    read_ply,
    read_point_file,
    write_kitti_bin,
    write_pcd,
    write_ply,
)
from samfusion.convert.pcd_io import lzf_compress_literal, lzf_decompress, read_pcd_header
from samfusion.errors import ConversionError

from ._helpers import same_values

NUSC = "nuscenes_mini_sample"
NUSC_BIN = "n015-2018-07-24-11-22-45+0800__LIDAR_TOP__1532402927647951.pcd.bin"
NUSC_PCD = "LIDAR_TOP_1532402927647951.pcd"
OUSTER_PLY = "ouster_os1_128/OS-1-128_v2.3.0_1024x10_lb_n3_map-000.ply"


# ------------------------------------------------------------------------------------------
# real files
# ------------------------------------------------------------------------------------------
def test_nuscenes_pcd_equals_pcd_bin(shared_data):
    pcd = read_pcd(shared_data / NUSC / NUSC_PCD)
    binf = read_nuscenes_bin(shared_data / NUSC / NUSC_BIN)
    assert pcd.shape == binf.shape == (34688,)
    assert pcd.dtype.names == binf.dtype.names == ("x", "y", "z", "intensity", "ring")
    # point for point, bit for bit
    assert pcd.tobytes() == binf.tobytes()
    rings = np.unique(binf["ring"])
    assert rings.size == 32 and rings.min() == 0 and rings.max() == 31
    assert read_point_file(shared_data / NUSC / NUSC_BIN).tobytes() == binf.tobytes()


def test_opencalib_ascii_pcd(shared_data):
    path = shared_data / "opencalib_lidar2camera" / "0.pcd"
    hdr = read_pcd_header(path)
    assert hdr.data == "ascii" and hdr.points == 78238
    pts = read_pcd(path)
    assert pts.shape == (78238,) and pts.dtype.names == ("x", "y", "z", "intensity")
    assert pts["x"][0] == np.float32(21.647913) and pts["y"][0] == np.float32(0.19822195)
    assert pts["z"][0] == np.float32(-1.8524752) and pts["intensity"][0] == 11
    assert np.isfinite(pts["x"]).all()


def test_ouster_ply(shared_data):
    pts = read_ply(shared_data / OUSTER_PLY)
    assert pts.shape == (155000,) and pts.dtype.names == ("x", "y", "z")
    assert np.isfinite(pts["x"]).all()
    assert read_point_file(shared_data / OUSTER_PLY).shape == (155000,)


@pytest.mark.parametrize("name,n", [("000000", 115384), ("000001", 120268), ("000002", 126891)])
def test_kitti_bins(shared_data, name, n):
    path = shared_data / "kitti_object" / "velodyne" / f"{name}.bin"
    pts = read_kitti_bin(path)
    assert pts.shape == (n,) and pts.dtype.names == ("x", "y", "z", "intensity")
    assert 0.0 <= pts["intensity"].min() and pts["intensity"].max() <= 1.0
    assert read_point_file(path).tobytes() == path.read_bytes()


def test_real_clouds_through_pcd_and_ply_files(shared_data, tmp_path):
    scan = read_kitti_bin(shared_data / "kitti_object" / "velodyne" / "000000.bin")
    for data in ("binary", "ascii"):
        write_pcd(tmp_path / f"k_{data}.pcd", scan, data=data)
        assert same_values(read_pcd(tmp_path / f"k_{data}.pcd"), scan)
    write_ply(tmp_path / "k.ply", scan)
    assert same_values(read_ply(tmp_path / "k.ply"), scan)
    write_kitti_bin(tmp_path / "k.bin", scan)
    assert (tmp_path / "k.bin").read_bytes() == (shared_data / "kitti_object" / "velodyne" / "000000.bin").read_bytes()


# ------------------------------------------------------------------------------------------
# round trips of every type
# ------------------------------------------------------------------------------------------
def _mixed(n=7):
    dt = np.dtype({"names": ["x", "y", "z", "rgb", "label", "instance", "score", "i8", "i16", "i32", "u8", "t", "h"],
                   "formats": ["<f4", "<f4", "<f4", "<f4", "<u2", "<u4", "<f4", "i1", "<i2", "<i4", "u1", "<f8",
                               ("<f4", (3,))],
                   "offsets": [0, 4, 8, 16, 20, 24, 28, 32, 33, 36, 40, 41, 49],
                   "itemsize": 64})
    rng = np.random.default_rng(6)
    a = np.zeros(n, dt)
    for name in dt.names:
        col = a[name]
        if col.dtype.kind == "f":
            a[name] = rng.normal(size=col.shape)
        else:
            info = np.iinfo(col.dtype)
            a[name] = rng.integers(info.min, info.max, col.shape, endpoint=True)
    a["x"][1] = np.nan
    a["h"][2] = [np.inf, -np.inf, 0.0]
    a["rgb"] = np.array([0x00FF8040] * n, np.uint32).view(np.float32)
    return a


def test_pcd_binary_round_trip_all_types(tmp_path):
    a = _mixed()
    write_pcd(tmp_path / "m.pcd", a)
    hdr = read_pcd_header(tmp_path / "m.pcd")
    assert hdr.fields == list(a.dtype.names) and hdr.counts[-1] == 3
    assert hdr.types[:4] == ["F"] * 4 and hdr.sizes[4] == 2 and hdr.types[4] == "U" and hdr.types[7] == "I"
    b = read_pcd(tmp_path / "m.pcd")
    assert same_values(b, a)
    np.testing.assert_array_equal(b["rgb"].view(np.uint32), a["rgb"].view(np.uint32))
    assert b.dtype.itemsize == 6 * 4 + 2 + 1 + 2 + 4 + 1 + 8 + 12  # packed, no gaps


def test_pcd_ascii_round_trip_all_types(tmp_path):
    a = _mixed()
    a["rgb"] = 1.5  # ascii floats are written in %.9g: exact for values, not for NaN payloads
    write_pcd(tmp_path / "m.pcd", a, data="ascii")
    assert same_values(read_pcd(tmp_path / "m.pcd"), a)


def test_ply_round_trip(tmp_path):
    a = _mixed()
    for binary in (True, False):
        write_ply(tmp_path / "m.ply", a, binary=binary)
        b = read_ply(tmp_path / "m.ply")
        assert "h_0" in b.dtype.names and "h" not in b.dtype.names
        for name in a.dtype.names:
            if name == "h":
                for j in range(3):
                    assert same_values(b[f"h_{j}"], a["h"][:, j])
            else:
                assert same_values(b[name], a[name]), name


def test_organized_pcd(tmp_path):
    a = np.zeros((3, 4), [("x", "<f4"), ("y", "<f4"), ("z", "<f4")])
    a["x"] = np.arange(12).reshape(3, 4)
    write_pcd(tmp_path / "o.pcd", a)
    hdr = read_pcd_header(tmp_path / "o.pcd")
    assert (hdr.width, hdr.height, hdr.points) == (4, 3, 12)
    assert read_pcd(tmp_path / "o.pcd", organized=True).shape == (3, 4)
    assert same_values(read_pcd(tmp_path / "o.pcd").reshape(3, 4), a)


def test_empty_files(tmp_path):
    a = np.zeros(0, [("x", "<f4"), ("y", "<f4"), ("z", "<f4")])
    for data in ("binary", "ascii"):
        write_pcd(tmp_path / "e.pcd", a, data=data)
        assert read_pcd(tmp_path / "e.pcd").shape == (0,)
    write_ply(tmp_path / "e.ply", a)
    assert read_ply(tmp_path / "e.ply").shape == (0,)


# ------------------------------------------------------------------------------------------
# hand-made files: padding fields, binary_compressed, big-endian PLY, errors
# ------------------------------------------------------------------------------------------
def _pcd_header(fields, sizes, types, counts, n, data):
    return (
        "VERSION 0.7\n"
        f"FIELDS {' '.join(fields)}\nSIZE {' '.join(map(str, sizes))}\nTYPE {' '.join(types)}\n"
        f"COUNT {' '.join(map(str, counts))}\nWIDTH {n}\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS {n}\nDATA {data}\n"
    ).encode()


def test_pcd_binary_with_padding_field(tmp_path):
    n = 3
    body = b"".join(struct.pack("<f4sH", i + 0.5, b"\xde\xad\xbe\xef", 100 + i) for i in range(n))
    (tmp_path / "p.pcd").write_bytes(_pcd_header(["x", "_", "ring"], [4, 1, 2], ["F", "U", "U"], [1, 4, 1], n, "binary") + body)
    a = read_pcd(tmp_path / "p.pcd")
    assert a.dtype.names == ("x", "ring")
    np.testing.assert_array_equal(a["ring"], [100, 101, 102])
    np.testing.assert_array_equal(a["x"], [0.5, 1.5, 2.5])


def test_pcd_binary_compressed(tmp_path):
    n = 5
    xs = np.arange(n, dtype="<f4")
    rings = np.arange(n, dtype="<u2") + 7
    hs = np.arange(2 * n, dtype="<i2").reshape(n, 2)
    plain = xs.tobytes() + rings.tobytes() + hs.tobytes()  # column-major, as PCL writes it
    comp = lzf_compress_literal(plain)
    body = struct.pack("<II", len(comp), len(plain)) + comp
    (tmp_path / "c.pcd").write_bytes(
        _pcd_header(["x", "ring", "h"], [4, 2, 2], ["F", "U", "I"], [1, 1, 2], n, "binary_compressed") + body)
    a = read_pcd(tmp_path / "c.pcd")
    np.testing.assert_array_equal(a["x"], xs)
    np.testing.assert_array_equal(a["ring"], rings)
    np.testing.assert_array_equal(a["h"], hs)


def test_lzf_back_references():
    # literal "abc", then a back-reference of length 6 at distance 3 (overlapping): "abcabcabc"
    comp = bytes([2]) + b"abc" + bytes([(4 << 5) | 0, 2])
    assert lzf_decompress(comp, 9) == b"abcabcabc"
    # long back-reference (length code 7 + extra byte)
    comp = bytes([0]) + b"z" + bytes([(7 << 5) | 0, 3, 0])
    assert lzf_decompress(comp, 13) == b"z" * 13
    with pytest.raises(ConversionError):
        lzf_decompress(bytes([(1 << 5) | 0, 5]), 3)  # reference before the start
    with pytest.raises(ConversionError):
        lzf_decompress(bytes([5]) + b"ab", 6)  # literal past the end


def test_open3d_compressed_pcd_is_readable(tmp_path):
    o3d = pytest.importorskip("open3d")
    rng = np.random.default_rng(7)
    xyz = rng.normal(size=(500, 3))
    pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(xyz))
    o3d.io.write_point_cloud(str(tmp_path / "o3d.pcd"), pc, write_ascii=False, compressed=True)
    assert read_pcd_header(tmp_path / "o3d.pcd").data == "binary_compressed"
    a = read_pcd(tmp_path / "o3d.pcd")
    got = np.stack([a["x"], a["y"], a["z"]], axis=1)
    np.testing.assert_allclose(got, xyz, rtol=1e-6, atol=1e-6)


def test_written_labeled_files_open_in_open3d(tmp_path):
    o3d = pytest.importorskip("open3d")
    a = _mixed(50)
    a["x"][1] = 0.0
    for name, writer in (("l.pcd", write_pcd), ("l.ply", write_ply)):
        writer(tmp_path / name, a)
        pc = o3d.io.read_point_cloud(str(tmp_path / name), remove_nan_points=False, remove_infinite_points=False)
        pts = np.asarray(pc.points)
        assert pts.shape == (50, 3)
        np.testing.assert_allclose(pts[:, 0], a["x"], rtol=1e-6)
    t = o3d.t.io.read_point_cloud(str(tmp_path / "l.pcd"))
    assert "label" in t.point and np.array_equal(t.point["label"].numpy().reshape(-1), a["label"])


def test_big_endian_and_ascii_ply_with_faces(tmp_path):
    verts = np.array([(1.0, 2.0, 3, 200), (4.0, -5.0, 6, 7)], [("x", ">f4"), ("y", ">f8"), ("z", ">i2"), ("c", "u1")])
    head = ("ply\nformat binary_big_endian 1.0\nelement vertex 2\nproperty float x\nproperty double y\n"
            "property short z\nproperty uchar c\nelement face 1\nproperty list uchar int vertex_indices\nend_header\n")
    (tmp_path / "b.ply").write_bytes(head.encode() + verts.tobytes() + b"\x03" + b"\x00" * 12)
    a = read_ply(tmp_path / "b.ply")
    assert a.dtype["x"].isnative and same_values(a, verts)
    ascii_ply = ("ply\nformat ascii 1.0\ncomment x\nelement camera 1\nproperty float f\nelement vertex 2\n"
                 "property float x\nproperty int n\nend_header\n9.5\n1.5 -3\nnan 4\n")
    (tmp_path / "a.ply").write_text(ascii_ply)
    a = read_ply(tmp_path / "a.ply")
    assert same_values(a["x"], np.array([1.5, np.nan], np.float32)) and list(a["n"]) == [-3, 4]


@pytest.mark.parametrize("content,match", [
    (b"VERSION 0.7\nFIELDS x\nSIZE 4\nTYPE F\nWIDTH 10\nHEIGHT 1\nPOINTS 10\nDATA binary\n" + b"\x00" * 12,
     "expected, got 12"),
    (b"VERSION 0.7\nFIELDS x y\nSIZE 4\nTYPE F F\nWIDTH 1\nPOINTS 1\nDATA ascii\n1 2\n", "lengths differ"),
    (b"VERSION 0.7\nFIELDS x\nSIZE 4\nTYPE F\nWIDTH 1\nPOINTS 1\n", "no DATA"),
    (b"VERSION 0.7\nFIELDS x\nSIZE 4\nTYPE F\nWIDTH 1\nPOINTS 1\nDATA lzma\n", "unsupported PCD DATA"),
    (b"VERSION 0.7\nFIELDS x\nSIZE 3\nTYPE F\nWIDTH 1\nPOINTS 1\nDATA ascii\n1\n", "SIZE 3"),
    (b"VERSION 0.7\nFIELDS x\nSIZE 4\nTYPE F\nWIDTH 3\nPOINTS 3\nDATA ascii\n1\n2\n", "has 2 points"),
])
def test_bad_pcd_files(tmp_path, content, match):
    (tmp_path / "bad.pcd").write_bytes(content)
    with pytest.raises(ConversionError, match=match):
        read_pcd(tmp_path / "bad.pcd")


def test_bad_point_files(tmp_path):
    (tmp_path / "k.bin").write_bytes(b"\x00" * 15)
    with pytest.raises(ConversionError, match="multiple of the 16-byte"):
        read_kitti_bin(tmp_path / "k.bin")
    (tmp_path / "k.bin").write_bytes(b"")
    with pytest.raises(ConversionError, match=r"KITTI \.bin file is empty \(0 bytes\)"):
        read_kitti_bin(tmp_path / "k.bin")
    (tmp_path / "t.ply").write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 5\nproperty float x\nend_header\n\x00")
    with pytest.raises(ConversionError, match="truncated PLY"):
        read_ply(tmp_path / "t.ply")
    with pytest.raises(ConversionError, match="unknown point file"):
        read_point_file(tmp_path / "x.xyz")
    with pytest.raises(ConversionError, match="cannot read"):
        read_pcd(tmp_path / "missing.pcd")
