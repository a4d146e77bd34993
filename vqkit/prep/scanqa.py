"""``vqkit prep scanqa``: ScanQA questions joined with each scene's ScanNet frames.

Input: ``ScanQA_v1.0_<split>.json`` (a list of ``{scene_id, question_id, question, answers[],
object_ids[], object_names[]}``; the test files have no answers and cannot become training records).
Output: ``OUT/<split>.jsonl`` with one record per question (``task: "scanqa"``, ``answers`` = all
references, ``answer`` = the first; a test question has ``answers: []`` and no ``answer``: it is asked and
exported for the test server, never trained on or scored) and ``OUT/frames/<scene>/view_XX.jpg`` shared by
the questions of a scene. With ``--scans`` the poses are in ScanNet's axis-aligned frame, ScanQA's boxes'
frame (what the test server's ``bbox`` is compared in). See :mod:`vqkit.prep.scannet` for the frame
layouts and view selection.
"""

from __future__ import annotations

from pathlib import Path

from vqkit.errors import DataError
from vqkit.prep import common as C
from vqkit.prep import scannet

SPLITS = ("train", "val", "test_w_obj", "test_wo_obj")


def annotation_files(path: Path, splits: list[str]) -> dict[str, Path]:
    """split -> ScanQA JSON: a folder holding ``ScanQA_v1.0_<split>.json`` or one file."""
    return C.annotation_files(path, splits, "ScanQA_v1.0_{split}.json", SPLITS)


def load_questions(path: Path, test: bool = False) -> tuple[list[dict], int]:
    """Partial records of a ScanQA file and the number of questions without answers (skipped; in a
    ``test`` split they are kept with ``answers: []``)."""
    data = C.load_json(path, "ScanQA annotation file")
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON list of questions, got {type(data).__name__}")
    out, no_answer = [], 0
    for i, q in enumerate(data):
        if not isinstance(q, dict):
            raise DataError(f"{path}: entry {i}: expected an object, got {type(q).__name__}")
        for key in ("scene_id", "question_id", "question"):
            if not isinstance(q.get(key), str) or not q[key].strip():
                raise DataError(f"{path}: entry {i}: field '{key}' missing or not a string")
        answers = [a for a in q.get("answers") or [] if isinstance(a, str) and a.strip()]
        if not answers and not test:
            no_answer += 1
            continue
        out.append({
            "id": q["question_id"],
            "task": "scanqa",
            "question": q["question"].strip(),
            **({"answer": answers[0]} if answers else {}),
            "answers": answers,
            "scene_id": q["scene_id"],
            "object_ids": q.get("object_ids", []),
            "object_names": q.get("object_names", []),
        })
    return out, no_answer


def convert(annotations: Path, options: scannet.FrameOptions, splits: str = "train,val") -> C.Summary:
    """ScanQA questions (a folder of ``ScanQA_v1.0_<split>.json`` or one such file) + ScanNet frames ->
    ``OUT/<split>.jsonl`` and ``OUT/frames/``; returns what was converted and skipped."""
    chosen = C.parse_splits(splits, SPLITS)
    summary = C.Summary(command="vqkit prep scanqa", out=str(options.out))
    questions = {}
    for split, path in annotation_files(Path(annotations), chosen).items():
        questions[split], no_answer = load_questions(path, test=split.startswith("test"))
        if no_answer:
            summary.skipped[f"questions without answers ({split})"] += no_answer
    options.out.mkdir(parents=True, exist_ok=True)
    scannet.run_qa("prep scanqa", questions, options, summary)
    summary.extra["questions"] = sum(summary.records.values())
    return summary
