"""The compact text form of a layout: what a Stage 2 model reads and writes.

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


A grounding answer (:mod:`vqkit.roomplan.grounding`) is one object line of this grammar, the box of the
object a referring expression names: :func:`format_object_line` writes both, and
:func:`read_object_line` reads one box with the same tolerant line reader as :func:`read_text`.

A model that loops repeats an element line: :func:`first_repeated_line` finds that (generation stops
there, see ``VQModel.generate``) and :func:`trim_repeated_lines` cuts the repeat off.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from vqkit.roomplan.elements import CATEGORIES, OPENING_KINDS, Opening, RoomObject, Wall

#: The question of every Stage 2 record (synthetic and ARKitScenes): what ``vqkit ask --roomplan`` asks.
ROOMPLAN_QUESTION = "Describe the room layout."


def _cm(v: float) -> int:
    return int(round(float(v) * 100.0))


def _deg180(yaw: float) -> int:
    """Yaw in radians -> integer degrees in [0, 180) (boxes and walls are symmetric under 180 deg)."""
    return int(round(math.degrees(yaw))) % 180


def _direction(yaw_deg: int) -> np.ndarray:
    a = math.radians(yaw_deg)
    return np.array([math.cos(a), math.sin(a)])


def room_to_text(room) -> str:
    """The canonical text form of ``room`` (any object with walls, surfaces(), objects; format in the
    module docstring); ``""`` for an empty room.

    Deterministic: every sort key is computed from the quantised integers that are written, so
    re-writing a parsed text gives the same text.
    """
    # Quantise walls first: openings are written relative to the *quantised* wall.
    qwalls = []
    for w in room.walls:
        h = _cm(w.height)
        qwalls.append((w.id, _cm(w.center[0]), _cm(w.center[1]), _cm(w.center[2] - w.height / 2), _cm(w.width), h,
                       _deg180(w.yaw)))
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
            orphans.append((OPENING_KINDS.index(o.kind), _cm(o.center[0]), _cm(o.center[1]), z, w, h, _deg180(o.yaw),
                            open_field))
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
    for fields in sorted(object_fields(ob.category, ob.center, ob.size, ob.yaw) for ob in room.objects):
        lines.append(format_object_line(*fields))
    return "\n".join(lines)


def _quantum(v: float, step_cm: int) -> int:
    """Metres -> centimetres, rounded to a multiple of ``step_cm``."""
    return int(round(float(v) * 100.0 / step_cm)) * step_cm


def object_fields(label: str, center, size, yaw: float, step_cm: int = 1) -> tuple:
    """The integers of one object line: (label, x, y, z, w, h, d, yaw) with lengths in centimetres
    rounded to ``step_cm`` (1 for layouts), ``z`` the box's bottom and ``yaw`` in degrees [0, 180)."""
    bottom = float(center[2]) - float(size[1]) / 2
    return (label, *(_quantum(v, step_cm) for v in (center[0], center[1], bottom, *size)), _deg180(yaw))


def format_object_line(label: str, x: int, y: int, z: int, w: int, h: int, d: int, yaw: int) -> str:
    """``<label> x= y= [z=] w= h= d= yaw=``: a layout's object line, and a grounding answer."""
    return f"{label} x={x} y={y}{_z(z)} w={w} h={h} d={d} yaw={yaw}"


def _z(z_cm: int) -> str:
    # Most elements stand on the floor: leaving out "z=0" saves ~3 tokens a line.
    return f" z={z_cm}" if z_cm else ""


# Fields each line kind needs (besides its head words); "z" (default 0) and a door's "open" are optional.
_WALL_FIELDS = ("x", "y", "w", "h", "yaw")
_ATTACHED_FIELDS = ("wall", "s", "w", "h")
_ORPHAN_FIELDS = ("x", "y", "w", "h", "yaw")
_OBJECT_FIELDS = ("x", "y", "w", "h", "d", "yaw")
_NUMBER = re.compile(r"^[-+]?(\d+(\.\d*)?|\.\d+)$")


