"""The documents, prompts and scores of vqkit's lmms-eval tasks over a ``vqkit synth`` folder (the task
YAMLs in :mod:`vqkit.lmms.tasks` name these functions); nothing here imports lmms-eval.

- ``vqkit_synth_val``: the folder's ``val.jsonl`` questions, scored as ``vqkit eval`` scores them: EM and
  refined EM overall and per question type, MRA beside EM for counting and measurement.
- ``vqkit_spatial``: VSI-Bench-style questions about the same rooms (:mod:`vqkit.synth.spatial`), scored as
  VSI-Bench scores them: MRA for numeric answers, option-letter accuracy for multiple choice, and the
  overall score as VSI-Bench's, the mean over question types with its three relative-direction levels
  counted as one.

Every score is a percentage. The folder is ``data/synth`` of the working directory (what ``make demo``
writes) unless the environment variable :data:`SYNTH_DIR_ENV` names another. A document carries its views
(absolute paths: ``images``), and ``cameras``, their cameras as ``vqkit synth``'s ``cameras.json`` writes
them (a JSON string), which the vqkit model reads for its geometry tokens.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from PIL import Image

from vqkit.data.schema import load_records
from vqkit.errors import DataError
from vqkit.eval.metrics import exact_match, mra_score, refined_match, spatial_score
from vqkit.synth.questions import QTYPES
from vqkit.synth.spatial import spatial_records
from vqkit.utils.files import iter_jsonl

SYNTH_DIR_ENV = "VQKIT_SYNTH_DIR"
DEFAULT_SYNTH_DIR = "data/synth"
SYNTH_MRA_QTYPES = ("counting", "measurement")
# VSI-Bench's per-type scores, in its order; the three relative-direction levels are averaged into one.
SPATIAL_SCORES = {"object_counting": "object_counting_mra", "object_abs_distance": "object_abs_distance_mra",
                  "object_size_estimation": "object_size_estimation_mra",
                  "room_size_estimation": "room_size_estimation_mra",
                  "object_rel_distance": "object_rel_distance_accuracy",
                  "object_rel_direction": "object_rel_direction_accuracy",
                  "obj_appearance_order": "obj_appearance_order_accuracy"}


def synth_dir(configured: str | None = None) -> Path:
    """The synthetic folder: ``$VQKIT_SYNTH_DIR``, else ``configured`` (the task's ``dataset_path``), else
    ``data/synth``; checked to hold a ``vqkit synth`` output."""
    folder = Path(os.environ.get(SYNTH_DIR_ENV) or configured or DEFAULT_SYNTH_DIR).expanduser()
    if not (folder / "val.jsonl").is_file():
        raise DataError(f"{folder}: no val.jsonl here (run from the folder that holds data/synth, e.g. after "
                        f"`make demo`, or generate one with `vqkit synth --out DIR` and set {SYNTH_DIR_ENV}=DIR)")
    return folder.resolve()


def _cameras(token: dict | None, images: list[str]) -> str:
    """A record's ``geom_token`` as ``cameras.json`` entries (one per view, named by its image file), as JSON."""
    if not token:
        return ""
    keys = [k for k in ("R", "t", "K", "depth_hist") if token.get(k) is not None]
    return json.dumps([{"image": Path(path).name, **{k: token[k][v] for k in keys}} for v, path in enumerate(images)])


def _doc(rec: dict, images: list[str], line: int) -> dict:
    return {"id": str(rec.get("id", line)), "scene_id": rec.get("scene_id") or "", "qtype": rec.get("qtype") or "",
            "question": rec["question"], "situation": rec.get("situation") or "",
            "answers": [str(a) for a in rec.get("answers") or [rec["answer"]]], "options": rec.get("options") or [],
            "images": images, "cameras": _cameras(rec.get("geom_token"), images)}


def synth_docs(folder: str | Path, split: str = "val") -> list[dict]:
    """The documents of ``vqkit_synth_val``: the split's records in file order (checked by vqkit's record
    reader first: a bad record is an error naming its line)."""
    path = Path(folder) / f"{split}.jsonl"
    records = load_records(str(path))
    return [_doc(raw, r.images, line) for r, (line, raw) in zip(records, iter_jsonl(path), strict=True)]


def spatial_docs(folder: str | Path, split: str = "val") -> list[dict]:
    """The documents of ``vqkit_spatial``: :func:`vqkit.synth.spatial.spatial_records` of the split's rooms."""
    folder = Path(folder)
    return [_doc(r, [str(folder / p) for p in r["images"]], k) for k, r in enumerate(spatial_records(folder, split))]


# ------------------------------------------------------------------------------------------------
# lmms-eval's task functions
# ------------------------------------------------------------------------------------------------


def doc_to_visual(doc: dict) -> list[Image.Image]:
    """The document's views as PIL images (opened lazily; any lmms-eval model takes them)."""
    return [Image.open(p) for p in doc["images"]]


def doc_to_target(doc: dict) -> str:
    """The reference answer (the number, the option letter or the word)."""
    return doc["answers"][0]


def _kwarg(kwargs: dict | None, key: str, default: str = "") -> str:
    value = (kwargs or {}).get(key)
    return default if value is None else str(value)


def synth_doc_to_text(doc: dict, lmms_eval_specific_kwargs: dict | None = None) -> str:
    """The question as ``vqkit eval`` words it (the situation, a space, the question), then the task's
    ``post_prompt`` (none in ``vqkit_synth_val.yaml``: every model gets ``vqkit eval``'s words)."""
    text = f"{doc['situation']} {doc['question']}" if doc["situation"] else doc["question"]
    return text + _kwarg(lmms_eval_specific_kwargs, "post_prompt")


def spatial_doc_to_text(doc: dict, lmms_eval_specific_kwargs: dict | None = None) -> str:
    """VSI-Bench's prompt: ``pre_prompt``, the question, the options of a multiple-choice question and the
    post prompt of its kind (``na_post_prompt`` or ``mca_post_prompt``), one per line; empty parts left out."""
    if doc["options"]:
        parts = [_kwarg(lmms_eval_specific_kwargs, "pre_prompt"), doc["question"],
                 "Options:\n" + "\n".join(doc["options"]), _kwarg(lmms_eval_specific_kwargs, "mca_post_prompt")]
    else:
        parts = [_kwarg(lmms_eval_specific_kwargs, "pre_prompt"), doc["question"],
                 _kwarg(lmms_eval_specific_kwargs, "na_post_prompt")]
    return "\n".join(p for p in parts if p)


def synth_process_results(doc: dict, results: list[str]) -> dict:
    """One answer's EM, refined EM and (counting and measurement) MRA, under every metric name."""
    pred = results[0]
    row = {"qtype": doc["qtype"], "em": float(exact_match(pred, doc["answers"])),
           "em_refined": float(refined_match(pred, doc["answers"])),
           "mra": mra_score(pred, doc["answers"]) if doc["qtype"] in SYNTH_MRA_QTYPES else None}
    return {name: row for name in SYNTH_METRICS}


def spatial_process_results(doc: dict, results: list[str]) -> dict:
    """One answer scored as VSI-Bench scores its question type, under every metric name."""
    row = {"qtype": doc["qtype"], "score": spatial_score(results[0], doc["answers"][0], doc["qtype"])}
    return {name: row for name in SPATIAL_METRICS}


def _mean100(values: list[float]) -> float:
    values = [v for v in values if v is not None]
    return 100.0 * sum(values) / len(values) if values else float("nan")


def synth_em(rows: list[dict]) -> float:
    return _mean100([r["em"] for r in rows])


def synth_em_refined(rows: list[dict]) -> float:
    return _mean100([r["em_refined"] for r in rows])


def _synth_qtype(metric: str, qtype: str):
    def aggregate(rows: list[dict]) -> float:
        return _mean100([r[metric] for r in rows if r["qtype"] == qtype])

    aggregate.__name__ = f"synth_{metric}_{qtype}"
    return aggregate


def _spatial_score(kind: str):
    def aggregate(rows: list[dict]) -> float:
        if kind == "object_rel_direction":  # VSI-Bench: the mean of its three levels' accuracies
            levels = [_mean100([r["score"] for r in rows if r["qtype"] == f"{kind}_{x}"])
                      for x in ("easy", "medium", "hard")]
            levels = [v for v in levels if v == v]
            return sum(levels) / len(levels) if levels else float("nan")
        return _mean100([r["score"] for r in rows if r["qtype"] == kind])

    aggregate.__name__ = SPATIAL_SCORES[kind]
    return aggregate


def spatial_overall(rows: list[dict]) -> float:
    """VSI-Bench's overall score: the mean of the per-type scores this set has."""
    scores = [v for v in (_spatial_score(k)(rows) for k in SPATIAL_SCORES) if v == v]
    return sum(scores) / len(scores) if scores else float("nan")


# The aggregation functions the YAMLs name, one per metric.
synth_em_counting = _synth_qtype("em", "counting")
synth_em_colour = _synth_qtype("em", "colour")
synth_em_existence = _synth_qtype("em", "existence")
synth_em_relation = _synth_qtype("em", "relation")
synth_em_measurement = _synth_qtype("em", "measurement")
synth_em_situated = _synth_qtype("em", "situated")
synth_em_what_colour_object = _synth_qtype("em", "what_colour_object")
synth_em_room_colour = _synth_qtype("em", "room_colour")
synth_mra_counting = _synth_qtype("mra", "counting")
synth_mra_measurement = _synth_qtype("mra", "measurement")
object_counting_mra = _spatial_score("object_counting")
object_abs_distance_mra = _spatial_score("object_abs_distance")
object_size_estimation_mra = _spatial_score("object_size_estimation")
room_size_estimation_mra = _spatial_score("room_size_estimation")
object_rel_distance_accuracy = _spatial_score("object_rel_distance")
object_rel_direction_accuracy = _spatial_score("object_rel_direction")
obj_appearance_order_accuracy = _spatial_score("obj_appearance_order")
SYNTH_METRICS = ("em", "em_refined", *(f"mra_{q}" for q in SYNTH_MRA_QTYPES), *(f"em_{q}" for q in QTYPES))
SPATIAL_METRICS = ("overall", *SPATIAL_SCORES.values())
