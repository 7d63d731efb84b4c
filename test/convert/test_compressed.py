"""sensor_msgs/CompressedImage <-> numpy (jpeg, png, compressedDepth)."""

from __future__ import annotations

import array
import struct

import cv2
import numpy as np
import pytest

from samfusion.convert import (
    compressed_to_numpy,
    compressed_to_rgb,
    numpy_to_compressed,
    numpy_to_compressed_depth,
    parse_compressed_format,
)
from samfusion.errors import ConversionError

from ._helpers import Msg


def _cmsg(fmt, data):
    return Msg(header=None, format=fmt, data=data)


def _png(arr):
    ok, buf = cv2.imencode(".png", arr)
    assert ok
    return buf.tobytes()


def _jpeg(arr, q=95):
    ok, buf = cv2.imencode(".jpg", arr, [cv2.IMWRITE_JPEG_QUALITY, q])
    assert ok
    return buf.tobytes()


@pytest.mark.parametrize("fmt,expected", [
    ("jpeg", ("", "jpeg", "image")),
    ("png", ("", "png", "image")),
    ("rgb8; jpeg compressed bgr8", ("rgb8", "jpeg", "image")),
    ("bgr8; png compressed bgr8", ("bgr8", "png", "image")),
    ("16UC1; compressedDepth png", ("16UC1", "png", "depth")),
    ("32FC1; compressedDepth", ("32FC1", "", "depth")),
    ("32FC1; compressedDepth rvl", ("32FC1", "rvl", "depth")),
    ("", ("", "", "image")),
])
def test_parse_format(fmt, expected):
    assert parse_compressed_format(fmt) == expected


def _colour_image(h=24, w=32):
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[:, : w // 2] = (230, 20, 20)  # red left
    rgb[:, w // 2:] = (20, 20, 230)  # blue right
    return rgb


@pytest.mark.parametrize("fmt", ["jpeg", "rgb8; jpeg compressed bgr8", "bgr8; jpeg compressed bgr8", ""])
def test_jpeg_decodes_to_rgb(fmt):
    rgb = _colour_image()
    out = compressed_to_numpy(_cmsg(fmt, _jpeg(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))))
    assert out.shape == rgb.shape and out.dtype == np.uint8
    assert np.abs(out[4:-4, 2:10].astype(int) - (230, 20, 20)).max() < 12  # red stays red
    assert np.abs(out[4:-4, -10:-2].astype(int) - (20, 20, 230)).max() < 12


@pytest.mark.parametrize("fmt", ["png", "rgb8; png compressed bgr8"])
def test_png_decodes_to_rgb_exactly(fmt):
    rgb = np.random.default_rng(2).integers(0, 256, (9, 13, 3), dtype=np.uint8)
    out = compressed_to_numpy(_cmsg(fmt, _png(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))))
    np.testing.assert_array_equal(out, rgb)
    np.testing.assert_array_equal(compressed_to_rgb(_cmsg(fmt, _png(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)))), rgb)


def test_gray_and_16bit_png():
    g = np.arange(60, dtype=np.uint8).reshape(6, 10)
    out = compressed_to_numpy(_cmsg("mono8; png compressed mono8", _png(g)))
    assert out.shape == (6, 10) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, g)
    np.testing.assert_array_equal(compressed_to_rgb(_cmsg("png", _png(g))), np.repeat(g[:, :, None], 3, 2))
    d = (np.arange(60, dtype=np.uint16) * 1000).reshape(6, 10)
    out = compressed_to_numpy(_cmsg("mono16; png compressed mono16", _png(d)))
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, d)
    assert compressed_to_rgb(_cmsg("png", _png(d))).shape == (6, 10, 3)


def test_rgba_png():
    rgba = np.random.default_rng(3).integers(0, 256, (4, 5, 4), dtype=np.uint8)
    msg = numpy_to_compressed(rgba, "png", Msg)
    np.testing.assert_array_equal(compressed_to_numpy(msg), rgba)
    np.testing.assert_array_equal(compressed_to_rgb(msg), rgba[:, :, :3])


# ------------------------------------------------------------------------------------------
# compressedDepth, built by hand: 12-byte ConfigHeader + cv2.imencode png
# ------------------------------------------------------------------------------------------
def test_compressed_depth_16uc1_by_hand():
    depth = np.array([[0, 500, 1000], [65535, 1234, 7]], np.uint16)
    data = struct.pack("<iff", 0, 0.0, 0.0) + _png(depth)
    out = compressed_to_numpy(_cmsg("16UC1; compressedDepth png", data))
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, depth)
    rgb = compressed_to_rgb(_cmsg("16UC1; compressedDepth png", data))
    assert rgb.shape == (2, 3, 3) and rgb[1, 0, 0] == 255 and rgb[0, 0, 0] == 0


