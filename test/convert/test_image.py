"""sensor_msgs/Image <-> numpy."""

from __future__ import annotations

import array
import re

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from samfusion.convert import (
    SUPPORTED_ENCODINGS,
    as_uint8_array,
    check_image_layout,
    encoding_info,
    image_to_numpy,
    image_to_rgb,
    numpy_to_image,
    to_rgb8,
)
from samfusion.errors import ConversionError

from ._helpers import Msg, image_msg, same_values

PLAIN = [e for e in SUPPORTED_ENCODINGS if encoding_info(e)[2] == "plain"]


def _padded(arr: np.ndarray, pad: int, fill: int = 0xAB, big: bool = False) -> tuple[bytes, int]:
    """Row-padded wire bytes of ``arr`` (H x W [x C]) and the step."""
    h = arr.shape[0]
    row_bytes = int(np.prod(arr.shape[1:])) * arr.dtype.itemsize
    wire = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder(">" if big else "<"))
    step = row_bytes + pad
    out = np.full((h, step), fill, np.uint8)
    if h and row_bytes:
        out[:, :row_bytes] = wire.reshape(h, -1).view(np.uint8)
    return out.tobytes(), step


# ------------------------------------------------------------------------------------------
# required cases
# ------------------------------------------------------------------------------------------
def test_bgr8_padded_rows():
    rng = np.random.default_rng(1)
    bgr = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    data, step = _padded(bgr, pad=11)
    assert step == 7 * 3 + 11
    msg = image_msg("bgr8", 5, 7, step, data)
    out = image_to_numpy(msg)
    assert out.shape == (5, 7, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, bgr)
    rgb = image_to_rgb(msg)
    np.testing.assert_array_equal(rgb, bgr[:, :, ::-1])
    assert rgb.flags.c_contiguous


def test_big_endian_mono16():
    vals = np.array([[0x0102, 0xFF00, 1], [65535, 0, 0x1234]], dtype=np.uint16)
    data = vals.astype(">u2").tobytes()
    msg = image_msg("mono16", 2, 3, 6, data, is_bigendian=1)
    out = image_to_numpy(msg)
    assert out.dtype == np.uint16 and out.dtype.isnative
    np.testing.assert_array_equal(out, vals)
    # the same bytes read as little-endian are byte-swapped values
    msg.is_bigendian = 0
    np.testing.assert_array_equal(image_to_numpy(msg), vals.byteswap())


def test_big_endian_32fc1_and_padding():
    vals = np.array([[1.5, -2.25, np.nan], [np.inf, 0.0, 3e-9]], dtype=np.float32)
    data, step = _padded(vals, pad=4, big=True)
    out = image_to_numpy(image_msg("32FC1", 2, 3, step, data, is_bigendian=1))
    assert same_values(out, vals)


# ------------------------------------------------------------------------------------------
# errors
# ------------------------------------------------------------------------------------------
def test_step_smaller_than_row_is_error():
    with pytest.raises(ConversionError, match=r"step 8 < width\*bytes_per_pixel"):
        image_to_numpy(image_msg("rgb8", 2, 3, 8, bytes(100)))


def test_truncated_names_byte_counts():
    with pytest.raises(ConversionError) as ei:
        image_to_numpy(image_msg("rgb8", 4, 5, 16, bytes(40)))
    assert "expected 64 bytes" in str(ei.value) and "got 40" in str(ei.value)


def test_last_row_padding_may_be_absent():
    arr = np.arange(12, dtype=np.uint8).reshape(3, 4)
    data, step = _padded(arr, pad=4)
    out = image_to_numpy(image_msg("mono8", 3, 4, step, data[:-4]))
    np.testing.assert_array_equal(out, arr)


def test_unknown_encoding_lists_supported():
    with pytest.raises(ConversionError) as ei:
        image_to_numpy(image_msg("rgb9000", 1, 1, 3, bytes(3)))
    msg = str(ei.value)
    assert "rgb9000" in msg and "bgr8" in msg and "yuv422" in msg and "bayer_rggb8" in msg


