"""Stage 2 layouts: RoomPlan-style rooms, Apple's ``CapturedRoom`` JSON, a compact text form, metrics.

A :class:`Room` holds walls, doors, windows, openings and objects in **vqkit's world frame**:
metres, **z-up**, floor at z = 0 (the synthetic rooms' frame, ScanNet-like).

Element geometry (all angles in radians in the dataclasses, degrees only in the text form):

- :class:`Wall`: a thin vertical rectangle. ``center`` (x, y, z), ``width`` (length along the
  wall), ``height``, ``yaw`` = angle of the wall's width direction about +z, measured from +x.
- :class:`Opening`: a door, window or opening attached to its parent wall (``wall_id``; ``None`` for
  one without a wall). Same geometry as a wall; ``is_open`` only for doors (``None`` = unknown).
- :class:`RoomObject`: one of RoomPlan's 16 :data:`CATEGORIES`, an upright box. ``size`` =
  (width, height, depth) exactly as RoomPlan's ``dimensions [w, h, d]``: width along the object's
  local x = (cos yaw, sin yaw, 0), height vertical, depth along the horizontal direction
  perpendicular to it.

CapturedRoom conversion (:meth:`Room.to_capturedroom` / :meth:`Room.from_capturedroom`, DESIGN.md
section 10): RoomPlan is y-up, so ``x_rp = x, y_rp = z, z_rp = -y``. A transform is 16 floats,
column-major, translation at 12..14; its rotation is ``R_y(yaw)`` about RoomPlan's up axis, which maps
the local x axis to (cos yaw, 0, -sin yaw) in RoomPlan = (cos yaw, sin yaw, 0) in vqkit, so the same
``yaw`` number describes the element in both frames. Modelled and kept losslessly: identifiers,
parents, categories, ``isOpen``, dimensions, transforms of upright elements. Not modelled (dropped on
import, written as defaults on export): confidence (written ``high``), floors, sections, polygon
corners, curves, object attributes, the thickness ``dimensions[2]`` of surfaces (written 0).

Text form (:meth:`Room.to_text` / :meth:`Room.from_text`), one element per line, integers only::

    wall 0 x=-200 y=0 w=300 h=260 yaw=90
    door wall=0 s=-50 w=90 h=210 open=1
    window wall=0 s=80 z=90 w=120 h=110
    table x=35 y=-20 w=160 h=75 d=90 yaw=30

- Lengths in centimetres (rounded); ``z`` is the element's **bottom** height, written only when it
  is not 0 (most elements stand on the floor, so this keeps lines short); centre z = z + h/2.
- Length: 4 walls, 2 doors/windows and 8 objects take ~270 tokens of a 1024-word byte-level BPE
  trained on such texts, and ~400 tokens of Qwen3's tokenizer (it splits numbers into digits).
- ``yaw`` in integer degrees in [0, 180): walls and boxes look the same turned by 180 degrees, so
  this halves the range without changing the geometry (it drops which way a sofa faces, and the
  sign of a wall's direction).
- Walls carry an explicit index (referenced by ``wall=``) and are sorted by the angle of their
  centre around the mean of all wall centres, counter-clockwise from +x. Each wall's doors, windows
  and openings follow it, sorted by kind then ``s``: ``s`` is the signed offset of the opening's centre
  along its wall from the wall's centre (in the wall's width direction); an opening's yaw is its
  wall's yaw and its centre lies on the wall's line (it is projected there). Openings without a wall
  are written with absolute ``x= y= ... yaw=``. Objects come last as ``<category> x= y= [z=] w= h=
  d= yaw=``, sorted by category then position.
- Quantisation: positions and sizes to 1 cm (centre z to 1 cm since both z and h are rounded),
  yaws to 1 degree; an opening moves at most ``|s| * sin(0.5 deg)`` more by the wall's yaw rounding.
  ``Room.from_text(room.to_text()).to_text() == room.to_text()`` exactly.

:func:`score_layouts` scores predicted against gold rooms (Hungarian matching, F1 at IoU 0.25/0.5).
A model that loops repeats an element line: :func:`first_repeated_line` finds that (generation
stops there, see ``VQModel.generate``) and :func:`trim_repeated_lines` cuts the repeat off.
"""

from __future__ import annotations

import math
import re
import uuid
import warnings
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np

