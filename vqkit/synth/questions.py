"""Question-answer pairs from a synthetic room's layout.

Every answer is one short word so the tiny demo model can learn it: category words ("sofa"),
colour names, counts and metres as digits ("3"), yes/no, left/right. Questions only concern objects
that at least one view shows well (``visible_views`` non-empty, see :func:`vqkit.synth.benchmark.make_scene`),
and never contain their answer. Generators pick the answer first where they can (a count, yes or no)
so that a blind, text-only guesser does badly.

qtypes: counting, colour, existence, relation (left/right in the first view, closest, on),
measurement (room width/length, distances, rounded metres), situated (SQA3D-style: a ``situation``
sentence plus a question about the agent's left/right/front/back), what_colour_object
("Which object is red?"), room_colour (the paint of the walls or the floor tiles, which fill most
of every view: the family a model reads from its views first).

Training rooms can also get one ``describe`` question (:func:`describe_objects`), the exception to
one-word answers: every category the views show with its colour and count. It is not one of
:data:`QTYPES` (the benchmark's val and test rooms never get it).
"""

from __future__ import annotations

import math

import numpy as np

from vqkit import cameras as geo

QTYPES = ["counting", "colour", "existence", "relation", "measurement", "situated", "what_colour_object",
          "room_colour"]


DESCRIBE_QTYPE = "describe"
DESCRIBE_QUESTION = "What objects are in the room?"


def describe_objects(layout: dict, words: dict[str, tuple[str, str]]) -> dict:
    """The ``describe`` question of a room: "What objects are in the room?" -> "2 pink beds, 1 yellow
    chair, ..." (every category with a well-visible instance, in the order of ``words``, with its colour
    and its number of well-visible instances; "nothing" when there is none). One answer binds every
    colour the views show to its category, the pairing that colour, which-object and existence
    questions each ask about one category at a time. Deterministic: no random draw."""
    seen: dict[str, list] = {}
    for o in layout["objects"]:
        if o["visible_views"]:
            seen.setdefault(o["category"], [o["colour"], 0])[1] += 1
    parts = []
    for cat, (singular, plural) in words.items():
        if cat in seen:
            colour, n = seen[cat]
            parts.append(f"{n} {colour} {singular if n == 1 else plural}")
    return {"qtype": DESCRIBE_QTYPE, "question": DESCRIBE_QUESTION, "answer": ", ".join(parts) or "nothing"}


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def round_metres(x: float) -> int:
    """Round half up (2.5 -> 3), the rule every measurement answer uses."""
    return int(math.floor(x + 0.5))


