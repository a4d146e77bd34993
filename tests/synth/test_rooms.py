"""vqkit.synth.rooms: floor plans, openings, furniture and cameras are physical (inside the room, on
the floor, apart from each other) and like a phone scan."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vqkit import cameras as geo
from vqkit import synth


def test_layout_is_physical():
    for index in range(4):
        layout = synth.scene.make_scene(seed=5, index=index, views=2, image_size=32)["layout"]
        room = layout["room"]
        fps = []
        for o in layout["objects"]:
            assert o["category"] in synth.catalogue.CATEGORIES and o["colour"] in synth.catalogue.PALETTE
            c, (w, h, d) = o["center"], o["size"]
            hw, hd = (w / 2, d / 2) if abs(np.sin(o["yaw"])) < 0.5 else (d / 2, w / 2)
            fp = [c[0] - hw, c[1] - hd, c[0] + hw, c[1] + hd]
            assert synth.rooms.inside_room(fp, room, margin=-2e-4)
            assert c[2] - h / 2 >= -2e-4 and c[2] + h / 2 <= room["height"]
            if o["on"] is None:
                assert abs(c[2] - h / 2) < 2e-4  # stands on the floor (4-decimal rounding)
                fps.append(fp)
        for i in range(len(fps)):
            for j in range(i):
                assert not synth.rooms.rects_overlap(fps[i], fps[j]), "objects overlap"
        assert layout["doors"] and layout["windows"]
        assert 2.4 <= room["height"] <= 3.0 and room["width"] <= room["length"]


def test_cameras_like_a_phone_scan():
    sc = synth.scene.make_scene(seed=2, index=1, views=6, image_size=32)
    bbox = sc["layout"]["room"]["bbox"]
    for R, t in zip(sc["R"], sc["t"], strict=True):
        assert geo.is_rotation(R)
        eye = geo.camera_centre(R, t)
        assert 1.2 <= eye[2] <= 1.7
        assert bbox[0] < eye[0] < bbox[3] and bbox[1] < eye[1] < bbox[4]
        forward = R[2]
        assert forward[2] < 0  # looking a little down, not at the ceiling
    np.testing.assert_allclose(sc["K"][:2, 2], [16, 16])


def _sampled(seed: int):
    rng = np.random.default_rng(seed)
    room = synth.rooms.sample_room(rng, l_shape_prob=0.5)
    doors, windows = synth.rooms.sample_openings(rng, room)
    return room, doors, windows, synth.rooms.sample_objects(rng, room, doors, windows)


def test_floor_plans_are_closed_counter_clockwise_polygons():
    shapes = set()
    for seed in range(12):
        room = _sampled(seed)[0]
        poly = np.array(room["polygon"])
        x, y = poly[:, 0], poly[:, 1]
        area = 0.5 * np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y)  # > 0: counter-clockwise
        W, D = room["bbox"][3], room["bbox"][4]
        notch = room["notch"]
        cut = 0.0 if notch is None else (notch[2] - notch[0]) * (notch[3] - notch[1])
        assert area == pytest.approx(W * D - cut, abs=1e-3)
        assert len(poly) == (4 if notch is None else 6) and len(room["walls"]) == len(poly)
        for a, b in zip(room["walls"], room["walls"][1:] + room["walls"][:1], strict=True):
            assert a["end"] == b["start"]  # the walls go round the room without a gap
            assert a["length"] == pytest.approx(np.linalg.norm(np.subtract(a["end"], a["start"])), abs=1e-4)
        assert room["width"] == round(min(W, D), 4) and room["length"] == round(max(W, D), 4)
        shapes.add(notch is None)
    assert shapes == {True, False}  # both rectangles and L shapes were drawn


def test_openings_sit_in_their_walls_apart_from_each_other():
    for seed in range(12):
        room, doors, windows, _ = _sampled(seed)
        walls = {w["id"]: w for w in room["walls"]}
        assert 1 <= len(doors) <= 2 and len(windows) <= 3
        spans: dict[str, list[tuple[float, float]]] = {}
        for op in doors + windows:
            p0, u, n = synth.rooms.wall_frame(walls[op["wall_id"]])
            rel = np.array(op["center"][:2]) - p0
            assert abs(rel @ n) < 1e-3  # in the wall's plane
            assert rel @ u == pytest.approx(op["offset"] + op["width"] / 2, abs=1e-3)
            length = walls[op["wall_id"]]["length"]
            assert 0.3 - 1e-6 <= op["offset"] and op["offset"] + op["width"] <= length - 0.3 + 1e-3
            assert op["yaw"] == pytest.approx(math.atan2(u[1], u[0]), abs=1e-5)
            assert op["center"][2] - op["height"] / 2 == pytest.approx(op["bottom"], abs=1e-3)
            assert op["bottom"] + op["height"] <= room["height"] - 0.2 + 1e-3
            spans.setdefault(op["wall_id"], []).append((op["offset"], op["offset"] + op["width"]))
        assert all(d["bottom"] == 0 and d["is_open"] is False for d in doors)
        for items in spans.values():
            items.sort()
            assert all(b[0] - a[1] >= 0.25 - 1e-6 for a, b in zip(items, items[1:], strict=False))


def test_furniture_keeps_the_doors_free_and_backs_onto_walls():
    """Nothing stands within 1 m in front of a door; against-wall pieces touch their wall; each
    category has one colour, no two categories the same."""
    for seed in range(12):
        room, doors, windows, objects = _sampled(seed)
        zones = synth.rooms._keep_out(room, doors, [])
        walls = {w["id"]: w for w in room["walls"]}
        colours = {}
        for o in objects:
            colours.setdefault(o["category"], set()).add(o["colour"])
            if o["on"] is not None:
                continue
            fp = synth.catalogue.footprint(o)
            assert not any(synth.rooms.rects_overlap(fp, zone) for zone, _ in zones), (seed, o["category"])
            if o.get("against_wall"):
                p0, u, n = synth.rooms.wall_frame(walls[o["against_wall"]])
                corners = np.array([[fp[0], fp[1]], [fp[2], fp[1]], [fp[2], fp[3]], [fp[0], fp[3]]])
                assert ((corners - p0) @ n).min() == pytest.approx(0.01, abs=2e-3)
        assert all(len(c) == 1 for c in colours.values())
        assert len({next(iter(c)) for c in colours.values()}) == len(colours)
