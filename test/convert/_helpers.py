"""Small message stand-ins and comparison helpers for the conversion tests."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np


def Msg(**kw):  # noqa: N802 - reads like a message class
    return SimpleNamespace(**kw)


def Field(name, offset, datatype, count=1):  # noqa: N802
    return SimpleNamespace(name=name, offset=offset, datatype=datatype, count=count)


def cloud_msg(fields, point_step, data, width, height=1, row_step=None, is_bigendian=False):
    return SimpleNamespace(
        header=None,
        height=height,
        width=width,
        fields=list(fields),
        is_bigendian=is_bigendian,
        point_step=point_step,
        row_step=width * point_step if row_step is None else row_step,
        data=data,
        is_dense=False,
    )


def image_msg(encoding, height, width, step, data, is_bigendian=0):
    return SimpleNamespace(
        header=None, height=height, width=width, encoding=encoding, is_bigendian=is_bigendian, step=step, data=data
    )


def same_values(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal shape and values, NaN equal to NaN (plain or structured arrays)."""
    a = np.asarray(a)
    b = np.asarray(b)
    if a.shape != b.shape:
        return False
    if a.dtype.names is not None:
        if a.dtype.names != b.dtype.names:
            return False
        return all(same_values(a[n], b[n]) for n in a.dtype.names)
    if a.dtype.kind == "f" or b.dtype.kind == "f":
        return bool(np.array_equal(a, b, equal_nan=True))
    return bool(np.array_equal(a, b))
