"""The rosidl-generated interfaces match the .msg/.srv sources and are usable from rclpy."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ros_harness import requires_ros

pytestmark = [requires_ros, pytest.mark.ros]

ROOT = Path(__file__).resolve().parents[2]
_PRIMITIVES = {"bool": "boolean", "float32": "float", "float64": "double", "uint8": "uint8",
               "uint32": "uint32", "string": "string"}


def _declared_fields(text: str) -> dict[str, str]:
    """name -> rosidl type string, for the field lines of a .msg (or one half of a .srv)."""
    fields = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or "=" in line:
            continue
        ftype, name = line.split()[:2]
        array = ftype.endswith("[]")
        base = ftype[:-2] if array else ftype
        base = _PRIMITIVES.get(base, base if "/" in base else f"sam_fusion/{base}")
        fields[name] = f"sequence<{base}>" if array else base
    return fields


@pytest.mark.parametrize("name", ["PixelPoint", "Box2D", "Prompt", "ObjectInstance", "SegmentationResult",
                                  "ModelCandidate"])
def test_generated_messages_match_their_definitions(name):
    import sam_fusion.msg as msgs

    cls = getattr(msgs, name)
    declared = _declared_fields((ROOT / "msg" / f"{name}.msg").read_text())
    assert cls.get_fields_and_field_types() == declared


def test_fusion_query_service_halves_match():
    from sam_fusion.srv import FusionQuery

    request_text, response_text = (ROOT / "srv" / "FusionQuery.srv").read_text().split("---")
    assert FusionQuery.Request.get_fields_and_field_types() == _declared_fields(request_text)
    assert FusionQuery.Response.get_fields_and_field_types() == _declared_fields(response_text)


def test_prompt_constants_and_core_enum_agree():
    from sam_fusion.msg import Prompt
    from samfusion.segmentation.prompts import PromptAction

    constants = {k[len("ACTION_"):]: v for k, v in vars(Prompt).items()
                 if re.fullmatch(r"ACTION_[A-Z_]+", k)}
    assert constants == {a.name: a.value for a in PromptAction}


def test_prompt_round_trips_through_serialization():
    from rclpy.serialization import deserialize_message, serialize_message

    from sam_fusion.msg import Box2D, PixelPoint, Prompt
    from samfusion.ros.adapters import prompt_from_msg
    from samfusion.segmentation.prompts import BoxPrompt, PointPrompt, PromptAction

    msg = Prompt(target="front", action=Prompt.ACTION_REFINE, object_id=7, label="mug",
                 points=[PixelPoint(x=10.5, y=20.0, positive=True), PixelPoint(x=1.0, y=2.0, positive=False)],
                 boxes=[Box2D(x_min=1.0, y_min=2.0, x_max=30.0, y_max=40.0, positive=True)])
    back = deserialize_message(serialize_message(msg), Prompt)
    update = prompt_from_msg(back)
    assert update.action is PromptAction.REFINE and update.object_id == 7 and update.target == "front"
    assert update.points == (PointPrompt(10.5, 20.0, True), PointPrompt(1.0, 2.0, False))
    assert update.boxes == (BoxPrompt(1.0, 2.0, 30.0, 40.0, True),)
