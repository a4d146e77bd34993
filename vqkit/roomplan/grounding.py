"""3D visual grounding: a referring expression ("the pink bed") -> the oriented box of the object it names.

- **Records** (docs/design.md, section 2): ``task: "grounding"``, ``question`` =
  :data:`GROUNDING_QUESTION` with the ``description`` (the referring expression), ``box`` = the target's
  box as ``{"label", "center", "size", "yaw"}`` (:func:`box_from_dict`: metres and radians, the
  conventions of :class:`~vqkit.roomplan.elements.RoomObject`: ``size`` = (width along yaw, height,
  depth), centre of the box) **in the scene frame**, the frame of the record's camera poses
  (``geom_token``), and ``qtype`` ``unique`` or ``multiple`` (ScanRefer's split: the only object of its
  category in the scene, or one of several).
- **Frames** (``data.box_frame``, :class:`BoxFrame`): the model writes the box either in the scene frame
  (``scene``) or in the first view's frame (``first_view``, :func:`first_view_frame`): the scene frame
  turned and shifted about its vertical axis so that the first view's camera stands at x = y = 0 and
  looks along +y (x to its right), heights unchanged. Evaluation turns a first-view box back into
  the scene frame with the record's pose of that view before scoring. A record without camera
  geometry has no scene frame the views can tell: its box is in whatever frame the record gives, and a
  model trained on such records writes boxes in the frame of its training records.
- **Text**: one object line of the layout grammar (:func:`vqkit.roomplan.text.format_object_line`),
  ``<label> x= y= [z=] w= h= d= yaw=``, centimetres rounded to ``data.box_step_cm``; read back by
  :func:`vqkit.roomplan.text.read_object_line` (tolerant, never ``eval``, problems counted).
- **Scores** (:func:`score_grounding`): Acc@0.25 and Acc@0.5, the share of expressions whose predicted
  box has an oriented 3D IoU (:func:`vqkit.roomplan.metrics.iou_3d`) with the gold box at or above the
  threshold, overall and per ``unique`` / ``multiple``; the parse rate. An answer that gives no box
  scores IoU 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from vqkit.roomplan.elements import RoomObject
from vqkit.roomplan.metrics import box_corners_2d, iou_3d
from vqkit.roomplan.text import format_object_line, object_fields, read_object_line

#: The ``task`` of grounding records.
GROUNDING_TASK = "grounding"
#: The prompt of every grounding record and of ``vqkit ask --ground``.
GROUNDING_QUESTION = "Locate: {description}"
#: ``data.box_frame`` choices.
BOX_FRAMES = ("scene", "first_view")
#: ScanRefer's subsets, the grounding records' ``qtype``.
SUBSETS = ("unique", "multiple")
#: IoU thresholds of Acc@k.
ACC_THRESHOLDS = (0.25, 0.5)


def grounding_question(description: str) -> str:
    """The prompt that asks for the box of ``description``."""
    return GROUNDING_QUESTION.format(description=" ".join(str(description).split()))


# --------------------------------------------------------------------------------------------
# Boxes as record fields
# --------------------------------------------------------------------------------------------


def box_from_dict(value: Any) -> RoomObject:
    """A record's ``box`` -> :class:`RoomObject` (id ``target``); ValueError saying what is wrong."""
    if not isinstance(value, dict):
        raise ValueError(f"expected an object with label, center, size, yaw, got {type(value).__name__}")
    missing = [k for k in ("label", "center", "size", "yaw") if k not in value]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}")
    label = value["label"]
    if not isinstance(label, str) or not label.strip() or len(label.split()) != 1:
        raise ValueError(f"label must be one word (write spaces as '_'), got {label!r}")
    yaw = value["yaw"]
    if isinstance(yaw, bool) or not isinstance(yaw, (int, float)) or not math.isfinite(yaw):
        raise ValueError(f"yaw must be a finite number of radians, got {yaw!r}")
    box = RoomObject("target", label, value["center"], value["size"], float(yaw))
    if min(box.size) <= 0:
        raise ValueError(f"size must be positive, got {list(box.size)}")
    return box


