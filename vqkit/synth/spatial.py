"""VSI-Bench-style questions about the synthetic rooms: the question types and answer forms of VSI-Bench
(Yang et al., "Thinking in Space", 2024), asked of rooms whose layout is known exactly.

Numeric answers (scored by MRA, :func:`vqkit.eval.metrics.mean_relative_accuracy`):

- ``object_counting``: "How many chairs are in this room?" (every instance well visible);
- ``object_abs_distance``: the distance between the closest points of two objects' boxes, in metres
  with one decimal (at least :data:`MIN_DISTANCE_M`);
- ``object_size_estimation``: an object's longest dimension in centimetres;
- ``room_size_estimation``: the floor area in square metres with one decimal (an L-shaped room's
  polygon, not its bounding box).

Multiple choice (an option letter, scored by accuracy):

- ``object_rel_distance``: which of up to four objects is closest to another (the nearest leads the
  next by at least :data:`MARGIN_M`);
- ``object_rel_direction_easy`` / ``_medium`` / ``_hard``: standing by one object and facing a
  second, is a third to the left or right of it (easy), to my left, right or back (medium, back from
  135 degrees), or in which quadrant (hard); questions within :data:`MARGIN_DEG` of a boundary are
  not asked;
- ``obj_appearance_order``: the order in which three or four categories first appear in the views
  (each first well visible in a different view, and not seen at all before it).

Objects are named by category, so only categories with one instance in the room are referred to, and
only objects a view shows well (``visible_views``). VSI-Bench's route planning is not asked (the rooms
have no paths to plan). Each room's questions come from ``numpy.random.SeedSequence([seed, index, 2])``
of its layout, so they do not depend on which rooms are read or in which order.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from vqkit.errors import DataError
from vqkit.synth.catalogue import CATEGORIES
from vqkit.utils.files import iter_jsonl, read_json

SPATIAL_TASK = "spatial"
NUMERIC_TYPES = ("object_counting", "object_abs_distance", "object_size_estimation", "room_size_estimation")
CHOICE_TYPES = ("object_rel_distance", "object_rel_direction_easy", "object_rel_direction_medium",
                "object_rel_direction_hard", "obj_appearance_order")
SPATIAL_QTYPES = NUMERIC_TYPES + CHOICE_TYPES
MARGIN_M = 0.3
"""How much closer (metres) the answer of a relative-distance question is than the next option."""
MARGIN_DEG = 15.0
"""How far (degrees) the queried object of a direction question is from every boundary of its answer."""
MIN_DISTANCE_M = 0.5
"""The shortest distance an absolute-distance question asks about."""
LETTERS = "ABCD"


def _box(obj: dict) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi) corners of an object's world box (its yaw is a multiple of 90 degrees, so the box is
    axis-aligned: ``size`` is width along its x, height, depth along its y)."""
    w, h, d = obj["size"]
    c, s = abs(math.cos(obj["yaw"])), abs(math.sin(obj["yaw"]))
    half = np.array([(c * w + s * d) / 2, (s * w + c * d) / 2, h / 2])
    centre = np.asarray(obj["center"], float)
    return centre - half, centre + half


def box_distance(a: dict, b: dict) -> float:
    """Distance between the closest points of two objects' boxes (0 when they touch or overlap)."""
    (lo_a, hi_a), (lo_b, hi_b) = _box(a), _box(b)
    gap = np.maximum(0.0, np.maximum(lo_b - hi_a, lo_a - hi_b))
    return float(np.linalg.norm(gap))


def floor_area(polygon: list[list[float]]) -> float:
    """Area of the floor polygon (shoelace formula), square metres."""
    p = np.asarray(polygon, float)
    return float(abs(np.dot(p[:, 0], np.roll(p[:, 1], -1)) - np.dot(p[:, 1], np.roll(p[:, 0], -1))) / 2)


def _options(names: list[str]) -> list[str]:
    return [f"{LETTERS[i]}. {name}" for i, name in enumerate(names)]


