"""What the synthetic rooms are made of: the named colour palettes (objects, wall paint, floor tiles),
the RoomPlan object categories with their question words, sizes and placement rules, and each
category's shape as a few boxes.

Objects: ``center`` is the centre of the object's 3D box, ``size = [w, h, d]`` (width along the
object's local x, height, depth along its local y: RoomPlan's dimensions order), ``yaw`` the angle of
the local x axis about +z; the object's front faces its local +y, i.e. (-sin yaw, cos yaw).
"""

from __future__ import annotations

import math

import numpy as np

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
# Classes of the per-pixel semantic maps `vqkit synth` writes (semantic_XX.png: the index into this list,
# UNLABELLED where a ray hit nothing): the room's surfaces, then the object categories in order.
SEMANTIC_CLASSES: list[str] = ["floor", "wall", "ceiling", "door", "window", *CATEGORIES]
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


def object_parts(category: str, w: float, d: float, h: float, on_floor: bool = True) -> list[tuple]:
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
                (x - 0.1, x - 0.06, y, y + 0.04, h * 0.7, h * 0.85, GREY),
                (x - 0.1, x - 0.06, y, y + 0.04, h * 0.4, h * 0.58, GREY)]
    if category == "bathtub":
        t = 0.08
        return [(-x, x, -y, y, 0, 0.1, "main"), (-x + t, x - t, -y + t, y - t, 0.1, 0.12, WHITE),
                (-x, x, -y, -y + t, 0.1, h, "main"), (-x, x, y - t, y, 0.1, h, "main"),
                (-x, -x + t, -y + t, y - t, 0.1, h, "main"), (x - t, x, -y + t, y - t, 0.1, h, "main")]
    raise ValueError(f"unknown category {category}")


def rot2(yaw: float) -> np.ndarray:
    c, s = math.cos(yaw), math.sin(yaw)
    return np.array([[c, -s], [s, c]])


def local_bounds(parts) -> list[float]:
    """[x0, x1, y0, y1, z0, z1] of the union of the parts (plain Python: called in placement loops)."""
    return [min(q[0] for q in parts), max(q[1] for q in parts), min(q[2] for q in parts),
            max(q[3] for q in parts), min(q[4] for q in parts), max(q[5] for q in parts)]


def footprint(obj: dict) -> np.ndarray:
    """World axis-aligned footprint [x0, y0, x1, y1] (yaw is a multiple of 90 degrees)."""
    b = local_bounds(obj["_parts"])
    c, s = math.cos(obj["yaw"]), math.sin(obj["yaw"])
    ox, oy = obj["_origin"][0], obj["_origin"][1]
    xs = [ox + c * x - s * y for x in (b[0], b[1]) for y in (b[2], b[3])]
    ys = [oy + s * x + c * y for x in (b[0], b[1]) for y in (b[2], b[3])]
    return [min(xs), min(ys), max(xs), max(ys)]


def finish_object(obj: dict) -> None:
    """Fill center / size from the parts, so the layout box is exactly the rendered extent."""
    b = local_bounds(obj["_parts"])
    local_c = np.array([(b[0] + b[1]) / 2, (b[2] + b[3]) / 2])
    c2 = rot2(obj["yaw"]) @ local_c + obj["_origin"][:2]
    cz = obj["_origin"][2] + (b[4] + b[5]) / 2
    obj["center"] = [round(float(c2[0]), 4), round(float(c2[1]), 4), round(float(cz), 4)]
    obj["size"] = [round(float(b[1] - b[0]), 4), round(float(b[5] - b[4]), 4), round(float(b[3] - b[2]), 4)]
