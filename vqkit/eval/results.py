"""Evaluation results: prediction rows, their metrics, the files they live in, and the printed table.

``RUN/eval*/predictions.jsonl`` holds one row per example (index, id, task, qtype, question, prediction,
answers, scene_id, images, blind, and situation / the gold layout / a conversation's ``turn`` when
present); ``metrics.json`` holds
``overall`` (:func:`vqkit.eval.metrics.score` over every question-answering row), ``by_task``,
``by_qtype`` ({qtype: n, em, em_refined, and mra for numeric answers}), ``roomplan`` (Stage 2 layout scores, see
:func:`vqkit.roomplan.metrics.score_layouts`), ``grounding`` (Acc@0.25 / 0.5, see
:mod:`vqkit.eval.grounding`) and ``info``: how the predictions were made, including
what :func:`evaluation_info` records (the model folder, its training step, the data files, whether
the model was trained blind and whether its views were removed). Rows re-score without the model
(:func:`rescore`). Every rate is a percentage.

Two different experiments both lack vision tokens, and their folders keep them apart:

- a model *trained* blind (``data.blind: true``, the demo's ``RUN/blind/`` baseline) is evaluated as it
  was trained, into its own ``eval/`` folder;
- a model trained with views and evaluated with them *removed* (``vqkit eval --blind``) writes
  ``RUN/eval_views_removed/`` (:data:`VIEWS_REMOVED_DIR`), never ``RUN/eval/``.

Nothing here replaces an earlier evaluation silently: :func:`check_out_dir` refuses a folder that
already holds one unless told to overwrite.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from vqkit.errors import ConfigError, DataError
from vqkit.eval.grounding import grounding_fields, grounding_lines, is_grounding_row, score_grounding_rows
from vqkit.eval.metrics import score, sqa3d_label, sqa3d_qtype
from vqkit.roomplan import Room, score_layouts
from vqkit.utils.files import iter_jsonl, read_json, write_json_atomic, write_jsonl_atomic

PREDICTIONS_FILE = "predictions.jsonl"
METRICS_FILE = "metrics.json"
ROOMPLAN_TASK = "roomplan"
#: Where a model is evaluated as it was trained (with its views, or blind when it was trained blind).
EVAL_DIR = "eval"
#: Where a model trained with views is evaluated with its views removed (``vqkit eval --blind``).
VIEWS_REMOVED_DIR = "eval_views_removed"
#: The ``info`` keys that say which model and data made the predictions (kept when re-scoring).
PROVENANCE_KEYS = ("model", "step", "data", "trained_blind", "views_removed")
#: The trainer state a model folder or checkpoint carries (its ``step``), written by the training recipe.
TRAINER_STATE_FILE = "trainer_state.json"


def qtype_of(meta: dict) -> str:
    """The question type used for ``by_qtype``: an SQA3D record's SQA3D label (its own type when it is one,
    :func:`~vqkit.eval.metrics.sqa3d_label`); any other record's ``qtype``, else SQA3D's first-word type."""
    if meta.get("task") == "sqa3d":
        return sqa3d_label(meta.get("qtype"), meta.get("question") or "")
    return meta.get("qtype") or sqa3d_qtype(meta.get("question") or "")



def prediction_row(position: int, meta: dict, prediction: str, blind: bool, box_frame: str = "scene") -> dict:
    """One predictions.jsonl row; a grounding record's (``box_frame``: the frame the model writes boxes
    in, ``data.box_frame``) also keeps the gold and predicted boxes (:mod:`vqkit.eval.grounding`)."""
    task = meta.get("task")
    answers = [str(a) for a in meta.get("answers") or []]
    if not answers and meta.get("roomplan") is None and meta.get("answer") is not None:
        answers = [meta["answer"]]  # a QA record without "answers": its answer is the reference
    row = {"index": position, "id": meta.get("id"), "task": task, "qtype": qtype_of(meta),
           "question": meta.get("question"), "prediction": prediction, "answers": answers,
           "scene_id": meta.get("scene_id"), "images": meta.get("images"), "blind": blind}
    if meta.get("turn") is not None:
        row["turn"] = meta["turn"]  # a conversation's assistant turn: (id, turn) names the prediction
    if meta.get("situation"):
        row["situation"] = meta["situation"]
    if meta.get("roomplan") is not None:
        row["roomplan"] = meta["roomplan"]  # the gold layout, so re-scoring needs no data
    if meta.get("box") is not None:
        row.update(grounding_fields(meta, prediction, box_frame))
    return row



def is_layout_row(row: dict) -> bool:
    """A Stage 2 row (a layout to score as a room), as opposed to a question with reference answers."""
    return row.get("task") == ROOMPLAN_TASK or (row.get("roomplan") is not None and not row.get("answers"))



# --------------------------------------------------------------------------------------------
# Scoring
# --------------------------------------------------------------------------------------------


def _score_rows(rows: list[dict], language: bool) -> dict:
    return score([r["prediction"] for r in rows], [r["answers"] for r in rows], [qtype_of(r) for r in rows],
                 language=language)


def score_roomplan(rows: list[dict]) -> dict:
    """Stage 2 layout metrics of roomplan predictions (text) against their gold CapturedRoom dicts,
    with :func:`vqkit.roomplan.metrics.score_layouts`."""
    gold = []
    for r in rows:
        if r.get("roomplan") is None:
            raise DataError(f"prediction '{r.get('id')}': task roomplan but no gold 'roomplan' layout")
        gold.append(Room.from_capturedroom(r["roomplan"], where=f"record '{r.get('id')}' roomplan"))
    out = score_layouts([r["prediction"] for r in rows], gold)
    out["n"] = len(rows)
    return out


def compute_metrics(rows: list[dict], *, language: bool = True) -> dict:
    """Metrics of prediction rows (as written to predictions.jsonl).

    ``{"n", "overall": score(...) without by_qtype, "by_task": {task: score(...)},
    "by_qtype": {qtype: {n, em, em_refined[, mra]}}, "roomplan": layout scores or None, "grounding": box
    scores or None}``. ``overall`` covers the question-answering rows; Stage 2 rows (task roomplan) are
    scored as layouts only, grounding rows (a gold ``box``) by the IoU of their boxes only.
    """
    gr = [r for r in rows if is_grounding_row(r)]
    asked = [r for r in rows if not is_layout_row(r) and not is_grounding_row(r)]
    qa = [r for r in asked if r.get("answers")]  # a question without references is asked, never scored
    rp = [r for r in rows if is_layout_row(r)]
    out: dict[str, Any] = {"n": len(rows), "n_unanswered": len(asked) - len(qa)}
    if qa:
        overall = _score_rows(qa, language)
    else:
        overall = score([], [], [], language=False)
    out["by_qtype"] = overall.pop("by_qtype")
    out["overall"] = overall
    tasks: dict[str, list[dict]] = {}
    for r in qa:
        tasks.setdefault(r.get("task") or "unknown", []).append(r)
    by_task = {}
    for task in sorted(tasks):
        if len(tasks) == 1:
            by_task[task] = {**overall, "by_qtype": out["by_qtype"]}  # same rows: do not score twice
        else:
            by_task[task] = _score_rows(tasks[task], language)
    out["by_task"] = by_task
    out["roomplan"] = score_roomplan(rp) if rp else None
    out["grounding"] = score_grounding_rows(gr) if gr else None
    return out



# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------


def write_metrics(path: str | os.PathLike, metrics: dict) -> Path:
    """metrics.json, atomically (NaN written as null)."""
    return write_json_atomic(path, metrics, indent=2)


def write_results(out_dir: str | os.PathLike, predictions: list[dict], metrics: dict | None) -> Path:
    """Write ``predictions.jsonl`` (one row per example) and ``metrics.json`` into ``out_dir``
    (each file atomically). Call on rank 0 only."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_jsonl_atomic(out / PREDICTIONS_FILE, predictions, compact=False, ensure_ascii=False)
    if metrics is not None:
        write_metrics(out / METRICS_FILE, metrics)
    return out


