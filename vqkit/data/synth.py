"""The synthetic posed-room benchmark: ``vqkit synth --out DIR --scenes N --views V --image-size S --seed K``.

Each scene is a random rectangular or L-shaped room (walls, floor, ceiling, doors and windows cut
into the walls) furnished with RoomPlan object categories built from a few boxes each, in colours
from a small named palette; walls and floor tiles are painted from palettes of their own. V cameras
at eye height look into the room like a person scanning with a phone; RGB and depth are ray cast
on the CPU (:mod:`vqkit.data.synth_render`); questions with short one-word answers come from the
layout (:mod:`vqkit.data.synth_questions`); the RoomPlan layout of each scene is the Stage 2 target.

World frame: metres, z-up, floor at z = 0, the room's bounding box is [0, W] x [0, D] x [0, H].
Cameras: ``R, t`` world-to-camera in OpenCV axes (``x_cam = R @ x_world + t``), K of the stored image.
Objects: ``center`` is the centre of the object's 3D box, ``size = [w, h, d]`` (width along the
object's local x, height, depth along its local y: RoomPlan's dimensions order), ``yaw`` the angle of
the local x axis about +z; the object's front faces its local +y, i.e. (-sin yaw, cos yaw).

Output (DESIGN.md sections 2 and 6)::

    DIR/{train,val,test}.jsonl            questions (task "synth"), one record per question
    DIR/roomplan_{train,val,test}.jsonl   one record per scene (task "roomplan")
    DIR/scenes/<scene_id>/rgb_XX.png, depth_XX.png (uint16 mm), layout.json, cameras.json
    DIR/stats.json                        counts per qtype, blind majority-answer EM, timings
    DIR/tokenizer/                        small tokenizer trained on the train split's text

Everything in a scene derives from ``numpy.random.SeedSequence([seed, scene_index])``, so the output
does not depend on the number of worker processes.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
from PIL import Image

from vqkit.data import geometry as geo
from vqkit.data.synth_render import CEILING, DOOR_BASE, FLOOR, WALL, WINDOW_BASE, SceneMesh, render
from vqkit.errors import ConfigError

# Bumped whenever the same arguments would generate different rooms or questions, so a folder made
# by an older generator is never silently reused (vqkit demo regenerates it).
GENERATOR_VERSION = 2

# Named palette: hue-distinct colours a tiny model can tell apart after Lambert shading.
PALETTE: dict[str, tuple[float, float, float]] = {
    "red": (0.85, 0.12, 0.10),
    "orange": (0.95, 0.50, 0.08),
    "yellow": (0.95, 0.85, 0.12),
    "green": (0.15, 0.65, 0.20),
    "blue": (0.12, 0.30, 0.90),
    "purple": (0.55, 0.20, 0.75),
    "pink": (0.98, 0.55, 0.75),
    "black": (0.10, 0.10, 0.11),
}
COLOURS = list(PALETTE)
# Paint of the walls and of the floor tiles, per room: muted tones apart from the object palette,
# so a wall is never mistaken for an object. Whole-room colours fill most of every view.
WALL_PALETTE: dict[str, tuple[float, float, float]] = {
    "white": (0.93, 0.93, 0.92),
    "beige": (0.86, 0.78, 0.62),
    "grey": (0.60, 0.61, 0.63),
    "mint": (0.66, 0.86, 0.72),
    "lilac": (0.76, 0.70, 0.90),
    "peach": (0.97, 0.74, 0.60),
}
FLOOR_PALETTE: dict[str, tuple[float, float, float]] = {
    "brown": (0.45, 0.30, 0.18),
    "tan": (0.74, 0.62, 0.44),
    "slate": (0.36, 0.40, 0.46),
    "cream": (0.88, 0.84, 0.72),
}
WHITE, DARK, GREY = (0.93, 0.93, 0.92), (0.05, 0.05, 0.06), (0.6, 0.6, 0.62)
CEILING_RGB = (0.95, 0.95, 0.95)
DOOR_RGB, WINDOW_RGB, FRAME_RGB = (0.50, 0.36, 0.24), (0.70, 0.86, 0.97), (0.96, 0.96, 0.96)

# RoomPlan category -> the word used in questions and answers (singular, plural).
CATEGORIES: dict[str, tuple[str, str]] = {
    "bed": ("bed", "beds"),
    "table": ("table", "tables"),
    "chair": ("chair", "chairs"),
    "sofa": ("sofa", "sofas"),
    "storage": ("cabinet", "cabinets"),
    "television": ("television", "televisions"),
    "toilet": ("toilet", "toilets"),
    "sink": ("sink", "sinks"),
    "refrigerator": ("fridge", "fridges"),
    "bathtub": ("bathtub", "bathtubs"),
}
MAX_COUNT = {"chair": 4}  # others: 1..3 instances, so counts are balanced across categories
AGAINST_WALL = {"bed", "sofa", "storage", "television", "toilet", "sink", "refrigerator", "bathtub"}
# Size ranges (w, d, h) in metres.
SIZES = {
    "bed": ((1.4, 1.8), (1.95, 2.1), (0.9, 1.1)),
    "table": ((0.8, 1.6), (0.7, 1.0), (0.72, 0.78)),
    "chair": ((0.42, 0.5), (0.42, 0.5), (0.85, 0.95)),
    "sofa": ((1.6, 2.3), (0.85, 0.95), (0.8, 0.9)),
    "storage": ((0.8, 1.5), (0.4, 0.5), (0.7, 1.2)),
    "television": ((0.8, 1.3), (0.08, 0.08), (0.5, 0.75)),
    "toilet": ((0.38, 0.45), (0.65, 0.72), (0.75, 0.82)),
    "sink": ((0.5, 0.75), (0.45, 0.55), (0.85, 0.9)),
    "refrigerator": ((0.6, 0.85), (0.6, 0.72), (1.7, 1.95)),
    "bathtub": ((1.5, 1.75), (0.7, 0.8), (0.5, 0.6)),
}
PLACE_ORDER = ["bed", "bathtub", "sofa", "refrigerator", "table", "storage", "sink", "toilet", "chair",
               "television"]


# --------------------------------------------------------------------------------------------
# Object shapes: a few boxes each, in the object's local frame (x width, y depth, z up, front +y,
# origin at the centre of the footprint on the object's base)
# --------------------------------------------------------------------------------------------


def _parts(category: str, w: float, d: float, h: float, on_floor: bool = True) -> list[tuple]:
    """Boxes ``(x0, x1, y0, y1, z0, z1, colour_key)`` of one object; colour_key is 'main', 'shade'
    (darker main), or a fixed RGB tuple."""
    x, y = w / 2, d / 2
    if category == "bed":
        return [(-x, x, -y, y, 0, 0.3, "main"), (-x + 0.03, x - 0.03, -y + 0.08, y - 0.02, 0.3, 0.5, WHITE),
                (-x, x, -y, -y + 0.08, 0, h, "main"), (-x + 0.12, x - 0.12, -y + 0.12, -y + 0.45, 0.5, 0.6, WHITE)]
    if category == "table":
        leg = 0.05
        parts = [(-x, x, -y, y, h - 0.05, h, "main")]
        for sx in (-1, 1):
            for sy in (-1, 1):
                cx, cy = sx * (x - leg), sy * (y - leg)
                parts.append((cx - leg / 2, cx + leg / 2, cy - leg / 2, cy + leg / 2, 0, h - 0.05, "shade"))
        return parts
    if category == "chair":
        leg, seat = 0.04, 0.45
        parts = [(-x, x, -y, y, seat - 0.05, seat, "main"), (-x, x, -y, -y + 0.06, seat, h, "main")]
        for sx in (-1, 1):
            for sy in (-1, 1):
                cx, cy = sx * (x - leg), sy * (y - leg)
                parts.append((cx - leg / 2, cx + leg / 2, cy - leg / 2, cy + leg / 2, 0, seat - 0.05, "shade"))
        return parts
    if category == "sofa":
        return [(-x, x, -y, y, 0.0, 0.42, "main"), (-x, x, -y, -y + 0.22, 0.42, h, "main"),
                (-x, -x + 0.18, -y, y, 0.42, 0.62, "shade"), (x - 0.18, x, -y, y, 0.42, 0.62, "shade")]
    if category == "storage":
        return [(-x, x, -y, y, 0, h, "main"), (-0.01, 0.01, y, y + 0.01, 0.05, h - 0.05, DARK),
                (-0.08, -0.05, y, y + 0.03, h * 0.6, h * 0.8, GREY), (0.05, 0.08, y, y + 0.03, h * 0.6, h * 0.8, GREY)]
    if category == "television":
        base = 0.0 if not on_floor else 0.45
        parts = [(-x, x, -0.04, 0.04, base, base + h, "main"),
                 (-x + 0.07, x - 0.07, 0.04, 0.05, base + 0.07, base + h - 0.07, DARK)]
        if on_floor:
            parts += [(-0.05, 0.05, -0.04, 0.04, 0.03, base, "shade"), (-0.3, 0.3, -0.15, 0.15, 0, 0.03, "shade")]
        else:
            parts += [(-0.2, 0.2, -0.1, 0.1, 0, 0.02, "shade")]
        return parts
    if category == "toilet":
        return [(-x + 0.02, x - 0.02, -y, -y + 0.2, 0, h, "main"), (-x + 0.04, x - 0.04, -y + 0.2, y, 0, 0.4, "main"),
                (-x + 0.03, x - 0.03, -y + 0.2, y, 0.4, 0.43, WHITE)]
    if category == "sink":
        return [(-x + 0.05, x - 0.05, -y, y - 0.05, 0, h - 0.15, "main"), (-x, x, -y, y, h - 0.15, h, WHITE),
                (-0.02, 0.02, -y + 0.03, -y + 0.13, h, h + 0.12, GREY)]
    if category == "refrigerator":
        return [(-x, x, -y, y, 0, h, "main"), (-x + 0.02, x - 0.02, y, y + 0.01, h * 0.64, h * 0.66, DARK),
                (x - 0.1, x - 0.06, y, y + 0.04, h * 0.7, h * 0.85, GREY), (x - 0.1, x - 0.06, y, y + 0.04, h * 0.4, h * 0.58, GREY)]
    if category == "bathtub":
        t = 0.08
        return [(-x, x, -y, y, 0, 0.1, "main"), (-x + t, x - t, -y + t, y - t, 0.1, 0.12, WHITE),
                (-x, x, -y, -y + t, 0.1, h, "main"), (-x, x, y - t, y, 0.1, h, "main"),
                (-x, -x + t, -y + t, y - t, 0.1, h, "main"), (x - t, x, -y + t, y - t, 0.1, h, "main")]
    raise ValueError(f"unknown category {category}")


def _rot2(yaw: float) -> np.ndarray:
    c, s = math.cos(yaw), math.sin(yaw)
    return np.array([[c, -s], [s, c]])


def _local_bounds(parts) -> list[float]:
    """[x0, x1, y0, y1, z0, z1] of the union of the parts (plain Python: called in placement loops)."""
    return [min(q[0] for q in parts), max(q[1] for q in parts), min(q[2] for q in parts),
            max(q[3] for q in parts), min(q[4] for q in parts), max(q[5] for q in parts)]


def _footprint(obj: dict) -> np.ndarray:
    """World axis-aligned footprint [x0, y0, x1, y1] (yaw is a multiple of 90 degrees)."""
    b = _local_bounds(obj["_parts"])
    c, s = math.cos(obj["yaw"]), math.sin(obj["yaw"])
    ox, oy = obj["_origin"][0], obj["_origin"][1]
    xs = [ox + c * x - s * y for x in (b[0], b[1]) for y in (b[2], b[3])]
    ys = [oy + s * x + c * y for x in (b[0], b[1]) for y in (b[2], b[3])]
    return [min(xs), min(ys), max(xs), max(ys)]


def _finish_object(obj: dict) -> None:
    """Fill center / size from the parts, so the layout box is exactly the rendered extent."""
    b = _local_bounds(obj["_parts"])
    local_c = np.array([(b[0] + b[1]) / 2, (b[2] + b[3]) / 2])
    c2 = _rot2(obj["yaw"]) @ local_c + obj["_origin"][:2]
    cz = obj["_origin"][2] + (b[4] + b[5]) / 2
    obj["center"] = [round(float(c2[0]), 4), round(float(c2[1]), 4), round(float(cz), 4)]
    obj["size"] = [round(float(b[1] - b[0]), 4), round(float(b[5] - b[4]), 4), round(float(b[3] - b[2]), 4)]


# --------------------------------------------------------------------------------------------
# Room, openings, furniture
# --------------------------------------------------------------------------------------------


def _rects_overlap(a, b, gap: float = 0.0) -> bool:
    return not (a[2] + gap <= b[0] or b[2] + gap <= a[0] or a[3] + gap <= b[1] or b[3] + gap <= a[1])


def inside_room(rect, room: dict, margin: float = 0.0) -> bool:
    """True when the rectangle [x0, y0, x1, y1] lies inside the floor polygon, ``margin`` from walls."""
    W, D = room["bbox"][3], room["bbox"][4]
    if rect[0] < margin or rect[1] < margin or rect[2] > W - margin or rect[3] > D - margin:
        return False
    notch = room.get("notch")
    return notch is None or not _rects_overlap(rect, notch, gap=margin - 1e-9)


def sample_room(rng: np.random.Generator, l_shape_prob: float = 0.3) -> dict:
    """A rectangular or L-shaped room: polygon (counter-clockwise), bbox, walls, height."""
    short = rng.uniform(2.6, 6.4)
    long = min(rng.uniform(short, short + 3.0), 8.4)
    W, D = (short, long) if rng.random() < 0.5 else (long, short)
    W, D = round(W, 3), round(D, 3)
    H = round(rng.uniform(2.4, 3.0), 3)
    notch = None
    if rng.random() < l_shape_prob and min(W, D) > 3.5:
        cw, cd = round(W * rng.uniform(0.3, 0.45), 3), round(D * rng.uniform(0.3, 0.45), 3)
        corner = rng.integers(4)  # which corner is cut out
        x0, x1 = (0.0, cw) if corner in (0, 3) else (W - cw, W)
        y0, y1 = (0.0, cd) if corner in (0, 1) else (D - cd, D)
        notch = [x0, y0, x1, y1]
    if notch is None:
        poly = [(0, 0), (W, 0), (W, D), (0, D)]
    else:
        x0, y0, x1, y1 = notch
        # Walk the box corners counter-clockwise, replacing the cut corner by the notch's 3 points.
        box = [(0, 0), (W, 0), (W, D), (0, D)]
        cut = [i for i, (px, py) in enumerate(box) if x0 <= px <= x1 and y0 <= py <= y1][0]
        inner = (x1 if x0 == 0 else x0, y1 if y0 == 0 else y0)
        prev_pt, next_pt = box[cut - 1], box[(cut + 1) % 4]
        # The point on the edge from prev to the corner, and on the edge from the corner to next.
        a = (inner[0], box[cut][1]) if prev_pt[1] == box[cut][1] else (box[cut][0], inner[1])
        b = (inner[0], box[cut][1]) if next_pt[1] == box[cut][1] else (box[cut][0], inner[1])
        poly = box[:cut] + [a, inner, b] + box[cut + 1:]
    poly = [(round(float(px), 4), round(float(py), 4)) for px, py in poly]
    walls = []
    for i in range(len(poly)):
        p0, p1 = np.array(poly[i], float), np.array(poly[(i + 1) % len(poly)], float)
        walls.append({"id": f"wall_{i}", "start": list(p0), "end": list(p1), "height": H,
                      "length": round(float(np.linalg.norm(p1 - p0)), 4)})
    return {"polygon": [list(p) for p in poly], "notch": notch, "height": H,
            "bbox": [0.0, 0.0, 0.0, W, D, H], "width": round(min(W, D), 4), "length": round(max(W, D), 4),
            "walls": walls}


def _wall_frame(wall: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(start [2], unit direction [2], inward normal [2]) of a wall of a counter-clockwise polygon."""
    p0, p1 = np.array(wall["start"]), np.array(wall["end"])
    u = (p1 - p0) / np.linalg.norm(p1 - p0)
    return p0, u, np.array([-u[1], u[0]])


