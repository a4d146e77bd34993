"""vqkit.synth grounding questions: every expression names its target and no other object of the room,
the split is ScanRefer's, the files are deterministic, and every other file is byte-identical."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from vqkit import cameras as geo
from vqkit import synth
from vqkit.commands.synth import main as synth_command
from vqkit.roomplan.grounding import box_from_dict, grounding_question
from vqkit.synth.benchmark import GROUNDING_STATS, SPLITS, add_grounding, has_grounding
from vqkit.synth.catalogue import CATEGORIES
from vqkit.synth.grounding import MARGIN_M, MARGIN_PX

KW = dict(scenes=8, views=3, image_size=48, seed=5, workers=1, progress=False)


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    """The same rooms generated without and with grounding (and the describe question, 12 training questions)."""
    root = tmp_path_factory.mktemp("grounding")
    kw = dict(KW, train_questions_per_scene=12, train_describe=True)
    synth.generate(root / "plain", **kw)
    synth.generate(root / "grounded", grounding=True, **kw)
    return root / "plain", root / "grounded"


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != "stats.json"}


def _records(folder: Path, split: str) -> list[dict]:
    return [json.loads(line) for line in (folder / f"grounding_{split}.jsonl").read_text().splitlines()]


def test_every_other_file_is_byte_identical(sets):
    plain, grounded = sets
    before, after = _files(plain), _files(grounded)
    added = sorted(set(after) - set(before))
    assert added == [GROUNDING_STATS] + [f"grounding_{s}.jsonl" for s in ("test", "train", "val")]
    for name, data in before.items():  # QA and layout files, images, layouts, cameras, the tokenizer
        assert after[name] == data, name
    stats = [json.loads((d / "stats.json").read_text()) for d in sets]
    untimed = [{k: v for k, v in st.items() if k != "timings"} for st in stats]
    assert untimed[0] == untimed[1]


def test_added_to_an_existing_set_gives_the_same_files(sets, tmp_path):
    plain, grounded = sets
    copy = shutil.copytree(plain, tmp_path / "copy")
    assert not has_grounding(copy)
    stats = add_grounding(copy)
    assert has_grounding(copy)
    for name in [GROUNDING_STATS] + [f"grounding_{s}.jsonl" for s in SPLITS]:
        assert (copy / name).read_bytes() == (grounded / name).read_bytes(), name
    assert sum(s["n"] for s in stats["splits"].values()) > 0


def test_expressions_name_their_target_and_no_other_object(sets):
    _, grounded = sets
    seen_relations, seen_qtypes = set(), set()
    for split in SPLITS:
        records = _records(grounded, split)
        for rec in records:
            layout = json.loads((grounded / "scenes" / rec["scene_id"] / "layout.json").read_text())
            cameras = json.loads((grounded / "scenes" / rec["scene_id"] / "cameras.json").read_text())
            target = next(o for o in layout["objects"] if o["id"] == rec["object_id"])
            same = [o for o in layout["objects"] if o["category"] == target["category"]]
            box = box_from_dict(rec["box"])
            assert box.category == target["category"] and np.allclose(box.center, target["center"])
            assert np.allclose(box.size, target["size"]) and box.yaw == pytest.approx(target["yaw"])
            assert target["visible_views"], "only objects a view shows well are targets"
            word = CATEGORIES[target["category"]][0]
            assert rec["description"] in (f"the {word}", f"the {target['colour']} {word}") or rec["qtype"] == "multiple"
            assert rec["question"] == grounding_question(rec["description"]) and rec["task"] == "grounding"
            assert rec["qtype"] == ("unique" if len(same) == 1 else "multiple")
            if rec["qtype"] == "multiple":
                _check_relation(rec, target, [o for o in same if o is not target], layout, cameras)
            seen_relations.add(rec["relation"])
            seen_qtypes.add(rec["qtype"])
        ids = [r["id"] for r in records]
        assert len(ids) == len(set(ids))
    assert seen_qtypes == {"unique", "multiple"} and {"nearest", "none"} <= seen_relations


def _check_relation(rec: dict, target: dict, rivals: list[dict], layout: dict, cameras: list[dict]) -> None:
    """The relation holds for the target against every rival, with the generator's margin."""
    desc, kind = rec["description"], rec["relation"]
    xy = lambda o: np.asarray(o["center"][:2])  # noqa: E731
    if kind in ("nearest", "farthest"):
        name = desc.split(" the ")[-1]
        if name in ("door", "window"):
            marks = layout[f"{name}s"]
        else:
            cat = next(c for c, words in CATEGORIES.items() if words[0] == name)
            marks = [o for o in layout["objects"] if o["category"] == cat]
        assert len(marks) == 1, "a landmark is the only one of its kind"
        d = lambda o: np.linalg.norm(xy(o) - xy(marks[0]))  # noqa: E731
        if kind == "nearest":
            assert all(d(target) + MARGIN_M <= d(o) + 1e-9 for o in rivals)
        else:
            assert all(d(target) >= d(o) + MARGIN_M - 1e-9 for o in rivals)
    elif kind in ("leftmost", "rightmost"):
        cam = cameras[0]
        pix, _ = geo.project(np.array([target["center"]] + [o["center"] for o in rivals]), np.array(cam["R"]),
                             np.array(cam["t"]), np.array(cam["K"]))
        sign = 1 if kind == "leftmost" else -1
        assert all(sign * (x - pix[0, 0]) >= MARGIN_PX * cam["width"] - 1e-9 for x in pix[1:, 0])
    else:
        assert kind == "on" and target["on"] and not any(o.get("on") for o in rivals)