def box_to_dict(box: RoomObject, digits: int = 4) -> dict:
    """The record form of a box (:func:`box_from_dict`'s inverse), rounded to ``digits`` decimals."""
    return {"label": box.category, "center": [round(v, digits) for v in box.center],
            "size": [round(v, digits) for v in box.size], "yaw": round(box.yaw, 6)}


def box_corners(box: RoomObject) -> np.ndarray:
    """The 8 corners [8, 3] of an upright box: the bottom face counter-clockwise, then the top face."""
    foot = box_corners_2d(box.center, box.size[0], box.size[2], box.yaw)
    z0, z1 = box.center[2] - box.size[1] / 2, box.center[2] + box.size[1] / 2
    return np.concatenate([np.c_[foot, np.full(4, z0)], np.c_[foot, np.full(4, z1)]])


# --------------------------------------------------------------------------------------------
# Frames
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BoxFrame:
    """A frame turned by ``yaw`` about the vertical axis and shifted by ``origin`` (x, y) from the scene
    frame: a box's scene coordinates p become ``Rz(-yaw) (p - origin)``, heights unchanged."""

    origin: tuple[float, float] = (0.0, 0.0)
    yaw: float = 0.0

    def to_frame(self, box: RoomObject) -> RoomObject:
        """``box`` (scene frame) in this frame."""
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        dx, dy = box.center[0] - self.origin[0], box.center[1] - self.origin[1]
        return RoomObject(box.id, box.category, (c * dx + s * dy, -s * dx + c * dy, box.center[2]), box.size,
                          box.yaw - self.yaw)

    def to_scene(self, box: RoomObject) -> RoomObject:
        """``box`` (this frame) in the scene frame."""
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        x, y = box.center[0], box.center[1]
        return RoomObject(box.id, box.category, (self.origin[0] + c * x - s * y, self.origin[1] + s * x + c * y,
                                                 box.center[2]), box.size, box.yaw + self.yaw)


SCENE_FRAME = BoxFrame()


def first_view_frame(R: Any, t: Any) -> BoxFrame:
    """The first view's frame from its world-to-camera pose (OpenCV axes): origin below the camera, +y
    the camera's viewing direction on the floor plane, +x to its right. A camera looking straight
    down has no horizontal viewing direction: its image's up direction (-y in the image) is used."""
    R = np.asarray(R, dtype=np.float64).reshape(3, 3)
    t = np.asarray(t, dtype=np.float64).reshape(3)
    centre = -R.T @ t
    forward = R.T @ np.array([0.0, 0.0, 1.0])
    if np.hypot(forward[0], forward[1]) < 1e-6:
        forward = R.T @ np.array([0.0, -1.0, 0.0])
    yaw_forward = math.atan2(forward[1], forward[0])
    return BoxFrame((float(centre[0]), float(centre[1])), yaw_forward - math.pi / 2)


def frame_for(box_frame: str, pose: tuple[Any, Any] | None) -> BoxFrame:
    """The :class:`BoxFrame` of ``data.box_frame`` for a record whose first view has world-to-camera
    ``pose`` (R, t), or None when it has no camera geometry (then only ``scene`` is possible)."""
    if box_frame == "scene":
        return SCENE_FRAME
    if box_frame != "first_view":
        raise ValueError(f"box frame must be one of {BOX_FRAMES}, got {box_frame!r}")
    if pose is None:
        raise ValueError("box frame first_view needs the record's camera geometry (geom_token)")
    return first_view_frame(*pose)


# --------------------------------------------------------------------------------------------
# Text
# --------------------------------------------------------------------------------------------


def box_text(box: RoomObject, frame: BoxFrame = SCENE_FRAME, step_cm: int = 1) -> str:
    """The answer text of a scene-frame ``box`` written in ``frame``, lengths rounded to ``step_cm``."""
    b = frame.to_frame(box)
    return format_object_line(*object_fields(b.category, b.center, b.size, b.yaw, step_cm))