def sample_openings(rng: np.random.Generator, room: dict) -> tuple[list[dict], list[dict]]:
    """Doors (1-2, closed panels) and windows (1-3) on walls, not overlapping each other."""
    H = room["height"]
    used: dict[str, list[tuple[float, float]]] = defaultdict(list)

    def place(kind: str, width: float, height: float, bottom: float):
        walls = [w for w in room["walls"] if w["length"] >= width + 0.6]
        if not walls:
            return None
        lengths = np.array([w["length"] for w in walls])
        for _ in range(30):
            wall = walls[rng.choice(len(walls), p=lengths / lengths.sum())]
            a = rng.uniform(0.3, wall["length"] - 0.3 - width)
            if all(a + width + 0.25 <= s or e + 0.25 <= a for s, e in used[wall["id"]]):
                used[wall["id"]].append((a, a + width))
                p0, u, n = _wall_frame(wall)
                c = p0 + u * (a + width / 2)
                return {"wall_id": wall["id"], "center": [round(float(c[0]), 4), round(float(c[1]), 4),
                                                         round(bottom + height / 2, 4)],
                        "width": round(width, 4), "height": round(height, 4),
                        "yaw": round(math.atan2(u[1], u[0]), 6), "offset": round(a, 4), "bottom": round(bottom, 4)}
        return None

    doors, windows = [], []
    for _ in range(1 + int(rng.random() < 0.3)):
        door = place("door", round(rng.uniform(0.8, 1.0), 3), round(rng.uniform(2.0, 2.15), 3), 0.0)
        if door:
            doors.append({"id": f"door_{len(doors)}", **door, "is_open": False})
    for _ in range(int(rng.integers(1, 4))):
        sill = round(rng.uniform(0.8, 1.0), 3)
        height = round(min(rng.uniform(0.9, 1.4), H - 0.2 - sill), 3)
        win = place("window", round(rng.uniform(0.8, 1.6), 3), height, sill)
        if win:
            windows.append({"id": f"window_{len(windows)}", **win})
    return doors, windows


