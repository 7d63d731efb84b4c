"""Launch arguments that mirror node parameters one to one, and their parsing at launch time.

Pure (no ``launch``, no rclpy): the launch files in ``launch/`` build their argument lists with
:func:`launch_arguments` from a node's ParamSpec tuple, and turn the values the user gave back
into node settings with :func:`node_settings`. Specs are duck-typed: anything with ``name``,
``default``, ``description``, ``kind`` and ``array`` (and optionally ``check(value)``) works.

Rules, shared by every launch file:

* every node parameter is a launch argument of the same name, whose default is the node's
  default written as a string (``true``/``false``, ``0.5``, ``[camera]``, empty for ``""``);
* a parameter is passed to the node only when its launch value differs from the node default,
  so a ``params_file`` is never silently overwritten by untouched defaults (to force a default
  over a file, edit the file);
* ``namespace``, ``use_sim_time``, ``log_level``, ``params_file`` and ``remappings`` are added
  to every node's arguments.

Lists are written ``[a, b]`` or ``a,b``; numbers in numeric lists may also be separated by
spaces (``extrinsics:='0 0 0 0 0 0 1'``). An empty list cannot override a non-empty default
(ROS parameter overrides cannot carry an empty, untyped list): use a parameters file.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Protocol, Sequence

from samfusion.errors import ConfigError

__all__ = [
    "LaunchArgument",
    "LaunchArgumentError",
    "NodeSettings",
    "LOG_LEVELS",
    "COMMON_ARGUMENT_NAMES",
    "default_string",
    "parse_bool",
    "parse_value",
    "parse_remappings",
    "parameter_arguments",
    "common_arguments",
    "launch_arguments",
    "merge_arguments",
    "rviz_arguments",
    "scene_topics_following_cameras",
    "simulation_arguments",
    "parameter_overrides",
    "node_settings",
    "markdown_table",
]

LOG_LEVELS = ("debug", "info", "warn", "error", "fatal")
COMMON_ARGUMENT_NAMES = ("namespace", "use_sim_time", "log_level", "params_file", "remappings")

_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


class LaunchArgumentError(ConfigError):
    """A launch argument value cannot be used for its parameter; the message names both."""


class _Spec(Protocol):
    name: str
    default: Any
    description: str
    kind: type
    array: bool


@dataclass(frozen=True)
class LaunchArgument:
    """One ``DeclareLaunchArgument``: name, default (a string, as launch wants) and description."""

    name: str
    default: str
    description: str


@dataclass(frozen=True)
class NodeSettings:
    """What a launch file hands to ``launch_ros.actions.Node`` for one node."""

    namespace: str
    parameters: list[Any] = field(default_factory=list)  # params file path, then a dict
    ros_arguments: list[str] = field(default_factory=list)
    remappings: list[tuple[str, str]] = field(default_factory=list)


# ---- values <-> strings ---------------------------------------------------------------------
def _scalar_string(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)  # always has a '.' or an exponent: re-parses as a float
    return str(value)


def default_string(spec: _Spec, value: Any = None) -> str:
    """``value`` (default: the spec's default) written the way a launch argument takes it."""
    value = spec.default if value is None else value
    if spec.array:
        return "[" + ", ".join(_scalar_string(v) for v in value) + "]"
    return _scalar_string(value)


def parse_bool(text: str, name: str = "value") -> bool:
    """``true/false``, ``1/0``, ``yes/no``, ``on/off`` (any case)."""
    word = str(text).strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise LaunchArgumentError(f"{name}={text!r} is not a boolean (true or false)")


def _parse_scalar(kind: type, text: str, name: str) -> Any:
    if kind is bool:
        return parse_bool(text, name)
    if kind is int:
        try:
            return int(text.strip(), 10)
        except ValueError:
            raise LaunchArgumentError(f"{name}={text!r} is not an integer") from None
    if kind is float:
        try:
            value = float(text.strip())
        except ValueError:
            raise LaunchArgumentError(f"{name}={text!r} is not a number") from None
        if not math.isfinite(value):
            raise LaunchArgumentError(f"{name}={text!r} is not a finite number")
        return value
    return text


def _unquote(item: str) -> str:
    item = item.strip()
    if len(item) >= 2 and item[0] == item[-1] and item[0] in "'\"":
        return item[1:-1]
    return item


def _split_list(kind: type, text: str) -> list[str]:
    body = text.strip()
    if body.startswith("[") and body.endswith("]"):
        body = body[1:-1]
    if not body.strip():
        return []
    if "," in body or kind is str:
        items = body.split(",")
    else:
        items = body.split()
    return [_unquote(i) for i in items]


def parse_value(spec: _Spec, text: str) -> Any:
    """The typed parameter value of a launch argument string; raises LaunchArgumentError.

    Ranges and choices are checked with ``spec.check`` when the spec has one.
    """
    if spec.array:
        value: Any = [_parse_scalar(spec.kind, item, f"{spec.name}[{i}]")
                      for i, item in enumerate(_split_list(spec.kind, text))]
    else:
        value = _parse_scalar(spec.kind, text, spec.name)
    check = getattr(spec, "check", None)
    problem = check(value) if callable(check) else None
    if problem:
        raise LaunchArgumentError(f"launch argument {problem}")
    return value


def parse_remappings(text: str) -> list[tuple[str, str]]:
    """``'from:=to, from2:=to2'`` (commas or spaces between pairs) as (from, to) pairs."""
    pairs = []
    for item in text.replace(",", " ").split():
        source, sep, target = item.partition(":=")
        if not sep or not source or not target:
            raise LaunchArgumentError(f"remappings: {item!r} is not 'from:=to'")
        pairs.append((source, target))
    return pairs


def scene_topics_following_cameras(values: Mapping[str, str], scene_default: str) -> dict[str, str]:
    """For a launch that starts both nodes: unless ``scene_topics`` was given, the fusion node
    reads the segmentation results of every perception camera (``<camera>/segmentation``)."""
    out = dict(values)
    if out.get("scene_topics", scene_default) != scene_default:
        return out
    cameras = _split_list(str, out.get("camera_names", ""))
    if cameras:
        out["scene_topics"] = "[" + ", ".join(f"'{camera}/segmentation'" for camera in cameras) + "]"
    return out


# ---- argument lists -------------------------------------------------------------------------
def parameter_arguments(specs: Iterable[_Spec], *,
                        defaults: Mapping[str, Any] | None = None) -> list[LaunchArgument]:
    """One argument per parameter; ``defaults`` replaces a few defaults (e.g. a demo's)."""
    defaults = dict(defaults or {})
    out = []
    for spec in specs:
        value = defaults.pop(spec.name, None)
        description = spec.description
        if value is not None:
            description += f" (node default: {default_string(spec)})"
        out.append(LaunchArgument(spec.name, default_string(spec, value), description))
    if defaults:
        raise ValueError(f"defaults for unknown parameters: {sorted(defaults)}")
    return out


def common_arguments(*, params_file: str = "", node: str = "the node") -> list[LaunchArgument]:
    """namespace, use_sim_time, log_level, params_file and remappings for one node."""
    return [
        LaunchArgument("namespace", "", "ROS namespace of the nodes (topics are relative, so they "
                       "move with it)"),
        LaunchArgument("use_sim_time", "false", "Use the /clock topic (simulation, bag playback "
                       "with --clock)"),
        LaunchArgument("log_level", "info", "Logger level: " + ", ".join(LOG_LEVELS)),
        LaunchArgument("params_file", params_file, f"ROS parameters YAML for {node} (empty: none); "
                       "launch arguments that differ from the node defaults override it"),
        LaunchArgument("remappings", "", "Extra topic remappings 'from:=to', separated by commas"),
    ]


def launch_arguments(specs: Sequence[_Spec], *, params_file: str = "", node: str = "the node",
                     defaults: Mapping[str, Any] | None = None) -> list[LaunchArgument]:
    """The node's parameters one to one, then the common arguments."""
    names = {s.name for s in specs}
    clash = names & set(COMMON_ARGUMENT_NAMES)
    if clash:
        raise ValueError(f"parameters {sorted(clash)} collide with common launch arguments")
    return parameter_arguments(specs, defaults=defaults) + common_arguments(params_file=params_file,
                                                                             node=node)


def merge_arguments(*groups: Iterable[LaunchArgument]) -> list[LaunchArgument]:
    """Union by name in first-seen order. A shared name (one argument feeding several nodes)
    keeps both descriptions; a name with two different defaults is an error."""
    merged: dict[str, LaunchArgument] = {}
    for group in groups:
        for arg in group:
            seen = merged.get(arg.name)
            if seen is None:
                merged[arg.name] = arg
            elif seen.default != arg.default:
                raise ValueError(f"launch argument {arg.name!r} has two defaults: "
                                 f"{seen.default!r} and {arg.default!r}")
            elif arg.description not in seen.description:
                merged[arg.name] = LaunchArgument(seen.name, seen.default,
                                                  f"{seen.description} (also: {arg.description})")
    return list(merged.values())


def rviz_arguments(config: str, *, enabled: bool) -> list[LaunchArgument]:
    """``rviz`` (start rviz2 or not) and ``rviz_config``."""
    return [
        LaunchArgument("rviz", "true" if enabled else "false", "Start rviz2 with rviz_config"),
        LaunchArgument("rviz_config", config, "rviz2 display configuration (.rviz)"),
    ]


def simulation_arguments(world: str, bridge_config: str) -> list[LaunchArgument]:
    """The Gazebo side of the simulation launch: world, bridge configuration, headless."""
    return [
        LaunchArgument("world", world, "Gazebo (gz sim) world SDF"),
        LaunchArgument("bridge_config", bridge_config, "ros_gz_bridge YAML (image, camera_info, "
                       "point cloud, clock)"),
        LaunchArgument("headless", "false", "Run the Gazebo server only, without its GUI"),
    ]


# ---- values given at launch time -> node settings -------------------------------------------
def parameter_overrides(specs: Iterable[_Spec], values: Mapping[str, str]) -> dict[str, Any]:
    """Typed parameters whose launch value differs from the node default (missing = default)."""
    overrides: dict[str, Any] = {}
    for spec in specs:
        if spec.name not in values:
            continue
        value = parse_value(spec, values[spec.name])
        default = list(spec.default) if spec.array else spec.default
        if value == default:
            continue
        if spec.array and not value:
            raise LaunchArgumentError(
                f"{spec.name}: an empty list cannot be passed as a launch argument (its default is "
                f"{default_string(spec)}); set it in a parameters file instead")
        overrides[spec.name] = value
    return overrides


def node_settings(specs: Sequence[_Spec], values: Mapping[str, str]) -> NodeSettings:
    """Namespace, parameters (file first, then overrides and use_sim_time), log level, remaps."""
    level = values.get("log_level", "info").strip().lower()
    if level not in LOG_LEVELS:
        raise LaunchArgumentError(f"log_level={level!r} is not one of {list(LOG_LEVELS)}")
    params: dict[str, Any] = parameter_overrides(specs, values)
    params["use_sim_time"] = parse_bool(values.get("use_sim_time", "false"), "use_sim_time")
    parameters: list[Any] = []
    params_file = values.get("params_file", "").strip()
    if params_file:
        parameters.append(params_file)
    parameters.append(params)
    return NodeSettings(namespace=values.get("namespace", "").strip(), parameters=parameters,
                        ros_arguments=["--log-level", level],
                        remappings=parse_remappings(values.get("remappings", "")))


def markdown_table(arguments: Iterable[LaunchArgument]) -> str:
    """A Markdown table of arguments (name, default, description) for the docs."""
    rows = ["| argument | default | description |", "|---|---|---|"]
    for arg in arguments:
        default = f"`{arg.default}`" if arg.default else "(empty)"
        rows.append(f"| `{arg.name}` | {default} | {arg.description.replace('|', '/')} |")
    return "\n".join(rows)
