"""A record's structured targets as answer text (docs/design.md, section 2): a Stage 2 layout
(:func:`roomplan_text`), and a grounding record's ``box``, read and checked when the record loads and
written in the frame the config asks for (:mod:`vqkit.roomplan.grounding`)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from vqkit.errors import DataError

if TYPE_CHECKING:  # pragma: no cover
    from vqkit.roomplan.elements import RoomObject

log = logging.getLogger("vqkit.data")


def roomplan_text(roomplan: dict, where: str = "") -> str:
    """A Stage 2 target: ``Room.from_capturedroom(roomplan).to_text()`` (imported lazily: the
    roomplan module is only needed for Stage 2 data)."""
    from vqkit.roomplan import Room

    problems: list[str] = []  # tolerated oddities (unknown categories, ...): logged, not fatal
    try:
        text = Room.from_capturedroom(roomplan, where="roomplan", problems=problems).to_text()
    except Exception as e:  # noqa: BLE001 - any malformed layout is the record's fault
        raise DataError(f"{where}: field 'roomplan': not a usable CapturedRoom ({e})") from None
    if problems:
        log.debug("%s: roomplan: %s", where, "; ".join(problems))
    return text


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
