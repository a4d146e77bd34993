"""vqkit.synth.spatial: VSI-Bench-style questions whose answers are checked against hand-made rooms, and
the records of a generated folder."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from vqkit.errors import DataError
from vqkit.synth.spatial import (
    CHOICE_TYPES,
    SPATIAL_QTYPES,
    SpatialQuestions,
    box_distance,
    floor_area,
    spatial_questions,
    spatial_records,
)


def _obj(cat, x, y, size=(0.5, 0.9, 0.5), yaw=0.0, views=(0,), pixels=(100, 100, 100, 100)):
    return {"category": cat, "center": [x, y, size[1] / 2], "size": list(size), "yaw": yaw,
            "visible_views": list(views), "pixels": list(pixels)}


def _layout(objects, polygon=((0, 0), (6, 0), (6, 5), (0, 5))):
    return {"seed": 0, "index": 0, "room": {"polygon": [list(p) for p in polygon]}, "objects": objects}


def test_box_distance_between_closest_points():
    a = _obj("bed", 0.0, 0.0, size=(2.0, 1.0, 1.0))                   # x in [-1, 1], y in [-0.5, 0.5]
    assert box_distance(a, _obj("chair", 3.0, 0.0, size=(1.0, 1.0, 1.0))) == pytest.approx(1.5)
    assert box_distance(a, _obj("chair", 4.5, 5.0, size=(1.0, 1.0, 1.0))) == pytest.approx(5.0)  # gaps 3 and 4
    assert box_distance(a, _obj("chair", 0.5, 0.0, size=(1.0, 1.0, 1.0))) == 0.0                # overlapping
    # turned 90 degrees, the 2 m side runs along y: x in [-0.5, 0.5]
    turned = _obj("bed", 0.0, 0.0, size=(2.0, 1.0, 1.0), yaw=math.pi / 2)
    assert box_distance(turned, _obj("chair", 3.0, 0.0, size=(1.0, 1.0, 1.0))) == pytest.approx(2.0)
    stacked = {**_obj("television", 0.0, 0.0, size=(1.0, 0.5, 0.1)), "center": [0.0, 0.0, 2.0]}
    assert box_distance(a, stacked) == pytest.approx(2.0 - 0.25 - 1.0)  # vertical gap only


def test_floor_area_of_rectangular_and_l_shaped_rooms():
    assert floor_area([[0, 0], [4, 0], [4, 3], [0, 3]]) == pytest.approx(12.0)
    # a 4 x 3 room without its 2 x 1 corner
    assert floor_area([[0, 0], [4, 0], [4, 2], [2, 2], [2, 3], [0, 3]]) == pytest.approx(10.0)


def _room():
    # Standing by the bed at (1, 1) facing the sofa at (1, 4) (+y): the table at (0, 2) is front-left
    # (45 degrees), the fridge at (2.5, 0.5) back-right (-108 degrees), the cabinet at (4, 1.2) right (-86).
    chairs = dict(views=(3,), pixels=(0, 0, 0, 100))
    return _layout([_obj("bed", 1, 1, views=(0,), pixels=(100, 0, 0, 0)),
                    _obj("sofa", 1, 4, views=(2,), pixels=(0, 0, 100, 100)),
                    _obj("table", 0, 2, views=(1,), pixels=(0, 100, 0, 0)),
                    _obj("refrigerator", 2.5, 0.5, size=(0.8, 1.8, 0.7), views=(3,), pixels=(0, 0, 0, 100)),
                    _obj("storage", 4, 1.2, views=(1, 2), pixels=(5, 100, 100, 0)),
                    _obj("chair", 5, 4, **chairs), _obj("chair", 5.5, 4.5, **chairs)])


def _ask(layout, qtype, *phrases):
    """Draw until the generator asks a question holding ``phrases`` in that order (it picks objects at random)."""
    gen = SpatialQuestions(layout, np.random.default_rng(0))
    pattern = re.compile(".*".join(rf"\b{re.escape(p)}\b" for p in phrases))
    for _ in range(2000):
        q = gen.ask(qtype)
        if q is not None and pattern.search(q["question"]):
            return q
    raise AssertionError(f"never asked {qtype} with {phrases}")


def _chosen(q):
    return next(o.split(". ", 1)[1] for o in q["options"] if o.startswith(q["answer"] + "."))


def test_relative_direction_answers_by_hand():
    room = _room()
    at = ("standing by the bed", "facing the sofa")
    assert _chosen(_ask(room, "object_rel_direction_hard", *at, "the table")) == "front-left"
    assert _chosen(_ask(room, "object_rel_direction_hard", *at, "the fridge")) == "back-right"
    q = _ask(room, "object_rel_direction_easy", *at, "the cabinet")
    assert _chosen(q) == "right" and sorted(o[3:] for o in q["options"]) == ["left", "right"]
    q = _ask(room, "object_rel_direction_medium", *at, "the cabinet")
    assert _chosen(q) == "right" and sorted(o[3:] for o in q["options"]) == ["back", "left", "right"]
    # the table is 45 degrees off: within the margin of medium's left / front boundary, never asked
    gen = SpatialQuestions(room, np.random.default_rng(1))
    asked = [gen.ask("object_rel_direction_medium") for _ in range(300)]
    assert not any(q and "bed and facing the sofa, is the table" in q["question"] for q in asked)


def test_numeric_answers_by_hand():
    room = _room()
    assert _ask(room, "object_counting", "chairs")["answer"] == "2"
    assert _ask(room, "room_size_estimation")["answer"] == "30.0"
    assert _ask(room, "object_size_estimation", "fridge")["answer"] == "180"
    # bed x [0.75, 1.25]; cabinet x [3.75, 4.25], their y ranges overlap: 2.5 m apart
    assert _ask(room, "object_abs_distance", "bed", "cabinet")["answer"] == "2.5"
    # the table's box touches nothing but is 0.7 m from the bed's: asked; the chairs are never named
    gen = SpatialQuestions(room, np.random.default_rng(0))
    asked = [gen.ask("object_abs_distance") for _ in range(200)]
    assert not any("chair" in q["question"] for q in asked if q)


def test_relative_distance_needs_a_clear_winner():
    room = _room()
    gen = SpatialQuestions(room, np.random.default_rng(2))
    for _ in range(300):
        q = gen.ask("object_rel_distance")
        if q is None:
            continue
        target = q["question"].rsplit("the ", 1)[1].rstrip("?")
        words = {"bed": "bed", "sofa": "sofa", "table": "table", "fridge": "refrigerator", "cabinet": "storage"}
        objs = {o["category"]: o for o in room["objects"]}
        names = [o.split(". ", 1)[1] for o in q["options"]]
        dists = sorted((box_distance(objs[words[n]], objs[words[target]]), n) for n in names)
        assert dists[0][1] == _chosen(q) and dists[1][0] - dists[0][0] >= 0.3


def test_appearance_order_by_hand():
    q = _ask(_room(), "obj_appearance_order")
    # bed in view 0, table 1, sofa 2, fridge and chairs 3; the cabinet was glimpsed (5 px) in view 0,
    # before it is well visible in view 1, so it is never asked about
    assert "cabinet" not in q["question"]
    assert _chosen(q) in ("bed, table, sofa, fridge", "bed, table, sofa, chair")
    assert len(set(q["options"])) == 4 and q["answer"] in "ABCD"


def test_every_type_and_determinism(synth_dir):
    records = spatial_records(synth_dir, "val")
    assert records and records == spatial_records(synth_dir, "val")
    assert {r["qtype"] for r in records} <= set(SPATIAL_QTYPES)
    for r in records:
        assert r["task"] == "spatial" and r["answers"] == [r["answer"]] and r["images"] and r["geom_token"]
        if r["qtype"] in CHOICE_TYPES:
            assert r["answer"] in "ABCD"[:len(r["options"])]
        else:
            assert float(r["answer"]) > 0 and "options" not in r
    rooms = {r["scene_id"] for r in records}
    assert {r["scene_id"] for r in records if r["qtype"] == "room_size_estimation"} == rooms


def test_one_question_per_type_a_room_can_ask():
    questions = spatial_questions(_room(), np.random.default_rng(0))
    assert [q["qtype"] for q in questions] == list(SPATIAL_QTYPES)


def test_missing_split_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="no val.jsonl"):
        spatial_records(tmp_path, "val")