def test_odd_width_yuv_is_error():
    with pytest.raises(ConversionError, match="even"):
        image_to_numpy(image_msg("yuv422", 1, 3, 6, bytes(6)))


@pytest.mark.parametrize("enc", ["rgb8", "mono16", "32FC1", "yuv422", "bayer_rggb8"])
def test_empty_images(enc):
    out = image_to_numpy(image_msg(enc, 0, 4, 0, b""))
    assert out.shape[0] == 0
    out = image_to_numpy(image_msg(enc, 3, 0, 0, b""))
    assert out.shape[:2] == (3, 0)


# ------------------------------------------------------------------------------------------
# data containers
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "wrap",
    [bytes, bytearray, memoryview, lambda b: array.array("B", b), list, lambda b: np.frombuffer(b, np.uint8),
     tuple],
    ids=["bytes", "bytearray", "memoryview", "array", "list", "numpy", "tuple"],
)
def test_data_containers(wrap):
    arr = np.arange(24, dtype=np.uint8).reshape(2, 4, 3)
    msg = image_msg("rgb8", 2, 4, 12, wrap(arr.tobytes()))
    np.testing.assert_array_equal(image_to_numpy(msg), arr)


def test_as_uint8_array_zero_copy_and_errors():
    b = bytearray(b"\x01\x02\x03")
    a = as_uint8_array(b)
    b[0] = 9
    assert a[0] == 9  # a view, no copy
    arr = np.arange(4, dtype=np.uint16)
    assert as_uint8_array(arr).size == 8
    assert as_uint8_array(None).size == 0
    with pytest.raises(ConversionError):
        as_uint8_array([1, 300])
    with pytest.raises(ConversionError):
        as_uint8_array("abc")


def test_zero_copy_view_and_copy_flag():
    data = bytearray(np.arange(12, dtype=np.uint8).tobytes())
    msg = image_msg("mono8", 3, 4, 4, data)
    view = image_to_numpy(msg)
    data[0] = 99
    assert view[0, 0] == 99
    own = image_to_numpy(msg, copy=True)
    data[0] = 1
    assert own[0, 0] == 99 and own.flags.writeable and own.flags.c_contiguous


# ------------------------------------------------------------------------------------------
# yuv / bayer colours with hand-made pixels
# ------------------------------------------------------------------------------------------
# BT.601 limited range YUV of pure colours
YUV = {"red": (81, 90, 240), "green": (145, 54, 34), "blue": (41, 240, 110), "white": (235, 128, 128)}
RGB = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255), "white": (255, 255, 255)}


@pytest.mark.parametrize("colour", list(YUV))
def test_yuv422_is_uyvy(colour):
    y, u, v = YUV[colour]
    data = bytes([u, y, v, y] * 2)  # 4 pixels: U0 Y0 V0 Y1 | U2 Y2 V2 Y3
    out = image_to_numpy(image_msg("yuv422", 1, 4, 8, data))
    assert out.shape == (1, 4, 3) and out.dtype == np.uint8
    assert np.abs(out.astype(int) - RGB[colour]).max() <= 3, out
    np.testing.assert_array_equal(image_to_rgb(image_msg("yuv422", 1, 4, 8, data)), out)


@pytest.mark.parametrize("colour", list(YUV))
def test_yuv422_yuy2_is_yuyv(colour):
    y, u, v = YUV[colour]
    data = bytes([y, u, y, v] * 2)  # Y0 U0 Y1 V0
    out = image_to_numpy(image_msg("yuv422_yuy2", 1, 4, 8, data))
    assert np.abs(out.astype(int) - RGB[colour]).max() <= 3, out


def test_yuv_byte_orders_differ():
    y, u, v = YUV["red"]
    uyvy = bytes([u, y, v, y])
    wrong = image_to_numpy(image_msg("yuv422_yuy2", 1, 2, 4, uyvy))
    assert np.abs(wrong.astype(int) - RGB["red"]).max() > 50


