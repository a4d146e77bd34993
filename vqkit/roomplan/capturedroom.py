"""Apple's ``CapturedRoom`` JSON <-> a :class:`~vqkit.roomplan.room.Room`.

RoomPlan is y-up, so ``x_rp = x, y_rp = z, z_rp = -y``. A transform is 16 floats, column-major,
translation at 12..14; its rotation is ``R_y(yaw)`` about RoomPlan's up axis, which maps the local x
axis to (cos yaw, 0, -sin yaw) in RoomPlan = (cos yaw, sin yaw, 0) in vqkit, so the same ``yaw`` number
describes the element in both frames. Modelled and kept losslessly: identifiers, parents, categories,
``isOpen``, dimensions, transforms of upright elements. Not modelled (dropped on import, written as
defaults on export): confidence (written ``high``), floors, sections, polygon corners, curves, object
attributes, the thickness ``dimensions[2]`` of surfaces (written 0).

:func:`to_capturedroom` reads any room-like object (``walls``, ``doors``, ``windows``, ``openings``,
``objects``); :func:`read_capturedroom` fills one. ``Room.to_capturedroom`` / ``Room.from_capturedroom``
are the usual entry points.
"""

from __future__ import annotations

import math
import uuid
import warnings
from typing import Any

import numpy as np

from vqkit.errors import DataError
from vqkit.roomplan.elements import CATEGORIES, Opening, RoomObject, Vec3, Wall

# Deterministic UUIDs for ids that are not UUIDs already (e.g. "wall0" from the text form).
_UUID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/vqkit/roomplan")

# vqkit (z-up) -> RoomPlan (y-up): x_rp = x, y_rp = z, z_rp = -y.
_TO_RP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])


def _yaw_transform(center: Vec3, yaw: float) -> list[float]:
    """16 floats, column-major: rotation R_y(yaw) about RoomPlan's up axis, translation = centre (y-up)."""
    c, s = math.cos(yaw), math.sin(yaw)
    M = np.eye(4)
    M[:3, :3] = [[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]]
    M[:3, 3] = _TO_RP @ np.asarray(center)
    return [float(v) for v in M.T.reshape(-1)]  # column-major: M.T row-major = M column-major


def _decode_transform(values: Any, where: str, problems: list[str]) -> tuple[Vec3, float]:
    """(centre in vqkit z-up, yaw) from a column-major 16-float transform; non-upright -> projected."""
    a = np.asarray(values, dtype=np.float64).reshape(-1) if isinstance(values, (list, tuple)) else None
    if a is None or a.shape != (16,) or not np.all(np.isfinite(a)):
        raise DataError(f"{where}.transform: expected 16 finite numbers (column-major 4x4), got {values!r:.80}")
    M = a.reshape(4, 4).T
    R, t = M[:3, :3], M[:3, 3]
    center = tuple(float(v) for v in _TO_RP.T @ t)
    x_axis = R[:, 0]
    if np.hypot(x_axis[0], x_axis[2]) < 1e-6:  # local x points up: use local z to find the heading
        z_axis = R[:, 2]
        yaw = math.atan2(-z_axis[2], z_axis[0]) - math.pi / 2
    else:
        yaw = math.atan2(-x_axis[2], x_axis[0])
    col_norms = np.linalg.norm(R, axis=0)
    if abs(R[1, 1] - col_norms[1]) > 1e-3 * max(col_norms[1], 1e-9):
        problems.append(f"{where}.transform: not upright (local y is not RoomPlan's up); projected to a yaw")
    return center, yaw  # type: ignore[return-value]


def _enum_name(value: Any) -> tuple[str | None, dict]:
    """A Swift enum encoded as ``{"case": {...payload}}`` (or a bare string) -> (case, payload)."""
    if isinstance(value, str):
        return value, {}
    if isinstance(value, dict) and len(value) == 1:
        name, payload = next(iter(value.items()))
        if isinstance(payload, dict) and set(payload) == {"_0"} and isinstance(payload["_0"], dict):
            payload = payload["_0"]  # Swift's encoding of an unlabelled associated value
        return str(name), payload if isinstance(payload, dict) else {}
    return None, {}


def _dimensions(values: Any, where: str) -> Vec3:
    a = np.asarray(values, dtype=np.float64).reshape(-1) if isinstance(values, (list, tuple)) else None
    if a is None or a.shape != (3,) or not np.all(np.isfinite(a)) or np.any(a < 0):
        raise DataError(f"{where}.dimensions: expected 3 finite non-negative numbers, got {values!r:.80}")
    return (float(a[0]), float(a[1]), float(a[2]))


def _uuid_for(element_id: str, kind: str, index: int) -> str:
    """``element_id`` when it is already a UUID string, else a deterministic UUID derived from it."""
    if element_id:
        try:
            uuid.UUID(element_id)
            return element_id
        except ValueError:
            pass
    name = f"{kind}:{element_id}" if element_id else f"{kind}:#{index}"
    return str(uuid.uuid5(_UUID_NAMESPACE, name)).upper()


