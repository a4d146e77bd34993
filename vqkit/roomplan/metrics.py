"""Layout metrics as in SpatialLM: Hungarian matching of predicted to gold elements, precision, recall
and F1 at IoU 0.25 and 0.5; walls, doors and windows as thin boxes seen from above (2D IoU), objects by
the 3D IoU of their upright boxes, per category too. :func:`score_layouts` scores a list of rooms.

Rates are percentages (0-100), as the question-answering metrics (:func:`vqkit.eval.metrics.score`).
A kind or category with no element on either side has no score (None): nothing was there to find and
nothing was predicted, which is neither a success nor a failure, so it counts in no average.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from vqkit.roomplan.elements import Opening, RoomObject, Wall
from vqkit.roomplan.room import Room

#: IoU thresholds reported by :func:`score_layouts`.
IOU_THRESHOLDS: tuple[float, ...] = (0.25, 0.5)

#: Thickness (m) given to walls, doors and windows to make them 2D boxes in the top-down plane.
THIN_BOX_THICKNESS = 0.1


def box_corners_2d(center_xy: Sequence[float], length: float, depth: float, yaw: float) -> np.ndarray:
    """Corners [4, 2] (counter-clockwise) of a rectangle: ``length`` along (cos yaw, sin yaw), ``depth`` across."""
    c, s = math.cos(yaw), math.sin(yaw)
    u = np.array([c, s]) * (length / 2)
    v = np.array([-s, c]) * (depth / 2)
    p = np.asarray(center_xy[:2], dtype=np.float64)
    return np.stack([p - u - v, p + u - v, p + u + v, p - u + v])


def polygon_area(poly: np.ndarray) -> float:
    """Signed area of a polygon [N, 2] (shoelace; positive when counter-clockwise)."""
    if len(poly) < 3:
        return 0.0
    x, y = poly[:, 0], poly[:, 1]
    return float(0.5 * (x @ np.roll(y, -1) - y @ np.roll(x, -1)))


def clip_convex(subject: np.ndarray, clipper: np.ndarray) -> np.ndarray:
    """Intersection of convex polygon ``subject`` [N, 2] with convex CCW polygon ``clipper`` [M, 2].

    Sutherland-Hodgman: clip the subject against each edge's inner half-plane in turn. Returns [K, 2]
    (K = 0 when they do not overlap).
    """
    out = np.asarray(subject, dtype=np.float64)
    m = len(clipper)
    for i in range(m):
        if len(out) == 0:
            break
        a, b = clipper[i], clipper[(i + 1) % m]
        edge = b - a
        # >= 0 inside (left of the edge for a CCW clipper)
        side = edge[0] * (out[:, 1] - a[1]) - edge[1] * (out[:, 0] - a[0])
        pts = []
        n = len(out)
        for j in range(n):
            p, q = out[j], out[(j + 1) % n]
            sp, sq = side[j], side[(j + 1) % n]
            if sp >= 0:
                pts.append(p)
            if (sp >= 0) != (sq >= 0):
                pts.append(p + (q - p) * (sp / (sp - sq)))
        out = np.array(pts).reshape(-1, 2)
    return out


def iou_2d(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two convex CCW polygons [N, 2] and [M, 2]."""
    inter = abs(polygon_area(clip_convex(a, b)))
    union = abs(polygon_area(a)) + abs(polygon_area(b)) - inter
    return inter / union if union > 1e-12 else 0.0


def thin_box(element: Wall | Opening, thickness: float = THIN_BOX_THICKNESS) -> np.ndarray:
    """Top-down footprint [4, 2] of a wall, door or window as a ``thickness``-thick rectangle."""
    return box_corners_2d(element.center, element.width, thickness, element.yaw)


def iou_thin(a: Wall | Opening, b: Wall | Opening, thickness: float = THIN_BOX_THICKNESS) -> float:
    """2D IoU of two walls / doors / windows as thin boxes in the top-down plane (heights ignored)."""
    return iou_2d(thin_box(a, thickness), thin_box(b, thickness))