def test_yuv_two_pixel_colours_with_padding():
    # left pixel pair red, right pair blue; step padded
    r, b = YUV["red"], YUV["blue"]
    row = bytes([r[1], r[0], r[2], r[0], b[1], b[0], b[2], b[0]]) + b"\x00" * 8
    out = image_to_numpy(image_msg("yuv422", 2, 4, 16, row * 2))
    assert np.abs(out[:, :2].astype(int) - RGB["red"]).max() <= 3
    assert np.abs(out[:, 2:].astype(int) - RGB["blue"]).max() <= 3


def _mosaic(pattern: str, rgb: tuple[int, int, int], h: int = 8, w: int = 10, dtype=np.uint8) -> np.ndarray:
    c = dict(zip("rgb", rgb))
    m = np.zeros((h, w), dtype)
    m[0::2, 0::2] = c[pattern[0]]
    m[0::2, 1::2] = c[pattern[1]]
    m[1::2, 0::2] = c[pattern[2]]
    m[1::2, 1::2] = c[pattern[3]]
    return m


@pytest.mark.parametrize("pattern", ["rggb", "bggr", "gbrg", "grbg"])
def test_bayer8_known_colour(pattern):
    colour = (210, 120, 30)
    m = _mosaic(pattern, colour)
    data, step = _padded(m, pad=6)
    out = image_to_numpy(image_msg(f"bayer_{pattern}8", 8, 10, step, data))
    assert out.shape == (8, 10, 3) and out.dtype == np.uint8
    # interior pixels (borders are extrapolated)
    assert np.abs(out[2:-2, 2:-2].astype(int) - colour).max() <= 2, out[4, 4]
    np.testing.assert_array_equal(image_to_rgb(image_msg(f"bayer_{pattern}8", 8, 10, step, data)), out)


@pytest.mark.parametrize("pattern", ["rggb", "gbrg"])
def test_bayer16_known_colour(pattern):
    colour = (50000, 20000, 1000)
    m = _mosaic(pattern, colour, dtype=np.uint16)
    out = image_to_numpy(image_msg(f"bayer_{pattern}16", 8, 10, 20, m.astype(">u2").tobytes(), is_bigendian=1))
    assert out.dtype == np.uint16
    assert np.abs(out[2:-2, 2:-2].astype(int) - colour).max() <= 2


# ------------------------------------------------------------------------------------------
# image_to_rgb rules
# ------------------------------------------------------------------------------------------
def test_to_rgb_mono_alpha_bgr():
    g = np.array([[0, 128, 255]], np.uint8)
    out = image_to_rgb(numpy_to_image(g, "mono8", Msg))
    np.testing.assert_array_equal(out, np.repeat(g[:, :, None], 3, 2))
    rgba = np.array([[[1, 2, 3, 4]]], np.uint8)
    np.testing.assert_array_equal(image_to_rgb(numpy_to_image(rgba, "rgba8", Msg)), [[[1, 2, 3]]])
    np.testing.assert_array_equal(image_to_rgb(numpy_to_image(rgba, "bgra8", Msg)), [[[3, 2, 1]]])
    np.testing.assert_array_equal(image_to_rgb(numpy_to_image(rgba[:, :, :3], "8UC3", Msg)), [[[3, 2, 1]]])


def test_to_rgb_scaling_rules():
    d = np.array([[1000, 2000, 3000, 0]], np.uint16)
    out = image_to_rgb(numpy_to_image(d, "16UC1", Msg))
    np.testing.assert_array_equal(out[0, :, 0], [85, 170, 255, 0])  # minmax over 0..3000
    full = image_to_rgb(numpy_to_image(d, "mono16", Msg), scale="full")
    np.testing.assert_array_equal(full[0, :, 0], np.rint(d[0] / 257.0).astype(np.uint8))
    f = np.array([[np.nan, 1.0, 2.0, np.inf]], np.float32)
    out = image_to_rgb(numpy_to_image(f, "32FC1", Msg))
    np.testing.assert_array_equal(out[0, :, 1], [0, 0, 255, 0])
    const = np.full((2, 2), 7, np.uint16)
    assert image_to_rgb(numpy_to_image(const, "mono16", Msg)).max() == 0
    with pytest.raises(ConversionError):
        to_rgb8(np.zeros((2, 2, 2), np.uint8))


