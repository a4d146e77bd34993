"""Grounding predictions: the rows ``vqkit eval`` writes for grounding records, and their scores.

A grounding row (``task: "grounding"``) keeps, beside the generated ``prediction`` text, the gold ``box``
and the predicted ``pred_box`` (both in the scene frame, ``{"label", "center", "size", "yaw"}``; ``pred_box``
None when no box could be read), ``parse_problems``, the frame the model wrote in (``box_frame``) and, for
``first_view``, the pose of the sample's first view (``view_pose``: world-to-camera R, t) that turns it
back into the scene frame; so re-scoring a predictions file reads the texts again without the data.
Scores: :func:`vqkit.roomplan.grounding.score_grounding` (Acc@0.25 / 0.5 overall and per unique /
multiple, parse rate).
"""

from __future__ import annotations

from collections.abc import Sequence

from vqkit.data.schema import Record
from vqkit.errors import DataError
from vqkit.roomplan.elements import RoomObject
from vqkit.roomplan.grounding import (
    GROUNDING_TASK,
    box_from_dict,
    box_to_dict,
    category_mean_boxes,
    frame_for,
    read_box,
    score_grounding,
)


def is_grounding_row(row: dict) -> bool:
    """A grounding row or meta dict (a gold ``box`` to score by IoU), as opposed to a QA or layout one."""
    return row.get("task") == GROUNDING_TASK or row.get("box") is not None


def read_prediction(text: str, box_frame: str, view_pose) -> tuple[RoomObject | None, list[str]]:
    """The scene-frame box a generated text gives (``box_frame``, and the first view's world-to-camera
    ``view_pose`` [R, t] for ``first_view``), and the parse problems."""
    try:
        frame = frame_for(box_frame, None if view_pose is None else tuple(view_pose))
    except ValueError as e:
        return None, [str(e)]
    return read_box(text, frame)


def grounding_fields(meta: dict, prediction: str, box_frame: str) -> dict:
    """What a grounding row adds to a prediction row: gold and predicted boxes, problems, the frame."""
    pred, problems = read_prediction(prediction, box_frame, meta.get("view_pose"))
    out = {"box": meta["box"], "pred_box": None if pred is None else box_to_dict(pred), "parse_problems": problems,
           "box_frame": box_frame}
    if box_frame != "scene":
        out["view_pose"] = meta.get("view_pose")
    for key in ("description", "object_id", "relation"):
        if meta.get(key) is not None:
            out[key] = meta[key]
    return out


def score_grounding_rows(rows: list[dict]) -> dict:
    """:func:`vqkit.roomplan.grounding.score_grounding` of grounding rows, their texts read again; with
    ``by_relation`` when the rows name their expression's relation (the synthetic ones do)."""
    predicted, gold, subsets, problems = [], [], [], []
    for r in rows:
        try:
            gold.append(box_from_dict(r.get("box")))
        except ValueError as e:
            raise DataError(f"prediction '{r.get('id')}': field 'box': {e}") from None
        box, found = read_prediction(r.get("prediction", ""), r.get("box_frame", "scene"), r.get("view_pose"))
        predicted.append(box)
        problems.append(found)
        subsets.append(r.get("qtype"))
    scores = score_grounding(predicted, gold, subsets, problems)
    relations = [r.get("relation") for r in rows]
    if any(relations):  # the synthetic expressions name theirs: what each kind of relation scores
        scores["by_relation"] = score_grounding(predicted, gold, relations)["by_subset"]
    return scores


def grounding_lines(scores: dict) -> list[str]:
    """The table lines of grounding scores (percentages)."""
    def cell(v) -> str:
        return "-" if v is None else f"{v:.1f}"

    parse = scores.get("parse_rate")
    lines = [f"grounding ({scores['n']} expressions, parse rate {cell(parse)}%; Acc@k = IoU >= k, in percent)"]
    rows = [("overall", scores)] + list(scores.get("by_subset", {}).items())
    for name, s in rows:
        lines.append(f"  {name:<10} n {s['n']:>5}  Acc@0.25 {cell(s.get('acc@0.25')):>5}  "
                     f"Acc@0.5 {cell(s.get('acc@0.5')):>5}  mean IoU {cell(s.get('mean_iou')):>5}")
    return lines


def mean_box_baseline(train: Sequence[Record], val: Sequence[Record], box_frame: str = "scene") -> dict:
    """Scores of the "category's mean box" baseline on ``val``: every expression answered with the mean
    training box of its target's label (:func:`vqkit.roomplan.grounding.category_mean_boxes`), both taken
    in ``box_frame`` (the first image's frame for ``first_view``, as evaluation reads it), so it is what
    knowing the category and the frame gives. A label never seen in training gets no box."""
    def frame(rec: Record):
        return frame_for(box_frame, rec.first_view_pose(0))

    means = category_mean_boxes([frame(r).to_frame(r.box) for r in train if r.box is not None])
    graded = [r for r in val if r.box is not None]
    predicted = [frame(r).to_scene(means[r.box.category]) if r.box.category in means else None for r in graded]
    return score_grounding(predicted, [r.box for r in graded], [r.qtype for r in graded])