def test_records_load_and_the_target_text_is_the_box_line(sets):
    from vqkit.data.schema import load_records

    _, grounded = sets
    recs = load_records(str(grounded / "grounding_train.jsonl"))
    assert recs and all(r.box is not None and r.answer is None for r in recs)
    text = recs[0].target_text()
    assert text.startswith(recs[0].box.category + " x=") and " yaw=" in text


def test_cli_writes_the_grounding_files(tmp_path, capsys):
    rc = synth_command(["--out", str(tmp_path), "--scenes", "3", "--views", "2", "--image-size", "32", "--seed", "2",
                        "--workers", "1", "--quiet", "--no-tokenizer", "--grounding"])
    assert rc == 0 and has_grounding(tmp_path)
    assert "grounding questions in" in capsys.readouterr().out


def test_ensure_synth_adds_grounding_to_a_reused_set(tmp_path, capsys):
    kw = dict(scenes=3, views=2, image_size=32, seed=1, progress=False)
    synth.ensure_synth(tmp_path, **kw)
    train = (tmp_path / "train.jsonl").stat().st_mtime_ns
    capsys.readouterr()
    synth.ensure_synth(tmp_path, grounding=True, **kw)
    assert capsys.readouterr().out.endswith(f"adding grounding questions to {tmp_path}\n")
    assert has_grounding(tmp_path) and (tmp_path / "train.jsonl").stat().st_mtime_ns == train


def test_grounding_follows_the_splits_a_set_holds(sets, tmp_path):
    """A set of some splits gets those splits' grounding files, byte-identical to a full set's; rooms made
    again without grounding leave no grounding files of the earlier rooms behind."""
    _, grounded = sets
    part = tmp_path / "part"
    synth.generate(part, grounding=True, splits=("train", "val"), train_questions_per_scene=12,
                   train_describe=True, **KW)
    assert has_grounding(part) and not (part / "grounding_test.jsonl").exists()
    for split in ("train", "val"):
        name = f"grounding_{split}.jsonl"
        assert (part / name).read_bytes() == (grounded / name).read_bytes(), name
    assert set(json.loads((part / GROUNDING_STATS).read_text())["splits"]) == {"train", "val"}
    synth.generate(part, **dict(KW, seed=6))  # other rooms, no grounding asked
    assert not has_grounding(part) and not list(part.glob("grounding_*"))
