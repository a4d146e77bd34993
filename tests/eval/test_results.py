"""Result folders and their provenance: which folder an evaluation goes to, what metrics.json records,
the refusal to replace an earlier evaluation, and the Stage 2 rows of the printed table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vqkit.config import config_from_dict
from vqkit.errors import ConfigError
from vqkit.eval.results import (
    EVAL_DIR,
    VIEWS_REMOVED_DIR,
    check_out_dir,
    compute_metrics,
    default_out_dir,
    evaluation_info,
    format_table,
    rescore,
    rescore_into,
    trained_step,
    write_results,
)


def test_default_out_dir_keeps_views_removed_apart():
    assert default_out_dir("runs/x/final", views_removed=False) == Path("runs/x/eval")
    assert default_out_dir("runs/x/final", views_removed=True) == Path("runs/x/eval_views_removed")
    assert default_out_dir("models/m", views_removed=False) == Path("models/m/eval")
    assert EVAL_DIR == "eval" and VIEWS_REMOVED_DIR == "eval_views_removed"


def test_check_out_dir_refuses_an_earlier_evaluation(tmp_path):
    out = tmp_path / "eval"
    assert check_out_dir(out, overwrite=False) == out  # not there yet
    out.mkdir()
    assert check_out_dir(out, overwrite=False) == out  # empty folder: nothing to lose
    (out / "metrics.json").write_text("{}")
    with pytest.raises(ConfigError, match=r"eval already holds an evaluation \(metrics.json\); choose another "
                                          r"--out, or add --overwrite to replace it"):
        check_out_dir(out, overwrite=False)
    assert check_out_dir(out, overwrite=True) == out


def test_evaluation_info_records_model_step_data_and_training_mode(tmp_path):
    model = tmp_path / "run" / "final"
    model.mkdir(parents=True)
    cfg = config_from_dict({"data": {"val": [{"path": str(tmp_path / "val.jsonl")}]}})
    info = evaluation_info(model, cfg, None, blind=True)
    assert info == {"model": str(model), "step": None, "data": [str(tmp_path / "val.jsonl")],
                    "trained_blind": False, "views_removed": True}
    (model / "trainer_state.json").write_text(json.dumps({"step": 1800, "epoch": 3}))
    assert trained_step(model) == 1800
    cfg.data.blind = True  # a blind-trained model: --blind is how it was trained, nothing is removed
    info = evaluation_info(model, cfg, [str(tmp_path / "a.jsonl"), "data/*.jsonl"], blind=True)
    assert info["step"] == 1800 and info["trained_blind"] is True and info["views_removed"] is False
    assert info["data"] == [str(tmp_path / "a.jsonl"), "data/*.jsonl"]
    (model / "trainer_state.json").write_text("{not json")
    assert trained_step(model) is None


def test_rescore_keeps_the_provenance(tmp_path):
    rows = [{"id": "a", "task": "synth", "question": "q?", "prediction": "red", "answers": ["red"]}]
    out = write_results(tmp_path / "eval", rows, {"info": {"model": "runs/x/final", "step": 7, "data": ["v.jsonl"],
                                                           "trained_blind": False, "views_removed": True,
                                                           "seconds": 3.0}})
    info = rescore(out / "predictions.jsonl", language=False)["info"]
    assert info["model"] == "runs/x/final" and info["step"] == 7 and info["views_removed"] is True
    assert "seconds" not in info and info["rescored_from"].endswith("predictions.jsonl")


def test_table_marks_kinds_absent_from_both_sides():
    """Openings with 0 predicted and 0 gold show "-" (was 100.0 beside a 0.0% parse rate); percent throughout."""
    none = {"precision@0.25": None, "recall@0.25": None, "f1@0.25": None, "precision@0.5": None,
            "recall@0.5": None, "f1@0.5": None, "n_pred": 0, "n_gold": 0}
    walls = dict(none, **{"f1@0.25": 0.0, "f1@0.5": 0.0, "n_gold": 4})
    metrics = {"overall": {"n": 0, "em": None, "em_refined": None}, "by_qtype": {},
               "roomplan": {"n": 1, "parse_rate": 0.0, "walls": walls, "doors": none, "windows": none,
                            "openings": none, "objects": none}}
    table = format_table(metrics)
    assert "roomplan (1 rooms, parse rate 0.0%; F1 in percent)" in table
    openings = next(line for line in table.splitlines() if line.strip().startswith("openings"))
    assert openings.split() == ["openings", "f1@0.25", "-", "f1@0.5", "-"]
    assert "(-: no doors, windows, openings, objects predicted or in gold; left out of any average)" in table
    assert "100.0" not in table
    # Layouts alone: the table is their scores, with no empty question-answering rows above them.
    assert table.splitlines()[0].startswith("roomplan (1 rooms") and "overall" not in table
    # Questions and layouts together: both parts.
    mixed = format_table({**metrics, "overall": {"n": 2, "em": 50.0, "em_refined": 50.0}})
    assert mixed.splitlines()[1].split() == ["overall", "2", "50.0", "50.0"] and "roomplan (1 rooms" in mixed


def test_sqa3d_rows_report_sqa3d_s_labels():
    """An SQA3D row takes its own type when it is an SQA3D label (VG-LLM's question_type "others" stays
    "others"; vqkit's older "other" becomes it), else the question's first word."""
    rows = [{"task": "sqa3d", "qtype": q, "question": question, "prediction": p, "answers": [a]}
            for q, question, p, a in [("what", "What is on my left?", "sofa", "sofa"),
                                      ("others", "Am I facing the door?", "yes", "no"),
                                      ("other", "Where is the bed?", "left", "left"),
                                      (None, "Which way should I go?", "left", "right"),
                                      (None, "Is the lamp on?", "yes", "yes")]]
    by_qtype = compute_metrics(rows, language=False)["by_qtype"]
    assert {q: (m["n"], m["em"]) for q, m in by_qtype.items()} == {
        "what": (1, 100.0), "others": (2, 50.0), "which": (1, 0.0), "is": (1, 100.0)}


def test_question_type_field_is_read_as_the_qtype(tmp_path):
    from vqkit.data.schema import load_records

    (tmp_path / "a.png").write_bytes(b"")
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps({"images": ["a.png"], "question": "Where is it?", "answer": "left",
                                "task": "sqa3d", "question_type": "others"}) + "\n")
    assert load_records(str(path), check_files=False)[0].qtype == "others"


def test_table_shows_mra_for_numeric_answers():
    rows = [{"task": "synth", "qtype": qt, "question": "q?", "prediction": p, "answers": [a]}
            for qt, p, a in [("counting", "2", "3"), ("measurement", "4", "4"), ("colour", "red", "red")]]
    table = format_table(compute_metrics(rows, language=False))
    header, *lines = table.splitlines()
    assert header.split() == ["n", "EM", "EM-R", "MRA"]
    cells = {line.split()[1]: line.split()[2:] for line in lines if line.startswith("qtype")}
    assert cells == {"colour": ["1", "100.0", "100.0", "-"], "counting": ["1", "0.0", "0.0", "40.0"],
                     "measurement": ["1", "100.0", "100.0", "100.0"]}


def test_rescore_into_writes_beside_the_predictions_or_refuses_another_evaluation(tmp_path):
    rows = [{"id": "a", "task": "synth", "question": "q?", "prediction": "red", "answers": ["red"]}]
    predictions = write_results(tmp_path / "eval", rows, {"overall": {"em": 0.0}}) / "predictions.jsonl"
    metrics, written = rescore_into(predictions, language=False)  # in place: its own metrics.json is redone
    assert written == tmp_path / "eval" / "metrics.json"
    assert json.loads(written.read_text())["overall"]["em"] == metrics["overall"]["em"] == 100.0
    other = write_results(tmp_path / "other", rows, {"overall": {"em": 0.0}})
    before = (other / "metrics.json").read_text()
    with pytest.raises(ConfigError, match="already holds an evaluation"):
        rescore_into(predictions, other, language=False)
    assert (other / "metrics.json").read_text() == before
    assert rescore_into(predictions, other, overwrite=True, language=False)[1] == other / "metrics.json"