# ------------------------------------------------------------------------------------------
# numpy_to_image
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("enc,shape,dtype", [
    ("rgb8", (3, 5, 3), np.uint8), ("bgr8", (3, 5, 3), np.uint8), ("mono8", (3, 5), np.uint8),
    ("mono16", (3, 5), np.uint16), ("16UC1", (3, 5), np.uint16), ("32FC1", (3, 5), np.float32),
    ("rgba8", (2, 2, 4), np.uint8), ("8UC3", (2, 2, 3), np.uint8), ("64FC1", (2, 3), np.float64),
])
def test_numpy_to_image_fields(enc, shape, dtype):
    arr = (np.arange(int(np.prod(shape))) % 251).astype(dtype).reshape(shape)
    msg = numpy_to_image(arr, enc, Msg, header="hdr")
    bpp = np.dtype(dtype).itemsize * (shape[2] if len(shape) == 3 else 1)
    assert (msg.height, msg.width, msg.step, msg.is_bigendian, msg.encoding) == (shape[0], shape[1], shape[1] * bpp, 0, enc)
    assert isinstance(msg.data, array.array) and msg.data.typecode == "B" and len(msg.data) == msg.step * msg.height
    assert msg.header == "hdr"
    np.testing.assert_array_equal(image_to_numpy(msg), arr)


def test_numpy_to_image_rejects_mismatch():
    with pytest.raises(ConversionError, match="dtype"):
        numpy_to_image(np.zeros((2, 2), np.float32), "mono16", Msg)
    with pytest.raises(ConversionError, match="H x W x 3"):
        numpy_to_image(np.zeros((2, 2), np.uint8), "rgb8", Msg)
    with pytest.raises(ConversionError, match="unsupported"):
        numpy_to_image(np.zeros((2, 2), np.uint8), "nope", Msg)


def test_big_endian_source_array_written_little_endian():
    arr = np.array([[1, 258]], dtype=">u2")
    msg = numpy_to_image(arr, "mono16", Msg)
    assert bytes(msg.data) == b"\x01\x00\x02\x01"


def test_kitti_png_through_image(shared_data):
    bgr = cv2.imread(str(shared_data / "kitti_object" / "image_2" / "000000.png"), cv2.IMREAD_UNCHANGED)
    assert bgr.shape == (370, 1224, 3)
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    for enc, arr in (("rgb8", rgb), ("bgr8", bgr)):
        msg = numpy_to_image(arr, enc, Msg)
        np.testing.assert_array_equal(image_to_numpy(msg), arr)
        np.testing.assert_array_equal(image_to_rgb(msg), rgb)
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    np.testing.assert_array_equal(image_to_numpy(numpy_to_image(gray, "mono8", Msg)), gray)


# ------------------------------------------------------------------------------------------
# property tests
# ------------------------------------------------------------------------------------------
def _random_values(rng: np.random.Generator, dtype: np.dtype, shape) -> np.ndarray:
    if dtype.kind == "f":
        v = rng.normal(0, 1e3, shape).astype(dtype)
        special = rng.random(shape) < 0.1
        v[special] = rng.choice(np.array([np.nan, np.inf, -np.inf, 0.0, -0.0], dtype), size=int(special.sum()))
        return v
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)


@st.composite
def image_cases(draw):
    enc = draw(st.sampled_from(PLAIN))
    base, ch, _ = encoding_info(enc)
    h = draw(st.integers(0, 6))
    w = draw(st.integers(0, 6))
    pad = draw(st.integers(0, 9))
    big = draw(st.booleans())
    seed = draw(st.integers(0, 2**32 - 1))
    shape = (h, w) if ch == 1 else (h, w, ch)
    arr = _random_values(np.random.default_rng(seed), np.dtype(base.str[1:]), shape)
    return enc, arr, pad, big


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(image_cases())
def test_property_padded_images_round_trip(case):
    enc, arr, pad, big = case
    data, step = _padded(arr, pad, big=big)
    msg = image_msg(enc, arr.shape[0], arr.shape[1], step, data, is_bigendian=int(big))
    out = image_to_numpy(msg)
    assert out.dtype.isnative or out.dtype.itemsize == 1
    assert same_values(out, arr)
    # numpy -> Image -> numpy
    assert same_values(image_to_numpy(numpy_to_image(arr, enc, Msg)), arr)