def _keep_out(room: dict, doors: list[dict], windows: list[dict]) -> list[tuple[np.ndarray, float]]:
    """Floor rectangles to keep free: in front of doors (all objects), below windows (tall objects
    only, as (rect, max allowed height))."""
    zones = []
    walls = {w["id"]: w for w in room["walls"]}
    for op, depth, max_h in [(d, 1.0, 0.0) for d in doors] + [(w, 0.7, w["bottom"] - 0.02) for w in windows]:
        p0, u, n = _wall_frame(walls[op["wall_id"]])
        a0 = p0 + u * (op["offset"] - 0.15)
        a1 = p0 + u * (op["offset"] + op["width"] + 0.15) + n * depth
        zones.append((np.array([min(a0[0], a1[0]), min(a0[1], a1[1]), max(a0[0], a1[0]), max(a0[1], a1[1])]), max_h))
    return zones


def sample_objects(rng: np.random.Generator, room: dict, doors: list[dict], windows: list[dict]) -> list[dict]:
    """Furniture without overlaps: 3-6 categories, 1-3 instances each (chairs up to 4), one colour
    per category (distinct across categories). Against-wall categories back onto a wall; chairs go
    round a table when there is one; a television stands on a cabinet or table when possible."""
    cats = list(CATEGORIES)
    n_cat = int(rng.integers(3, 7))
    chosen = [cats[i] for i in rng.choice(len(cats), size=n_cat, replace=False)]
    colours = [COLOURS[i] for i in rng.choice(len(COLOURS), size=n_cat, replace=False)]
    colour_of = dict(zip(chosen, colours))
    counts = {c: int(rng.integers(1, MAX_COUNT.get(c, 3) + 1)) for c in chosen}
    zones = _keep_out(room, doors, windows)
    placed: list[dict] = []

    def free(rect, height, ignore=None) -> bool:
        if not inside_room(rect, room):
            return False
        for z, max_h in zones:
            if height > max_h and _rects_overlap(rect, z):
                return False
        return all(not _rects_overlap(rect, o["_fp"], gap=0.08) for o in placed if o is not ignore and "_fp" in o)

    def new_obj(cat, yaw, origin, w, d, h, on_floor=True):
        obj = {"id": "", "category": cat, "colour": colour_of[cat], "yaw": yaw,
               "_origin": np.asarray(origin, float), "_parts": _parts(cat, w, d, h, on_floor)}
        return obj

    def dims(cat):
        (w0, w1), (d0, d1), (h0, h1) = SIZES[cat]
        return rng.uniform(w0, w1), rng.uniform(d0, d1), rng.uniform(h0, h1)

    def try_wall(cat) -> dict | None:
        lengths = np.array([w["length"] for w in room["walls"]])
        for _ in range(40):
            w, d, h = dims(cat)
            wall = room["walls"][rng.choice(len(room["walls"]), p=lengths / lengths.sum())]
            p0, u, n = _wall_frame(wall)
            half = max(w / 2, 0.35 if cat == "television" else 0)
            if wall["length"] < 2 * half + 0.1:
                continue
            a = rng.uniform(half + 0.05, wall["length"] - half - 0.05)
            depth = 0.3 if cat == "television" else d
            origin = p0 + u * a + n * (depth / 2 + 0.01)
            yaw = math.atan2(-n[0], n[1])  # local +y (front) = inward normal
            obj = new_obj(cat, round(yaw / (math.pi / 2)) * (math.pi / 2), [origin[0], origin[1], 0.0], w, d, h)
            obj["_fp"] = _footprint(obj)
            if free(obj["_fp"], h):
                obj["against_wall"] = wall["id"]
                return obj
        return None

    def try_free(cat, near: dict | None = None) -> dict | None:
        W, D = room["bbox"][3], room["bbox"][4]
        for _ in range(40):
            w, d, h = dims(cat)
            if near is not None:  # a chair at one side of a table, facing it
                tfp = near["_fp"]
                side = int(rng.integers(4))
                cx, cy = (tfp[0] + tfp[2]) / 2, (tfp[1] + tfp[3]) / 2
                along = rng.uniform(-0.25, 0.25)
                off = d / 2 + 0.12
                pos = [(cx + along * (tfp[2] - tfp[0]), tfp[1] - off), (cx + along * (tfp[2] - tfp[0]), tfp[3] + off),
                       (tfp[0] - off, cy + along * (tfp[3] - tfp[1])), (tfp[2] + off, cy + along * (tfp[3] - tfp[1]))][side]
                front = np.array([cx, cy]) - np.array(pos)
                front = front / np.linalg.norm(front)
                yaw = math.atan2(-front[0], front[1])
                yaw = round(yaw / (math.pi / 2)) * (math.pi / 2)
            else:
                pos = (rng.uniform(0.3, W - 0.3), rng.uniform(0.3, D - 0.3))
                yaw = float(rng.integers(4)) * math.pi / 2
            obj = new_obj(cat, yaw, [pos[0], pos[1], 0.0], w, d, h)
            obj["_fp"] = _footprint(obj)
            if free(obj["_fp"], h) and inside_room(obj["_fp"], room, margin=0.25 if near is None else 0.0):
                obj["against_wall"] = None
                return obj
        return None

    def try_on_support(cat) -> dict | None:
        supports = [o for o in placed if o["category"] in ("storage", "table") and not o.get("_has_top")]
        if not supports:
            return None
        sup = supports[int(rng.integers(len(supports)))]
        b = _local_bounds(sup["_parts"])
        w, _, h = dims(cat)
        w = min(w, b[1] - b[0] - 0.1)
        if w < 0.5:
            return None
        top = sup["_origin"][2] + b[5]
        obj = new_obj(cat, sup["yaw"], [sup["_origin"][0], sup["_origin"][1], top], w, 0.08, h, on_floor=False)
        obj["on"] = sup["id"]
        obj["against_wall"] = sup.get("against_wall")
        sup["_has_top"] = True
        return obj

    order = sorted(chosen, key=PLACE_ORDER.index)
    for cat in order:
        tables = [o for o in placed if o["category"] == "table"]
        for k in range(counts[cat]):
            obj = None
            if cat == "television" and rng.random() < 0.75:
                obj = try_on_support(cat)
            if obj is None and cat == "chair" and tables and rng.random() < 0.8:
                obj = try_free(cat, near=tables[int(rng.integers(len(tables)))])
            if obj is None:
                obj = try_wall(cat) if cat in AGAINST_WALL else try_free(cat)
            if obj is None:
                continue  # no room left for it: the layout simply has fewer
            obj["id"] = f"object_{len(placed)}"
            obj.setdefault("on", None)
            placed.append(obj)
    for obj in placed:
        _finish_object(obj)
    return placed


