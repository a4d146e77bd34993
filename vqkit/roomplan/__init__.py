"""Stage 2 layouts: RoomPlan-style rooms, Apple's ``CapturedRoom`` JSON, a compact text form, metrics.

- :mod:`~vqkit.roomplan.elements`: walls, doors / windows / openings, objects (metres, z-up).
- :mod:`~vqkit.roomplan.room`: :class:`Room` and its conversions (``to_capturedroom``, ``to_text``, ...).
- :mod:`~vqkit.roomplan.capturedroom`: the CapturedRoom JSON (y-up) <-> a room.
- :mod:`~vqkit.roomplan.text`: the text form a model reads and writes, and looping-line detection.
- :mod:`~vqkit.roomplan.metrics`: :func:`score_layouts` (Hungarian matching, F1 at IoU 0.25 / 0.5).
"""

from vqkit.roomplan.elements import CATEGORIES, OPENING_KINDS, Opening, RoomObject, Wall
from vqkit.roomplan.metrics import IOU_THRESHOLDS, box_corners_2d, iou_3d, iou_thin, score_layouts
from vqkit.roomplan.room import Room
from vqkit.roomplan.text import ROOMPLAN_QUESTION, first_repeated_line, trim_repeated_lines

__all__ = ["CATEGORIES", "IOU_THRESHOLDS", "OPENING_KINDS", "ROOMPLAN_QUESTION", "Opening", "Room", "RoomObject",
           "Wall", "box_corners_2d", "first_repeated_line", "iou_3d", "iou_thin", "score_layouts",
           "trim_repeated_lines"]