def iou_3d(a: RoomObject, b: RoomObject) -> float:
    """3D IoU of two upright boxes rotated by yaw: footprint intersection x vertical overlap."""
    fa = box_corners_2d(a.center, a.size[0], a.size[2], a.yaw)
    fb = box_corners_2d(b.center, b.size[0], b.size[2], b.yaw)
    lo = max(a.center[2] - a.size[1] / 2, b.center[2] - b.size[1] / 2)
    hi = min(a.center[2] + a.size[1] / 2, b.center[2] + b.size[1] / 2)
    if hi <= lo:
        return 0.0
    inter = abs(polygon_area(clip_convex(fa, fb))) * (hi - lo)
    union = a.size[0] * a.size[1] * a.size[2] + b.size[0] * b.size[1] * b.size[2] - inter
    return inter / union if union > 1e-12 else 0.0


def _iou_matrix(pred: Sequence, gold: Sequence, fn) -> np.ndarray:
    """[len(pred), len(gold)] pairwise IoUs (0 for objects of different categories)."""
    m = np.zeros((len(pred), len(gold)))
    for i, p in enumerate(pred):
        for j, g in enumerate(gold):
            if isinstance(p, RoomObject) and p.category != g.category:
                continue
            m[i, j] = fn(p, g)
    return m


def match_count(iou: np.ndarray, threshold: float) -> int:
    """True positives: pairs of a one-to-one Hungarian matching with IoU >= threshold.

    Pairs below the threshold get weight 0, then the matching maximises the summed IoU, so it never
    trades a valid pair for a higher-IoU invalid one.
    """
    if iou.size == 0:
        return 0
    from scipy.optimize import linear_sum_assignment

    w = np.where(iou >= threshold, iou, 0.0)
    rows, cols = linear_sum_assignment(w, maximize=True)
    return int(np.sum(w[rows, cols] > 0))


def _prf(tp: int, n_pred: int, n_gold: int) -> tuple[float | None, float | None, float | None]:
    """Precision, recall and F1 in percent; None for all three when both sides are empty (a 100 there
    would reward an empty prediction of an empty category, e.g. beside a parse rate of 0)."""
    if n_pred == 0 and n_gold == 0:
        return None, None, None
    precision = 100.0 * tp / n_pred if n_pred else 0.0
    recall = 100.0 * tp / n_gold if n_gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return precision, recall, f1


