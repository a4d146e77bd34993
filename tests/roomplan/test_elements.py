"""vqkit.roomplan.elements: walls, openings and objects hold plain floats in metres and radians, and
refuse geometry they cannot hold with a message naming the element."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vqkit.roomplan import CATEGORIES, OPENING_KINDS, Opening, RoomObject, Wall


def test_elements_hold_plain_python_numbers():
    """numpy scalars and arrays in, tuples of floats out: the elements compare, hash into JSON and
    print the same whatever the caller passed."""
    wall = Wall(7, np.array([1, 2, 1.25], dtype=np.float32), np.int64(4), np.float32(2.5), np.float64(math.pi))
    assert wall.id == "7" and wall.center == (1.0, 2.0, 1.25)
    assert all(type(v) is float for v in (*wall.center, wall.width, wall.height, wall.yaw))
    obj = RoomObject("o", "bed", [[0.5], [1.0], [0.3]], np.array([2.0, 0.6, 1.6]), 0)
    assert obj.center == (0.5, 1.0, 0.3) and obj.size == (2.0, 0.6, 1.6) and type(obj.yaw) is float
    assert Wall("a", (0, 0, 1), 3, 2, 0) == Wall("a", np.zeros(3) + [0, 0, 1], 3.0, 2.0, 0.0)


def test_openings_know_their_kind_wall_and_state():
    door = Opening("d", "door", 3, (0, 0, 1.05), 0.9, 2.1, 0.0, 1)
    assert door.wall_id == "3" and door.is_open is True
    assert Opening("d", "door", "w", (0, 0, 1), 1, 2, 0, 0).is_open is False
    window = Opening("n", "window", None, (0, 0, 1.5), 1, 1, 0)
    assert window.wall_id is None and window.is_open is None  # unknown stays unknown, no wall stays no wall
    with pytest.raises(ValueError, match=r"opening x: kind must be one of \('door', 'window', 'opening'\), got 'h"):
        Opening("x", "hatch", "w", (0, 0, 1), 1, 1, 0)
    assert OPENING_KINDS == ("door", "window", "opening")


@pytest.mark.parametrize("make, message", [
    (lambda: Wall("w1", (0, 0), 3, 2, 0), "wall w1 center: expected 3 finite numbers, got (0, 0)"),
    (lambda: Wall("w1", (0, float("nan"), 1), 3, 2, 0), "wall w1 center: expected 3 finite numbers"),
    (lambda: Opening("d2", "door", "w", (0, 0, float("inf")), 1, 2, 0), "door d2 center: expected 3 finite"),
    (lambda: RoomObject("o3", "bed", (0, 0, 0), (1, 2), 0), "object o3 size: expected 3 finite numbers"),
    (lambda: RoomObject("o3", "bed", "middle", (1, 2, 3), 0), "object o3 center: expected 3 finite numbers, got 'mid"),
], ids=["two-numbers", "nan", "inf", "short-size", "text"])
def test_bad_geometry_is_refused_naming_the_element(make, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        make()


def test_categories_are_roomplans_sixteen_in_apples_order():
    assert len(CATEGORIES) == len(set(CATEGORIES)) == 16
    assert CATEGORIES[:3] == ("storage", "refrigerator", "stove") and CATEGORIES[-1] == "stairs"
    assert {"bed", "table", "sofa", "chair", "television", "washerDryer"} <= set(CATEGORIES)
