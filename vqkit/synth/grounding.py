"""Referring expressions of a synthetic room's objects: the grounding questions of the benchmark.

Every object a view shows well (``visible_views`` non-empty) is the target of at most one expression,
split as ScanRefer splits its descriptions:

- **unique**: the only object of its category in the room: "the bed", or with its colour "the pink bed";
- **multiple**: one of several of its category (all of a category share one colour in these rooms, so
  colour never tells them apart); a relation does, drawn among those that hold with a margin:
  nearest to / farthest from the door or window (the room's only one), nearest to a landmark (an
  object whose category is unique in the room), leftmost / rightmost in the first view (every object
  of the category in it), standing on a cabinet or table (the only one of its category on one).
  A target no relation tells apart gets no expression.

Distances are between box centres on the floor plane; "nearest" needs the target at least
:data:`MARGIN_M` closer than every other object of its category, "leftmost" the target's centre at
least :data:`MARGIN_PX` of the image width left of the others'. Everything is drawn from the ``rng``
given, in a fixed order, so the expressions are a function of the room and the seed.
"""

from __future__ import annotations

import numpy as np

from vqkit import cameras as geo
from vqkit.roomplan.elements import RoomObject

MARGIN_M = 0.5
MARGIN_PX = 0.12  # of the image width


def target_box(obj: dict) -> RoomObject:
    """A layout object's box (scene frame): its RoomPlan category as the label."""
    return RoomObject(obj["id"], obj["category"], obj["center"], obj["size"], obj["yaw"])


def _floor_xy(item: dict) -> np.ndarray:
    return np.asarray(item["center"][:2], dtype=np.float64)


class _Expressions:
    """The expressions of one room (module docstring)."""

    def __init__(self, layout: dict, cameras: list[dict], words: dict[str, tuple[str, str]], rng: np.random.Generator):
        self.layout, self.cameras, self.words, self.rng = layout, cameras, words, rng
        self.by_cat: dict[str, list[dict]] = {}
        for o in layout["objects"]:
            self.by_cat.setdefault(o["category"], []).append(o)
        self.ids = {o["id"]: o for o in layout["objects"]}

    def noun(self, obj: dict) -> str:
        """"bed", or "pink bed" half the time (the colour names the category's paint)."""
        word = self.words[obj["category"]][0]
        return f"{obj['colour']} {word}" if self.rng.random() < 0.5 else word

    def landmarks(self) -> list[tuple[str, np.ndarray]]:
        """(phrase, floor position) of what a relation may name: the room's only door or window, and
        visible objects whose category has one instance."""
        out = []
        for kind in ("door", "window"):
            items = self.layout[f"{kind}s"]
            if len(items) == 1:
                out.append((f"the {kind}", _floor_xy(items[0])))
        for cat in sorted(self.by_cat):
            objs = self.by_cat[cat]
            if len(objs) == 1 and objs[0]["visible_views"]:
                out.append((f"the {self.words[cat][0]}", _floor_xy(objs[0])))
        return out

    def relations(self, target: dict) -> list[tuple[str, str]]:
        """Every (phrase, kind) that tells ``target`` from the other objects of its category."""
        rivals = [o for o in self.by_cat[target["category"]] if o is not target]
        out = []
        for phrase, where in self.landmarks():
            if phrase == f"the {self.words[target['category']][0]}":
                continue
            d = np.linalg.norm(_floor_xy(target) - where)
            others = [np.linalg.norm(_floor_xy(o) - where) for o in rivals]
            if all(d + MARGIN_M <= e for e in others):
                out.append((f"nearest {phrase}", "nearest"))
            elif phrase in ("the door", "the window") and all(d >= e + MARGIN_M for e in others):
                out.append((f"farthest from {phrase}", "farthest"))
        out += self._in_first_view(target, rivals)
        support = self.ids.get(target.get("on") or "")
        if support is not None and not any(o.get("on") for o in rivals):
            out.append((f"on the {self.words[support['category']][0]}", "on"))
        return out

    def _in_first_view(self, target: dict, rivals: list[dict]) -> list[tuple[str, str]]:
        """Leftmost / rightmost in the first view, when it shows every object of the category."""
        group = [target, *rivals]
        if not all(0 in o["visible_views"] for o in group):
            return []
        cam = self.cameras[0]
        pix, _ = geo.project(np.array([o["center"] for o in group], dtype=np.float64), np.array(cam["R"]),
                             np.array(cam["t"]), np.array(cam["K"]))
        x, margin = pix[:, 0], MARGIN_PX * cam["width"]
        if all(x[0] + margin <= v for v in x[1:]):
            return [("on the left in the first view", "leftmost")]
        if all(x[0] >= v + margin for v in x[1:]):
            return [("on the right in the first view", "rightmost")]
        return []

    def expression(self, target: dict) -> dict | None:
        """{description, qtype, relation} for one target, or None when nothing tells it apart."""
        noun = self.noun(target)
        if len(self.by_cat[target["category"]]) == 1:
            return {"description": f"the {noun}", "qtype": "unique", "relation": "none"}
        phrases = self.relations(target)
        if not phrases:
            return None
        phrase, kind = phrases[int(self.rng.integers(len(phrases)))]
        return {"description": f"the {noun} {phrase}", "qtype": "multiple", "relation": kind}


def scene_expressions(layout: dict, cameras: list[dict], words: dict[str, tuple[str, str]],
                      rng: np.random.Generator) -> list[dict]:
    """The grounding targets of one room, in the layout's object order: ``{object_id, description, qtype,
    relation, box}`` (``box``: :func:`target_box`)."""
    gen = _Expressions(layout, cameras, words, rng)
    out = []
    for obj in layout["objects"]:
        if not obj["visible_views"]:
            continue
        item = gen.expression(obj)
        if item is not None:
            out.append({"object_id": obj["id"], **item, "box": target_box(obj)})
    return out
