import json
import math

import numpy as np
import pytest

from vqkit.data.schema import LoadReport, load_records
from vqkit.errors import DataError


def _one(corpus, **changes):
    """The first record of the corpus with some fields changed (None deletes a field)."""
    rec = json.loads(json.dumps(corpus.records[0]))
    for key, value in changes.items():
        if value is None:
            rec.pop(key, None)
        else:
            rec[key] = value
    return rec


def test_seed_records_load_unchanged(tiny_records):
    records = load_records(str(tiny_records.path))
    assert len(records) == 4
    seed = records[-1]  # {"images", "geom_token": null, "question", "answer", "task"}
    raw = tiny_records.records[-1]
    assert seed.geometry is None and seed.depths is None
    assert seed.question == raw["question"] and seed.answer == raw["answer"] and seed.task == "scanqa"
    assert seed.answers == [raw["answer"]]
    assert seed.images == [str(tiny_records.root / p) for p in raw["images"]]
    assert seed.id == "records:4" and seed.line == 4  # default id = file stem : line
    assert seed.target_text() == raw["answer"]


def test_optional_fields(tiny_records, tmp_path):
    rec = _one(tiny_records, situation="I am facing the bed.", answers=["red", "dark red"], qtype="what",
               my_extra={"a": 1})
    path = tiny_records.root / "opt.jsonl"
    path.write_text(json.dumps(rec) + "\n")
    (r,) = load_records(str(path))
    assert r.situation == "I am facing the bed." and r.answers == ["red", "dark red"] and r.qtype == "what"
    assert r.extra == {"my_extra": {"a": 1}}
    assert r.geometry.R.shape == (3, 3, 3) and r.geometry.depth_hist.shape == (3, 16)
    assert r.depths[0].endswith("_depth.png")
    meta = r.meta()
    assert meta["id"] == rec["id"] and meta["scene_id"] == rec["scene_id"] and meta["answers"] == r.answers


def test_json_array_and_glob_with_line_numbers(tiny_records):
    root = tiny_records.root
    (root / "a.json").write_text("[\n" + ",\n".join(json.dumps(r) for r in tiny_records.records[:2]) + "\n]\n")
    bad = _one(tiny_records, answer="")
    (root / "b.json").write_text("[\n" + json.dumps(tiny_records.records[0]) + ",\n\n" + json.dumps(bad) + "\n]")
    assert len(load_records(str(root / "a.json"))) == 2
    with pytest.raises(DataError, match=r"b\.json:4: field 'answer': is empty"):
        load_records(str(root / "*.json"))
    report = LoadReport()
    records = load_records(str(root / "*.json"), on_error="skip", report=report)
    assert len(records) == 3 and report.num_skipped == 1 and [r.line for r in records] == [2, 3, 2]


def test_no_match_and_missing_file(tmp_path):
    with pytest.raises(DataError, match="no file matches"):
        load_records(str(tmp_path / "*.jsonl"))
    with pytest.raises(DataError, match="not found"):
        load_records(str(tmp_path / "x.jsonl"))