@settings(max_examples=200, deadline=None)
@given(image_cases(), st.integers(1, 10_000))
def test_property_truncated_images_raise_with_counts(case, cut):
    enc, arr, pad, big = case
    h, w = arr.shape[:2]
    if h == 0 or w == 0:
        return
    data, step = _padded(arr, pad, big=big)
    row_bytes = step - pad
    needed = step * (h - 1) + row_bytes
    keep = max(0, needed - cut)
    msg = image_msg(enc, h, w, step, data[:keep], is_bigendian=int(big))
    with pytest.raises(ConversionError) as ei:
        image_to_numpy(msg)
    text = str(ei.value)
    assert f"expected {step * h} bytes" in text and f"got {keep}" in text
    assert re.search(r"\d+x\d+", text)


@st.composite
def converted_cases(draw):
    """yuv422 / yuv422_yuy2 / bayer images: random bytes, random padding."""
    enc = draw(st.sampled_from([e for e in SUPPORTED_ENCODINGS if encoding_info(e)[2] != "plain"]))
    base, ch, kind = encoding_info(enc)
    h = draw(st.integers(2, 6))
    w = draw(st.integers(1, 4)) * 2
    pad = draw(st.integers(0, 9))
    big = draw(st.booleans())
    seed = draw(st.integers(0, 2**32 - 1))
    shape = (h, w, 2) if kind.startswith("yuv") else (h, w)
    arr = _random_values(np.random.default_rng(seed), np.dtype(base.str[1:]), shape)
    return enc, arr, pad, big


@settings(max_examples=100, deadline=None)
@given(converted_cases())
def test_property_yuv_bayer_step_independent(case):
    enc, arr, pad, big = case
    h, w = arr.shape[:2]
    data, step = _padded(arr, pad, big=big)
    padded = image_to_numpy(image_msg(enc, h, w, step, data, is_bigendian=int(big)))
    dense = image_to_numpy(numpy_to_image(arr, enc, Msg))
    assert padded.shape == (h, w, 3) and padded.dtype == arr.dtype
    np.testing.assert_array_equal(padded, dense)


@settings(max_examples=100, deadline=None)
@given(converted_cases(), st.integers(1, 1000))
def test_property_truncated_yuv_bayer_raise(case, cut):
    enc, arr, pad, big = case
    h, w = arr.shape[:2]
    data, step = _padded(arr, pad, big=big)
    keep = max(0, step * (h - 1) + (step - pad) - cut)
    with pytest.raises(ConversionError) as ei:
        image_to_numpy(image_msg(enc, h, w, step, data[:keep], is_bigendian=int(big)))
    assert f"expected {step * h} bytes" in str(ei.value) and f"got {keep}" in str(ei.value)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(image_cases(), st.integers(-10, 10_000), st.integers(-8, 8), st.sampled_from(["", "rgb9000", None]))
def test_property_layout_check_agrees_with_decoding(case, cut, step_delta, encoding):
    """The cheap callback check refuses exactly what decoding refuses, plus empty images."""
    enc, arr, pad, big = case
    data, step = _padded(arr, pad, big=big)
    msg = image_msg(encoding if encoding is not None else enc, arr.shape[0], arr.shape[1],
                    max(0, step + step_delta), data[: max(0, len(data) - cut)], is_bigendian=int(big))
    try:
        decoded = image_to_numpy(msg)
    except ConversionError as exc:
        with pytest.raises(ConversionError) as ei:
            check_image_layout(msg)
        assert str(ei.value) == str(exc)
        return
    if decoded.size == 0:
        with pytest.raises(ConversionError, match="empty .* nothing to segment"):
            check_image_layout(msg)
    else:
        check_image_layout(msg)  # no error
