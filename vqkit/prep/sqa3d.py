"""``vqkit prep sqa3d``: SQA3D situated questions joined with each scene's ScanNet frames.

Input (one pair per split): ``v1_balanced_questions_<split>_scannetv2.json`` ``{questions: [{scene_id,
situation, alternative_situation[], question, question_id}]}`` and
``v1_balanced_sqa_annotations_<split>_scannetv2.json`` ``{annotations: [{scene_id, question_id,
answers: [{answer, ...}], position {x,y,z}, rotation {_x,_y,_z,_w}}]}``, joined on ``question_id``.

Each record keeps ``situation``, ``alternative_situation``, the situated ``position`` [x, y, z] and
``rotation`` [x, y, z, w] (a quaternion, as SQA3D gives it, in the ScanNet scene frame), ``qtype``
(SQA3D's label: the question's first word, what/is/how/can/which, else others), ``answers`` and ``answer``.
"""

from __future__ import annotations

from pathlib import Path

from vqkit.errors import DataError
from vqkit.prep import common as C
from vqkit.prep import scannet

SPLITS = ("train", "val", "test")
QTYPES = ("what", "is", "how", "can", "which")


def qtype(question: str) -> str:
    """SQA3D's question type: the first word (what/is/how/can/which), else 'others' (the rule of
    ``vqkit.eval.metrics.sqa3d_qtype``, which scoring applies to records without a type)."""
    words = question.strip().split()
    first = words[0].lower().strip("?,.!") if words else ""
    return first if first in QTYPES else "others"


def annotation_files(folder: Path, split: str) -> tuple[Path, Path]:
    """(questions file, annotations file) of a split; both must exist."""
    if not folder.is_dir():
        raise DataError(f"--annotations {folder}: not a folder (expected the SQA3D balanced-data folder)")
    q = folder / f"v1_balanced_questions_{split}_scannetv2.json"
    a = folder / f"v1_balanced_sqa_annotations_{split}_scannetv2.json"
    for p in (q, a):
        if not p.is_file():
            raise DataError(f"--annotations {folder}: missing {p.name}")
    return q, a


def _xyz(d: dict, keys: tuple[str, ...], where: str) -> list[float]:
    try:
        return [float(d[k]) for k in keys]
    except (KeyError, TypeError, ValueError):
        raise DataError(f"{where}: expected an object with {', '.join(keys)}") from None


def load_questions(q_path: Path, a_path: Path) -> tuple[list[dict], dict[str, int]]:
    """Partial records of one split and counts of what was skipped (by reason)."""
    qs = C.load_json(q_path, "SQA3D questions file")
    ann = C.load_json(a_path, "SQA3D annotations file")
    if not isinstance(qs, dict) or not isinstance(qs.get("questions"), list):
        raise DataError(f"{q_path}: field 'questions' missing or not a list")
    if not isinstance(ann, dict) or not isinstance(ann.get("annotations"), list):
        raise DataError(f"{a_path}: field 'annotations' missing or not a list")
    by_id: dict = {}
    for i, a in enumerate(ann["annotations"]):
        if not isinstance(a, dict) or "question_id" not in a:
            raise DataError(f"{a_path}: annotations[{i}]: field 'question_id' missing")
        by_id[a["question_id"]] = (i, a)
    out, skipped = [], {"questions without an annotation": 0, "questions without answers": 0}
    for i, q in enumerate(qs["questions"]):
        if not isinstance(q, dict):
            raise DataError(f"{q_path}: questions[{i}]: expected an object")
        for key in ("scene_id", "question", "situation"):
            if not isinstance(q.get(key), str):
                raise DataError(f"{q_path}: questions[{i}]: field '{key}' missing or not a string")
        if "question_id" not in q:
            raise DataError(f"{q_path}: questions[{i}]: field 'question_id' missing")
        if q["question_id"] not in by_id:
            skipped["questions without an annotation"] += 1
            continue
        j, a = by_id[q["question_id"]]
        where = f"{a_path}: annotations[{j}]"
        answers = [x.get("answer") if isinstance(x, dict) else x for x in a.get("answers") or []]
        answers = [x.strip() for x in answers if isinstance(x, str) and x.strip()]
        if not answers:
            skipped["questions without answers"] += 1
            continue
        out.append({
            "id": str(q["question_id"]),
            "task": "sqa3d",
            "qtype": qtype(q["question"]),
            "situation": q["situation"].strip(),
            "question": q["question"].strip(),
            "answer": answers[0],
            "answers": answers,
            "scene_id": q["scene_id"],
            "alternative_situation": list(q.get("alternative_situation") or []),
            "position": _xyz(a.get("position"), ("x", "y", "z"), f"{where}.position"),
            "rotation": _xyz(a.get("rotation"), ("_x", "_y", "_z", "_w"), f"{where}.rotation"),
        })
    return out, {k: v for k, v in skipped.items() if v}


def convert(annotations: Path, options: scannet.FrameOptions, splits: str = "train,val") -> C.Summary:
    """SQA3D's balanced questions and annotations (one folder) + ScanNet frames -> ``OUT/<split>.jsonl``
    and ``OUT/frames/``; returns what was converted and skipped."""
    chosen = C.parse_splits(splits, SPLITS)
    summary = C.Summary(command="vqkit prep sqa3d", out=str(options.out))
    questions = {}
    for split in chosen:
        questions[split], skipped = load_questions(*annotation_files(Path(annotations), split))
        for why, n in skipped.items():
            summary.skipped[f"{why} ({split})"] += n
    options.out.mkdir(parents=True, exist_ok=True)
    scannet.run_qa("prep sqa3d", questions, options, summary)
    summary.extra["questions"] = sum(summary.records.values())
    return summary