# --------------------------------------------------------------------------------------------
# Mesh and cameras
# --------------------------------------------------------------------------------------------


def build_mesh(room: dict, doors: list[dict], windows: list[dict], objects: list[dict],
               wall_rgb: tuple[float, float, float], floor_rgb: tuple[float, float, float]) -> SceneMesh:
    """Triangle soup of the scene, walls and floor tiles in the given paint. Walls are zero-thickness
    planes on the polygon's edges with holes for doors and windows, filled by their (coplanar) panels,
    so every surface lies inside the room's bounding box."""
    mesh = SceneMesh()
    W, D, H = room["bbox"][3], room["bbox"][4], room["height"]
    # Floor and ceiling: the grid cells of the bbox cut by the notch, minus the notch.
    xs, ys = [0.0, W], [0.0, D]
    notch = room["notch"]
    if notch is not None:
        xs, ys = sorted(set(xs + [notch[0], notch[2]])), sorted(set(ys + [notch[1], notch[3]]))
    for i in range(len(xs) - 1):
        for j in range(len(ys) - 1):
            cell = [xs[i], ys[j], xs[i + 1], ys[j + 1]]
            if notch is not None and _rects_overlap(cell, notch, gap=-1e-6):
                continue
            x0, y0, x1, y1 = cell
            mesh.add_quad([[x0, y0, 0], [x1, y0, 0], [x1, y1, 0], [x0, y1, 0]], FLOOR, floor_rgb, textured=True)
            mesh.add_quad([[x0, y0, H], [x1, y0, H], [x1, y1, H], [x0, y1, H]], CEILING, CEILING_RGB)
    openings = defaultdict(list)
    for k, d in enumerate(doors):
        openings[d["wall_id"]].append((d, DOOR_BASE + k, DOOR_RGB))
    for k, w in enumerate(windows):
        openings[w["wall_id"]].append((w, WINDOW_BASE + k, WINDOW_RGB))
    for wall in room["walls"]:
        p0, u, n = _wall_frame(wall)
        L = wall["length"]

        def quad(a0, a1, z0, z1, label, rgb):
            q0, q1 = p0 + u * a0, p0 + u * a1
            mesh.add_quad([[q0[0], q0[1], z0], [q1[0], q1[1], z0], [q1[0], q1[1], z1], [q0[0], q0[1], z1]], label, rgb)

        ops = sorted(openings[wall["id"]], key=lambda o: o[0]["offset"])
        cuts = sorted({0.0, L, *[o[0]["offset"] for o in ops], *[o[0]["offset"] + o[0]["width"] for o in ops]})
        for a0, a1 in zip(cuts[:-1], cuts[1:]):
            hole = [o for o in ops if o[0]["offset"] <= a0 + 1e-9 and a1 <= o[0]["offset"] + o[0]["width"] + 1e-9]
            if not hole:
                quad(a0, a1, 0.0, H, WALL, wall_rgb)
                continue
            op, label, rgb = hole[0]
            z0, z1 = op["bottom"], op["bottom"] + op["height"]
            if z0 > 0:
                quad(a0, a1, 0.0, z0, WALL, wall_rgb)
            quad(a0, a1, z1, H, WALL, wall_rgb)
            quad(a0, a1, z0, z1, label, rgb)
        # Frames (windows) and handles (doors) stand a few cm into the room: visual cues.
        for op, label, rgb in ops:
            a, wdt, z0, z1 = op["offset"], op["width"], op["bottom"], op["bottom"] + op["height"]
            yaw = math.atan2(u[1], u[0])
            if label >= WINDOW_BASE:
                f = 0.05
                for lo, hi in [((a - f, 0, z0 - f), (a + wdt + f, 0.04, z0)), ((a - f, 0, z1), (a + wdt + f, 0.04, z1 + f)),
                               ((a - f, 0, z0), (a, 0.04, z1)), ((a + wdt, 0, z0), (a + wdt + f, 0.04, z1)),
                               ((a + wdt / 2 - 0.02, 0, z0), (a + wdt / 2 + 0.02, 0.03, z1))]:
                    mesh.add_box(lo, hi, label, FRAME_RGB, yaw=yaw, origin=(p0[0], p0[1], 0.0))
            else:
                mesh.add_box((a + wdt - 0.15, 0, 0.95), (a + wdt - 0.05, 0.06, 1.0), label, GREY, yaw=yaw,
                             origin=(p0[0], p0[1], 0.0))
    for i, obj in enumerate(objects):
        main = np.array(PALETTE[obj["colour"]])
        boxes = np.array([q[:6] for q in obj["_parts"]], dtype=float)
        rgbs = [main if k == "main" else main * 0.7 + 0.03 if k == "shade" else k for k in (q[6] for q in obj["_parts"])]
        mesh.add_boxes(boxes, i, np.array(rgbs, dtype=float), yaw=obj["yaw"], origin=obj["_origin"])
    return mesh