from vqkit.errors import DataError

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

# Deterministic UUIDs for ids that are not UUIDs already (e.g. "wall0" from the text form).
_UUID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/vqkit/roomplan")

Vec3 = tuple[float, float, float]


def _vec3(v: Any, what: str) -> Vec3:
    a = np.asarray(v, dtype=np.float64).reshape(-1)
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


@dataclass
class Room:
    """A RoomPlan-style layout in vqkit's world frame (metres, z-up, floor at z = 0)."""

    walls: list[Wall] = field(default_factory=list)
    doors: list[Opening] = field(default_factory=list)
    windows: list[Opening] = field(default_factory=list)
    openings: list[Opening] = field(default_factory=list)
    objects: list[RoomObject] = field(default_factory=list)

    def surfaces(self) -> list[Opening]:
        """Doors, windows and openings together."""
        return [*self.doors, *self.windows, *self.openings]

    def is_empty(self) -> bool:
        return not (self.walls or self.doors or self.windows or self.openings or self.objects)

    def to_capturedroom(self) -> dict:
        """Apple's CapturedRoom JSON dict (y-up). See :func:`to_capturedroom`."""
        return to_capturedroom(self)

    @classmethod
    def from_capturedroom(cls, data: dict, *, where: str = "roomplan", problems: list[str] | None = None) -> "Room":
        """Room from a CapturedRoom JSON dict. See :func:`from_capturedroom`."""
        return from_capturedroom(data, where=where, problems=problems)

    def to_text(self) -> str:
        """The compact canonical text form (module docstring). See :func:`room_to_text`."""
        return room_to_text(self)

    @classmethod
    def from_text(cls, text: str) -> tuple["Room", list[str]]:
        """Parse the text form tolerantly: ``(room, problems)``; never raises. See :func:`room_from_text`."""
        return room_from_text(text)

    def quantized(self) -> "Room":
        """This room as its text form stores it: ``Room.from_text(self.to_text())[0]``."""
        return room_from_text(self.to_text())[0]


# ----------------------------------------------------------------------------------------------
# CapturedRoom JSON
# ----------------------------------------------------------------------------------------------

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


def to_capturedroom(room: Room) -> dict:
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


def _surface(uid: str, parent: str | None, category: dict, width: float, height: float, center: Vec3, yaw: float) -> dict:
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


