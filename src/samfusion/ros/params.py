"""Declarative node parameters: one spec list per node, declared with descriptors at start-up.

Specs name the type, default, range and whether a live change is allowed; the node reads them
once into its frozen config and validates later changes against the same specs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    ParameterType,
    SetParametersResult,
)
from rclpy.node import Node
from rclpy.parameter import Parameter

__all__ = ["ParamSpec", "declare_parameters", "check_changes", "read_parameters"]

_TYPES = {
    bool: ParameterType.PARAMETER_BOOL,
    int: ParameterType.PARAMETER_INTEGER,
    float: ParameterType.PARAMETER_DOUBLE,
    str: ParameterType.PARAMETER_STRING,
}
_ARRAY_TYPES = {
    str: ParameterType.PARAMETER_STRING_ARRAY,
    float: ParameterType.PARAMETER_DOUBLE_ARRAY,
    int: ParameterType.PARAMETER_INTEGER_ARRAY,
    bool: ParameterType.PARAMETER_BOOL_ARRAY,
}
_RCLPY_TYPES = {
    ParameterType.PARAMETER_BOOL: Parameter.Type.BOOL,
    ParameterType.PARAMETER_INTEGER: Parameter.Type.INTEGER,
    ParameterType.PARAMETER_DOUBLE: Parameter.Type.DOUBLE,
    ParameterType.PARAMETER_STRING: Parameter.Type.STRING,
    ParameterType.PARAMETER_STRING_ARRAY: Parameter.Type.STRING_ARRAY,
    ParameterType.PARAMETER_DOUBLE_ARRAY: Parameter.Type.DOUBLE_ARRAY,
    ParameterType.PARAMETER_INTEGER_ARRAY: Parameter.Type.INTEGER_ARRAY,
    ParameterType.PARAMETER_BOOL_ARRAY: Parameter.Type.BOOL_ARRAY,
}


@dataclass(frozen=True)
class ParamSpec:
    """One parameter: ``kind`` is bool/int/float/str, ``array`` for lists of that kind."""

    name: str
    default: Any
    description: str
    kind: type = str
    array: bool = False
    read_only: bool = True
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] = ()

    @property
    def ptype(self) -> int:
        return (_ARRAY_TYPES if self.array else _TYPES)[self.kind]

    def descriptor(self) -> ParameterDescriptor:
        desc = ParameterDescriptor(name=self.name, type=self.ptype, description=self.description,
                                   read_only=self.read_only)
        if self.choices:
            desc.additional_constraints = "one of: " + ", ".join(self.choices)
        if not self.array and self.kind is float and (self.min is not None or self.max is not None):
            desc.floating_point_range = [FloatingPointRange(
                from_value=float(self.min if self.min is not None else -1e300),
                to_value=float(self.max if self.max is not None else 1e300), step=0.0)]
        if not self.array and self.kind is int and (self.min is not None or self.max is not None):
            desc.integer_range = [IntegerRange(
                from_value=int(self.min if self.min is not None else -(2**62)),
                to_value=int(self.max if self.max is not None else 2**62), step=1)]
        return desc

    def check(self, value: Any) -> str | None:
        """Why ``value`` is unacceptable, or None."""
        if self.choices and value not in self.choices:
            return f"{self.name}={value!r} is not one of {list(self.choices)}"
        if not self.array and self.kind in (int, float):
            if self.min is not None and value < self.min:
                return f"{self.name}={value} is below its minimum {self.min}"
            if self.max is not None and value > self.max:
                return f"{self.name}={value} is above its maximum {self.max}"
        return None


def declare_parameters(node: Node, specs: Iterable[ParamSpec]) -> dict[str, Any]:
    """Declare every spec with its descriptor; returns the values (overrides applied).

    A start-up value outside the spec raises ValueError naming the parameter.
    """
    values: dict[str, Any] = {}
    for spec in specs:
        if spec.array and not spec.default:
            param = node.declare_parameter(spec.name, _RCLPY_TYPES[spec.ptype], spec.descriptor())
            value = param.value if param.value is not None else []
        else:
            value = node.declare_parameter(spec.name, spec.default, spec.descriptor()).value
        if spec.kind is float and not spec.array and isinstance(value, int):
            value = float(value)
        problem = spec.check(value)
        if problem:
            raise ValueError(problem)
        values[spec.name] = (list(value) if value is not None else []) if spec.array else value
    _warn_unknown_overrides(node)
    return values


def _warn_unknown_overrides(node: Node) -> None:
    """A ``-p name:=value`` or parameter-file entry the node does not have is ignored by ROS;
    say so, since it is usually a typo (``score_treshold``)."""
    overrides = getattr(node, "_parameter_overrides", {}) or {}
    unknown = sorted(name for name in overrides if not node.has_parameter(name))
    if unknown:
        node.get_logger().warning(f"ignoring unknown parameter(s) {unknown}: this node has no such "
                                  "parameter (a typo?); see its parameter table in the README")


def read_parameters(node: Node, specs: Sequence[ParamSpec]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for spec in specs:
        value = node.get_parameter(spec.name).value
        out[spec.name] = list(value) if spec.array and value is not None else value
    return out


def check_changes(specs: Sequence[ParamSpec], params: Sequence[Parameter]) -> SetParametersResult:
    """Validate a live parameter change against the specs (read-only ones are refused by rclpy)."""
    by_name = {s.name: s for s in specs}
    for param in params:
        spec = by_name.get(param.name)
        if spec is None:
            continue
        problem = spec.check(param.value)
        if problem:
            return SetParametersResult(successful=False, reason=problem)
    return SetParametersResult(successful=True)