def sample_cameras(rng: np.random.Generator, room: dict, objects: list[dict], views: int, size: int
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """V cameras like a person scanning with a phone: standing on free floor near the walls, spread
    round the room, at eye height 1.2-1.7 m, looking across the room (yaw jitter, pitch down
    5-30 degrees, a little roll). Returns K [3, 3], R [V, 3, 3], t [V, 3], hfov (degrees)."""
    W, D = room["bbox"][3], room["bbox"][4]
    hfov = float(rng.uniform(60.0, 72.0))
    K = geo.intrinsics_from_fov(size, size, hfov)
    # Free standing spots: inside the room, away from walls and furniture.
    cand = np.stack([rng.uniform(0, W, 600), rng.uniform(0, D, 600)], axis=1)
    x, y = cand[:, 0], cand[:, 1]
    ok = (x > 0.4) & (x < W - 0.4) & (y > 0.4) & (y < D - 0.4)
    blocked = [room["notch"]] if room["notch"] is not None else []
    blocked += [o["_fp"] for o in objects if "_fp" in o]
    for b, m in zip(blocked, [0.4] * (room["notch"] is not None) + [0.6] * len(blocked)):
        ok &= ~((x > b[0] - m) & (x < b[2] + m) & (y > b[1] - m) & (y < b[3] + m))
    cand = cand[ok] if ok.any() else np.array([[W / 2, D / 2]])
    poly = np.array(room["polygon"])
    centre = poly.mean(axis=0) if room["notch"] is None else np.array(_notch_free_centre(room))
    rel = cand - centre
    ang = np.arctan2(rel[:, 1], rel[:, 0])
    dist = np.linalg.norm(rel, axis=1)
    base = rng.uniform(0, 2 * np.pi)
    Rs, ts = [], []
    for v in range(views):
        want = base + 2 * np.pi * v / views
        dang = np.abs((ang - want + np.pi) % (2 * np.pi) - np.pi)
        score = dist / (dist.max() + 1e-9) - 1.5 * dang / np.pi + rng.uniform(0, 0.15, len(cand))
        eye_xy = cand[int(np.argmax(score))]
        eye = np.array([eye_xy[0], eye_xy[1], rng.uniform(1.2, 1.7)])
        target_xy = centre + rng.uniform(-0.6, 0.6, 2)
        if np.linalg.norm(target_xy - eye_xy) < 0.5:
            target_xy = eye_xy + 1.0 * (centre - eye_xy + 1e-3) / (np.linalg.norm(centre - eye_xy) + 1e-3)
        flat = np.linalg.norm(target_xy - eye_xy)
        pitch = math.radians(rng.uniform(5.0, 30.0))
        target = np.array([target_xy[0], target_xy[1], eye[2] - flat * math.tan(pitch)])
        yaw_jitter = math.radians(rng.uniform(-15, 15))
        d = target[:2] - eye[:2]
        target[:2] = eye[:2] + _rot2(yaw_jitter) @ d
        R, _ = geo.look_at(eye, target)
        roll = math.radians(rng.uniform(-3, 3))
        c, s = math.cos(roll), math.sin(roll)
        R = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) @ R
        Rs.append(R)
        ts.append(-R @ eye)
    return K, np.array(Rs), np.array(ts), hfov