def read_box(text: str, frame: BoxFrame = SCENE_FRAME) -> tuple[RoomObject | None, list[str]]:
    """The box an answer text gives, in the scene frame (``frame``: the frame it is written in), and
    the parse problems (:func:`vqkit.roomplan.text.read_object_line`). Never raises."""
    box, problems = read_object_line(text)
    if box is None:
        return None, problems
    if min(box.size) <= 0:
        return None, [*problems, f"box has no volume (w, h, d = {', '.join(f'{v:g}' for v in box.size)} m)"]
    return frame.to_scene(box), problems


# --------------------------------------------------------------------------------------------
# Scores
# --------------------------------------------------------------------------------------------


def _accuracies(ious: np.ndarray, thresholds: Sequence[float]) -> dict:
    n = len(ious)
    out: dict[str, Any] = {"n": n}
    for thr in thresholds:
        out[f"acc@{thr:g}"] = 100.0 * float(np.mean(ious >= thr)) if n else None
    out["mean_iou"] = 100.0 * float(np.mean(ious)) if n else None
    return out


def score_grounding(predicted: Sequence[RoomObject | None], gold: Sequence[RoomObject],
                    subsets: Sequence[str | None] | None = None, problems: Sequence[Sequence[str]] | None = None,
                    thresholds: Sequence[float] = ACC_THRESHOLDS) -> dict:
    """Grounding scores of predicted boxes (scene frame; None = no box read) against gold boxes.

    Returns percentages: ``acc@0.25``, ``acc@0.5`` (IoU >= threshold), ``mean_iou`` (x 100), ``n``;
    ``label_accuracy`` (the predicted line's label is the gold box's); ``parse_rate`` (answers read with
    no problem), ``n_problems``, ``no_box`` (answers with no readable box); ``by_subset``: the same
    accuracies per ``unique`` / ``multiple`` (and any other subset named), only for subsets present.
    """
    if len(predicted) != len(gold):
        raise ValueError(f"score_grounding: {len(predicted)} predictions for {len(gold)} gold boxes")
    n = len(gold)
    subsets = list(subsets) if subsets is not None else [None] * n
    problems = list(problems) if problems is not None else [[] for _ in range(n)]
    ious = np.array([iou_3d(p, g) if p is not None else 0.0 for p, g in zip(predicted, gold, strict=True)],
                    dtype=np.float64)
    out = _accuracies(ious, thresholds)
    labelled = [p.category == g.category for p, g in zip(predicted, gold, strict=True) if p is not None]
    out["label_accuracy"] = 100.0 * sum(labelled) / n if n else None
    out["parse_rate"] = 100.0 * sum(not p for p in problems) / n if n else None
    out["n_problems"] = sum(len(p) for p in problems)
    out["no_box"] = sum(p is None for p in predicted)
    names = [s for s in SUBSETS if s in subsets] + sorted({s for s in subsets if s and s not in SUBSETS})
    out["by_subset"] = {s: _accuracies(ious[[k == s for k in subsets]], thresholds) for s in names}
    return out


def category_mean_boxes(boxes: Sequence[RoomObject]) -> dict[str, RoomObject]:
    """Per label, the mean box of ``boxes`` (all in one frame): mean centre and size, and the label's
    commonest yaw (degrees in [0, 180), as the text writes it). The "category's mean box" baseline
    answers every expression with its target label's mean box: what knowing the category gives."""
    groups: dict[str, list[RoomObject]] = {}
    for b in boxes:
        groups.setdefault(b.category, []).append(b)
    out = {}
    for label, items in sorted(groups.items()):
        yaws = [int(round(math.degrees(b.yaw))) % 180 for b in items]
        commonest = max(sorted(set(yaws)), key=yaws.count)
        out[label] = RoomObject(f"mean_{label}", label, np.mean([b.center for b in items], axis=0),
                                np.mean([b.size for b in items], axis=0), math.radians(commonest))
    return out
