"""vqkit.roomplan.metrics: rotated-box and thin-box IoU against hand computation, Hungarian matching,
and :func:`score_layouts` on identical, shifted, missing, extra and unparsable layouts."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from helpers import random_room

from vqkit.roomplan import Opening, Room, RoomObject, Wall, box_corners_2d, iou_3d, iou_thin, score_layouts
from vqkit.roomplan.metrics import clip_convex, match_count, polygon_area


def test_rotated_box_iou_against_hand_computation():
    cube = RoomObject("a", "table", (0, 0, 0.5), (1, 1, 1), 0.0)
    turned = RoomObject("b", "table", (0, 0, 0.5), (1, 1, 1), math.pi / 4)
    # unit square vs itself turned 45 deg: a regular octagon of area 2 (sqrt 2 - 1)
    octagon = 2 * (math.sqrt(2) - 1)
    assert iou_3d(cube, turned) == pytest.approx(octagon / (2 - octagon), abs=1e-12)
    # 2 x 1 box vs the same turned 90 deg: 1 x 1 overlap, union 3; half of it lifted by half its height
    long = RoomObject("c", "sofa", (0, 0, 0.5), (2, 1, 1), 0.0)
    across = RoomObject("d", "sofa", (0, 0, 0.5), (2, 1, 1), math.pi / 2)
    assert iou_3d(long, across) == pytest.approx(1 / 3)
    lifted = RoomObject("e", "sofa", (0, 0, 1.0), (2, 1, 1), math.pi / 2)
    assert iou_3d(long, lifted) == pytest.approx(0.5 / (2 + 2 - 0.5))
    assert iou_3d(long, RoomObject("f", "sofa", (0, 0, 2.0), (2, 1, 1), 0.0)) == 0.0
    # turning by 180 degrees changes nothing
    assert iou_3d(long, RoomObject("g", "sofa", (0, 0, 0.5), (2, 1, 1), math.pi)) == pytest.approx(1.0)


def test_polygon_clipping():
    a = box_corners_2d((0, 0), 2, 2, 0)
    assert polygon_area(a) == pytest.approx(4.0)
    b = box_corners_2d((1, 1), 2, 2, 0)
    assert polygon_area(clip_convex(a, b)) == pytest.approx(1.0)
    assert len(clip_convex(a, box_corners_2d((5, 5), 1, 1, 0.3))) == 0


def test_thin_box_iou():
    w = Wall("a", (0, 0, 1.3), 4, 2.6, 0.0)
    moved = lambda dx, dy: Wall("b", (dx, dy, 1.3), 4, 2.6, 0.0)  # noqa: E731
    assert iou_thin(w, w) == pytest.approx(1.0)
    assert iou_thin(w, moved(0, 0.03)) == pytest.approx(0.07 / 0.13)  # across: 10 cm thick boxes
    assert iou_thin(w, moved(0, 0.05)) == pytest.approx(0.05 / 0.15)
    assert iou_thin(w, moved(1.0, 0)) == pytest.approx(3 / 5)  # along the wall
    assert iou_thin(w, Wall("c", (0, 0, 1.3), 4, 2.6, math.pi)) == pytest.approx(1.0)


def test_hungarian_beats_greedy():
    # greedy takes (0, 0) = 0.9 and leaves row 1 unmatched at threshold 0.5; Hungarian pairs both
    iou = np.array([[0.9, 0.6], [0.7, 0.0]])
    assert match_count(iou, 0.5) == 2
    assert match_count(iou, 0.8) == 1
    assert match_count(np.zeros((0, 3)), 0.5) == 0


def test_score_identical_rooms():
    gold = [random_room(s) for s in range(3)]
    res = score_layouts(gold, gold)
    for kind in ("walls", "doors", "windows", "objects"):
        for t in ("0.25", "0.5"):
            assert res[kind][f"f1@{t}"] == 100.0, (kind, t)
    assert res["parse_rate"] == 100.0 and res["count_accuracy"] == 100.0 and res["count_mae"] == 0.0
    assert all(v["f1@0.5"] == 100.0 for v in res["objects_by_category"].values())
    # the text of the gold rooms scores the same (quantisation keeps IoU far above 0.5)
    texts = score_layouts([g.to_text() for g in gold], gold)
    assert texts["parse_rate"] == 100.0
    assert texts["walls"]["f1@0.5"] == 100.0 and texts["objects"]["f1@0.5"] == 100.0
    json.dumps(res)


def _box_room(shift: float = 0.0, extra: bool = False, missing: bool = False) -> Room:
    walls = [Wall(f"w{i}", (0, y, 1.3), 4, 2.6, 0.0) for i, y in enumerate((-2.0, 2.0))]
    walls += [Wall(f"w{i + 2}", (x, 0, 1.3), 4, 2.6, math.pi / 2) for i, x in enumerate((-2.0, 2.0))]
    objects = [RoomObject("t", "table", (shift, 0, 0.5), (1, 1, 1), 0.0),
               RoomObject("c", "chair", (1, 1, 0.25), (0.5, 0.5, 0.5), 0.0)]
    doors = [Opening("d", "door", "w0", (shift, -2, 1.05), 1.0, 2.1, 0.0, True)]
    if extra:
        walls.append(Wall("w9", (0, 0, 1.3), 2, 2.6, 0.3))
        objects.append(RoomObject("x", "chair", (-1, -1, 0.25), (0.5, 0.5, 0.5), 0.0))
    if missing:
        walls = walls[:3]
        objects = objects[:1]
    return Room(walls=walls, doors=doors, objects=objects)


def test_score_shifted_missing_extra():
    gold = [_box_room()]
    # table and door shifted by 0.5: cube IoU = 0.5/1.5 = 1/3, door (1 m) IoU = 0.5/1.5 -> pass 0.25, fail 0.5
    res = score_layouts([_box_room(shift=0.5)], gold)
    assert res["objects"]["f1@0.25"] == 100.0
    assert res["objects"]["precision@0.5"] == 50.0 and res["objects"]["recall@0.5"] == 50.0
    assert res["objects"]["matched@0.5"] == 1 and res["objects"]["matched@0.25"] == 2
    assert res["objects_by_category"]["table"]["f1@0.5"] == 0.0
    assert res["objects_by_category"]["chair"]["f1@0.5"] == 100.0
    assert res["doors"]["f1@0.25"] == 100.0 and res["doors"]["f1@0.5"] == 0.0
    assert res["walls"]["f1@0.5"] == 100.0
    # shifted by 0.8: IoU 0.2/1.8 fails both
    res = score_layouts([_box_room(shift=0.8)], gold)
    assert res["objects_by_category"]["table"]["f1@0.25"] == 0.0

    res = score_layouts([_box_room(missing=True)], gold)  # 3 of 4 walls, 1 of 2 objects
    assert res["walls"]["precision@0.5"] == 100.0 and res["walls"]["recall@0.5"] == 75.0
    assert res["objects"]["precision@0.5"] == 100.0 and res["objects"]["recall@0.5"] == 50.0
    assert res["walls"]["f1@0.5"] == pytest.approx(100 * 2 * 0.75 / 1.75)
    assert res["count_accuracy"] == 0.0 and res["count_mae"] == 1.0

    res = score_layouts([_box_room(extra=True)], gold)  # 5 walls for 4, 3 objects for 2
    assert res["walls"]["precision@0.5"] == 80.0 and res["walls"]["recall@0.5"] == 100.0
    assert res["objects"]["precision@0.5"] == pytest.approx(200 / 3) and res["objects"]["recall@0.5"] == 100.0
    assert res["objects_by_category"]["chair"]["n_pred"] == 2

    # a chair predicted where the table is does not count for the table
    wrong = _box_room()
    wrong.objects[0].category = "chair"
    res = score_layouts([wrong], gold)
    assert res["objects_by_category"]["table"]["recall@0.25"] == 0.0


def test_score_parse_failures_and_empty():
    gold = [_box_room(), _box_room(shift=1.0)]
    good_text = gold[1].to_text()
    res = score_layouts([None, good_text + "\nwall 9 x=1"], gold)
    assert res["parse_rate"] == 0.0 and res["n_problems"] == 1 and res["n_pred_rooms"] == 2
    # the first counts as empty: half the walls are found, all predicted walls are right
    assert res["walls"]["recall@0.5"] == 50.0 and res["walls"]["precision@0.5"] == 100.0
    assert res["count_accuracy"] == 50.0
    res = score_layouts([Room()], [Room()])
    assert res["walls"]["f1@0.5"] is None and res["objects_by_category"] == {}
    with pytest.raises(ValueError, match="2 predictions for 1 gold"):
        score_layouts([None, None], [Room()])


def test_kinds_absent_from_both_sides_have_no_score():
    """0 predicted and 0 gold openings: no score (was F1 100 beside a parse rate of 0%); one unit (percent)."""
    gold = [_box_room()]  # walls, a door, objects; no windows or openings
    res = score_layouts(["not a layout"], gold)
    assert res["parse_rate"] == 0.0
    for kind in ("windows", "openings"):
        assert res[kind]["n_pred"] == res[kind]["n_gold"] == 0
        assert all(res[kind][f"{m}@{t}"] is None for m in ("precision", "recall", "f1") for t in ("0.25", "0.5"))
        assert res[kind]["matched@0.5"] == 0
    # an empty prediction of a non-empty kind still scores 0, and a perfect one 100
    assert res["walls"]["f1@0.5"] == 0.0 and res["walls"]["recall@0.5"] == 0.0
    assert score_layouts(gold, gold)["walls"]["f1@0.5"] == 100.0
    # no rooms: nothing to rate
    assert score_layouts([], [])["parse_rate"] is None