def _corrupt_corpus(corpus):
    """(label, JSONL line text, expected message pattern) for every kind of bad record."""
    good = corpus.records[0]
    geo = good["geom_token"]
    flip = [[[1, 0, 0], [0, 1, 0], [0, 0, -1]]] * 3  # det -1: a reflection, not a rotation
    nan_t = [[0.0, 0.0, 1.0], [math.nan, 0.0, 1.0], [0.0, 0.0, 1.0]]
    return [
        ("missing image", _one(corpus, images=[good["images"][0], "img/missing.png", good["images"][2]]),
         r"field 'images\[1\]': file not found"),
        ("bad json", '{"images": ["img/a.png"], "question": "q", ', r"not valid JSON"),
        ("wrong R shape", _one(corpus, geom_token={**geo, "R": [np.eye(3).tolist()] * 2}),
         r"field 'geom_token.R': expected shape 3x3x3, got 2x3x3"),
        ("R not rotation", _one(corpus, geom_token={**geo, "R": flip}),
         r"field 'geom_token.R': view 0 is not a rotation"),
        ("non-finite t", _one(corpus, geom_token={**geo, "t": nan_t}),
         r"field 'geom_token.t': non-finite value at view 1"),
        ("empty answer", _one(corpus, answer="  "), r"field 'answer': is empty"),
        ("escaping path", _one(corpus, images=["../../outside.png"] * 3),
         r"field 'images\[0\]': .* outside the data root"),
        ("no question", _one(corpus, question=None), r"field 'question': missing"),
        ("bad K", _one(corpus, geom_token={**geo, "K": [[[0, 0, 0], [0, 0, 0], [0, 0, 0]]] * 3}), r"geom_token.K"),
        ("hist bins", _one(corpus, geom_token={**geo, "depth_hist": [[0.5, 0.5]] * 3}),
         r"field 'geom_token.depth_hist': expected shape 3x16, got 3x2"),
        ("depths count", _one(corpus, depths=good["depths"][:1]), r"field 'depths'"),
        ("semantics count", _one(corpus, semantics=good["depths"][:2]),
         r"field 'semantics': expected a list of 3 paths"),
        ("escaping semantics", _one(corpus, semantics=["../../s.png"] * 3), r"field 'semantics\[0\]': .* outside"),
        ("not object", [1, 2], r"expected a JSON object"),
        # A sibling folder whose name starts with the root's is still outside it.
        ("sibling path", _one(corpus, images=[f"../{corpus.root.name}_sibling/a.png"] * 3),
         r"field 'images\[0\]': .* outside the data root"),
        ("second view's K", _one(corpus, geom_token={**geo, "K": [geo["K"][0], [[1, 0, 0], [0, 1, 0], [0, 0, 2]],
                                                                  geo["K"][2]]}),
         r"field 'geom_token.K': view 1 is not a pixel intrinsic matrix"),
    ]


@pytest.mark.parametrize("case", range(14))
def test_each_corruption_is_one_clear_error(tiny_records, case):
    cases = _corrupt_corpus(tiny_records)
    label, rec, pattern = cases[case]
    first_image = tiny_records.root / tiny_records.records[0]["images"][0]
    (tiny_records.root.parent / "outside.png").write_bytes(first_image.read_bytes())
    path = tiny_records.root / "bad.jsonl"
    line = rec if isinstance(rec, str) else json.dumps(rec)
    path.write_text(json.dumps(tiny_records.records[1]) + "\n" + line + "\n")
    with pytest.raises(DataError, match=pattern) as err:
        load_records(str(path), depth_bins=16)
    message = str(err.value)
    assert message.startswith(f"{path}:2:"), message  # names file and line
    assert "\n" not in message, label


def test_skip_mode_keeps_good_records_and_reports_bad(tiny_records):
    cases = _corrupt_corpus(tiny_records)
    lines = [json.dumps(r) for r in tiny_records.records]
    lines += [c[1] if isinstance(c[1], str) else json.dumps(c[1]) for c in cases]
    path = tiny_records.root / "mixed.jsonl"
    path.write_text("\n".join(lines) + "\n")
    report = LoadReport()
    records = load_records(str(path), on_error="skip", depth_bins=16, report=report)
    assert [r.images for r in records] == [r.images for r in load_records(str(tiny_records.path))]
    assert report.num_loaded == 4 and report.num_skipped == len(cases)
    assert all(e.startswith(f"{path}:") for e in report.errors)
    assert f"4 records loaded, {len(cases)} skipped" in report.summary()


def test_outside_root_allowed_when_configured(tiny_records, tmp_path):
    outside = tmp_path / "elsewhere.png"
    outside.write_bytes((tiny_records.root / tiny_records.records[0]["images"][0]).read_bytes())
    rec = _one(tiny_records, images=[str(outside)] * 3)  # absolute path outside the root
    path = tiny_records.root / "abs.jsonl"
    path.write_text(json.dumps(rec) + "\n")
    with pytest.raises(DataError, match="outside the data root") as refused:
        load_records(str(path))
    # The way to allow it, in each place a user meets it: a config, Python, notebook 01.
    assert "data.allow_outside_root: true" in str(refused.value)
    assert "allow_outside_root=True in load_records and notebook 01's parameters" in str(refused.value)
    (r,) = load_records(str(path), allow_outside_root=True)
    assert r.images[0] == str(outside)