def from_capturedroom(data: dict, *, where: str = "roomplan", problems: list[str] | None = None) -> Room:
    """Room (z-up) from an Apple CapturedRoom JSON dict (y-up); tolerant of missing optional keys.

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
    room = Room()
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
            target.append(Opening(oid, kind, parent, center, dims[0], dims[1], yaw, None if is_open is None else bool(is_open)))
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
        warnings.warn(f"{where}: " + "; ".join(notes[n_before:]), stacklevel=2)
    return room


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


# ----------------------------------------------------------------------------------------------
# Text form
# ----------------------------------------------------------------------------------------------


def _cm(v: float) -> int:
    return int(round(float(v) * 100.0))


def _deg180(yaw: float) -> int:
    """Yaw in radians -> integer degrees in [0, 180) (boxes and walls are symmetric under 180 deg)."""
    return int(round(math.degrees(yaw))) % 180


def _direction(yaw_deg: int) -> np.ndarray:
    a = math.radians(yaw_deg)
    return np.array([math.cos(a), math.sin(a)])


def room_to_text(room: Room) -> str:
    """The canonical text form of ``room`` (format in the module docstring); ``""`` for an empty room.

    Deterministic: every sort key is computed from the quantised integers that are written, so
    re-writing a parsed text gives the same text.
    """
    # Quantise walls first: openings are written relative to the *quantised* wall.
    qwalls = []
    for w in room.walls:
        h = _cm(w.height)
        qwalls.append((w.id, _cm(w.center[0]), _cm(w.center[1]), _cm(w.center[2] - w.height / 2), _cm(w.width), h, _deg180(w.yaw)))
    if qwalls:
        mx = sum(q[1] for q in qwalls) / len(qwalls)
        my = sum(q[2] for q in qwalls) / len(qwalls)

        def wall_key(q: tuple) -> tuple:
            angle = math.degrees(math.atan2(q[2] - my, q[1] - mx)) % 360.0
            return (round(angle, 6), *q[1:])

        qwalls.sort(key=wall_key)
    index_of: dict[str, int] = {}
    for i, q in enumerate(qwalls):
        index_of.setdefault(q[0], i)

    attached: dict[int, list[tuple]] = {i: [] for i in range(len(qwalls))}
    orphans: list[tuple] = []
    for o in room.surfaces():
        z, w, h = _cm(o.center[2] - o.height / 2), _cm(o.width), _cm(o.height)
        open_field = () if o.kind != "door" or o.is_open is None else (int(bool(o.is_open)),)
        i = index_of.get(o.wall_id) if o.wall_id is not None else None
        if i is None:
            orphans.append((OPENING_KINDS.index(o.kind), _cm(o.center[0]), _cm(o.center[1]), z, w, h, _deg180(o.yaw), open_field))
            continue
        q = qwalls[i]
        offset = np.asarray(o.center[:2]) * 100.0 - np.array([q[1], q[2]], dtype=np.float64)
        s = int(round(float(offset @ _direction(q[6]))))
        attached[i].append((OPENING_KINDS.index(o.kind), s, z, w, h, open_field))

    lines: list[str] = []
    for i, q in enumerate(qwalls):
        lines.append(f"wall {i} x={q[1]} y={q[2]}{_z(q[3])} w={q[4]} h={q[5]} yaw={q[6]}")
        for k, s, z, w, h, open_field in sorted(attached[i]):
            line = f"{OPENING_KINDS[k]} wall={i} s={s}{_z(z)} w={w} h={h}"
            lines.append(line + (f" open={open_field[0]}" if open_field else ""))
    for k, x, y, z, w, h, yaw, open_field in sorted(orphans):
        line = f"{OPENING_KINDS[k]} x={x} y={y}{_z(z)} w={w} h={h} yaw={yaw}"
        lines.append(line + (f" open={open_field[0]}" if open_field else ""))
    qobjects = sorted(
        (ob.category, _cm(ob.center[0]), _cm(ob.center[1]), _cm(ob.center[2] - ob.size[1] / 2),
         _cm(ob.size[0]), _cm(ob.size[1]), _cm(ob.size[2]), _deg180(ob.yaw))
        for ob in room.objects
    )
    for c, x, y, z, w, h, d, yaw in qobjects:
        lines.append(f"{c} x={x} y={y}{_z(z)} w={w} h={h} d={d} yaw={yaw}")
    return "\n".join(lines)


def _z(z_cm: int) -> str:
    # Most elements stand on the floor: leaving out "z=0" saves ~3 tokens a line.
    return f" z={z_cm}" if z_cm else ""


# Fields each line kind needs (besides its head words); "z" (default 0) and a door's "open" are optional.
_WALL_FIELDS = ("x", "y", "w", "h", "yaw")
_ATTACHED_FIELDS = ("wall", "s", "w", "h")
_ORPHAN_FIELDS = ("x", "y", "w", "h", "yaw")
_OBJECT_FIELDS = ("x", "y", "w", "h", "d", "yaw")
_NUMBER = re.compile(r"^[-+]?(\d+(\.\d*)?|\.\d+)$")


def room_from_text(text: str) -> tuple[Room, list[str]]:
    """Parse the text form, tolerantly: ``(room, problems)``. Never raises.

    Reads whatever lines are well formed and skips the rest, with one problem per skipped or
    suspicious line naming it (``"line 7: ..."``): truncated lines (missing fields; the last line
    is flagged as probably truncated), unknown element or category, openings on a wall index that no
    wall line defines, duplicate wall indices (the first wins) and exact duplicate lines, bad numbers,
    unknown fields (ignored). Lines may come in any order (walls are read first). Lengths are
    centimetres; non-integers are accepted. Ids of the parsed room are ``wall<i>`` (text index),
    ``door<k>``, ``window<k>``, ``opening<k>``, ``object<k>``.
    """
    problems: list[str] = []
    if not isinstance(text, str):
        return Room(), [f"not text: {type(text).__name__}"]
    raw_lines = text.split("\n")
    while raw_lines and not raw_lines[-1].strip():
        raw_lines.pop()
    last = len(raw_lines)
    parsed: list[tuple[int, str, list[str], dict[str, float]]] = []  # (line no, head, head args, fields)
    seen_lines: dict[str, int] = {}
    for n, raw in enumerate(raw_lines, start=1):
        line = " ".join(raw.split())
        if not line:
            continue
        if line in seen_lines:
            problems.append(f"line {n}: duplicate of line {seen_lines[line]}; skipped")
            continue
        seen_lines[line] = n
        head: list[str] = []
        fields: dict[str, float] = {}
        bad = False
        for tok in line.split(" "):
            if "=" not in tok:
                if fields:  # a bare word after the fields
                    problems.append(f"line {n}: unexpected word {tok!r}")
                    bad = True
                    break
                head.append(tok)
                continue
            key, _, value = tok.partition("=")
            if not _NUMBER.match(value) or not math.isfinite(float(value)):
                problems.append(f"line {n}: {key}={value!r} is not a number" + (" (truncated?)" if n == last else ""))
                bad = True
                break
            if key in fields:
                problems.append(f"line {n}: field {key} given twice; the first is used")
                continue
            fields[key] = float(value)
        if not bad:
            parsed.append((n, head[0] if head else "", head[1:], fields))

    def check(n: int, what: str, fields: dict[str, float], required: Sequence[str], optional: Sequence[str] = ()) -> bool:
        missing = [k for k in required if k not in fields]
        unknown = [k for k in fields if k not in required and k not in optional and k != "z"]
        if unknown:
            problems.append(f"line {n}: unknown field(s) {', '.join(unknown)} for {what}; ignored")
        if missing:
            hint = " (truncated?)" if n == last else ""
            problems.append(f"line {n}: {what} misses {', '.join(missing)}{hint}; skipped")
            return False
        negative = [k for k in ("w", "h", "d") if fields.get(k, 0.0) < 0]
        if negative:
            problems.append(f"line {n}: {what} has negative {', '.join(negative)}; skipped")
            return False
        return True

    for _, _, _, f in parsed:
        f.setdefault("z", 0.0)
    room = Room()
    walls_by_index: dict[int, tuple[Wall, int]] = {}
    for n, kind, args, f in parsed:
        if kind != "wall":
            continue
        if len(args) != 1 or not re.fullmatch(r"-?\d+", args[0]):
            problems.append(f"line {n}: wall needs one integer index, got {' '.join(args) or 'none'}; skipped")
            continue
        if not check(n, "wall", f, _WALL_FIELDS):
            continue
        idx = int(args[0])
        if idx in walls_by_index:
            problems.append(f"line {n}: duplicate wall {idx} (first on line {walls_by_index[idx][1]}); skipped")
            continue
        wall = Wall(f"wall{idx}", (f["x"] / 100, f["y"] / 100, (f["z"] + f["h"] / 2) / 100), f["w"] / 100, f["h"] / 100, math.radians(f["yaw"]))
        walls_by_index[idx] = (wall, n)
        room.walls.append(wall)

    counters = {k: 0 for k in (*OPENING_KINDS, "object")}
    for n, kind, args, f in parsed:
        if kind == "wall":
            continue
        if kind in OPENING_KINDS:
            if args:
                problems.append(f"line {n}: unexpected word(s) {' '.join(args)!r} after {kind}; ignored")
            optional = ("open",) if kind == "door" else ()
            is_open = None
            if "open" in f and kind == "door":
                if f["open"] in (0.0, 1.0):
                    is_open = f["open"] == 1.0
                else:
                    problems.append(f"line {n}: open={f['open']:g} is not 0 or 1; read as unknown")
            if "wall" in f:
                if not check(n, kind, f, _ATTACHED_FIELDS, optional):
                    continue
                widx = int(f["wall"])
                if widx != f["wall"] or widx not in walls_by_index:
                    problems.append(f"line {n}: {kind} on missing wall {f['wall']:g}; skipped")
                    continue
                wall = walls_by_index[widx][0]
                yaw_deg = round(math.degrees(wall.yaw))
                xy = np.array(wall.center[:2]) + f["s"] / 100 * _direction(yaw_deg)
                center = (float(xy[0]), float(xy[1]), (f["z"] + f["h"] / 2) / 100)
                op = Opening(f"{kind}{counters[kind]}", kind, wall.id, center, f["w"] / 100, f["h"] / 100, wall.yaw, is_open)
            else:
                if not check(n, kind, f, _ORPHAN_FIELDS, optional):
                    continue
                center = (f["x"] / 100, f["y"] / 100, (f["z"] + f["h"] / 2) / 100)
                op = Opening(f"{kind}{counters[kind]}", kind, None, center, f["w"] / 100, f["h"] / 100, math.radians(f["yaw"]), is_open)
            counters[kind] += 1
            getattr(room, kind + "s").append(op)
            continue
        category = kind
        if kind == "object" and args:  # also accept the long form "object table x=..."
            category, args = args[0], args[1:]
        if category not in CATEGORIES:
            known = "" if category else " (empty)"
            hint = " (truncated?)" if n == last and not f else ""
            problems.append(f"line {n}: unknown element or category {category!r}{known}{hint}; skipped")
            continue
        if args:
            problems.append(f"line {n}: unexpected word(s) {' '.join(args)!r} after {category}; ignored")
        if not check(n, category, f, _OBJECT_FIELDS):
            continue
        size = (f["w"] / 100, f["h"] / 100, f["d"] / 100)
        center = (f["x"] / 100, f["y"] / 100, (f["z"] + f["h"] / 2) / 100)
        room.objects.append(RoomObject(f"object{counters['object']}", category, center, size, math.radians(f["yaw"])))
        counters["object"] += 1
    # Report in line order (walls were read in a first pass); sorted() is stable within a line.
    problems.sort(key=lambda m: int(m.split(":", 1)[0][5:]) if m.startswith("line ") else 0)
    return room, problems


def element_key(line: str) -> str:
    """What makes two text-form lines the same element: the words with whitespace normalised, and a
    wall's index left out (a model that loops may rewrite the same wall under the next index)."""
    words = line.split()
    if len(words) >= 2 and words[0] == "wall" and "=" not in words[1]:
        del words[1]
    return " ".join(words)


