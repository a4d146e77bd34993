"""ScanQA's test-server submission from ``vqkit eval --scanqa-export``: its schema and its boxes."""

from __future__ import annotations

import json
import math

import pytest

from vqkit.commands import main as vqkit_main
from vqkit.errors import DataError
from vqkit.eval.scanqa_export import check_submission, scanqa_corners
from vqkit.roomplan import RoomObject


def test_corners_are_scanqas_get_3d_box_of_the_axis_aligned_extent():
    box = RoomObject("b", "bed", (2.0, 3.0, 0.5), (1.6, 1.0, 2.0), 0.0)  # x extent 1.6, y extent 2.0, height 1.0
    c = scanqa_corners(box)
    # get_3d_box((l, w, h) = (1.6, 2.0, 1.0), 0, centre): x +-l/2, second axis +-h/2, third axis +-w/2
    assert c[0] == pytest.approx([2.8, 3.5, 1.5]) and c[1] == pytest.approx([2.8, 3.5, -0.5])
    assert c[2] == pytest.approx([1.2, 3.5, -0.5]) and c[6] == pytest.approx([1.2, 2.5, -0.5])
    turned = RoomObject("b", "bed", (2.0, 3.0, 0.5), (1.6, 1.0, 2.0), math.pi / 2)  # now 2.0 along x
    assert max(p[0] for p in scanqa_corners(turned)) == pytest.approx(3.0)
    assert scanqa_corners(None) == [[0.0, 0.0, 0.0]] * 8


def _item(**change):
    item = {"scene_id": "scene0000_00", "question_id": "test-scene0000_00-0", "answer_top10": ["a"] * 10,
            "bbox": [[0.0, 1.0, 2.0]] * 8}
    return {**item, **change}


@pytest.mark.parametrize("bad, says", [
    ([], "non-empty JSON list"), ([_item(answer_top10=["a"] * 9)], "answer_top10"),
    ([_item(bbox=[[0, 1]] * 8)], "8 corners of 3 finite numbers"), ([_item(bbox=[[0, 1, 2]] * 7)], "8 corners"),
    ([_item(bbox=[[0, 1, float("nan")]] * 8)], "finite"), ([_item(question_id=7)], "question_id"),
    ([{**_item(), "extra": 1}], "exactly scene_id"),
])
def test_schema_check_refuses_what_the_server_would_not_read(bad, says):
    check_submission([_item()])
    with pytest.raises(DataError, match=says):
        check_submission(bad)


def test_cli_writes_a_submission_that_passes_the_schema(tiny_model_dir, eval_records, tmp_path, capsys):
    """Test-split records (answers [], no answer) with and without geometry -> 10 answers and a box each."""
    lines = [json.loads(line) for line in eval_records.read_text().splitlines()]
    records = []
    for k, rec in enumerate(lines[:3]):
        rec = {key: v for key, v in rec.items() if key not in ("answer", "situation")}
        records.append({**rec, "id": f"test_w_obj-scene{k:04d}_00-{k}", "scene_id": f"scene{k:04d}_00",
                        "task": "scanqa", "answers": []})
    path = eval_records.parent / "scanqa_test.jsonl"  # beside the images (the data root)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    out = tmp_path / "pred.test_w_obj.json"
    args = ["eval", "--model", str(tiny_model_dir), "--data", str(path), "--scanqa-export", str(out),
            "--set", "eval.grounding_max_new_tokens=6"]
    assert vqkit_main(args) == 0
    items = json.loads(out.read_text())
    check_submission(items)
    assert [i["question_id"] for i in items] == [r["id"] for r in records]
    assert [i["scene_id"] for i in items] == [r["scene_id"] for r in records]
    for item in items:
        assert len(item["answer_top10"]) == 10 and all(isinstance(a, str) for a in item["answer_top10"])
        assert len(item["bbox"]) == 8 and all(len(c) == 3 for c in item["bbox"])
    assert "3 questions: 10 answers each" in capsys.readouterr().out
    assert vqkit_main(args) == 2  # an existing file is not replaced without --overwrite
    assert "already exists" in capsys.readouterr().err