class SpatialQuestions:
    """The question generators over one room's layout; each returns None when the room cannot ask it."""

    def __init__(self, layout: dict, rng: np.random.Generator, words: dict[str, tuple[str, str]] = CATEGORIES):
        self.layout, self.rng, self.words = layout, rng, words
        self.by_cat: dict[str, list[dict]] = {}
        for o in layout["objects"]:
            self.by_cat.setdefault(o["category"], []).append(o)
        # Categories named in questions: one instance, well visible.
        self.unique = sorted(c for c, objs in self.by_cat.items() if len(objs) == 1 and objs[0]["visible_views"])
        self.countable = sorted(c for c, objs in self.by_cat.items() if all(o["visible_views"] for o in objs))

    def w(self, cat: str) -> str:
        return self.words[cat][0]

    def pick(self, seq, k: int | None = None):
        if k is None:
            return seq[int(self.rng.integers(len(seq)))]
        return [seq[i] for i in self.rng.choice(len(seq), size=k, replace=False)]

    def _choice(self, qtype: str, question: str, correct: str, wrong: list[str]) -> dict:
        names = [correct, *wrong]
        order = self.rng.permutation(len(names))
        shown = [names[i] for i in order]
        return {"qtype": qtype, "question": question, "options": _options(shown),
                "answer": LETTERS[shown.index(correct)]}

    # ---- numeric ---------------------------------------------------------------------------

    def object_counting(self):
        if not self.countable:
            return None
        cat = self.pick(self.countable)
        return {"qtype": "object_counting", "question": f"How many {self.words[cat][1]} are in this room?",
                "answer": str(len(self.by_cat[cat]))}

    def object_abs_distance(self):
        if len(self.unique) < 2:
            return None
        a, b = self.pick(self.unique, 2)
        dist = box_distance(self.by_cat[a][0], self.by_cat[b][0])
        if dist < MIN_DISTANCE_M:
            return None  # touching or stacked: a tiny truth makes every relative error huge
        return {"qtype": "object_abs_distance",
                "question": f"Measuring from the closest point of each object, what is the direct distance between "
                            f"the {self.w(a)} and the {self.w(b)} (in meters)?", "answer": f"{dist:.1f}"}

    def object_size_estimation(self):
        if not self.unique:
            return None
        cat = self.pick(self.unique)
        longest = max(self.by_cat[cat][0]["size"])
        return {"qtype": "object_size_estimation",
                "question": f"What is the length of the longest dimension (length, width, or height) of the "
                            f"{self.w(cat)}, measured in centimeters?", "answer": str(round(100 * longest))}

    def room_size_estimation(self):
        area = floor_area(self.layout["room"]["polygon"])
        return {"qtype": "room_size_estimation",
                "question": "What is the size of this room (in square meters)? If multiple rooms are shown, "
                            "estimate the size of the combined space.", "answer": f"{area:.1f}"}

    # ---- multiple choice -------------------------------------------------------------------

    def object_rel_distance(self):
        if len(self.unique) < 3:
            return None
        target = self.pick(self.unique)
        others = self.pick([c for c in self.unique if c != target], min(4, len(self.unique) - 1))
        ranked = sorted(others, key=lambda c: box_distance(self.by_cat[c][0], self.by_cat[target][0]))
        d = [box_distance(self.by_cat[c][0], self.by_cat[target][0]) for c in ranked]
        if d[1] - d[0] < MARGIN_M:
            return None  # too close to call
        names = ", ".join(self.w(c) for c in others)
        return self._choice("object_rel_distance",
                            f"Measuring from the closest point of each object, which of these objects ({names}) is "
                            f"the closest to the {self.w(target)}?", self.w(ranked[0]),
                            [self.w(c) for c in ranked[1:]])

    def _bearing(self, stand: str, face: str, query: str) -> float | None:
        """Degrees from the facing direction to the queried object, + to the left (z-up world); None when
        the three are too close together for a direction to mean anything."""
        p, f, q = (np.asarray(self.by_cat[c][0]["center"][:2], float) for c in (stand, face, query))
        ahead, rel = f - p, q - p
        if np.linalg.norm(ahead) < 1.0 or np.linalg.norm(rel) < 0.5:
            return None
        return math.degrees(math.atan2(ahead[0] * rel[1] - ahead[1] * rel[0], float(ahead @ rel)))

    def object_rel_direction(self, level: str):
        if len(self.unique) < 3:
            return None
        stand, face, query = self.pick(self.unique, 3)
        angle = self._bearing(stand, face, query)
        if angle is None:
            return None
        side = "left" if angle > 0 else "right"
        a, m = abs(angle), MARGIN_DEG
        lead = f"If I am standing by the {self.w(stand)} and facing the {self.w(face)}, is the {self.w(query)}"
        if level == "easy":
            if not m < a < 180 - m:
                return None
            return self._choice("object_rel_direction_easy", f"{lead} to the left or the right of the {self.w(face)}?",
                                side, ["right" if side == "left" else "left"])
        if level == "medium":
            if a >= 135 + m:
                answer = "back"
            elif 45 + m <= a <= 135 - m:
                answer = side
            else:
                return None
            return self._choice("object_rel_direction_medium",
                                f"{lead} to my left, right, or back? An object is to my back if I would have to turn "
                                f"at least 135 degrees in order to face it.", answer,
                                [x for x in ("left", "right", "back") if x != answer])
        if not (m < a < 90 - m or 90 + m < a < 180 - m):
            return None
        answer = ("front-" if a < 90 else "back-") + side
        return self._choice("object_rel_direction_hard",
                            f"{lead} to my front-left, front-right, back-left, or back-right? The directions refer to "
                            f"the quadrants of a Cartesian plane (if I am standing at the origin and facing along the "
                            f"positive y-axis).", answer,
                            [x for x in ("front-left", "front-right", "back-left", "back-right") if x != answer])

    def obj_appearance_order(self):
        first: dict[int, list[str]] = {}
        for cat, objs in self.by_cat.items():
            seen = [v for o in objs for v in o["visible_views"]]
            if not seen:
                continue
            view = min(seen)
            if any(p > 0 for o in objs for p in o["pixels"][:view]):
                continue  # glimpsed before it is well visible: its first appearance is unclear
            first.setdefault(view, []).append(cat)
        if len(first) < 3:
            return None
        views = sorted(self.pick(sorted(first), min(4, len(first))))
        cats = [self.pick(first[v]) for v in views]
        correct = ", ".join(self.w(c) for c in cats)
        wrong: list[str] = []
        while len(wrong) < 3:
            order = ", ".join(self.w(cats[i]) for i in self.rng.permutation(len(cats)))
            if order != correct and order not in wrong:
                wrong.append(order)
        shown = ", ".join(self.w(c) for c in self.pick(cats, len(cats)))
        return self._choice("obj_appearance_order",
                            f"What will be the first-time appearance order of the following categories in the views: "
                            f"{shown}?", correct, wrong)

    def ask(self, qtype: str) -> dict | None:
        if qtype.startswith("object_rel_direction_"):
            return self.object_rel_direction(qtype.rsplit("_", 1)[1])
        return getattr(self, qtype)()