class SceneQuestions:
    """Question generators over one scene's layout and cameras (R, t, K of the stored images).

    ``words`` maps a RoomPlan category to its (singular, plural) question word.
    """

    def __init__(self, layout: dict, cameras: list[dict], words: dict[str, tuple[str, str]],
                 colours: list[str], rng: np.random.Generator):
        self.layout, self.cameras, self.words, self.colours, self.rng = layout, cameras, words, colours, rng
        self.objects = layout["objects"]
        self.by_cat: dict[str, list[dict]] = {}
        for o in self.objects:
            self.by_cat.setdefault(o["category"], []).append(o)
        self.visible = [o for o in self.objects if o["visible_views"]]
        # Categories whose every instance is well visible (safe to count) / with one instance.
        self.countable = sorted(c for c, objs in self.by_cat.items() if all(o["visible_views"] for o in objs))
        self.unique = sorted(c for c, objs in self.by_cat.items() if len(objs) == 1 and objs[0]["visible_views"])
        self.seen_cats = sorted({o["category"] for o in self.visible})

    def w(self, cat: str) -> str:
        return self.words[cat][0]

    def pick(self, seq):
        return seq[int(self.rng.integers(len(seq)))]

    # ---- families -------------------------------------------------------------------------

    def counting(self):
        if not self.countable:
            return None
        # Answer first; no fallback, so counts stay balanced (the caller retries with a new target).
        target = int(self.rng.integers(1, 5))
        cands = [c for c in self.countable if len(self.by_cat[c]) == target]
        if not cands:
            return None
        cat = self.pick(cands)
        return {"question": f"How many {self.words[cat][1]} are in the room?", "answer": str(len(self.by_cat[cat]))}

    def colour(self):
        if not self.seen_cats:
            return None
        cat = self.pick(self.seen_cats)
        n = len(self.by_cat[cat])
        q = f"What colour is the {self.w(cat)}?" if n == 1 else f"What colour are the {self.words[cat][1]}?"
        return {"question": q, "answer": self.by_cat[cat][0]["colour"]}

    def what_colour_object(self):
        if not self.seen_cats:
            return None
        cat = self.pick(self.seen_cats)
        return {"question": f"Which object is {self.by_cat[cat][0]['colour']}?", "answer": self.w(cat)}

    def room_colour(self):
        room = self.layout["room"]
        if self.rng.random() < 0.5:
            return {"question": "What colour are the walls?", "answer": room["wall_colour"]}
        return {"question": "What colour is the floor?", "answer": room["floor_colour"]}

    def existence(self):
        yes = self.rng.random() < 0.5
        coloured = self.rng.random() < 0.5
        if yes:
            if not self.seen_cats:
                return None
            cat = self.pick(self.seen_cats)
            colour = self.by_cat[cat][0]["colour"]
        elif coloured and self.seen_cats:  # present category, other colour: only vision can tell
            cat = self.pick(self.seen_cats)
            colour = self.pick([c for c in self.colours if c != self.by_cat[cat][0]["colour"]])
        else:
            absent = [c for c in self.words if c not in self.by_cat]
            if not absent:
                return None
            cat, coloured = self.pick(absent), False
        if coloured:
            q = f"Is there {_article(colour)} {colour} {self.w(cat)} in the room?"
        else:
            q = f"Is there {_article(self.w(cat))} {self.w(cat)} in the room?"
        return {"question": q, "answer": "yes" if yes else "no"}

    def relation(self):
        for kind in self.rng.permutation(["leftright", "leftright", "closest", "on"]):
            out = getattr(self, f"_rel_{kind}")()
            if out:
                return out
        return None

    def _rel_leftright(self):
        cam = self.cameras[0]
        S = cam["width"]
        objs = [self.by_cat[c][0] for c in self.unique if 0 in self.by_cat[c][0]["visible_views"]]
        if len(objs) < 2:
            return None
        pix, _ = geo.project(np.array([o["center"] for o in objs]), np.array(cam["R"]), np.array(cam["t"]),
                             np.array(cam["K"]))
        pairs = [(i, j) for i in range(len(objs)) for j in range(len(objs))
                 if i != j and abs(pix[i, 0] - pix[j, 0]) > 0.12 * S]
        if not pairs:
            return None
        i, j = pairs[int(self.rng.integers(len(pairs)))]
        a, b = self.w(objs[i]["category"]), self.w(objs[j]["category"])
        return {"question": f"In the first view, is the {a} left or right of the {b}?",
                "answer": "left" if pix[i, 0] < pix[j, 0] else "right"}

    def _rel_closest(self):
        if not self.unique:
            return None
        cat = self.pick(self.unique)
        x = np.array(self.by_cat[cat][0]["center"][:2])
        others = sorted(((float(np.linalg.norm(np.array(o["center"][:2]) - x)), o) for o in self.objects
                         if o["category"] != cat), key=lambda p: p[0])
        if not others or not others[0][1]["visible_views"]:
            return None
        d1, nearest = others[0]
        rival = [d for d, o in others if o["category"] != nearest["category"]]
        if rival and rival[0] < d1 + 0.5:
            return None  # too close to call
        return {"question": f"What is closest to the {self.w(cat)}?", "answer": self.w(nearest["category"])}

    def _rel_on(self):
        ids = {o["id"]: o for o in self.objects}
        tops = [o for o in self.visible if o.get("on") and o["category"] in self.unique and o["on"] in ids]
        if not tops:
            return None
        top = self.pick(tops)
        return {"question": f"What is the {self.w(top['category'])} standing on?",
                "answer": self.w(ids[top["on"]]["category"])}

    def measurement(self):
        room = self.layout["room"]
        kind = self.pick(["width", "length", "distance", "distance"])
        if kind in ("width", "length"):
            value = room[kind]
            q = "How wide is the room in metres?" if kind == "width" else "How long is the room in metres?"
        else:
            if len(self.unique) < 2:
                return None
            a, b = self.rng.choice(self.unique, size=2, replace=False)
            oa, ob = self.by_cat[a][0], self.by_cat[b][0]
            value = float(np.linalg.norm(np.array(oa["center"][:2]) - np.array(ob["center"][:2])))
            q = f"How far is the {self.w(a)} from the {self.w(b)} in metres?"
        if abs((value % 1.0) - 0.5) < 0.08 or round_metres(value) < 1:
            return None  # too close to a rounding boundary to be fair
        return {"question": q, "answer": str(round_metres(value))}

    # ---- situated (SQA3D-style) -----------------------------------------------------------

    def _landmarks(self) -> list[tuple[str, np.ndarray, np.ndarray, str | None]]:
        """(phrase, centre [2], outward-into-room direction [2], object id) of things one can stand at."""
        out = []
        walls = {w["id"]: w for w in self.layout["walls"]}
        for kind, ops in (("door", self.layout["doors"]), ("window", self.layout["windows"])):
            if len(ops) == 1 and sum(ops[0]["pixels"]) >= self.layout["min_visible_pixels"]:
                w = walls[ops[0]["wall_id"]]
                u = np.array(w["end"]) - np.array(w["start"])
                u /= np.linalg.norm(u)
                out.append((f"the {kind}", np.array(ops[0]["center"][:2]), np.array([-u[1], u[0]]), None))
        for cat in self.unique:
            o = self.by_cat[cat][0]
            if o.get("on"):
                continue
            front = np.array([-math.sin(o["yaw"]), math.cos(o["yaw"])])
            out.append((f"the {self.w(cat)}", np.array(o["center"][:2]), front, o["id"]))
        return out

    def situated(self):
        marks = self._landmarks()
        if len(marks) < 2:
            return None
        bbox = self.layout["room"]["bbox"]
        for _ in range(12):
            i, j = self.rng.choice(len(marks), size=2, replace=False)
            (name_a, ca, out_a, id_a), (name_b, cb, _, id_b) = marks[i], marks[j]
            size = next((o["size"] for o in self.objects if o["id"] == id_a), [0.0, 0.0, 0.0])
            pos = ca + out_a * (0.5 + max(size[0], size[2]) / 2 * (id_a is not None))
            if not (0.2 < pos[0] < bbox[3] - 0.2 and 0.2 < pos[1] < bbox[4] - 0.2):
                continue
            f = cb - pos
            if np.linalg.norm(f) < 1.2:
                continue
            f /= np.linalg.norm(f)
            verb = "standing at" if id_a is None and "door" in name_a else "standing next to"
            situation = f"I am {verb} {name_a} facing {name_b}."
            out = self._situated_question(pos, f, {id_a, id_b})
            if out:
                return {**out, "situation": situation}
        return None

    def _situated_question(self, pos: np.ndarray, f: np.ndarray, exclude: set):
        def bearing(o):  # degrees, + = to the left of the facing direction (z-up world)
            r = np.array(o["center"][:2]) - pos
            return math.degrees(math.atan2(f[0] * r[1] - f[1] * r[0], f @ r))

        objs = [o for o in self.visible if o["id"] not in exclude]
        if self.rng.random() < 0.5:
            cands = [o for o in objs if o["category"] in self.unique and 30 < abs(bearing(o)) < 150]
            if not cands:
                return None
            o = self.pick(cands)
            return {"question": f"Is the {self.w(o['category'])} on my left or right?",
                    "answer": "left" if bearing(o) > 0 else "right"}
        sectors = {"What is on my left?": 90.0, "What is on my right?": -90.0, "What is behind me?": 180.0}
        q = self.pick(sorted(sectors))
        centre = sectors[q]
        diff = [abs((bearing(o) - centre + 180) % 360 - 180) for o in self.objects if o["id"] not in exclude]
        near = [o for o, d in zip([o for o in self.objects if o["id"] not in exclude], diff, strict=True) if d < 55]
        inside = [o for o, d in zip([o for o in self.objects if o["id"] not in exclude], diff, strict=True) if d < 35]
        cats = {o["category"] for o in near}
        if not inside or len(cats) != 1 or not any(o["visible_views"] for o in inside):
            return None  # nothing there, or several kinds of thing: no single right answer
        return {"question": q, "answer": self.w(inside[0]["category"])}


def scene_questions(layout: dict, cameras: list[dict], words: dict[str, tuple[str, str]], colours: list[str],
                    rng: np.random.Generator, n: int) -> list[dict]:
    """Up to ``n`` distinct questions for one scene, cycling through :data:`QTYPES` from a random
    start so every qtype gets an equal share overall. Each item: qtype, question, answer
    (+ situation for situated questions)."""
    gen = SceneQuestions(layout, cameras, words, colours, rng)
    out, seen = [], set()
    start = int(rng.integers(len(QTYPES)))
    for k in range(n):
        qtype = QTYPES[(start + k) % len(QTYPES)]
        for _ in range(6):
            item = getattr(gen, qtype)()
            if item is None:
                continue
            key = (item.get("situation"), item["question"])
            if key in seen:
                continue
            seen.add(key)
            out.append({"qtype": qtype, **item})
            break
    return out