def score_layouts(predicted: Sequence[Room | str | None], gold: Sequence[Room],
                  thresholds: Iterable[float] = IOU_THRESHOLDS, thickness: float = THIN_BOX_THICKNESS) -> dict:
    """Layout metrics of predicted rooms against gold rooms (same order, same length).

    ``predicted`` items may be a :class:`Room`, the generated text (parsed with
    :meth:`Room.from_text`, keeping what could be read) or ``None`` (no output: an empty room).

    Returns a JSON-ready dict; every rate is a percentage (0-100):

    - ``parse_rate``: share of predictions that are a Room or text that parsed with no problem
      (failed ones are still scored with what could be read, ``None`` as an empty room);
      ``n_pred_rooms``, ``n_gold_rooms``, ``n_problems`` (problems over all texts).
    - ``walls``, ``doors``, ``windows``, ``openings``, ``objects``: ``precision@t``, ``recall@t``,
      ``f1@t`` and ``matched@t`` (true positives) for each threshold t, plus ``n_pred`` / ``n_gold``,
      micro-averaged over all rooms (a room without doors adds nothing to the doors' counts).
      Matching is Hungarian within each room. Walls, doors, windows and openings are compared by 2D
      IoU of their top-down footprints as ``thickness``-thick boxes (heights do not count; this is
      strict across the wall: with 0.1 m, a wall 3 cm off keeps IoU 0.54, 5 cm off drops to 0.33); objects
      by 3D IoU of yaw-rotated boxes, and only within the same category.
    - ``objects_by_category``: the same scores per category present in gold or predictions.
    - ``count_accuracy``: share of rooms whose predicted object count per category equals gold's
      for every category; ``count_mae``: mean over rooms of the summed absolute count errors (a count).

    Precision with no predictions is 0 and recall with no gold elements is 0; a kind with neither
    (0 predicted, 0 gold, e.g. openings in rooms that have none) gets None for precision, recall and
    F1, and is left out of any average over kinds. No rooms at all: the rates are None.
    """
    if len(predicted) != len(gold):
        raise ValueError(f"score_layouts: {len(predicted)} predictions for {len(gold)} gold rooms")
    thresholds = tuple(thresholds)
    rooms, clean, n_problems = _as_rooms(predicted)
    thin = lambda a, b: iou_thin(a, b, thickness)  # noqa: E731
    kinds = ("walls", "doors", "windows", "openings", "objects")
    categories = sorted({o.category for r in (*rooms, *gold) for o in r.objects})
    groups = [(k, None) for k in kinds] + [("objects", c) for c in categories]
    tp = {g: {t: 0 for t in thresholds} for g in groups}
    n_pred = {g: 0 for g in groups}
    n_gold = {g: 0 for g in groups}
    count_ok, count_err = 0, 0
    for pr, gr in zip(rooms, gold, strict=True):
        _match_room(pr, gr, groups, thresholds, thin, tp, n_pred, n_gold)
        p_counts = _category_counts(pr)
        g_counts = _category_counts(gr)
        errors = sum(abs(p_counts.get(c, 0) - g_counts.get(c, 0)) for c in set(p_counts) | set(g_counts))
        count_ok += errors == 0
        count_err += errors

    def block(g: tuple) -> dict:
        out: dict[str, float | int] = {}
        for t in thresholds:
            p, r, f = _prf(tp[g][t], n_pred[g], n_gold[g])
            out[f"precision@{t:g}"], out[f"recall@{t:g}"], out[f"f1@{t:g}"] = p, r, f
            out[f"matched@{t:g}"] = tp[g][t]
        out["n_pred"], out["n_gold"] = n_pred[g], n_gold[g]
        return out

    n = len(gold)
    result: dict[str, Any] = {
        "parse_rate": 100.0 * clean / n if n else None,
        "n_pred_rooms": len(predicted),
        "n_gold_rooms": n,
        "n_problems": n_problems,
    }
    for kind in kinds:
        result[kind] = block((kind, None))
    result["objects_by_category"] = {c: block(("objects", c)) for c in categories}
    result["count_accuracy"] = 100.0 * count_ok / n if n else None
    result["count_mae"] = count_err / n if n else None
    return result


def _as_rooms(predicted: Sequence[Room | str | None]) -> tuple[list[Room], int, int]:
    """Rooms of the predictions (texts parsed, None as an empty room), how many are clean (a Room, or a
    text without problems), and the parse problems over all texts."""
    rooms: list[Room] = []
    clean = n_problems = 0
    for p in predicted:
        if isinstance(p, Room):
            rooms.append(p)
            clean += 1
        elif p is None:
            rooms.append(Room())
        else:
            r, problems = Room.from_text(p)
            rooms.append(r)
            clean += not problems
            n_problems += len(problems)
    return rooms, clean, n_problems


def _match_room(pr: Room, gr: Room, groups, thresholds, thin, tp: dict, n_pred: dict, n_gold: dict) -> None:
    """Add one room's element counts and Hungarian matches (per group and threshold) to the tallies."""
    for kind, cat in groups:
        p_items, g_items = getattr(pr, kind), getattr(gr, kind)
        if cat is not None:
            p_items = [o for o in p_items if o.category == cat]
            g_items = [o for o in g_items if o.category == cat]
        n_pred[kind, cat] += len(p_items)
        n_gold[kind, cat] += len(g_items)
        if not p_items or not g_items:
            continue
        iou = _iou_matrix(p_items, g_items, iou_3d if kind == "objects" else thin)
        for t in thresholds:
            tp[kind, cat][t] += match_count(iou, t)


def _category_counts(room: Room) -> dict[str, int]:
    counts: dict[str, int] = {}
    for o in room.objects:
        counts[o.category] = counts.get(o.category, 0) + 1
    return counts
