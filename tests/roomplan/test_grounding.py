"""Tests for vqkit.roomplan.grounding: box records, frames, the shared object-line grammar, scores."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vqkit import cameras as G
from vqkit.roomplan import Room, RoomObject, iou_3d
from vqkit.roomplan.grounding import (
    SCENE_FRAME,
    BoxFrame,
    box_corners,
    box_from_dict,
    box_text,
    box_to_dict,
    category_mean_boxes,
    first_view_frame,
    frame_for,
    grounding_question,
    read_box,
    score_grounding,
)
from vqkit.roomplan.text import read_object_line


def bed(x=2.0, y=3.0, yaw=0.0, label="bed") -> RoomObject:
    return RoomObject("b", label, (x, y, 0.5), (1.6, 1.0, 2.0), yaw)


def test_box_text_is_a_layout_object_line_and_reads_back():
    box = bed(2.034, 3.517, math.radians(90))
    text = box_text(box)
    assert text == "bed x=203 y=352 w=160 h=100 d=200 yaw=90"
    # The same line inside a Stage 2 layout parses to the same object: one grammar, one reader.
    room, problems = Room.from_text("wall 0 x=0 y=0 w=400 h=250 yaw=0\n" + text)
    assert not problems and len(room.objects) == 1
    back, problems = read_box(text)
    assert not problems
    assert np.allclose(back.center, room.objects[0].center) and np.allclose(back.size, room.objects[0].size)
    assert back.center == pytest.approx((2.03, 3.52, 0.5)) and back.yaw == pytest.approx(math.radians(90))
    assert iou_3d(back, box) > 0.98


def test_step_rounds_lengths_and_keeps_the_bottom_height():
    box = RoomObject("tv", "television", (1.234, -0.456, 1.0), (0.91, 0.6, 0.08), 0.0)
    assert box_text(box, step_cm=10) == "television x=120 y=-50 z=70 w=90 h=60 d=10 yaw=0"
    assert box_text(box) == "television x=123 y=-46 z=70 w=91 h=60 d=8 yaw=0"


@pytest.mark.parametrize("text", [
    "", "   \n", "bed", "bed x=1 y=2", "bed x=1 y=2 w=3 h=4 d=5 yaw=", "x=100 y=2 w=3 h=4 d=5 yaw=0",
    "bed x=__import__('os').system('true') y=1 w=1 h=1 d=1 yaw=0", "{'bbox_3d': [1, 2, 3]}",
    "bed x=1e999 y=0 w=1 h=1 d=1 yaw=0", "bed x=1 y=2 w=-3 h=4 d=5 yaw=0", "bed x=1 y=2 w=0 h=4 d=5 yaw=0",
])
def test_bad_answers_give_no_box_and_say_why(text):
    box, problems = read_box(text)
    assert box is None and problems and all(isinstance(p, str) for p in problems)


def test_tolerant_reading_keeps_the_first_box_and_counts_the_rest():
    box, problems = read_box("chair x=100 y=200 w=45 h=90 d=45 yaw=0\nchair x=300 y=200 w=45 h=90 d=45 yaw=0")
    assert box.center[0] == pytest.approx(1.0) and problems == ["line 2: more than one box; only line 1 is used"]
    box, problems = read_box("bed x=100 y=200 w=150 h=100 d=200 yaw=0 foo=3")
    assert box is not None and "unknown field(s) foo" in problems[0]
    box, problems = read_box("  bed   x=100.5 y=200 w=150 h=100 d=200 yaw=0  ")
    assert box is not None and not problems and box.center[0] == pytest.approx(1.005)
    assert read_object_line(None) == (None, ["not text: NoneType"])


def test_box_record_form_round_trips_and_refuses_bad_boxes():
    box = bed(yaw=0.3, label="office_chair")
    assert box_from_dict(box_to_dict(box)).center == pytest.approx(box.center)
    for bad, says in [({"label": "bed"}, "missing center"), ({**box_to_dict(box), "label": "office chair"}, "one word"),
                      ({**box_to_dict(box), "size": [1, 0, 1]}, "positive"),
                      ({**box_to_dict(box), "center": [1, 2]}, "3 finite numbers"), ([1, 2], "expected an object"),
                      ({**box_to_dict(box), "yaw": "north"}, "yaw")]:
        with pytest.raises(ValueError, match=says):
            box_from_dict(bad)


def test_box_corners_span_the_box():
    box = bed(yaw=math.radians(30))
    c = box_corners(box)
    assert c.shape == (8, 3)
    assert np.allclose(c.mean(0), box.center)
    assert np.allclose(c[:4, 2], 0.0) and np.allclose(c[4:, 2], 1.0)
    assert np.linalg.norm(c[1, :2] - c[0, :2]) == pytest.approx(1.6)  # the width runs along yaw
    assert np.linalg.norm(c[2, :2] - c[1, :2]) == pytest.approx(2.0)


def test_first_view_frame_puts_the_camera_at_the_origin_looking_along_y():
    eye = np.array([2.0, 1.0, 1.5])
    R, t = G.look_at(eye, np.array([5.0, 1.0, 0.8]))  # looking along +x, pitched down
    frame = first_view_frame(R, t)
    ahead = RoomObject("o", "bed", (4.0, 1.0, 0.5), (1, 1, 1), 0.0)
    left = RoomObject("o", "bed", (4.0, 2.0, 0.5), (1, 1, 1), 0.0)
    a, b = frame.to_frame(ahead), frame.to_frame(left)
    assert a.center == pytest.approx((0.0, 2.0, 0.5), abs=1e-9)  # 2 m straight ahead, height kept
    assert b.center == pytest.approx((-1.0, 2.0, 0.5), abs=1e-9)  # to the camera's left: x < 0
    assert a.yaw == pytest.approx(math.pi / 2)  # the scene's x axis points along the view direction
    back = frame.to_scene(b)
    assert back.center == pytest.approx(left.center) and math.cos(back.yaw) == pytest.approx(1.0)


@pytest.mark.parametrize("seed", range(5))
def test_text_in_the_first_view_frame_reads_back_into_the_scene_frame(seed):
    rng = np.random.default_rng(seed)
    R, t = G.look_at(rng.uniform(0, 5, 3), rng.uniform(0, 5, 3))
    frame = first_view_frame(R, t)
    box = RoomObject("o", "chair", (*rng.uniform(0, 5, 2), 0.45), (0.45, 0.9, 0.5), float(rng.uniform(0, math.pi)))
    back, problems = read_box(box_text(box, frame), frame)
    assert not problems and iou_3d(back, box) > 0.9
    assert np.allclose(back.center, box.center, atol=0.011)


def test_frame_for_names_what_is_missing():
    assert frame_for("scene", None) is SCENE_FRAME
    with pytest.raises(ValueError, match="needs the record's camera geometry"):
        frame_for("first_view", None)
    with pytest.raises(ValueError, match="box frame must be one of"):
        frame_for("room", None)
    # Straight down, the image's up direction (world -x here) is the frame's +y, the camera's x its +x.
    R_down = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])  # camera y = world x, z = world -z
    frame = frame_for("first_view", (R_down, -R_down @ np.array([1.0, 1.0, 2.0])))
    assert isinstance(frame, BoxFrame) and frame.origin == pytest.approx((1.0, 1.0))
    assert frame.to_frame(RoomObject("o", "bed", (0.0, 1.0, 0.5), (1, 1, 1), 0.0)).center == pytest.approx((0, 1, 0.5))
    assert frame.to_frame(RoomObject("o", "bed", (1.0, 2.0, 0.5), (1, 1, 1), 0.0)).center == pytest.approx((1, 0, 0.5))


def test_scores_are_accuracies_at_iou_thresholds_per_subset():
    gold = [bed(), bed(), bed(), bed()]
    shifted = bed(x=2.0 + 1.6 * 0.5)  # half the width off: IoU 1/3
    far = bed(x=9.0)
    scores = score_grounding([bed(), shifted, far, None], gold, ["unique", "multiple", "multiple", "unique"],
                             [[], [], ["line 2: extra"], ["no box"]])
    assert scores["n"] == 4 and scores["acc@0.25"] == 50.0 and scores["acc@0.5"] == 25.0
    assert scores["parse_rate"] == 50.0 and scores["n_problems"] == 2 and scores["no_box"] == 1
    assert scores["mean_iou"] == pytest.approx(100 * (1 + 1 / 3) / 4)
    assert scores["by_subset"]["unique"] == pytest.approx({"n": 2, "acc@0.25": 50.0, "acc@0.5": 50.0, "mean_iou": 50.0})
    assert scores["by_subset"]["multiple"]["acc@0.25"] == 50.0 and scores["by_subset"]["multiple"]["acc@0.5"] == 0.0
    assert scores["label_accuracy"] == 75.0
    assert score_grounding([], [])["acc@0.25"] is None
    with pytest.raises(ValueError, match="2 predictions for 1 gold"):
        score_grounding([None, None], [bed()])


def test_category_mean_box():
    means = category_mean_boxes([bed(x=1.0), bed(x=3.0, yaw=math.radians(90)), bed(x=2.0, yaw=math.radians(270)),
                                 bed(label="chair")])
    assert set(means) == {"bed", "chair"}
    assert means["bed"].center == pytest.approx((2.0, 3.0, 0.5))
    assert math.degrees(means["bed"].yaw) == pytest.approx(90)  # 270 deg is the same box as 90


def test_question_wording():
    assert grounding_question("  the pink\nbed ") == "Locate: the pink bed"