def test_image_root_resolves_relative_paths(tiny_records, tmp_path):
    lists = tmp_path / "lists"
    lists.mkdir()
    path = lists / "train.jsonl"
    path.write_text(json.dumps(tiny_records.records[0]) + "\n")
    with pytest.raises(DataError, match="file not found"):
        load_records(str(path))  # relative to lists/: no images there
    (r,) = load_records(str(path), image_root=str(tiny_records.root))
    assert r.images[0] == str(tiny_records.root / tiny_records.records[0]["images"][0])


def test_roomplan_records(tiny_records):
    roomplan = pytest.importorskip("vqkit.roomplan")
    room = roomplan.Room(walls=[roomplan.Wall("w0", (0.0, 1.5, 1.3), 3.0, 2.6, 0.0)])
    rec = _one(tiny_records, answer=None, roomplan=room.to_capturedroom(), question="Describe the layout.")
    path = tiny_records.root / "rp.jsonl"
    path.write_text(json.dumps(rec) + "\n")
    (r,) = load_records(str(path))
    assert r.answer is None and r.target_text() == room.to_text()
    rec["roomplan"] = {"walls": [{"dimensions": [3, 2.6, 0], "transform": [0, 1]}]}
    path.write_text(json.dumps(rec) + "\n")
    with pytest.raises(DataError, match="field 'roomplan'"):
        load_records(str(path))


def test_questions_about_the_same_views_share_one_checked_geometry(tiny_records):
    """Records repeating a view set and its geom_token share one read-only Geometry; a repeat whose
    geom_token differs is checked on its own (an error names its own line)."""
    first = _one(tiny_records, id="q0")
    second = _one(tiny_records, id="q1", question="And the other one?")
    moved = _one(tiny_records, id="q2")
    moved["geom_token"]["t"][0] = [1.0, 2.0, 3.0]
    path = tiny_records.root / "repeat.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in (first, second, moved)))
    a, b, c = load_records(str(path))
    assert a.geometry is b.geometry and c.geometry is not a.geometry
    assert c.geometry.t[0].tolist() == [1.0, 2.0, 3.0] and a.geometry.t[0].tolist() != [1.0, 2.0, 3.0]
    assert not a.geometry.R.flags.writeable
    broken = _one(tiny_records, id="q3")
    broken["geom_token"]["R"][1] = [[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    path.write_text("".join(json.dumps(r) + "\n" for r in (first, second, broken)))
    with pytest.raises(DataError, match=r"repeat\.jsonl:3: field 'geom_token\.R': view 1 is not a rotation"):
        load_records(str(path))


def test_grounding_records_carry_a_box_instead_of_an_answer(tiny_records):
    box = {"label": "bed", "center": [1.0, 2.0, 0.5], "size": [1.6, 1.0, 2.0], "yaw": 1.5707963}
    rec = _one(tiny_records, answer=None, answers=None, task="grounding", box=box, description="the bed")
    path = tiny_records.root / "g.jsonl"
    path.write_text(json.dumps(rec) + "\n")
    (r,) = load_records(str(path))
    assert r.answer is None and r.answers == [] and r.box.category == "bed" and r.box.center == (1.0, 2.0, 0.5)
    assert r.target_text() == "bed x=100 y=200 w=160 h=100 d=200 yaw=90"
    meta = r.meta()
    assert meta["box"]["size"] == [1.6, 1.0, 2.0] and meta["description"] == "the bed"
    for bad, says in [({**rec, "box": {**box, "size": [1, -1, 1]}}, "field 'box': size must be positive"),
                      ({**rec, "box": {**box, "label": ""}}, "field 'box': label must be one word"),
                      ({**rec, "answer": "bed"}, "field 'answer': a grounding record's target is its 'box'"),
                      ({**rec, "box": None}, "field 'answer': missing")]:
        path.write_text(json.dumps(bad) + "\n")
        with pytest.raises(DataError, match=r"g\.jsonl:1: " + says.replace("(", r"\(").replace("'", "'")):
            load_records(str(path))