def spatial_questions(layout: dict, rng: np.random.Generator, tries: int = 12) -> list[dict]:
    """One question of each of :data:`SPATIAL_QTYPES` the room can ask (each from up to ``tries`` draws):
    dicts with qtype, question, answer, and options for multiple choice."""
    gen = SpatialQuestions(layout, rng)
    out = []
    for qtype in SPATIAL_QTYPES:
        for _ in range(tries):
            item = gen.ask(qtype)
            if item is not None:
                out.append(item)
                break
    return out


def spatial_records(synth_dir: str | Path, split: str = "val") -> list[dict]:
    """VSI-Bench-style records of a ``vqkit synth`` folder's ``split`` rooms: the views and cameras of each
    room (as its ``split.jsonl`` records give them, paths relative to the folder) with the room's
    :func:`spatial_questions`; ``qtype`` is the VSI-Bench question type, ``answer`` the number or the
    option letter, ``options`` the lettered options of a multiple-choice question."""
    folder = Path(synth_dir)
    path = folder / f"{split}.jsonl"
    if not path.is_file():
        raise DataError(f"{folder}: no {split}.jsonl (not a `vqkit synth --out {folder}` folder?)")
    rooms: dict[str, dict] = {}
    for line, rec in iter_jsonl(path):
        sid = rec.get("scene_id")
        if not isinstance(sid, str):
            raise DataError(f"{path}:{line}: field 'scene_id' missing (spatial questions need the room)")
        rooms.setdefault(sid, rec)
    out = []
    for sid, rec in rooms.items():
        layout = read_json(folder / "scenes" / sid / "layout.json")
        rng = np.random.default_rng(np.random.SeedSequence([int(layout["seed"]), int(layout["index"]), 2]))
        base = {"scene_id": sid, "task": SPATIAL_TASK, "images": rec["images"], "geom_token": rec.get("geom_token")}
        for k, q in enumerate(spatial_questions(layout, rng)):
            item = {"id": f"{sid}_s{k:02d}", **base, "qtype": q["qtype"], "question": q["question"],
                    "answer": q["answer"], "answers": [q["answer"]]}
            if "options" in q:
                item["options"] = q["options"]
            out.append(item)
    return out
