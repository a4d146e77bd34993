"""``vqkit prep sqa3d``: questions joined with annotations, situation and position kept, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vqkit.commands.prep import main as prep_main
from vqkit.errors import DataError
from vqkit.prep import sqa3d


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _run(tree, out, annotations=None, *extra):
    return prep_main(["sqa3d", "--annotations", str(annotations or tree["sqa3d"]), "--scannet", str(tree["root"]),
                       "--out", str(out), "--num-views", "3", "--image-size", "112", *extra])


def test_join_keeps_situation_position_rotation_and_all_answers(scannet_tree, tmp_path):
    assert _run(scannet_tree, tmp_path) == 0
    qs = json.loads((scannet_tree["sqa3d"] / "v1_balanced_questions_train_scannetv2.json").read_text())["questions"]
    ann = json.loads((scannet_tree["sqa3d"] / "v1_balanced_sqa_annotations_train_scannetv2.json").read_text())
    ann = {a["question_id"]: a for a in ann["annotations"]}
    train = _read(tmp_path / "train.jsonl")
    assert len(train) == 8  # scene0009_00's 4 questions are skipped (no frames)
    by_id = {str(q["question_id"]): q for q in qs}
    for rec in train:
        q, a = by_id[rec["id"]], ann[int(rec["id"])]
        assert rec["task"] == "sqa3d" and rec["situation"] == q["situation"] and rec["question"] == q["question"]
        assert rec["answers"] == [x["answer"] for x in a["answers"]] and rec["answer"] == rec["answers"][0]
        assert rec["alternative_situation"] == q["alternative_situation"]
        np.testing.assert_allclose(rec["position"], [a["position"][k] for k in "xyz"])
        np.testing.assert_allclose(rec["rotation"], [a["rotation"][k] for k in ("_x", "_y", "_z", "_w")])
        assert rec["qtype"] == sqa3d.qtype(q["question"])
        assert len(rec["images"]) == 3 and all((tmp_path / p).is_file() for p in rec["images"])
    assert len(_read(tmp_path / "val.jsonl")) == 2


def test_records_load_with_the_kit_schema(scannet_tree, tmp_path):
    schema = pytest.importorskip("vqkit.data.schema")
    assert _run(scannet_tree, tmp_path) == 0
    records = schema.load_records(str(tmp_path / "train.jsonl"), depth_bins=16)
    assert len(records) == 8 and all(r.situation for r in records)


@pytest.mark.parametrize("question, expected", [
    ("What is in front of me?", "what"), ("is the door open?", "is"), ("How many chairs?", "how"),
    ("Can I sit?", "can"), ("Which way?", "which"), ("Am I facing the window?", "others"), ("", "others")])
def test_qtype_is_the_first_word(question, expected):
    assert sqa3d.qtype(question) == expected


def test_unannotated_questions_are_counted(scannet_tree, tmp_path):
    ann_dir = tmp_path / "ann"
    ann_dir.mkdir()
    for f in scannet_tree["sqa3d"].iterdir():
        (ann_dir / f.name).write_text(f.read_text())
    path = ann_dir / "v1_balanced_sqa_annotations_train_scannetv2.json"
    data = json.loads(path.read_text())
    data["annotations"] = data["annotations"][1:]
    path.write_text(json.dumps(data))
    assert _run(scannet_tree, tmp_path / "out", ann_dir) == 0
    summary = json.loads((tmp_path / "out" / "prep_summary.json").read_text())
    assert summary["skipped"]["questions without an annotation (train)"] == 1


def test_missing_or_malformed_files_name_the_file_and_field(scannet_tree, tmp_path):
    with pytest.raises(DataError, match="missing v1_balanced_questions_train_scannetv2.json"):
        _run(scannet_tree, tmp_path / "o", tmp_path)
    ann_dir = tmp_path / "ann"
    ann_dir.mkdir()
    for f in scannet_tree["sqa3d"].iterdir():
        (ann_dir / f.name).write_text(f.read_text())
    path = ann_dir / "v1_balanced_sqa_annotations_val_scannetv2.json"
    data = json.loads(path.read_text())
    data["annotations"][1]["position"] = {"x": 1.0}
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"annotations\[1\]\.position: expected an object with x, y, z"):
        _run(scannet_tree, tmp_path / "o", ann_dir)
