"""vqkit.synth.questions: every answer agrees with the room's layout; the describe answer lists what
the views show well."""

from __future__ import annotations

import json

from vqkit import synth
from vqkit.synth.questions import DESCRIBE_QUESTION, QTYPES, describe_objects, round_metres


def test_answers_agree_with_the_layout(dataset, scenes):
    out, stats = dataset
    layouts = {lay["scene_id"]: lay for lay, _ in scenes}
    words = {v[0]: k for k, v in synth.catalogue.CATEGORIES.items()}
    plurals = {v[1]: k for k, v in synth.catalogue.CATEGORIES.items()}
    seen_qtypes = set()
    for split in synth.benchmark.SPLITS:
        for line in (out / f"{split}.jsonl").read_text().splitlines():
            r = json.loads(line)
            lay = layouts[r["scene_id"]]
            objs = lay["objects"]
            seen_qtypes.add(r["qtype"])
            assert r["task"] == "synth" and r["answers"] == [r["answer"]] and r["answer"]
            if " or " not in r["question"]:  # a choice question names both options; others never the answer
                assert r["answer"] not in r["question"].lower().replace("?", "").split()
            assert len(r["images"]) == len(r["depths"]) == len(r["geom_token"]["R"]) == 3
            assert all((out / p).is_file() for p in r["images"] + r["depths"])
            q = r["question"]
            if r["qtype"] == "counting":
                cat = plurals[q.split()[2]]
                assert r["answer"] == str(sum(o["category"] == cat for o in objs))
            elif r["qtype"] == "colour":
                cat = words.get(q.split()[-1].rstrip("?")) or plurals[q.split()[-1].rstrip("?")]
                assert {o["colour"] for o in objs if o["category"] == cat} == {r["answer"]}
            elif r["qtype"] == "what_colour_object":
                colour = q.split()[-1].rstrip("?")
                assert {o["category"] for o in objs if o["colour"] == colour} == {words[r["answer"]]}
            elif r["qtype"] == "existence":
                words_q = q.rstrip("?").split()
                cat = words[words_q[-4]]
                colour = words_q[-5] if words_q[-5] in synth.catalogue.PALETTE else None
                present = any(o["category"] == cat and (colour is None or o["colour"] == colour) for o in objs)
                assert r["answer"] == ("yes" if present else "no")
            elif r["qtype"] == "measurement":
                if "room" in q:
                    key = "width" if "wide" in q else "length"
                    assert r["answer"] == str(round_metres(lay["room"][key]))
            elif r["qtype"] == "situated":
                assert r["situation"].startswith("I am ")
            elif r["qtype"] == "room_colour":
                key = "wall_colour" if "walls" in q else "floor_colour"
                palette = synth.catalogue.WALL_PALETTE if "walls" in q else synth.catalogue.FLOOR_PALETTE
                assert r["answer"] == lay["room"][key] and r["answer"] in palette
    assert seen_qtypes == set(QTYPES)
    assert set(stats["blind"]) >= set(QTYPES) - {"relation", "situated"}


def test_describe_names_every_seen_category_with_its_colour_and_count():
    """The describe answer lists the categories a view shows well, in the catalogue's order, each
    with its colour and its number of well-visible instances (singular for one); objects no view
    shows well are left out, and a room without any says "nothing"."""
    from vqkit.synth.catalogue import CATEGORIES

    def obj(cat, colour, views):
        return {"category": cat, "colour": colour, "visible_views": views}

    order = list(CATEGORIES)
    first, second = order[0], order[1]
    layout = {"objects": [obj(second, "red", [0]), obj(first, "blue", [1, 2]), obj(second, "red", [2]),
                          obj(second, "red", []), obj(order[2], "green", [])]}
    item = describe_objects(layout, CATEGORIES)
    assert item == {"qtype": "describe", "question": DESCRIBE_QUESTION,
                    "answer": f"1 blue {CATEGORIES[first][0]}, 2 red {CATEGORIES[second][1]}"}
    assert describe_objects({"objects": [obj(first, "blue", [])]}, CATEGORIES)["answer"] == "nothing"
