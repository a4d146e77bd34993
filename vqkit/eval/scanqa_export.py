"""ScanQA's test-server submission: ``vqkit eval --scanqa-export pred.test_w_obj.json``.

ScanQA's server takes, per test question, a JSON object ``{"scene_id", "question_id", "answer_top10",
"bbox"}`` (ATR-DBI/ScanQA ``scripts/predict.py``): the 10 best answers, best first, and the box of the
object the question is about as its 8 corners. vqkit makes both with one model:

- ``answer_top10``: beam search with 10 beams returning all 10 (``eval.max_new_tokens`` each), best first;
- ``bbox``: the same views asked for the box of the question's object, as a grounding question
  (``Locate: <the question>``), read as a grounding answer is (:mod:`vqkit.eval.grounding`: the frame of
  ``data.box_frame`` turned back into the scene frame with the first view's pose) and written as
  ScanQA's ``get_3d_box((dx, dy, dz), 0, centre)`` writes the corners of an axis-aligned box (ScanNet's
  boxes are axis-aligned; a turned box gives the extent of its corners). The records must be in the
  frame of ScanQA's boxes: ``vqkit prep scanqa --scans`` turns their poses into ScanNet's axis-aligned
  frame. An answer with no readable box gets the 8 corners of an empty box at the origin, and is counted.

:func:`check_submission` is the schema check (10 strings, 8 corners of 3 finite numbers, ids present).
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Sequence
from typing import Any

from vqkit.data.collate import Collator
from vqkit.errors import ConfigError, DataError
from vqkit.eval.generate import build_eval_dataset, unwrap_model
from vqkit.eval.grounding import read_prediction
from vqkit.roomplan.elements import RoomObject
from vqkit.roomplan.grounding import GROUNDING_TASK, box_corners, grounding_question
from vqkit.utils.files import write_json_atomic

TOP_K = 10


def scanqa_corners(box: RoomObject | None) -> list[list[float]]:
    """The 8 corners ScanQA's ``get_3d_box(size, 0, centre)`` gives the axis-aligned extent of ``box``
    (x +-dx/2 in the order + + - - + + - -, y +-dz/2 as its second axis, z +-dy/2 as its third, exactly as
    that function lays out (l, w, h) = (dx, dy, dz)); an empty box at the origin for None."""
    if box is None:
        return [[0.0, 0.0, 0.0] for _ in range(8)]
    corners = box_corners(box)
    lo, hi = corners.min(0), corners.max(0)
    (cx, cy, cz), (dx, dy, dz) = (lo + hi) / 2, hi - lo
    xs = [dx / 2, dx / 2, -dx / 2, -dx / 2, dx / 2, dx / 2, -dx / 2, -dx / 2]
    ys = [dz / 2, dz / 2, dz / 2, dz / 2, -dz / 2, -dz / 2, -dz / 2, -dz / 2]
    zs = [dy / 2, -dy / 2, -dy / 2, dy / 2, dy / 2, -dy / 2, -dy / 2, dy / 2]
    return [[round(float(cx + x), 6), round(float(cy + y), 6), round(float(cz + z), 6)] for x, y, z in zip(xs, ys, zs,
                                                                                                           strict=True)]


def check_submission(items: Any) -> None:
    """Refuse anything ScanQA's server would not read, naming the item and field (DataError)."""
    if not isinstance(items, list) or not items:
        raise DataError("ScanQA submission: expected a non-empty JSON list")
    for i, item in enumerate(items):
        where = f"ScanQA submission item {i}"
        if not isinstance(item, dict) or set(item) != {"scene_id", "question_id", "answer_top10", "bbox"}:
            raise DataError(f"{where}: expected exactly scene_id, question_id, answer_top10, bbox")
        for key in ("scene_id", "question_id"):
            if not isinstance(item[key], str) or not item[key]:
                raise DataError(f"{where}: field '{key}': expected a non-empty string")
        answers = item["answer_top10"]
        if not isinstance(answers, list) or len(answers) != TOP_K or not all(isinstance(a, str) for a in answers):
            raise DataError(f"{where}: field 'answer_top10': expected {TOP_K} strings")
        bbox = item["bbox"]
        if not (isinstance(bbox, list) and len(bbox) == 8 and all(
                isinstance(c, list) and len(c) == 3 and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                              and math.isfinite(v) for v in c) for c in bbox)):
            raise DataError(f"{where}: field 'bbox': expected 8 corners of 3 finite numbers")


def _first_view_pose(sample: dict) -> list | None:
    """The world-to-camera pose of a sample's first view (None without geometry)."""
    if not sample.get("has_geometry"):
        return None
    return [sample["R"][0].tolist(), sample["t"][0].tolist()]


def scanqa_submission(model, cfg=None, data: Any = None, *, batch_size: int | None = None, limit: int | None = None,
                      progress: bool = True) -> tuple[list[dict], dict]:
    """The submission items of every record of ``data`` (ScanQA records: ``scene_id`` and ``id`` = the
    question id) and a count of what was made: ``{"n", "no_box", "box_problems"}``. One process."""
    from tqdm.auto import tqdm

    core = unwrap_model(model)
    cfg = cfg if cfg is not None else core.config
    if cfg.data.blind:
        raise ConfigError("--scanqa-export needs a model that sees the views (this one was trained blind)")
    dataset = build_eval_dataset(cfg, data)
    n = len(dataset) if limit is None else min(int(limit), len(dataset))
    batch_size = int(batch_size or cfg.eval.batch_size)
    collator = Collator(core.tokenizer, cfg.model, cfg.data, mode="generate")
    items, stats = [], {"n": n, "no_box": 0, "box_problems": 0}
    for start in tqdm(range(0, n, batch_size), desc="scanqa export", unit="batch", disable=not progress):
        samples = [dataset[i] for i in range(start, min(n, start + batch_size))]
        answers = core.generate(collator(samples), max_new_tokens=cfg.eval.max_new_tokens, num_beams=TOP_K,
                                num_return_sequences=TOP_K, do_sample=False)
        grounding = [_as_grounding(s) for s in samples]
        boxes = core.generate(collator(grounding), max_new_tokens=cfg.eval.grounding_max_new_tokens)
        for k, (sample, text) in enumerate(zip(samples, boxes, strict=True)):
            box, problems = read_prediction(text, cfg.data.box_frame, _first_view_pose(sample))
            stats["no_box"] += box is None
            stats["box_problems"] += len(problems)
            meta = sample["meta"]
            if not meta.get("scene_id") or not meta.get("id"):
                raise DataError(f"{meta.get('source')}:{meta.get('line')}: a ScanQA record needs scene_id and id "
                                f"(the question id)")
            items.append({"scene_id": str(meta["scene_id"]), "question_id": str(meta["id"]),
                          "answer_top10": answers[k * TOP_K:(k + 1) * TOP_K], "bbox": scanqa_corners(box)})
    return items, stats


def _as_grounding(sample: dict) -> dict:
    """The same views asked for the box of the question's object."""
    out = copy.copy(sample)
    out["question"] = grounding_question(sample["question"])
    out["situation"], out["answer"] = None, None
    out["meta"] = {**sample["meta"], "task": GROUNDING_TASK}
    return out


def write_submission(path: str | os.PathLike, items: Sequence[dict]) -> None:
    """Check the items (:func:`check_submission`) and write them as one JSON list, atomically."""
    check_submission(list(items))
    write_json_atomic(path, list(items), indent=1)


def submission_summary(stats: dict) -> str:
    return (f"{stats['n']} questions: 10 answers each (beam search), a box each ({stats['no_box']} without a "
            f"readable box: an empty box at the origin)")