def first_repeated_line(text: str, *, complete_only: bool = False) -> int | None:
    """Character offset in ``text`` of the first line that repeats an earlier line's element
    (:func:`element_key`; blank lines never count), or None. ``complete_only``: ignore the part after
    the last newline (a line generation is still writing)."""
    lines = text.split("\n")
    if complete_only:
        lines = lines[:-1]
    seen: set[str] = set()
    pos = 0
    for line in lines:
        key = element_key(line)
        if key in seen:
            return pos
        if key:
            seen.add(key)
        pos += len(line) + 1
    return None


def trim_repeated_lines(text: str) -> str:
    """``text`` up to (without) its first repeated element line: what a generation that started to
    loop meant to say. Unchanged when no element repeats."""
    cut = first_repeated_line(text)
    return text if cut is None else text[:cut].rstrip()


# ----------------------------------------------------------------------------------------------
# Metrics
# ----------------------------------------------------------------------------------------------

#: IoU thresholds reported by :func:`score_layouts`.
IOU_THRESHOLDS: tuple[float, ...] = (0.25, 0.5)

#: Thickness (m) given to walls, doors and windows to make them 2D boxes in the top-down plane.
THIN_BOX_THICKNESS = 0.1


def box_corners_2d(center_xy: Sequence[float], length: float, depth: float, yaw: float) -> np.ndarray:
    """Corners [4, 2] (counter-clockwise) of a rectangle: ``length`` along (cos yaw, sin yaw), ``depth`` across."""
    c, s = math.cos(yaw), math.sin(yaw)
    u = np.array([c, s]) * (length / 2)
    v = np.array([-s, c]) * (depth / 2)
    p = np.asarray(center_xy[:2], dtype=np.float64)
    return np.stack([p - u - v, p + u - v, p + u + v, p - u + v])