def _notch_free_centre(room: dict) -> list[float]:
    """Centre of the larger of the L-shaped room's two arms (the bbox centre may be in the notch)."""
    W, D = room["bbox"][3], room["bbox"][4]
    x0, y0, x1, y1 = room["notch"]
    arms = [[x1, 0, W, D] if x0 == 0 else [0, 0, x0, D], [0, y1, W, D] if y0 == 0 else [0, 0, W, y0]]
    arm = max(arms, key=lambda r: (r[2] - r[0]) * (r[3] - r[1]))
    return [(arm[0] + arm[2]) / 2, (arm[1] + arm[3]) / 2]


# --------------------------------------------------------------------------------------------
# One scene
# --------------------------------------------------------------------------------------------


def scene_rng(seed: int, index: int) -> np.random.Generator:
    """The scene's own generator: independent of worker count and of the other scenes."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(index)]))


def _r(x, nd: int):
    return np.round(np.asarray(x, dtype=np.float64), nd).tolist()


def make_scene(seed: int, index: int, views: int = 4, image_size: int = 112, render_scale: int = 2,
               l_shape_prob: float = 0.3, nthreads: int = 0) -> dict:
    """Sample and render one scene (nothing written).

    Returns a dict with ``layout`` (JSON-ready ground truth, objects carry ``pixels`` per view and
    ``visible_views``), ``cameras`` (R, t, K, depth_hist per view), ``rgb`` uint8 [V, S, S, 3],
    ``depth`` float32 [V, S, S] metres, ``labels`` int32 [V, S, S].
    """
    rng = scene_rng(seed, index)
    room = sample_room(rng, l_shape_prob)
    doors, windows = sample_openings(rng, room)
    objects = sample_objects(rng, room, doors, windows)
    K, Rs, ts, hfov = sample_cameras(rng, room, objects, views, image_size)
    light = (rng.uniform(-0.6, 0.6), rng.uniform(-0.6, 0.6), 1.0)
    wall_colour = list(WALL_PALETTE)[int(rng.integers(len(WALL_PALETTE)))]
    floor_colour = list(FLOOR_PALETTE)[int(rng.integers(len(FLOOR_PALETTE)))]
    mesh = build_mesh(room, doors, windows, objects, WALL_PALETTE[wall_colour], FLOOR_PALETTE[floor_colour])
    rgb, depth, labels = render(mesh, K, Rs, ts, image_size, render_scale, light_dir=light, nthreads=nthreads)

    S = image_size
    min_px = max(8, int(0.003 * S * S))  # "well visible": enough pixels to recognise shape and colour
    counts = [np.bincount(labels[v].ravel()[labels[v].ravel() >= 0], minlength=WINDOW_BASE + 10)
              for v in range(views)]
    for i, obj in enumerate(objects):
        obj["pixels"] = [int(counts[v][i]) if i < len(counts[v]) else 0 for v in range(views)]
        vis = []
        for v in range(views):
            (u, vv), z = [a[0] for a in geo.project(np.array([obj["center"]]), Rs[v], ts[v], K)]
            if obj["pixels"][v] >= min_px and z > 0.1 and 0 <= u < S and 0 <= vv < S:
                vis.append(v)
        obj["visible_views"] = vis
    for k, op in enumerate(doors):
        op["pixels"] = [int(counts[v][DOOR_BASE + k]) for v in range(views)]
    for k, op in enumerate(windows):
        op["pixels"] = [int(counts[v][WINDOW_BASE + k]) for v in range(views)]
    # An object no view sees changes no pixel: drop it, so the layout is what the views show.
    supports = {o["on"] for o in objects if o["on"]}
    objects = [o for o in objects if sum(o["pixels"]) > 0 or o["id"] in supports]

    cameras = []
    for v in range(views):
        cameras.append({"view": v, "R": _r(Rs[v], 6), "t": _r(ts[v], 6), "K": _r(K, 4),
                        "width": S, "height": S, "hfov_deg": round(hfov, 4),
                        "depth_hist": _r(geo.depth_histogram(depth[v]), 6)})
    for o in objects:
        o["yaw"] = round(float(o["yaw"]), 6)
    clean = [{k: v for k, v in o.items() if not k.startswith("_")} for o in objects]
    layout = {"scene_id": f"scene{index:05d}", "seed": int(seed), "index": int(index),
              "room": {**{k: room[k] for k in ("polygon", "notch", "height", "bbox", "width", "length")},
                       "wall_colour": wall_colour, "floor_colour": floor_colour},
              "walls": room["walls"], "doors": doors, "windows": windows, "objects": clean,
              "light_dir": _r(light, 4), "min_visible_pixels": min_px}
    return {"layout": layout, "cameras": cameras, "rgb": rgb, "depth": depth, "labels": labels,
            "K": K, "R": Rs, "t": ts}


def room_from_layout(layout: dict):
    """The scene's RoomPlan-style :class:`vqkit.roomplan.Room` (walls, doors, windows, objects)."""
    from vqkit.roomplan import Opening, Room, RoomObject, Wall

    H = layout["room"]["height"]
    walls = []
    for w in layout["walls"]:
        p0, p1 = np.array(w["start"]), np.array(w["end"])
        c, d = (p0 + p1) / 2, p1 - p0
        walls.append(Wall(w["id"], (c[0], c[1], H / 2), w["length"], H, math.atan2(d[1], d[0])))
    ops = {k: [Opening(o["id"], k, o["wall_id"], o["center"], o["width"], o["height"], o["yaw"],
                       o.get("is_open") if k == "door" else None) for o in layout[k + "s"]]
           for k in ("door", "window")}
    objects = [RoomObject(o["id"], o["category"], o["center"], o["size"], o["yaw"]) for o in layout["objects"]]
    return Room(walls=walls, doors=ops["door"], windows=ops["window"], objects=objects)


# --------------------------------------------------------------------------------------------
# The dataset
# --------------------------------------------------------------------------------------------

SPLITS = ("train", "val", "test")
ROOMPLAN_QUESTION = "Describe the room layout."