@pytest.mark.parametrize("fmt", ["32FC1; compressedDepth png", "32FC1; compressedDepth"])
def test_compressed_depth_32fc1_by_hand(fmt):
    qa, depth_max = 100.0, 10.0
    qb = qa / depth_max
    depth = np.array([[0.5, 1.0, 2.0], [np.nan, 9.0, 0.0]], np.float32)
    valid = np.isfinite(depth) & (depth > 0)
    inv = np.zeros(depth.shape, np.uint16)
    inv[valid] = (qa / depth[valid] + qb).astype(np.uint16)  # as compressed_depth_image_transport
    data = struct.pack("<iff", 0, qa, qb) + _png(inv)
    out = compressed_to_numpy(_cmsg(fmt, data))
    assert out.dtype == np.float32 and out.shape == depth.shape
    expected = np.float32(qa) / (inv.astype(np.float32) - np.float32(qb))
    np.testing.assert_array_equal(out[valid], expected[valid])
    assert np.isnan(out[~valid]).all()  # value 0 -> NaN
    np.testing.assert_allclose(out[valid], depth[valid], rtol=0.02)


def test_depth_without_source_encoding_returns_stored_values():
    inv = np.array([[0, 60, 110]], np.uint16)
    data = struct.pack("<iff", 0, 100.0, 10.0) + _png(inv)
    out = compressed_to_numpy(_cmsg("compressedDepth png", data))
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, inv)


def test_numpy_to_compressed_depth_round_trip():
    d16 = np.array([[1, 2], [3, 60000]], np.uint16)
    m = numpy_to_compressed_depth(d16, Msg)
    assert m.format == "16UC1; compressedDepth png" and bytes(m.data[12:20]) == b"\x89PNG\r\n\x1a\n"
    np.testing.assert_array_equal(compressed_to_numpy(m), d16)
    d = np.array([[0.8, 3.3], [np.nan, 12.0]], np.float32)
    m = numpy_to_compressed_depth(d, Msg, depth_max=10.0)
    out = compressed_to_numpy(m)
    np.testing.assert_allclose(out[0], d[0], rtol=0.03)
    assert np.isnan(out[1]).all()  # NaN and beyond depth_max are not stored


def test_depth_without_config_header():
    depth = np.array([[10, 20]], np.uint16)
    np.testing.assert_array_equal(compressed_to_numpy(_cmsg("16UC1; compressedDepth", _png(depth))), depth)


@pytest.mark.parametrize("fmt,data,match", [
    ("jpeg", b"", "empty"),
    ("jpeg", b"not an image at all", "signature"),
    ("png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "could not decode|corrupt"),
    ("16UC1; compressedDepth png", b"\x00" * 10, "at least 20 bytes"),
    ("32FC1; compressedDepth png", struct.pack("<iff", 0, 1, 1) + b"garbage garbage", "no PNG"),
    ("32FC1; compressedDepth rvl", b"\x00" * 30, "rvl"),
])
def test_corrupt_data_raises(fmt, data, match):
    with pytest.raises(ConversionError, match=match):
        compressed_to_numpy(_cmsg(fmt, data))


def test_truncated_jpeg_and_png_raise():
    rgb = np.random.default_rng(4).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    for fmt, data in (("jpeg", _jpeg(rgb)), ("png", _png(rgb))):
        for cut in (len(data) // 2, len(data) - 3):
            with pytest.raises(ConversionError):
                compressed_to_numpy(_cmsg(fmt, data[:cut]))


def test_numpy_to_compressed_formats_and_errors():
    rgb = _colour_image()
    m = numpy_to_compressed(rgb, "jpeg", Msg, header="h", quality=95)
    assert m.format == "rgb8; jpeg compressed bgr8" and m.header == "h" and isinstance(m.data, array.array) and m.data.typecode == "B"
    assert np.abs(compressed_to_rgb(m)[4:-4, 2:10].astype(int) - (230, 20, 20)).max() < 12
    m = numpy_to_compressed(rgb, "png", Msg)
    np.testing.assert_array_equal(compressed_to_numpy(m), rgb)
    m = numpy_to_compressed(np.zeros((3, 3), np.uint16), "png", Msg)
    assert m.format == "mono16; png compressed mono16"
    with pytest.raises(ConversionError):
        numpy_to_compressed(np.zeros((3, 3), np.uint16), "jpeg", Msg)
    with pytest.raises(ConversionError):
        numpy_to_compressed(rgb, "webp2000", Msg)
    with pytest.raises(ConversionError):
        numpy_to_compressed(np.zeros((3, 3, 4), np.uint8), "jpeg", Msg)


def test_kitti_png_through_compressed_image(shared_data):
    path = shared_data / "kitti_object" / "image_2" / "000001.png"
    raw = path.read_bytes()
    rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    assert rgb.shape == (375, 1242, 3)
    for fmt in ("png", "rgb8; png compressed bgr8"):
        out = compressed_to_numpy(_cmsg(fmt, raw))
        np.testing.assert_array_equal(out, rgb)
    # numpy -> CompressedImage(png) -> numpy is lossless; jpeg is close
    np.testing.assert_array_equal(compressed_to_numpy(numpy_to_compressed(rgb, "png", Msg)), rgb)
    j = compressed_to_rgb(numpy_to_compressed(rgb, "jpeg", Msg, quality=95))
    assert np.abs(j.astype(int) - rgb).mean() < 4.0