def to_capturedroom(room) -> dict:
    """Apple's CapturedRoom JSON dict for ``room`` (y-up metres; see the module docstring).

    Identifiers that are UUID strings are kept; others become deterministic UUIDs derived from them,
    so the same room always gives the same JSON.
    """
    wall_uuid: dict[str, str] = {}
    walls = []
    for i, w in enumerate(room.walls):
        uid = _uuid_for(w.id, "wall", i)
        wall_uuid.setdefault(w.id, uid)
        walls.append(_surface(uid, None, {"wall": {}}, w.width, w.height, w.center, w.yaw))
    out: dict[str, Any] = {"version": 2}
    out["walls"] = walls
    for key, items in (("doors", room.doors), ("windows", room.windows), ("openings", room.openings)):
        surfaces = []
        for i, o in enumerate(items):
            payload = {"isOpen": bool(o.is_open)} if o.kind == "door" and o.is_open is not None else {}
            parent = None
            if o.wall_id is not None:
                parent = wall_uuid.get(o.wall_id) or _uuid_for(o.wall_id, "wall", -1)
            uid = _uuid_for(o.id, o.kind, i)
            surfaces.append(_surface(uid, parent, {o.kind: payload}, o.width, o.height, o.center, o.yaw))
        out[key] = surfaces
    out["objects"] = [
        {
            "identifier": _uuid_for(ob.id, "object", i),
            "parentIdentifier": None,
            "category": {ob.category: {}},
            "confidence": {"high": {}},
            "dimensions": [float(v) for v in ob.size],
            "transform": _yaw_transform(ob.center, ob.yaw),
            "story": 0,
            "attributes": {},
        }
        for i, ob in enumerate(room.objects)
    ]
    out["floors"] = []
    out["sections"] = []
    out["story"] = 0
    return out


def _surface(uid: str, parent: str | None, category: dict, width: float, height: float, center: Vec3,
             yaw: float) -> dict:
    return {
        "identifier": uid,
        "parentIdentifier": parent,
        "category": category,
        "confidence": {"high": {}},
        "dimensions": [float(width), float(height), 0.0],
        "transform": _yaw_transform(center, yaw),
        "story": 0,
        "completedEdges": [],
        "polygonCorners": [],
        "curve": None,
    }


def read_capturedroom(data: dict, room, *, where: str = "roomplan", problems: list[str] | None = None) -> None:
    """Fill the empty ``room`` (z-up) from an Apple CapturedRoom JSON dict (y-up); tolerant of missing
    optional keys.

    Missing lists count as empty; extra keys, confidence, floors and sections are ignored. Elements of
    an unknown category are skipped, and transforms that are not upright are projected to a yaw; both
    are noted in ``problems`` (or emitted as one warning when no list is given). Unusable geometry
    (a transform that is not 16 finite numbers, bad dimensions) raises :class:`DataError` naming the
    field, e.g. ``roomplan.walls[2].transform``.
    """
    notes: list[str] = [] if problems is None else problems
    n_before = len(notes)
    if not isinstance(data, dict):
        raise DataError(f"{where}: expected a CapturedRoom JSON object, got {type(data).__name__}")
    seen_walls: set[str] = set()
    for i, s in enumerate(_as_list(data, "walls", where)):
        w_where = f"{where}.walls[{i}]"
        s = _as_dict(s, w_where)
        cat, _ = _enum_name(s.get("category", {"wall": {}}))
        if cat not in (None, "wall"):
            notes.append(f"{w_where}.category: {cat!r} in walls; read as a wall")
        dims = _dimensions(s.get("dimensions"), w_where)
        center, yaw = _decode_transform(s.get("transform"), w_where, notes)
        wid = str(s.get("identifier") or f"wall{i}")
        seen_walls.add(wid)
        room.walls.append(Wall(wid, center, dims[0], dims[1], yaw))
    for key, kind in (("doors", "door"), ("windows", "window"), ("openings", "opening")):
        target = getattr(room, key)
        for i, s in enumerate(_as_list(data, key, where)):
            s_where = f"{where}.{key}[{i}]"
            s = _as_dict(s, s_where)
            cat, payload = _enum_name(s.get("category", {kind: {}}))
            if cat not in (None, kind):
                notes.append(f"{s_where}.category: {cat!r} in {key}; read as a {kind}")
            dims = _dimensions(s.get("dimensions"), s_where)
            center, yaw = _decode_transform(s.get("transform"), s_where, notes)
            parent = s.get("parentIdentifier")
            parent = None if parent is None else str(parent)
            if parent is not None and parent not in seen_walls:
                notes.append(f"{s_where}.parentIdentifier: no wall {parent}")
            is_open = payload.get("isOpen") if kind == "door" else None
            oid = str(s.get("identifier") or f"{kind}{i}")
            open_state = None if is_open is None else bool(is_open)
            target.append(Opening(oid, kind, parent, center, dims[0], dims[1], yaw, open_state))
    for i, s in enumerate(_as_list(data, "objects", where)):
        o_where = f"{where}.objects[{i}]"
        s = _as_dict(s, o_where)
        cat, _ = _enum_name(s.get("category"))
        if cat not in CATEGORIES:
            notes.append(f"{o_where}.category: unknown object category {cat!r}; skipped")
            continue
        dims = _dimensions(s.get("dimensions"), o_where)
        center, yaw = _decode_transform(s.get("transform"), o_where, notes)
        room.objects.append(RoomObject(str(s.get("identifier") or f"object{i}"), cat, center, dims, yaw))
    if problems is None and len(notes) > n_before:
        warnings.warn(f"{where}: " + "; ".join(notes[n_before:]), stacklevel=3)


def _as_list(data: dict, key: str, where: str) -> list:
    value = data.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise DataError(f"{where}.{key}: expected a list, got {type(value).__name__}")
    return value


def _as_dict(value: Any, where: str) -> dict:
    if not isinstance(value, dict):
        raise DataError(f"{where}: expected an object, got {type(value).__name__}")
    return value