def polygon_area(poly: np.ndarray) -> float:
    """Signed area of a polygon [N, 2] (shoelace; positive when counter-clockwise)."""
    if len(poly) < 3:
        return 0.0
    x, y = poly[:, 0], poly[:, 1]
    return float(0.5 * (x @ np.roll(y, -1) - y @ np.roll(x, -1)))


def clip_convex(subject: np.ndarray, clipper: np.ndarray) -> np.ndarray:
    """Intersection of convex polygon ``subject`` [N, 2] with convex CCW polygon ``clipper`` [M, 2].

    Sutherland-Hodgman: clip the subject against each edge's inner half-plane in turn. Returns [K, 2]
    (K = 0 when they do not overlap).
    """
    out = np.asarray(subject, dtype=np.float64)
    m = len(clipper)
    for i in range(m):
        if len(out) == 0:
            break
        a, b = clipper[i], clipper[(i + 1) % m]
        edge = b - a
        # >= 0 inside (left of the edge for a CCW clipper)
        side = edge[0] * (out[:, 1] - a[1]) - edge[1] * (out[:, 0] - a[0])
        pts = []
        n = len(out)
        for j in range(n):
            p, q = out[j], out[(j + 1) % n]
            sp, sq = side[j], side[(j + 1) % n]
            if sp >= 0:
                pts.append(p)
            if (sp >= 0) != (sq >= 0):
                pts.append(p + (q - p) * (sp / (sp - sq)))
        out = np.array(pts).reshape(-1, 2)
    return out