def read_predictions(path: str | os.PathLike) -> list[dict]:
    """Rows of a predictions.jsonl; a malformed row raises DataError naming file, line and field."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: predictions file not found")
    rows = []
    for line_no, row in iter_jsonl(path):
        if not isinstance(row.get("prediction"), str):
            raise DataError(f"{path}:{line_no}: field 'prediction': expected a string")
        answers = row.get("answers")
        if is_grounding_row(row):
            if not isinstance(row.get("box"), dict):
                raise DataError(f"{path}:{line_no}: field 'box': a grounding prediction needs its gold box")
        elif is_layout_row(row):
            if not isinstance(row.get("roomplan"), dict):
                raise DataError(f"{path}:{line_no}: field 'roomplan': a roomplan prediction needs its gold layout")
        elif not (isinstance(answers, list) and all(isinstance(a, str) for a in answers)):
            raise DataError(f"{path}:{line_no}: field 'answers': expected a list of strings ([] for a question "
                            f"without references)")
        rows.append(row)
    if not rows:
        raise DataError(f"{path}: no predictions")
    return rows


def rescore(predictions_path: str | os.PathLike, *, language: bool = True) -> dict:
    """Metrics of an existing predictions.jsonl (no model, no images). The provenance
    (:data:`PROVENANCE_KEYS`) of the ``metrics.json`` beside it, when there is one, carries over."""
    rows = read_predictions(predictions_path)
    metrics = compute_metrics(rows, language=language)
    previous = Path(predictions_path).parent / METRICS_FILE
    try:
        old_info = (read_json(previous).get("info") or {}) if previous.is_file() else {}
    except DataError:
        old_info = {}  # an unreadable metrics.json is what re-scoring replaces
    metrics["info"] = {**{k: old_info[k] for k in PROVENANCE_KEYS if k in old_info},
                       "rescored_from": str(predictions_path), "examples": len(rows),
                       "blind": bool(rows[0].get("blind", False))}
    return metrics


def rescore_into(predictions_path: str | os.PathLike, out_dir: str | os.PathLike | None = None, *,
                 overwrite: bool = False, language: bool = True) -> tuple[dict, Path]:
    """Re-score a predictions.jsonl (:func:`rescore`) and write its ``metrics.json`` into ``out_dir``
    (default: beside the predictions, where it is re-scored in place; another folder that holds an
    evaluation is refused unless ``overwrite``). Returns the metrics and the file written."""
    out = Path(out_dir) if out_dir else Path(predictions_path).parent
    if out.resolve() != Path(predictions_path).resolve().parent:
        check_out_dir(out, overwrite)
    metrics = rescore(predictions_path, language=language)
    return metrics, write_metrics(out / METRICS_FILE, metrics)


# --------------------------------------------------------------------------------------------
# Table
# --------------------------------------------------------------------------------------------

_COLUMNS = [("n", "n"), ("em", "EM"), ("em_refined", "EM-R"), ("mra", "MRA"), ("bleu1", "B-1"), ("bleu4", "B-4"),
            ("meteor", "METEOR"), ("rouge_l", "ROUGE-L"), ("cider", "CIDEr")]


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        return str(value)
    return f"{value:.1f}"


def _roomplan_lines(rp: dict) -> list[str]:
    """Stage 2 rows of the table: parse rate and F1 per kind, in percent; a kind with no element on
    either side shows "-" (it has no score and counts in no average)."""
    parse = rp.get("parse_rate")
    rate = f"{_cell(parse)}%" if parse is not None else "-"
    lines = [f"roomplan ({rp.get('n', '?')} rooms, parse rate {rate}; F1 in percent)"]
    absent = []
    for kind in ("walls", "doors", "windows", "openings", "objects"):
        block = rp.get(kind)
        if not isinstance(block, dict):
            continue
        f1 = {k: v for k, v in block.items() if k.startswith("f1@")}
        if all(v is None for v in f1.values()):
            absent.append(kind)
        lines.append(f"  {kind:<10}" + "  ".join(f"{k} {_cell(v):>5}" for k, v in f1.items()))
    if absent:
        lines.append(f"  (-: no {', '.join(absent)} predicted or in gold; left out of any average)")
    return lines


def _qa_lines(metrics: dict) -> list[str]:
    """The question-answering rows of :func:`format_table`: overall, per task, per question type."""
    numeric = any(m.get("mra") is not None for m in metrics.get("by_qtype", {}).values())
    show = [c for c in _COLUMNS if c[0] in ("n", "em", "em_refined") or (c[0] == "mra" and numeric)
            or metrics["overall"].get(c[0]) is not None]
    rows: list[tuple[str, dict]] = [("overall", metrics["overall"])]
    if len(metrics.get("by_task", {})) > 1:
        rows += [(f"task {t}", m) for t, m in metrics["by_task"].items()]
    rows += [(f"qtype {q}", m) for q, m in metrics.get("by_qtype", {}).items()]
    width = max(16, *(len(name) + 1 for name, _ in rows))
    lines = [f"{'':<{width}}" + "".join(f"{title:>9}" for _, title in show)]
    for name, m in rows:
        lines.append(f"{name:<{width}}" + "".join(f"{_cell(m.get(key)):>9}" for key, _ in show))
    return lines


def format_table(metrics: dict) -> str:
    """The metrics as a readable table: overall, per task, per question type (and Stage 2 F1, grounding
    Acc@k), all rates in percent. An evaluation of Stage 2 layouts or grounding boxes alone has no
    question-answering rows: its table is their scores, without an empty "overall 0" row."""
    rp, gr = metrics.get("roomplan"), metrics.get("grounding")
    lines: list[str] = []
    if metrics["overall"].get("n") or not (rp or gr):
        lines = _qa_lines(metrics)
    if rp:
        lines += ([""] if lines else []) + _roomplan_lines(rp)
    if gr:
        lines += ([""] if lines else []) + grounding_lines(gr)
    info = metrics.get("info") or {}
    if info.get("skipped"):
        lines.append(f"skipped {len(info['skipped'])} record(s) whose files could not be decoded")
    return "\n".join(lines)



def default_out_dir(model_dir: str | os.PathLike, views_removed: bool) -> Path:
    """Where ``vqkit eval`` writes by default: RUN/eval for RUN/final (MODEL/eval for another model
    folder), or RUN/eval_views_removed when a model trained with views is evaluated without them."""
    model_dir = Path(model_dir)
    name = VIEWS_REMOVED_DIR if views_removed else EVAL_DIR
    return model_dir.parent / name if model_dir.name == "final" else model_dir / name


def holds_evaluation(out_dir: str | os.PathLike) -> str | None:
    """The name of the result file that makes ``out_dir`` hold an evaluation, or None."""
    for name in (PREDICTIONS_FILE, METRICS_FILE):
        if (Path(out_dir) / name).exists():
            return name
    return None


def check_out_dir(out_dir: str | os.PathLike, overwrite: bool) -> Path:
    """Refuse to write results into a folder that holds an earlier evaluation unless ``overwrite``
    (``vqkit eval --overwrite``): results are never replaced silently."""
    out = Path(out_dir)
    found = holds_evaluation(out)
    if found and not overwrite:
        raise ConfigError(f"{out} already holds an evaluation ({found}); choose another --out, or add "
                          f"--overwrite to replace it")
    return out


def trained_step(model_dir: str | os.PathLike) -> int | None:
    """The training step a model folder was saved at (its ``trainer_state.json``), or None if unknown."""
    path = Path(model_dir) / TRAINER_STATE_FILE
    if not path.is_file():
        return None
    try:
        step = read_json(path).get("step")
    except DataError:
        return None
    return step if isinstance(step, int) else None


def evaluation_info(model_dir: str | os.PathLike | None, cfg, data: Any, blind: bool) -> dict:
    """What ``metrics.json``'s ``info`` records about where its predictions came from.

    ``model`` (the folder), ``step`` (its training step, None if unknown), ``data`` (the record files
    evaluated: ``data`` as given, or the config's ``data.val``), ``trained_blind`` (the model was trained
    without views, ``data.blind``) and ``views_removed`` (a model trained with views evaluated without
    them: not the same experiment as a blind-trained baseline).
    """
    if data is None:
        files = [s.path for s in cfg.data.val]
    else:
        items = data if isinstance(data, (list, tuple)) else [data]
        files = [str(x) if isinstance(x, (str, os.PathLike)) else str(getattr(x, "path", type(x).__name__))
                 for x in items]
    trained_blind = bool(cfg.data.blind)
    return {"model": None if model_dir is None else str(model_dir),
            "step": None if model_dir is None else trained_step(model_dir),
            "data": [str(Path(f).resolve()) if "*" not in str(f) else str(f) for f in files],
            "trained_blind": trained_blind, "views_removed": bool(blind) and not trained_blind}
