"""vqkit.roomplan.capturedroom: Apple's CapturedRoom JSON (y-up, column-major transforms) to and from a
room, lossless both ways, tolerant of what it does not model and strict about what it needs."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
from helpers import random_room, yaw_diff

from vqkit.errors import DataError
from vqkit.roomplan import Room
from vqkit.roomplan.capturedroom import to_capturedroom

from_capturedroom = Room.from_capturedroom


def assert_json_close(a, b, atol: float = 1e-9, path: str = "") -> None:
    """Equal JSON trees, floats within atol."""
    if isinstance(a, float) or isinstance(b, float):
        assert isinstance(a, (int, float)) and isinstance(b, (int, float)), path
        assert abs(a - b) <= atol, f"{path}: {a} != {b}"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{path}: keys {sorted(a)} != {sorted(b)}"
        for k in a:
            assert_json_close(a[k], b[k], atol, f"{path}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), f"{path}: lengths differ"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_json_close(x, y, atol, f"{path}[{i}]")
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


# A hand-written export in Apple's shape: y-up, column-major transforms, extra keys, medium confidence.
# Wall: centre (x_rp, y_rp, z_rp) = (1, 1.25, -3), local x rotated to RoomPlan (0, 0, -1) = vqkit +y.
APPLE_LIKE = {
    "identifier": "8F0B1C5E-7A44-4A52-9B1E-2B6E4A7C9D10",
    "version": 2,
    "story": 0,
    "walls": [
        {
            "identifier": "0C6E2A1F-3D4B-4E5A-8F7C-1A2B3C4D5E6F",
            "parentIdentifier": None,
            "category": {"wall": {}},
            "confidence": {"medium": {}},
            "dimensions": [4.0, 2.5, 0.0],
            "transform": [0, 0, -1, 0, 0, 1, 0, 0, 1, 0, 0, 0, 1.0, 1.25, -3.0, 1],
            "polygonCorners": [],
            "completedEdges": [],
            "curve": None,
            "story": 0,
        }
    ],
    "doors": [
        {
            "identifier": "A1B2C3D4-0000-4000-8000-000000000001",
            "parentIdentifier": "0C6E2A1F-3D4B-4E5A-8F7C-1A2B3C4D5E6F",
            "category": {"door": {"isOpen": False}},
            "confidence": {"high": {}},
            "dimensions": [0.9, 2.0, 0.05],
            "transform": [0, 0, -1, 0, 0, 1, 0, 0, 1, 0, 0, 0, 1.0, 1.0, -3.5, 1],
        }
    ],
    "windows": [],
    "openings": [],
    "objects": [
        {
            "identifier": "B1B2C3D4-0000-4000-8000-000000000002",
            "category": {"table": {}},
            "confidence": {"low": {}},
            "dimensions": [1.6, 0.75, 0.9],
            # yaw 30 deg: local x -> (cos30, 0, -sin30) in RoomPlan
            "transform": [math.cos(math.pi / 6), 0, -0.5, 0, 0, 1, 0, 0, 0.5, 0, math.cos(math.pi / 6), 0,
                          0.5, 0.375, 2.0, 1],
            "attributes": {"unknownAttribute": 1},
        }
    ],
    "floors": [{"category": {"floor": {}}, "polygonCorners": [[0, 0, 0]]}],
    "sections": [{"label": "livingRoom", "center": [0, 0, 0]}],
}


def test_apple_like_json_axes_and_yaw():
    problems: list[str] = []
    room = from_capturedroom(APPLE_LIKE, problems=problems)
    assert problems == []
    (wall,) = room.walls
    # x = x_rp, y = -z_rp, z = y_rp
    assert wall.center == pytest.approx((1.0, 3.0, 1.25))
    assert wall.width == 4.0 and wall.height == 2.5
    assert wall.yaw == pytest.approx(math.pi / 2)  # RoomPlan -z is vqkit +y
    (door,) = room.doors
    assert door.wall_id == wall.id and door.is_open is False and door.kind == "door"
    assert door.center == pytest.approx((1.0, 3.5, 1.0))
    (table,) = room.objects
    assert table.category == "table" and table.size == pytest.approx((1.6, 0.75, 0.9))
    assert table.center == pytest.approx((0.5, -2.0, 0.375))
    assert table.yaw == pytest.approx(math.pi / 6)


def test_apple_like_json_round_trip_keeps_modelled_fields():
    room = from_capturedroom(APPLE_LIKE)
    out = to_capturedroom(room)
    for key in ("walls", "doors", "objects"):
        for a, b in zip(APPLE_LIKE[key], out[key], strict=True):
            assert b["identifier"] == a["identifier"]
            assert b["parentIdentifier"] == a.get("parentIdentifier")
            assert b["category"] == a["category"]
            assert b["dimensions"][:2] == pytest.approx(a["dimensions"][:2])
            assert b["transform"] == pytest.approx(a["transform"], abs=1e-12)
    assert json.loads(json.dumps(out)) == out  # plain JSON


@pytest.mark.parametrize("seed", range(5))
def test_capturedroom_round_trip_lossless(seed):
    room = random_room(seed)
    d1 = to_capturedroom(room)
    d2 = to_capturedroom(from_capturedroom(json.loads(json.dumps(d1))))
    assert_json_close(d1, d2, atol=1e-9)
    # Room -> JSON -> Room keeps every field (ids become UUIDs, yaws are equal modulo 2 pi)
    back = from_capturedroom(d1)
    for a, b in zip(room.walls + room.surfaces(), back.walls + back.surfaces(), strict=True):
        assert b.center == pytest.approx(a.center, abs=1e-9)
        assert (b.width, b.height) == pytest.approx((a.width, a.height))
        assert yaw_diff(a.yaw, b.yaw, 2 * math.pi) < 1e-9
    for a, b in zip(room.objects, back.objects, strict=True):
        assert (b.category, b.size) == (a.category, pytest.approx(a.size))
        assert b.center == pytest.approx(a.center, abs=1e-9)
        assert yaw_diff(a.yaw, b.yaw, 2 * math.pi) < 1e-9
    assert [d.is_open for d in back.doors] == [d.is_open for d in room.doors]
    wall_index = {w.id: i for i, w in enumerate(back.walls)}
    assert [wall_index[d.wall_id] for d in back.doors] == [int(d.wall_id[1:]) for d in room.doors]


def test_capturedroom_deterministic_uuids():
    room = random_room(3)
    assert to_capturedroom(room) == to_capturedroom(copy.deepcopy(room))
    ids = [s["identifier"] for k in ("walls", "doors", "windows", "objects") for s in to_capturedroom(room)[k]]
    assert len(set(ids)) == len(ids)


def test_capturedroom_tolerant_and_strict_parts():
    data = copy.deepcopy(APPLE_LIKE)
    del data["windows"], data["openings"], data["floors"]
    transform = APPLE_LIKE["objects"][0]["transform"]
    data["objects"].append({"category": {"lamp": {}}, "dimensions": [1, 1, 1], "transform": transform})
    data["objects"].append({"category": "chair", "dimensions": [0.5, 0.9, 0.5], "transform": transform})
    # tilted wall: rotated 10 degrees about x as well
    a = math.radians(10)
    tilt = np.array([[1, 0, 0], [0, math.cos(a), -math.sin(a)], [0, math.sin(a), math.cos(a)]])
    R = np.array([[0, 0, 1], [0, 1, 0], [-1, 0, 0]]) @ tilt
    M = np.eye(4)
    M[:3, :3] = R
    data["walls"][0]["transform"] = [float(v) for v in M.T.reshape(-1)]
    problems: list[str] = []
    room = from_capturedroom(data, problems=problems)
    assert [o.category for o in room.objects] == ["table", "chair"]  # string category accepted
    assert any("'lamp'" in p and "objects[1]" in p for p in problems)
    assert any("walls[0].transform" in p and "upright" in p for p in problems)
    assert room.walls[0].yaw == pytest.approx(math.pi / 2)  # projected heading survives the tilt
    with pytest.warns(UserWarning, match="lamp"):
        from_capturedroom(data)

    bad = copy.deepcopy(APPLE_LIKE)
    bad["doors"][0]["transform"] = [1, 2, 3]
    with pytest.raises(DataError, match=r"rec\.doors\[0\]\.transform"):
        from_capturedroom(bad, where="rec")
    bad = copy.deepcopy(APPLE_LIKE)
    bad["objects"][0]["dimensions"] = [1, float("nan"), 1]
    with pytest.raises(DataError, match=r"roomplan\.objects\[0\]\.dimensions"):
        from_capturedroom(bad)
    with pytest.raises(DataError, match="expected a CapturedRoom JSON object"):
        from_capturedroom([1, 2])