def read_text(text: str, room) -> list[str]:
    """Parse the text form into the empty ``room``, tolerantly; returns the problems. Never raises.

    Reads whatever lines are well formed and skips the rest, with one problem per skipped or
    suspicious line naming it (``"line 7: ..."``): truncated lines (missing fields; the last line
    is flagged as probably truncated), unknown element or category, openings on a wall index that no
    wall line defines, duplicate wall indices (the first wins) and exact duplicate lines, bad numbers,
    unknown fields (ignored). Lines may come in any order (walls are read first). Lengths are
    centimetres; non-integers are accepted. Ids of the parsed room are ``wall<i>`` (text index),
    ``door<k>``, ``window<k>``, ``opening<k>``, ``object<k>``.
    """
    if not isinstance(text, str):
        return [f"not text: {type(text).__name__}"]
    reader = _TextReader(text)
    walls_by_index = reader.read_walls(room)
    reader.read_others(room, walls_by_index)
    # Report in line order (walls were read in a first pass); sorted() is stable within a line.
    reader.problems.sort(key=lambda m: int(m.split(":", 1)[0][5:]) if m.startswith("line ") else 0)
    return reader.problems


@dataclass
class _Line:
    number: int
    kind: str
    args: list[str]
    fields: dict[str, float]


@dataclass
class _TextReader:
    """The lines of a layout text, split into head words and numeric fields, and the problems found."""

    text: str
    problems: list[str] = field(default_factory=list)
    lines: list[_Line] = field(default_factory=list)
    last: int = 0

    def __post_init__(self) -> None:
        raw_lines = self.text.split("\n")
        while raw_lines and not raw_lines[-1].strip():
            raw_lines.pop()
        self.last = len(raw_lines)
        seen_lines: dict[str, int] = {}
        for n, raw in enumerate(raw_lines, start=1):
            line = " ".join(raw.split())
            if not line:
                continue
            if line in seen_lines:
                self.problems.append(f"line {n}: duplicate of line {seen_lines[line]}; skipped")
                continue
            seen_lines[line] = n
            parsed = self._split(n, line)
            if parsed is not None:
                parsed.fields.setdefault("z", 0.0)
                self.lines.append(parsed)

    def _split(self, n: int, line: str) -> _Line | None:
        head: list[str] = []
        fields: dict[str, float] = {}
        for tok in line.split(" "):
            if "=" not in tok:
                if fields:  # a bare word after the fields
                    self.problems.append(f"line {n}: unexpected word {tok!r}")
                    return None
                head.append(tok)
                continue
            key, _, value = tok.partition("=")
            if not _NUMBER.match(value) or not math.isfinite(float(value)):
                self.problems.append(f"line {n}: {key}={value!r} is not a number"
                                     + (" (truncated?)" if n == self.last else ""))
                return None
            if key in fields:
                self.problems.append(f"line {n}: field {key} given twice; the first is used")
                continue
            fields[key] = float(value)
        return _Line(n, head[0] if head else "", head[1:], fields)

    def check(self, n: int, what: str, fields: dict[str, float], required: Sequence[str],
              optional: Sequence[str] = ()) -> bool:
        """Whether a line has every required field (and no negative size); notes unknown fields."""
        missing = [k for k in required if k not in fields]
        unknown = [k for k in fields if k not in required and k not in optional and k != "z"]
        if unknown:
            self.problems.append(f"line {n}: unknown field(s) {', '.join(unknown)} for {what}; ignored")
        if missing:
            hint = " (truncated?)" if n == self.last else ""
            self.problems.append(f"line {n}: {what} misses {', '.join(missing)}{hint}; skipped")
            return False
        negative = [k for k in ("w", "h", "d") if fields.get(k, 0.0) < 0]
        if negative:
            self.problems.append(f"line {n}: {what} has negative {', '.join(negative)}; skipped")
            return False
        return True

    def read_walls(self, room) -> dict[int, tuple[Wall, int]]:
        """The wall lines, into ``room.walls``; returns {text index: (wall, line number)}."""
        walls_by_index: dict[int, tuple[Wall, int]] = {}
        for line in self.lines:
            n, f = line.number, line.fields
            if line.kind != "wall":
                continue
            if len(line.args) != 1 or not re.fullmatch(r"-?\d+", line.args[0]):
                self.problems.append(f"line {n}: wall needs one integer index, got "
                                     f"{' '.join(line.args) or 'none'}; skipped")
                continue
            if not self.check(n, "wall", f, _WALL_FIELDS):
                continue
            idx = int(line.args[0])
            if idx in walls_by_index:
                first = walls_by_index[idx][1]
                self.problems.append(f"line {n}: duplicate wall {idx} (first on line {first}); skipped")
                continue
            wall = Wall(f"wall{idx}", (f["x"] / 100, f["y"] / 100, (f["z"] + f["h"] / 2) / 100), f["w"] / 100,
                        f["h"] / 100, math.radians(f["yaw"]))
            walls_by_index[idx] = (wall, n)
            room.walls.append(wall)
        return walls_by_index

    def read_others(self, room, walls_by_index: dict[int, tuple[Wall, int]]) -> None:
        """Doors, windows, openings and objects, in line order."""
        counters = {k: 0 for k in (*OPENING_KINDS, "object")}
        for line in self.lines:
            if line.kind == "wall":
                continue
            if line.kind in OPENING_KINDS:
                opening = self._opening(line, walls_by_index, counters[line.kind])
                if opening is not None:
                    counters[line.kind] += 1
                    getattr(room, line.kind + "s").append(opening)
                continue
            obj = self._object(line, counters["object"])
            if obj is not None:
                room.objects.append(obj)
                counters["object"] += 1

    def _opening(self, line: _Line, walls_by_index: dict, index: int) -> Opening | None:
        n, kind, f = line.number, line.kind, line.fields
        if line.args:
            self.problems.append(f"line {n}: unexpected word(s) {' '.join(line.args)!r} after {kind}; ignored")
        optional = ("open",) if kind == "door" else ()
        is_open = None
        if "open" in f and kind == "door":
            if f["open"] in (0.0, 1.0):
                is_open = f["open"] == 1.0
            else:
                self.problems.append(f"line {n}: open={f['open']:g} is not 0 or 1; read as unknown")
        if "wall" not in f:
            if not self.check(n, kind, f, _ORPHAN_FIELDS, optional):
                return None
            center = (f["x"] / 100, f["y"] / 100, (f["z"] + f["h"] / 2) / 100)
            return Opening(f"{kind}{index}", kind, None, center, f["w"] / 100, f["h"] / 100,
                           math.radians(f["yaw"]), is_open)
        if not self.check(n, kind, f, _ATTACHED_FIELDS, optional):
            return None
        widx = int(f["wall"])
        if widx != f["wall"] or widx not in walls_by_index:
            self.problems.append(f"line {n}: {kind} on missing wall {f['wall']:g}; skipped")
            return None
        wall = walls_by_index[widx][0]
        yaw_deg = round(math.degrees(wall.yaw))
        xy = np.array(wall.center[:2]) + f["s"] / 100 * _direction(yaw_deg)
        center = (float(xy[0]), float(xy[1]), (f["z"] + f["h"] / 2) / 100)
        return Opening(f"{kind}{index}", kind, wall.id, center, f["w"] / 100, f["h"] / 100, wall.yaw, is_open)

    def _object(self, line: _Line, index: int, labels: Sequence[str] | None = CATEGORIES) -> RoomObject | None:
        """The object of an object line; its label must be one of ``labels`` (None: any word)."""
        n, f = line.number, line.fields
        category, args = line.kind, line.args
        if category == "object" and args:  # also accept the long form "object table x=..."
            category, args = args[0], args[1:]
        if not category or (labels is not None and category not in labels):
            known = "" if category else " (empty)"
            hint = " (truncated?)" if n == self.last and not f else ""
            self.problems.append(f"line {n}: unknown element or category {category!r}{known}{hint}; skipped")
            return None
        if args:
            self.problems.append(f"line {n}: unexpected word(s) {' '.join(args)!r} after {category}; ignored")
        if not self.check(n, category, f, _OBJECT_FIELDS):
            return None
        size = (f["w"] / 100, f["h"] / 100, f["d"] / 100)
        center = (f["x"] / 100, f["y"] / 100, (f["z"] + f["h"] / 2) / 100)
        return RoomObject(f"object{index}", category, center, size, math.radians(f["yaw"]))


def read_object_line(text: str) -> tuple[RoomObject | None, list[str]]:
    """The one box a text holds as an object line (``<label> x= y= [z=] w= h= d= yaw=``, the grammar
    of a layout's object lines, any one-word label), tolerantly; returns (box or None, problems).
    Never raises, never evaluates the text.

    The first well-formed object line is the box; every other line is a problem (a second box is
    noted and ignored), as are the problems :func:`read_text` names (bad numbers, missing or unknown
    fields, truncation)."""
    if not isinstance(text, str):
        return None, [f"not text: {type(text).__name__}"]
    reader = _TextReader(text)
    found: RoomObject | None = None
    found_at = 0
    for line in reader.lines:
        if found is not None:
            reader.problems.append(f"line {line.number}: more than one box; only line {found_at} is used")
            continue
        obj = reader._object(line, 0, labels=None)
        if obj is not None:
            found, found_at = obj, line.number
    if found is None and not reader.problems:
        reader.problems.append("no box (expected '<label> x= y= [z=] w= h= d= yaw=')")
    reader.problems.sort(key=lambda m: int(m.split(":", 1)[0][5:]) if m.startswith("line ") else 0)
    return found, reader.problems


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
