"""Grounding in vqkit eval: rows keep the gold and predicted boxes, Acc@0.25 / 0.5 overall and per
subset, parse rate, re-scoring from the file, the first-view frame turned back into the scene frame."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest

from vqkit import cameras as G
from vqkit.errors import DataError
from vqkit.eval.generate import evaluate
from vqkit.eval.results import compute_metrics, format_table, prediction_row, read_predictions, rescore, write_results
from vqkit.models.builder import load_model
from vqkit.roomplan import RoomObject
from vqkit.roomplan.grounding import box_text, box_to_dict, first_view_frame, grounding_question

GOLD = RoomObject("t", "bed", (2.0, 3.0, 0.5), (1.6, 1.0, 2.0), 0.0)
POSE = G.look_at(np.array([0.5, 0.5, 1.5]), np.array([3.0, 4.0, 0.5]))


def _meta(i: int, qtype: str, pose=POSE) -> dict:
    return {"id": f"g{i}", "task": "grounding", "qtype": qtype, "question": grounding_question("the bed"),
            "answers": [], "scene_id": "s", "images": ["a.png"], "box": box_to_dict(GOLD),
            "view_pose": [pose[0].tolist(), pose[1].tolist()], "description": "the bed", "object_id": "o1"}


def _rows(box_frame: str) -> list[dict]:
    frame = first_view_frame(*POSE) if box_frame == "first_view" else None
    shifted = RoomObject("p", "bed", (2.0 + 0.8, 3.0, 0.5), GOLD.size, 0.0)  # IoU 1/3
    turned = RoomObject("p", "chair", GOLD.center, GOLD.size, math.pi / 2)  # another label, turned 90 deg
    texts = [box_text(b, frame) if frame else box_text(b) for b in (GOLD, shifted, turned)]
    texts.insert(2, "bed x=1 y=")  # truncated
    return [prediction_row(i, _meta(i, q), t, False, box_frame=box_frame)
            for i, (q, t) in enumerate(zip(["unique", "multiple", "multiple", "unique"], texts, strict=True))]


@pytest.mark.parametrize("box_frame", ["scene", "first_view"])
def test_rows_keep_both_boxes_and_score_in_the_scene_frame(box_frame, tmp_path):
    rows = _rows(box_frame)
    assert rows[0]["pred_box"]["center"] == pytest.approx([2.0, 3.0, 0.5], abs=0.011)
    assert rows[0]["box"] == box_to_dict(GOLD, digits=6) and rows[0]["box_frame"] == box_frame
    assert ("view_pose" in rows[0]) == (box_frame == "first_view")
    assert rows[2]["pred_box"] is None and rows[2]["parse_problems"]
    assert rows[0]["description"] == "the bed" and rows[0]["object_id"] == "o1"
    m = compute_metrics(rows, language=False)
    g = m["grounding"]
    assert m["overall"]["n"] == 0 and m["roomplan"] is None
    # the turned box: 1.6 x 2.0 against 2.0 x 1.6 on the same centre, IoU 1.6^2 / (2 * 3.2 - 1.6^2) = 0.67
    assert g["n"] == 4 and g["acc@0.25"] == 75.0 and g["acc@0.5"] == 50.0 and g["parse_rate"] == 75.0
    assert g["by_subset"]["unique"]["acc@0.5"] == 100.0 and g["by_subset"]["multiple"]["acc@0.25"] == 50.0
    assert g["label_accuracy"] == 50.0 and g["no_box"] == 1
    table = format_table(m)
    assert table.startswith("grounding (4 expressions, parse rate 75.0%") and "multiple" in table
    write_results(tmp_path, rows, m)
    again = rescore(tmp_path / "predictions.jsonl", language=False)
    assert again["grounding"] == g


def test_predictions_file_needs_the_gold_box(tmp_path):
    row = _rows("scene")[0]
    del row["box"]
    (tmp_path / "p.jsonl").write_text(json.dumps(row) + "\n")
    with pytest.raises(DataError, match="field 'box'"):
        read_predictions(tmp_path / "p.jsonl")


def test_first_view_rows_without_a_pose_say_so():
    meta = _meta(0, "unique")
    meta["view_pose"] = None
    row = prediction_row(0, meta, "bed x=0 y=300 w=160 h=100 d=200 yaw=0", False, box_frame="first_view")
    assert row["pred_box"] is None and "camera geometry" in row["parse_problems"][0]


def test_grounding_records_end_to_end(tiny_model_dir, eval_records, tmp_path):
    """A grounding record (the eval fixture's views with geometry) is generated with the grounding budget,
    its row keeps both boxes, and QA records beside it keep their own scores."""
    model = load_model(tiny_model_dir)
    lines = eval_records.read_text().splitlines()
    posed = json.loads(lines[0])  # the record with camera geometry
    grounding = {"id": "g-0", "task": "grounding", "qtype": "unique", "images": posed["images"],
                 "geom_token": posed["geom_token"], "question": grounding_question("the bed"), "description": "the bed",
                 "box": box_to_dict(GOLD)}
    path = eval_records.parent / "mixed_grounding.jsonl"  # next to the images (the data root)
    path.write_text(json.dumps(grounding) + "\n" + lines[1] + "\n")
    cfg = copy.deepcopy(model.config)
    cfg.data.box_frame = "first_view"
    cfg.eval.grounding_max_new_tokens = 5
    seen = []
    original = model.generate
    model.generate = lambda batch, max_new_tokens, **kw: seen.append(max_new_tokens) or original(
        batch, max_new_tokens, **kw)
    rows, metrics = evaluate(model, cfg, path, batch_size=1, language=False, progress=False)
    assert seen == [5, cfg.eval.max_new_tokens]
    assert rows[0]["box"]["label"] == "bed" and rows[0]["view_pose"] is not None and "pred_box" in rows[0]
    assert metrics["grounding"]["n"] == 1 and metrics["overall"]["n"] == 1
    R0 = np.asarray(rows[0]["view_pose"][0])
    assert np.allclose(R0, posed["geom_token"]["R"][0], atol=1e-6)
    assert math.isfinite(metrics["grounding"]["mean_iou"])
    write_results(tmp_path, rows, metrics)
    assert rescore(Path(tmp_path) / "predictions.jsonl", language=False)["grounding"] == metrics["grounding"]