def _write_scene(job: tuple) -> dict:
    """Worker: sample, render and write one scene; return what the records need (no pixels)."""
    out_dir, seed, index, views, size, render_scale, l_shape_prob, qps, image_format, nthreads = job
    from vqkit.data.synth_questions import scene_questions

    t0 = time.perf_counter()
    sc = make_scene(seed, index, views, size, render_scale, l_shape_prob, nthreads)
    t_render = time.perf_counter() - t0
    layout, cameras = sc["layout"], sc["cameras"]
    sid = layout["scene_id"]
    folder = Path(out_dir) / "scenes" / sid
    folder.mkdir(parents=True, exist_ok=True)
    nbytes = 0
    for v, cam in enumerate(cameras):
        rgb_name, depth_name = f"rgb_{v:02d}.{image_format}", f"depth_{v:02d}.png"
        img = Image.fromarray(sc["rgb"][v])
        if image_format == "jpg":
            img.save(folder / rgb_name, quality=95)
        else:
            img.save(folder / rgb_name, compress_level=6)
        Image.fromarray(geo.metres_to_depth_png(sc["depth"][v])).save(folder / depth_name)
        cam["image"] = f"scenes/{sid}/{rgb_name}"
        cam["depth"] = f"scenes/{sid}/{depth_name}"
    (folder / "layout.json").write_text(json.dumps(layout, indent=1))
    (folder / "cameras.json").write_text(json.dumps(cameras, indent=1))
    nbytes = sum(f.stat().st_size for f in folder.iterdir())
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(index), 1]))
    questions = scene_questions(layout, cameras, CATEGORIES, COLOURS, rng, qps)
    return {"scene_id": sid, "layout": layout, "cameras": cameras, "questions": questions,
            "bytes": nbytes, "render_s": t_render, "total_s": time.perf_counter() - t0}


def split_scenes(n: int, seed: int, fractions=(0.8, 0.1, 0.1)) -> dict[str, list[int]]:
    """Scene indices per split: a seeded permutation cut by ``fractions`` (val/test get at least one
    scene each once there are 3 scenes). No scene is in two splits."""
    perm = np.random.default_rng(np.random.SeedSequence([int(seed), 7919])).permutation(n)
    n_val = int(round(fractions[1] * n)) if n >= 3 else 0
    n_test = int(round(fractions[2] * n)) if n >= 3 else 0
    if n >= 3:
        n_val, n_test = max(n_val, 1 if fractions[1] > 0 else 0), max(n_test, 1 if fractions[2] > 0 else 0)
    val, test = perm[:n_val], perm[n_val:n_val + n_test]
    train = perm[n_val + n_test:]
    return {"train": sorted(train.tolist()), "val": sorted(val.tolist()), "test": sorted(test.tolist())}


def _geom_token(cameras: list[dict]) -> dict:
    return {"R": [c["R"] for c in cameras], "t": [c["t"] for c in cameras], "K": [c["K"] for c in cameras],
            "depth_hist": [c["depth_hist"] for c in cameras]}


def question_records(scene: dict) -> list[dict]:
    """Stage 1 records (DESIGN.md section 2) of one scene."""
    cams = scene["cameras"]
    base = {"scene_id": scene["scene_id"], "task": "synth", "images": [c["image"] for c in cams],
            "depths": [c["depth"] for c in cams], "geom_token": _geom_token(cams)}
    out = []
    for k, q in enumerate(scene["questions"]):
        rec = {"id": f"{scene['scene_id']}_q{k:02d}", **base, "qtype": q["qtype"], "question": q["question"],
               "answer": q["answer"], "answers": [q["answer"]]}
        if "situation" in q:
            rec["situation"] = q["situation"]
        out.append(rec)
    return out


def roomplan_record(scene: dict) -> dict:
    """Stage 2 record of one scene: the CapturedRoom dict of its layout."""
    cams = scene["cameras"]
    return {"id": f"{scene['scene_id']}_roomplan", "scene_id": scene["scene_id"], "task": "roomplan",
            "images": [c["image"] for c in cams], "depths": [c["depth"] for c in cams],
            "geom_token": _geom_token(cams), "question": ROOMPLAN_QUESTION,
            "roomplan": room_from_layout(scene["layout"]).to_capturedroom()}


def blind_baselines(train: list[dict], heldout: list[dict]) -> dict:
    """EM of text-only guessers on ``heldout``, per qtype: the train split's majority answer of the
    qtype, and the stronger per-question-text majority (falling back to the qtype's)."""
    by_qtype: dict[str, Counter] = defaultdict(Counter)
    by_text: dict[tuple, Counter] = defaultdict(Counter)
    for r in train:
        by_qtype[r["qtype"]][r["answer"]] += 1
        by_text[(r.get("situation"), r["question"])][r["answer"]] += 1
    hits_q, hits_t, n = Counter(), Counter(), Counter()
    for r in heldout:
        qt = r["qtype"]
        maj = by_qtype[qt].most_common(1)[0][0] if by_qtype[qt] else ""
        text = by_text.get((r.get("situation"), r["question"]))
        maj_t = text.most_common(1)[0][0] if text else maj
        n[qt] += 1
        hits_q[qt] += r["answer"] == maj
        hits_t[qt] += r["answer"] == maj_t
    out = {qt: {"n": n[qt], "majority_answer": by_qtype[qt].most_common(1)[0][0] if by_qtype[qt] else None,
                "majority_em": round(100.0 * hits_q[qt] / n[qt], 2),
                "question_majority_em": round(100.0 * hits_t[qt] / n[qt], 2)} for qt in sorted(n)}
    total = sum(n.values())
    if total:
        out["all"] = {"n": total, "majority_em": round(100.0 * sum(hits_q.values()) / total, 2),
                      "question_majority_em": round(100.0 * sum(hits_t.values()) / total, 2)}
    return out