def iou_2d(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two convex CCW polygons [N, 2] and [M, 2]."""
    inter = abs(polygon_area(clip_convex(a, b)))
    union = abs(polygon_area(a)) + abs(polygon_area(b)) - inter
    return inter / union if union > 1e-12 else 0.0


def thin_box(element: Wall | Opening, thickness: float = THIN_BOX_THICKNESS) -> np.ndarray:
    """Top-down footprint [4, 2] of a wall, door or window as a ``thickness``-thick rectangle."""
    return box_corners_2d(element.center, element.width, thickness, element.yaw)


def iou_thin(a: Wall | Opening, b: Wall | Opening, thickness: float = THIN_BOX_THICKNESS) -> float:
    """2D IoU of two walls / doors / windows as thin boxes in the top-down plane (heights ignored)."""
    return iou_2d(thin_box(a, thickness), thin_box(b, thickness))


def iou_3d(a: RoomObject, b: RoomObject) -> float:
    """3D IoU of two upright boxes rotated by yaw: footprint intersection x vertical overlap."""
    fa = box_corners_2d(a.center, a.size[0], a.size[2], a.yaw)
    fb = box_corners_2d(b.center, b.size[0], b.size[2], b.yaw)
    lo = max(a.center[2] - a.size[1] / 2, b.center[2] - b.size[1] / 2)
    hi = min(a.center[2] + a.size[1] / 2, b.center[2] + b.size[1] / 2)
    if hi <= lo:
        return 0.0
    inter = abs(polygon_area(clip_convex(fa, fb))) * (hi - lo)
    union = a.size[0] * a.size[1] * a.size[2] + b.size[0] * b.size[1] * b.size[2] - inter
    return inter / union if union > 1e-12 else 0.0


def _iou_matrix(pred: Sequence, gold: Sequence, fn) -> np.ndarray:
    """[len(pred), len(gold)] pairwise IoUs (0 for objects of different categories)."""
    m = np.zeros((len(pred), len(gold)))
    for i, p in enumerate(pred):
        for j, g in enumerate(gold):
            if isinstance(p, RoomObject) and p.category != g.category:
                continue
            m[i, j] = fn(p, g)
    return m


def match_count(iou: np.ndarray, threshold: float) -> int:
    """True positives: pairs of a one-to-one Hungarian matching with IoU >= threshold.

    Pairs below the threshold get weight 0, then the matching maximises the summed IoU, so it never
    trades a valid pair for a higher-IoU invalid one.
    """
    if iou.size == 0:
        return 0
    from scipy.optimize import linear_sum_assignment

    w = np.where(iou >= threshold, iou, 0.0)
    rows, cols = linear_sum_assignment(w, maximize=True)
    return int(np.sum(w[rows, cols] > 0))


def _prf(tp: int, n_pred: int, n_gold: int) -> tuple[float, float, float]:
    # Nothing predicted and nothing to find is perfect; otherwise an empty side scores 0.
    precision = tp / n_pred if n_pred else (1.0 if n_gold == 0 else 0.0)
    recall = tp / n_gold if n_gold else (1.0 if n_pred == 0 else 0.0)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return precision, recall, f1


def score_layouts(predicted: Sequence[Room | str | None], gold: Sequence[Room],
                  thresholds: Iterable[float] = IOU_THRESHOLDS, thickness: float = THIN_BOX_THICKNESS) -> dict:
    """Layout metrics of predicted rooms against gold rooms (same order, same length).

    ``predicted`` items may be a :class:`Room`, the generated text (parsed with
    :func:`room_from_text`, keeping what could be read) or ``None`` (no output: an empty room).

    Returns a JSON-ready dict:

    - ``parse_rate``: fraction of predictions that are a Room or text that parsed with no problem
      (failed ones are still scored with what could be read, ``None`` as an empty room);
      ``n_pred_rooms``, ``n_gold_rooms``, ``n_problems`` (problems over all texts).
    - ``walls``, ``doors``, ``windows``, ``openings``, ``objects``: ``precision@t``, ``recall@t``,
      ``f1@t`` for each threshold t, plus ``n_pred`` / ``n_gold``, micro-averaged over all rooms.
      Matching is Hungarian within each room. Walls, doors, windows and openings are compared by 2D
      IoU of their top-down footprints as ``thickness``-thick boxes (heights do not count; this is
      strict across the wall: with 0.1 m, a wall 3 cm off keeps IoU 0.54, 5 cm off drops to 0.33); objects
      by 3D IoU of yaw-rotated boxes, and only within the same category.
    - ``objects_by_category``: the same scores per category present in gold or predictions.
    - ``count_accuracy``: fraction of rooms whose predicted object count per category equals gold's
      for every category; ``count_mae``: mean over rooms of the summed absolute count errors.

    Precision with no predictions is 0 (1 if gold is empty too); recall likewise.
    """
    if len(predicted) != len(gold):
        raise ValueError(f"score_layouts: {len(predicted)} predictions for {len(gold)} gold rooms")
    thresholds = tuple(thresholds)
    rooms: list[Room] = []
    clean = n_problems = 0
    for p in predicted:
        if isinstance(p, Room):
            rooms.append(p)
            clean += 1
        elif p is None:
            rooms.append(Room())
        else:
            r, problems = room_from_text(p)
            rooms.append(r)
            clean += not problems
            n_problems += len(problems)

    thin = lambda a, b: iou_thin(a, b, thickness)  # noqa: E731
    kinds = ("walls", "doors", "windows", "openings", "objects")
    categories = sorted({o.category for r in (*rooms, *gold) for o in r.objects})
    groups = [(k, None) for k in kinds] + [("objects", c) for c in categories]
    tp = {g: {t: 0 for t in thresholds} for g in groups}
    n_pred = {g: 0 for g in groups}
    n_gold = {g: 0 for g in groups}
    count_ok, count_err = 0, 0
    for pr, gr in zip(rooms, gold):
        for kind, cat in groups:
            p_items, g_items = getattr(pr, kind), getattr(gr, kind)
            if cat is not None:
                p_items = [o for o in p_items if o.category == cat]
                g_items = [o for o in g_items if o.category == cat]
            n_pred[kind, cat] += len(p_items)
            n_gold[kind, cat] += len(g_items)
            if not p_items or not g_items:
                continue
            iou = _iou_matrix(p_items, g_items, iou_3d if kind == "objects" else thin)
            for t in thresholds:
                tp[kind, cat][t] += match_count(iou, t)
        p_counts = _category_counts(pr)
        g_counts = _category_counts(gr)
        errors = sum(abs(p_counts.get(c, 0) - g_counts.get(c, 0)) for c in set(p_counts) | set(g_counts))
        count_ok += errors == 0
        count_err += errors

    def block(g: tuple) -> dict:
        out: dict[str, float | int] = {}
        for t in thresholds:
            p, r, f = _prf(tp[g][t], n_pred[g], n_gold[g])
            out[f"precision@{t:g}"], out[f"recall@{t:g}"], out[f"f1@{t:g}"] = p, r, f
        out["n_pred"], out["n_gold"] = n_pred[g], n_gold[g]
        return out

    n = len(gold)
    result: dict[str, Any] = {
        "parse_rate": clean / n if n else 0.0,
        "n_pred_rooms": len(predicted),
        "n_gold_rooms": n,
        "n_problems": n_problems,
    }
    for kind in kinds:
        result[kind] = block((kind, None))
    result["objects_by_category"] = {c: block(("objects", c)) for c in categories}
    result["count_accuracy"] = count_ok / n if n else 0.0
    result["count_mae"] = count_err / n if n else 0.0
    return result


def _category_counts(room: Room) -> dict[str, int]:
    counts: dict[str, int] = {}
    for o in room.objects:
        counts[o.category] = counts.get(o.category, 0) + 1
    return counts
