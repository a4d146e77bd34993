"""The elements of a RoomPlan-style layout: walls, doors / windows / openings, and objects.

Geometry is in **vqkit's world frame**: metres, **z-up**, floor at z = 0 (the synthetic rooms' frame,
ScanNet-like); angles in radians.

- :class:`Wall`: a thin vertical rectangle. ``center`` (x, y, z), ``width`` (length along the
  wall), ``height``, ``yaw`` = angle of the wall's width direction about +z, measured from +x.
- :class:`Opening`: a door, window or opening attached to its parent wall (``wall_id``; ``None`` for
  one without a wall). Same geometry as a wall; ``is_open`` only for doors (``None`` = unknown).
- :class:`RoomObject`: one of RoomPlan's 16 :data:`CATEGORIES`, an upright box. ``size`` =
  (width, height, depth) exactly as RoomPlan's ``dimensions [w, h, d]``: width along the object's
  local x = (cos yaw, sin yaw, 0), height vertical, depth along the horizontal direction
  perpendicular to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

#: RoomPlan's object categories (``CapturedRoom.Object.Category``), in Apple's order.
CATEGORIES: tuple[str, ...] = (
    "storage",
    "refrigerator",
    "stove",
    "bed",
    "sink",
    "washerDryer",
    "toilet",
    "bathtub",
    "oven",
    "dishwasher",
    "table",
    "sofa",
    "chair",
    "fireplace",
    "television",
    "stairs",
)

#: Kinds of wall-attached surfaces, in the order they are written after their wall.
OPENING_KINDS: tuple[str, ...] = ("door", "window", "opening")

#: RoomPlan's confidence levels (``CapturedRoom.Confidence``).
CONFIDENCES: tuple[str, ...] = ("low", "medium", "high")

Vec3 = tuple[float, float, float]


def _vec3(v: Any, what: str) -> Vec3:
    try:
        a = np.asarray(v, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):  # not numbers at all: the same message, naming the element
        a = np.zeros(0)
    if a.shape != (3,) or not np.all(np.isfinite(a)):
        raise ValueError(f"{what}: expected 3 finite numbers, got {v!r}")
    return (float(a[0]), float(a[1]), float(a[2]))


@dataclass
class Wall:
    """A thin vertical rectangle: centre (x, y, z) in metres, ``width`` along ``yaw``, ``height``."""

    id: str
    center: Vec3
    width: float
    height: float
    yaw: float

    def __post_init__(self) -> None:
        self.id = str(self.id)
        self.center = _vec3(self.center, f"wall {self.id} center")
        self.width, self.height, self.yaw = float(self.width), float(self.height), float(self.yaw)


@dataclass
class Opening:
    """A door, window or opening: a thin vertical rectangle attached to wall ``wall_id`` (or None).

    ``kind`` is ``"door"``, ``"window"`` or ``"opening"``; ``is_open`` is a bool for doors whose
    state is known, else None.
    """

    id: str
    kind: str
    wall_id: str | None
    center: Vec3
    width: float
    height: float
    yaw: float
    is_open: bool | None = None

    def __post_init__(self) -> None:
        if self.kind not in OPENING_KINDS:
            raise ValueError(f"opening {self.id}: kind must be one of {OPENING_KINDS}, got {self.kind!r}")
        self.id = str(self.id)
        self.wall_id = None if self.wall_id is None else str(self.wall_id)
        self.center = _vec3(self.center, f"{self.kind} {self.id} center")
        self.width, self.height, self.yaw = float(self.width), float(self.height), float(self.yaw)
        self.is_open = None if self.is_open is None else bool(self.is_open)


@dataclass
class RoomObject:
    """An upright box of a RoomPlan category: ``size`` = (width, height, depth) in metres.

    Width runs along (cos yaw, sin yaw, 0), height along +z, depth along the other horizontal axis.
    """

    id: str
    category: str
    center: Vec3
    size: Vec3
    yaw: float

    def __post_init__(self) -> None:
        self.id = str(self.id)
        self.category = str(self.category)
        self.center = _vec3(self.center, f"object {self.id} center")
        self.size = _vec3(self.size, f"object {self.id} size")
        self.yaw = float(self.yaw)