def _write_jsonl(path: Path, records: list[dict]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w") as f:
        for r in records:
            f.write(json.dumps(r, separators=(",", ":")) + "\n")
    os.replace(tmp, path)


def generate(out_dir: str | os.PathLike, scenes: int = 100, views: int = 4, image_size: int = 112,
             seed: int = 0, workers: int | None = None, render_scale: int = 2,
             questions_per_scene: int = 8, l_shape_prob: float = 0.3, image_format: str = "png",
             split_fractions=(0.8, 0.1, 0.1), tokenizer: bool = True, vocab_size: int = 1024,
             progress: bool = True) -> dict:
    """Generate the synthetic benchmark into ``out_dir`` and return its stats (also in stats.json).

    Deterministic for ``seed``: the JSONL files are byte-identical for the same arguments whatever
    ``workers`` is. ``workers`` defaults to min(2, cpu count); each scene is an independent job.
    """
    if scenes < 1 or views < 1:
        raise ConfigError(f"vqkit synth: --scenes and --views must be >= 1 (got {scenes}, {views})")
    if image_size < 16 or render_scale < 1:
        raise ConfigError(f"vqkit synth: --image-size must be >= 16 and --render-scale >= 1 "
                          f"(got {image_size}, {render_scale})")
    if image_format not in ("png", "jpg"):
        raise ConfigError(f"vqkit synth: --image-format must be png or jpg, got {image_format!r}")
    if len(split_fractions) != 3 or abs(sum(split_fractions) - 1) > 1e-6 or min(split_fractions) < 0:
        raise ConfigError(f"vqkit synth: split fractions must be 3 non-negative numbers summing to 1, "
                          f"got {split_fractions}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    workers = min(2, os.cpu_count() or 1) if workers is None else max(1, int(workers))
    workers = min(workers, scenes)
    nthreads = 1 if workers > 1 else 0
    jobs = [(str(out), seed, i, views, image_size, render_scale, l_shape_prob, questions_per_scene,
             image_format, nthreads) for i in range(scenes)]
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    results: list[dict] = []
    bar = tqdm(total=scenes, desc="vqkit synth", unit="scene", disable=not progress)
    if workers == 1:
        for job in jobs:
            results.append(_write_scene(job))
            bar.update()
    else:
        # fork: workers inherit the imported modules (open3d takes seconds to import).
        from vqkit._open3d import import_open3d

        import_open3d()
        ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
        with ctx.Pool(workers) as pool:
            for res in pool.imap(_write_scene, jobs, chunksize=4):
                results.append(res)
                bar.update()
    bar.close()
    t_scenes = time.perf_counter() - t0

    splits = split_scenes(scenes, seed, split_fractions)
    records = {s: [r for i in splits[s] for r in question_records(results[i])] for s in SPLITS}
    roomplan = {s: [roomplan_record(results[i]) for i in splits[s]] for s in SPLITS}
    for s in SPLITS:
        _write_jsonl(out / f"{s}.jsonl", records[s])
        _write_jsonl(out / f"roomplan_{s}.jsonl", roomplan[s])

    t_tok = 0.0
    if tokenizer:
        from vqkit.data.tokenizer import train_tokenizer
        from vqkit.roomplan import Room

        t1 = time.perf_counter()
        texts = []
        for r in records["train"]:
            texts += [r["question"], r["answer"]] + ([r["situation"]] if "situation" in r else [])
        texts += [ROOMPLAN_QUESTION] + [Room.from_capturedroom(r["roomplan"]).to_text() for r in roomplan["train"]]
        texts += COLOURS + list(WALL_PALETTE) + list(FLOOR_PALETTE)  # every answer word
        texts += [w for pair in CATEGORIES.values() for w in pair]
        texts += [str(i) for i in range(10)] + ["yes", "no", "left", "right"]
        train_tokenizer(texts, out / "tokenizer", vocab_size=vocab_size)
        t_tok = time.perf_counter() - t1

    heldout = records["val"] + records["test"] or records["train"]
    counts = {s: dict(sorted(Counter(r["qtype"] for r in records[s]).items())) for s in SPLITS}
    answers = defaultdict(Counter)
    for s in SPLITS:
        for r in records[s]:
            answers[r["qtype"]][r["answer"]] += 1
    stats = {
        "generator_version": GENERATOR_VERSION,
        "args": {"scenes": scenes, "views": views, "image_size": image_size, "seed": seed, "workers": workers,
                 "render_scale": render_scale, "questions_per_scene": questions_per_scene,
                 "l_shape_prob": l_shape_prob, "image_format": image_format},
        "scenes": {s: len(splits[s]) for s in SPLITS},
        "questions": {s: len(records[s]) for s in SPLITS},
        "questions_per_qtype": counts,
        "answers_per_qtype": {qt: dict(c.most_common()) for qt, c in sorted(answers.items())},
        "blind": blind_baselines(records["train"], heldout),
        "blind_evaluated_on": "val+test" if records["val"] + records["test"] else "train",
        "objects_per_scene": round(float(np.mean([len(r["layout"]["objects"]) for r in results])), 3),
        "bytes_per_scene": int(np.mean([r["bytes"] for r in results])),
        "timings": {"scenes_s": round(t_scenes, 3), "scenes_per_s": round(scenes / t_scenes, 3),
                    "views_per_s": round(scenes * views / t_scenes, 2),
                    "render_s_per_scene": round(float(np.mean([r["render_s"] for r in results])), 5),
                    "tokenizer_s": round(t_tok, 3), "total_s": round(time.perf_counter() - t0, 3)},
    }
    (out / "stats.json").write_text(json.dumps(stats, indent=1))
    return stats


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="vqkit synth", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--scenes", type=int, default=100, help="number of rooms")
    p.add_argument("--views", type=int, default=4, help="views per room")
    p.add_argument("--image-size", type=int, default=112, help="stored square image size in pixels")
    p.add_argument("--seed", type=int, default=0, help="seed: same seed, same bytes")
    p.add_argument("--render-scale", type=int, default=2,
                   help="render RGB at image-size x this and box-filter down (antialiasing); 1 = off")
    p.add_argument("--questions-per-scene", type=int, default=8, help="questions per room (qtypes cycle)")
    p.add_argument("--workers", type=int, default=None, help="processes; default min(2, cpu count)")
    p.add_argument("--l-shape-prob", type=float, default=0.3, help="probability of an L-shaped room")
    p.add_argument("--image-format", choices=["png", "jpg"], default="png", help="RGB file format")
    p.add_argument("--splits", default="0.8,0.1,0.1", help="train,val,test fractions of the scenes")
    p.add_argument("--vocab-size", type=int, default=1024, help="size of the small tokenizer")
    p.add_argument("--no-tokenizer", action="store_true", help="skip training DIR/tokenizer")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    a = p.parse_args(argv)
    try:
        fractions = tuple(float(x) for x in a.splits.split(","))
    except ValueError:
        raise ConfigError(f"vqkit synth: --splits must be three numbers like 0.8,0.1,0.1, got {a.splits!r}")
    stats = generate(a.out, scenes=a.scenes, views=a.views, image_size=a.image_size, seed=a.seed,
                     workers=a.workers, render_scale=a.render_scale, questions_per_scene=a.questions_per_scene,
                     l_shape_prob=a.l_shape_prob, image_format=a.image_format, split_fractions=fractions,
                     tokenizer=not a.no_tokenizer, vocab_size=a.vocab_size, progress=not a.quiet)
    t = stats["timings"]
    print(f"vqkit synth: {a.scenes} scenes, {sum(stats['questions'].values())} questions in {a.out} "
          f"({t['scenes_per_s']} scenes/s); blind majority EM {stats['blind'].get('all', {}).get('majority_em')}")
    return 0


if __name__ == "__main__":
    from vqkit.cli import run_main

    sys.exit(run_main(main, None, "vqkit synth"))
