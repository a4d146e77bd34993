"""Sampling a synthetic room: its floor plan (rectangular or L-shaped), doors and windows in the walls,
furniture without overlaps, and cameras at eye height looking in like a person scanning with a phone.

World frame: metres, z-up, floor at z = 0, the room's bounding box is [0, W] x [0, D] x [0, H].
Cameras: ``R, t`` world-to-camera in OpenCV axes (``x_cam = R @ x_world + t``), K of the stored image.
Every function draws from the ``rng`` it is given, in a fixed order, so a scene is a function of its seed.
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

from vqkit import cameras as geo
from vqkit.synth.catalogue import (
    AGAINST_WALL,
    CATEGORIES,
    COLOURS,
    MAX_COUNT,
    PLACE_ORDER,
    SIZES,
    finish_object,
    footprint,
    local_bounds,
    object_parts,
    rot2,
)


def rects_overlap(a, b, gap: float = 0.0) -> bool:
    return not (a[2] + gap <= b[0] or b[2] + gap <= a[0] or a[3] + gap <= b[1] or b[3] + gap <= a[1])


def inside_room(rect, room: dict, margin: float = 0.0) -> bool:
    """True when the rectangle [x0, y0, x1, y1] lies inside the floor polygon, ``margin`` from walls."""
    W, D = room["bbox"][3], room["bbox"][4]
    if rect[0] < margin or rect[1] < margin or rect[2] > W - margin or rect[3] > D - margin:
        return False
    notch = room.get("notch")
    return notch is None or not rects_overlap(rect, notch, gap=margin - 1e-9)


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


def wall_frame(wall: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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
                p0, u, n = wall_frame(wall)
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
        p0, u, n = wall_frame(walls[op["wall_id"]])
        a0 = p0 + u * (op["offset"] - 0.15)
        a1 = p0 + u * (op["offset"] + op["width"] + 0.15) + n * depth
        zones.append((np.array([min(a0[0], a1[0]), min(a0[1], a1[1]), max(a0[0], a1[0]), max(a0[1], a1[1])]), max_h))
    return zones


class _Furnisher:
    """Places furniture in one room, drawing from ``rng`` in a fixed order (the scene's determinism
    depends on it): the categories, their colours and counts, then each instance by its rule."""

    def __init__(self, rng: np.random.Generator, room: dict, doors: list[dict], windows: list[dict]):
        self.rng, self.room = rng, room
        cats = list(CATEGORIES)
        n_cat = int(rng.integers(3, 7))
        self.chosen = [cats[i] for i in rng.choice(len(cats), size=n_cat, replace=False)]
        colours = [COLOURS[i] for i in rng.choice(len(COLOURS), size=n_cat, replace=False)]
        self.colour_of = dict(zip(self.chosen, colours, strict=True))
        self.counts = {c: int(rng.integers(1, MAX_COUNT.get(c, 3) + 1)) for c in self.chosen}
        self.zones = _keep_out(room, doors, windows)
        self.placed: list[dict] = []

    def free(self, rect, height, ignore=None) -> bool:
        """Inside the room, clear of the keep-out zones (for its height) and of placed objects."""
        if not inside_room(rect, self.room):
            return False
        for z, max_h in self.zones:
            if height > max_h and rects_overlap(rect, z):
                return False
        return all(not rects_overlap(rect, o["_fp"], gap=0.08) for o in self.placed
                   if o is not ignore and "_fp" in o)

    def new_obj(self, cat, yaw, origin, w, d, h, on_floor=True) -> dict:
        return {"id": "", "category": cat, "colour": self.colour_of[cat], "yaw": yaw,
                "_origin": np.asarray(origin, float), "_parts": object_parts(cat, w, d, h, on_floor)}

    def dims(self, cat):
        (w0, w1), (d0, d1), (h0, h1) = SIZES[cat]
        return self.rng.uniform(w0, w1), self.rng.uniform(d0, d1), self.rng.uniform(h0, h1)

    def try_wall(self, cat) -> dict | None:
        """Backed onto a wall (chosen by length), facing into the room."""
        rng, room = self.rng, self.room
        lengths = np.array([w["length"] for w in room["walls"]])
        for _ in range(40):
            w, d, h = self.dims(cat)
            wall = room["walls"][rng.choice(len(room["walls"]), p=lengths / lengths.sum())]
            p0, u, n = wall_frame(wall)
            half = max(w / 2, 0.35 if cat == "television" else 0)
            if wall["length"] < 2 * half + 0.1:
                continue
            a = rng.uniform(half + 0.05, wall["length"] - half - 0.05)
            depth = 0.3 if cat == "television" else d
            origin = p0 + u * a + n * (depth / 2 + 0.01)
            yaw = math.atan2(-n[0], n[1])  # local +y (front) = inward normal
            obj = self.new_obj(cat, round(yaw / (math.pi / 2)) * (math.pi / 2), [origin[0], origin[1], 0.0], w, d, h)
            obj["_fp"] = footprint(obj)
            if self.free(obj["_fp"], h):
                obj["against_wall"] = wall["id"]
                return obj
        return None

    def try_free(self, cat, near: dict | None = None) -> dict | None:
        """Anywhere on the floor, axis-aligned; with ``near``, a chair at one side of that table, facing it."""
        rng, room = self.rng, self.room
        W, D = room["bbox"][3], room["bbox"][4]
        for _ in range(40):
            w, d, h = self.dims(cat)
            if near is not None:
                tfp = near["_fp"]
                side = int(rng.integers(4))
                cx, cy = (tfp[0] + tfp[2]) / 2, (tfp[1] + tfp[3]) / 2
                along = rng.uniform(-0.25, 0.25)
                off = d / 2 + 0.12
                pos = [(cx + along * (tfp[2] - tfp[0]), tfp[1] - off),
                       (cx + along * (tfp[2] - tfp[0]), tfp[3] + off),
                       (tfp[0] - off, cy + along * (tfp[3] - tfp[1])),
                       (tfp[2] + off, cy + along * (tfp[3] - tfp[1]))][side]
                front = np.array([cx, cy]) - np.array(pos)
                front = front / np.linalg.norm(front)
                yaw = math.atan2(-front[0], front[1])
                yaw = round(yaw / (math.pi / 2)) * (math.pi / 2)
            else:
                pos = (rng.uniform(0.3, W - 0.3), rng.uniform(0.3, D - 0.3))
                yaw = float(rng.integers(4)) * math.pi / 2
            obj = self.new_obj(cat, yaw, [pos[0], pos[1], 0.0], w, d, h)
            obj["_fp"] = footprint(obj)
            if self.free(obj["_fp"], h) and inside_room(obj["_fp"], room, margin=0.25 if near is None else 0.0):
                obj["against_wall"] = None
                return obj
        return None

    def try_on_support(self, cat) -> dict | None:
        """On top of a cabinet or table that has nothing on it yet (televisions)."""
        supports = [o for o in self.placed if o["category"] in ("storage", "table") and not o.get("_has_top")]
        if not supports:
            return None
        sup = supports[int(self.rng.integers(len(supports)))]
        b = local_bounds(sup["_parts"])
        w, _, h = self.dims(cat)
        w = min(w, b[1] - b[0] - 0.1)
        if w < 0.5:
            return None
        top = sup["_origin"][2] + b[5]
        obj = self.new_obj(cat, sup["yaw"], [sup["_origin"][0], sup["_origin"][1], top], w, 0.08, h, on_floor=False)
        obj["on"] = sup["id"]
        obj["against_wall"] = sup.get("against_wall")
        sup["_has_top"] = True
        return obj

    def place_one(self, cat, tables: list[dict]) -> dict | None:
        rng = self.rng
        obj = None
        if cat == "television" and rng.random() < 0.75:
            obj = self.try_on_support(cat)
        if obj is None and cat == "chair" and tables and rng.random() < 0.8:
            obj = self.try_free(cat, near=tables[int(rng.integers(len(tables)))])
        if obj is None:
            obj = self.try_wall(cat) if cat in AGAINST_WALL else self.try_free(cat)
        return obj

    def furnish(self) -> list[dict]:
        for cat in sorted(self.chosen, key=PLACE_ORDER.index):
            tables = [o for o in self.placed if o["category"] == "table"]
            for _ in range(self.counts[cat]):
                obj = self.place_one(cat, tables)
                if obj is None:
                    continue  # no room left for it: the layout simply has fewer
                obj["id"] = f"object_{len(self.placed)}"
                obj.setdefault("on", None)
                self.placed.append(obj)
        for obj in self.placed:
            finish_object(obj)
        return self.placed


def sample_objects(rng: np.random.Generator, room: dict, doors: list[dict], windows: list[dict]) -> list[dict]:
    """Furniture without overlaps: 3-6 categories, 1-3 instances each (chairs up to 4), one colour
    per category (distinct across categories). Against-wall categories back onto a wall; chairs go
    round a table when there is one; a television stands on a cabinet or table when possible."""
    return _Furnisher(rng, room, doors, windows).furnish()


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
    footprints = [o["_fp"] for o in objects if "_fp" in o]
    blocked = ([room["notch"]] if room["notch"] is not None else []) + footprints
    margins = [0.4] * (room["notch"] is not None) + [0.6] * len(footprints)
    for b, m in zip(blocked, margins, strict=True):
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
        target[:2] = eye[:2] + rot2(yaw_jitter) @ d
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
