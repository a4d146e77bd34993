"""Grounding records' ``box`` (docs/design.md, section 2): read and checked when a record loads, and
written as the record's answer text in the frame the config asks for (:mod:`vqkit.roomplan.grounding`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from vqkit.errors import DataError

if TYPE_CHECKING:  # pragma: no cover
    from vqkit.roomplan.elements import RoomObject


def read_box_field(obj: dict, error: Callable[[str, str], DataError]) -> RoomObject | None:
    """A record's ``box`` (its target: no ``answer`` or ``roomplan`` beside it), or None without one;
    ``error(field, message)`` makes the DataError that names the file, line and field."""
    if obj.get("box") is None:
        return None
    from vqkit.roomplan.grounding import box_from_dict  # only grounding records need the layouts' package

    for other in ("answer", "roomplan"):
        if obj.get(other) is not None:
            raise error(other, "a grounding record's target is its 'box': leave this field out")
    try:
        return box_from_dict(obj["box"])
    except ValueError as e:
        raise error("box", str(e)) from None


def box_answer(box: RoomObject, pose: tuple[Any, Any] | None, box_frame: str, step_cm: int, where: str) -> str:
    """The answer text of ``box`` (scene frame) in ``box_frame`` (the first view's, of world-to-camera
    ``pose``), lengths rounded to ``step_cm``; DataError (naming ``where``) when the frame needs the
    camera geometry the record lacks."""
    from vqkit.roomplan.grounding import box_text, frame_for

    try:
        frame = frame_for(box_frame, pose)
    except ValueError as e:
        raise DataError(f"{where}: field 'geom_token': {e}") from None
    return box_text(box, frame, step_cm)


def box_record(box: RoomObject) -> dict:
    """The record form of a box (``{"label", "center", "size", "yaw"}``), as prediction rows keep it."""
    from vqkit.roomplan.grounding import box_to_dict

    return box_to_dict(box, digits=6)
