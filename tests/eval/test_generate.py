"""vqkit eval: files, complete ids, batching, blind mode, re-scoring, roomplan rows, 2-process eval."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from vqkit.commands import main as vqkit_main
from vqkit.errors import DataError
from vqkit.eval.generate import evaluate, shard_indices
from vqkit.eval.loss import evaluate_loss_and_em
from vqkit.eval.metrics import LANGUAGE_METRICS
from vqkit.eval.results import compute_metrics, format_table, read_predictions, rescore, write_results
from vqkit.models.builder import load_model

REPO = Path(__file__).resolve().parents[2]
IDS = ["scanqa-0", "sqa3d-0", "sqa3d-1", "scanqa-1", "records:5"]  # the last has no id: file stem + line
needs_java = pytest.mark.skipif(shutil.which("java") is None, reason="pycocoevalcap needs Java")


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    return load_model(tiny_model_dir)


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_shard_indices_cover_everything_once():
    for n in (0, 1, 5, 8):
        for world in (1, 2, 3):
            shards = [shard_indices(n, r, world) for r in range(world)]
            assert sorted(i for s in shards for i in s) == list(range(n))
            assert max(len(s) for s in shards) - min(len(s) for s in shards) <= 1


def test_cli_eval_writes_predictions_and_metrics(tiny_model_dir, eval_records, tmp_path, capsys):
    out = tmp_path / "eval"
    rc = vqkit_main(["eval", "--model", str(tiny_model_dir), "--data", str(eval_records), "--out", str(out),
                     "--batch-size", "2", "--no-language-metrics"])
    assert rc == 0
    rows = _jsonl(out / "predictions.jsonl")
    assert [r["id"] for r in rows] == IDS
    assert [r["index"] for r in rows] == list(range(5))
    for r in rows:
        assert set(r) >= {"id", "task", "qtype", "question", "prediction", "answers"}
        assert isinstance(r["prediction"], str) and r["answers"] and r["blind"] is False
    assert rows[0]["answers"] == ["brown", "dark brown"]          # all references kept
    assert rows[1]["answers"] == ["table"]                        # default [answer]
    # qtype: the record's own, else SQA3D's first word
    assert [r["qtype"] for r in rows] == ["color", "what", "is", "number", "can"]
    assert rows[1]["situation"] == "I am sitting on the bed."

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n"] == 5 and metrics["overall"]["n"] == 5
    assert {t: m["n"] for t, m in metrics["by_task"].items()} == {"scanqa": 2, "sqa3d": 3}
    assert {q: m["n"] for q, m in metrics["by_qtype"].items()} == {"color": 1, "what": 1, "is": 1, "number": 1,
                                                                   "can": 1}
    assert all(metrics["overall"][k] is None for k in LANGUAGE_METRICS)
    assert metrics["info"]["world_size"] == 1 and metrics["info"]["blind"] is False
    assert metrics["roomplan"] is None
    # the EM in the file is the EM of the written predictions
    hits = sum(r["prediction"].strip() in r["answers"] for r in rows)
    assert metrics["overall"]["em"] == pytest.approx(100 * hits / 5)

    printed = capsys.readouterr().out
    assert "overall" in printed and "qtype what" in printed and "task sqa3d" in printed


def test_batched_generation_matches_one_by_one(model, eval_records):
    cfg = model.config
    batched, m2 = evaluate(model, cfg, eval_records, batch_size=3, language=False, progress=False)
    single, m1 = evaluate(model, cfg, eval_records, batch_size=1, language=False, progress=False)
    assert [r["prediction"] for r in batched] == [r["prediction"] for r in single]
    assert m1["overall"] == m2["overall"]
    # the same answers as calling the model directly
    from vqkit.data.collate import Collator
    from vqkit.eval.generate import build_eval_dataset

    ds = build_eval_dataset(cfg, eval_records)
    collator = Collator(model.tokenizer, cfg.model, cfg.data, mode="generate")
    direct = model.generate(collator([ds[3]]), max_new_tokens=cfg.eval.max_new_tokens)
    assert batched[3]["prediction"] == direct[0]


def test_limit_and_max_new_tokens(model, eval_records):
    rows, metrics = evaluate(model, model.config, eval_records, limit=3, max_new_tokens=1, language=False,
                             progress=False)
    assert [r["id"] for r in rows] == IDS[:3] and metrics["overall"]["n"] == 3
    assert metrics["info"]["max_new_tokens"] == 1
    assert all(len(model.tokenizer.encode(r["prediction"], add_special_tokens=False)) <= 1 for r in rows)


def test_blind_drops_vision_and_geometry(model, eval_records, monkeypatch, tmp_path):
    calls = []
    original = model.vision_tokens

    def spy(batch, samples):
        calls.append(len(samples))
        return original(batch, samples)

    monkeypatch.setattr(model, "vision_tokens", spy)
    rows, metrics = evaluate(model, model.config, eval_records, blind=True, language=False, progress=False)
    assert calls == [] and metrics["info"]["blind"] is True and all(r["blind"] for r in rows)
    evaluate(model, model.config, eval_records, blind=False, language=False, progress=False)
    assert sum(calls) == 5  # every example got vision tokens without --blind


def test_cli_views_removed_is_not_the_blind_baseline_and_nothing_is_replaced(tiny_model_dir, eval_records,
                                                                               tmp_path, capsys):
    """`--blind` on a model trained with views writes RUN/eval_views_removed (was RUN/eval_blind, where the
    demo keeps its blind-trained baseline), records what made it, and an evaluation is never replaced
    without --overwrite (was: silently)."""
    run = tmp_path / "run"
    shutil.copytree(tiny_model_dir, run / "final")
    (run / "final" / "trainer_state.json").write_text('{"step": 12}')
    args = ["eval", "--model", str(run / "final"), "--data", str(eval_records), "--limit", "2",
            "--no-language-metrics"]
    assert vqkit_main(args + ["--blind"]) == 0
    rows = _jsonl(run / "eval_views_removed" / "predictions.jsonl")
    assert [r["id"] for r in rows] == IDS[:2] and rows[0]["blind"] is True
    info = json.loads((run / "eval_views_removed" / "metrics.json").read_text())["info"]
    assert info["blind"] is True and info["views_removed"] is True and info["trained_blind"] is False
    assert info["model"] == str(run / "final") and info["step"] == 12 and info["data"] == [str(eval_records)]
    assert not (run / "eval").exists() and not (run / "eval_blind").exists()

    before = (run / "eval_views_removed" / "predictions.jsonl").read_bytes()
    capsys.readouterr()
    assert vqkit_main(args + ["--blind", "--limit", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"vqkit eval: error: {run / 'eval_views_removed'} already holds an evaluation "
                   f"(predictions.jsonl); choose another --out, or add --overwrite to replace it")
    assert (run / "eval_views_removed" / "predictions.jsonl").read_bytes() == before
    assert vqkit_main(args + ["--blind", "--limit", "1", "--overwrite"]) == 0
    assert len(_jsonl(run / "eval_views_removed" / "predictions.jsonl")) == 1

    # a model trained blind is evaluated as trained (blind) into its own eval/, with or without --blind
    blind_run = tmp_path / "blind"
    shutil.copytree(tiny_model_dir, blind_run / "final")
    config = blind_run / "final" / "config.yaml"
    config.write_text(config.read_text().replace("blind: false", "blind: true"))
    assert vqkit_main(["eval", "--model", str(blind_run / "final"), "--data", str(eval_records), "--limit", "1",
                       "--blind", "--no-language-metrics"]) == 0
    info = json.loads((blind_run / "eval" / "metrics.json").read_text())["info"]
    assert info["blind"] is True and info["trained_blind"] is True and info["views_removed"] is False
    assert info["step"] is None  # a model folder without trainer_state.json: unknown, not guessed


def test_rescore_without_a_model(tmp_path, capsys):
    rows = [
        {"id": "a", "task": "scanqa", "qtype": "color", "question": "What color is it?", "prediction": "brown",
         "answers": ["brown", "dark brown"]},
        {"id": "b", "task": "scanqa", "qtype": "number", "question": "How many?", "prediction": "2",
         "answers": ["two"]},
        {"id": "c", "task": "sqa3d", "question": "Is it open?", "prediction": "yes", "answers": ["no"]},
    ]
    path = tmp_path / "p" / "predictions.jsonl"
    write_results(path.parent, rows, None)
    metrics = rescore(path, language=False)
    assert metrics["overall"]["em"] == pytest.approx(100 / 3)
    assert metrics["overall"]["em_refined"] == pytest.approx(200 / 3)   # "2" == "two"
    assert metrics["by_qtype"]["is"] == {"n": 1, "em": 0.0, "em_refined": 0.0}   # derived first-word type
    assert metrics["by_task"]["scanqa"]["em"] == 50.0 and metrics["by_task"]["sqa3d"]["em"] == 0.0
    assert metrics["by_task"]["scanqa"]["by_qtype"]["number"]["em_refined"] == 100.0

    assert vqkit_main(["eval", "--predictions", str(path), "--no-language-metrics"]) == 0
    written = json.loads((path.parent / "metrics.json").read_text())
    assert written["overall"] == metrics["overall"]
    assert "EM-R" in capsys.readouterr().out


def test_rescore_reports_bad_rows(tmp_path, capsys):
    path = tmp_path / "predictions.jsonl"
    path.write_text('{"id": "a", "prediction": "x", "answers": ["x"]}\n{"id": "b", "prediction": "y"}\n')
    with pytest.raises(DataError, match=r"predictions.jsonl:2: field 'answers'"):
        read_predictions(path)
    assert vqkit_main(["eval", "--predictions", str(path)]) == 2
    err = capsys.readouterr().err
    assert "predictions.jsonl:2: field 'answers'" in err and len(err.strip().splitlines()) == 1
    assert vqkit_main(["eval", "--predictions", str(tmp_path / "missing.jsonl")]) == 2
    assert vqkit_main(["eval", "--model", str(tmp_path / "nope"), "--data", str(path)]) == 2


def test_roomplan_rows_are_scored_as_layouts():
    from vqkit.roomplan import Room

    text = ("wall 0 x=0 y=0 w=400 h=250 yaw=0\nwall 1 x=200 y=150 w=300 h=250 yaw=90\n"
            "table x=50 y=60 w=120 h=75 d=80 yaw=0")
    gold, problems = Room.from_text(text)
    assert not problems
    rows = [
        {"id": "r0", "task": "roomplan", "question": "Layout?", "prediction": gold.to_text(), "answers": [],
         "roomplan": gold.to_capturedroom()},
        {"id": "q0", "task": "synth", "question": "What is it?", "prediction": "table", "answers": ["table"]},
    ]
    metrics = compute_metrics(rows, language=False)
    assert metrics["n"] == 2 and metrics["overall"]["n"] == 1 and metrics["overall"]["em"] == 100.0
    rp = metrics["roomplan"]
    assert rp["n"] == 1 and rp["parse_rate"] == 100.0
    assert rp["walls"]["f1@0.5"] == pytest.approx(100.0) and rp["objects"]["f1@0.5"] == pytest.approx(100.0)
    assert rp["doors"]["f1@0.5"] is None  # no door on either side: no score
    assert "roomplan (1 rooms" in format_table(metrics)


def test_periodic_eval_loss_and_em(model, eval_records):
    cfg = model.config
    out = evaluate_loss_and_em(model, cfg, data=eval_records, limit=4, batch_size=3)
    assert out["n"] == 4 and 0.0 <= out["em"] <= 100.0
    assert torch.isfinite(torch.tensor(out["loss"])) and out["loss"] > 0


@needs_java
@pytest.mark.slow  # starts METEOR's JVM (~15 s); test_metrics covers the metrics themselves
def test_cli_eval_with_language_metrics(tiny_model_dir, eval_records, tmp_path):
    out = tmp_path / "eval"
    assert vqkit_main(["eval", "--model", str(tiny_model_dir), "--data", str(eval_records), "--out", str(out),
                       "--limit", "3"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    for key in LANGUAGE_METRICS:
        assert isinstance(metrics["overall"][key], float), key
    assert metrics["by_task"]["sqa3d"]["bleu1"] is not None


# --------------------------------------------------------------------------------------------
# Two processes (torchrun, gloo) == one process
# --------------------------------------------------------------------------------------------

_WORKER = """
import json, os, sys
from vqkit.commands import main
from vqkit.eval.generate import evaluate
from vqkit.utils import distributed
from vqkit.models.builder import load_model

model_dir, data, out = sys.argv[1:4]
# vqkit's own path: the group joined before main(), so main() uses it and leaves it open, and left (a
# barrier, then destroyed) before the process exits.
with distributed.process_group() as (rank, world):
    assert main(["eval", "--model", model_dir, "--data", data, "--out", out + "/cli", "--batch-size", "2",
                 "--no-language-metrics"]) == 0
    assert distributed.active() is not None  # main() did not destroy a group it did not create
    # Ranks kept in step (the ZeRO-3 path): batch 1 gives rank 0 three batches and rank 1 two, so rank 1
    # must run one dummy batch and both ranks must call generate equally often.
    model = load_model(model_dir)
    calls = [0]
    generate = model.generate
    def counting(*args, **kwargs):
        calls[0] += 1
        assert kwargs.get("synced_gpus") is True
        return generate(*args, **kwargs)
    model.generate = counting
    rows, metrics = evaluate(model, model.config, data, batch_size=1, language=False, progress=False,
                             sync_ranks=True)
    with open(f"{out}/synced_rank{rank}.json", "w") as f:
        json.dump({"calls": calls[0], "ids": [r["id"] for r in rows], "predictions": [r["prediction"] for r in rows],
                   "metrics": metrics["overall"]}, f)
assert distributed.active() is None
"""


@pytest.mark.slow
@pytest.mark.ci
def test_two_process_eval_equals_one_process(tiny_model_dir, eval_records, tmp_path):
    one = tmp_path / "one"
    assert vqkit_main(["eval", "--model", str(tiny_model_dir), "--data", str(eval_records), "--out", str(one),
                       "--batch-size", "2", "--no-language-metrics"]) == 0
    script = tmp_path / "worker.py"
    script.write_text(textwrap.dedent(_WORKER))
    two = tmp_path / "two"
    two.mkdir()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         str(script), str(tiny_model_dir), str(eval_records), str(two)],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "terminate called" not in proc.stderr  # no rank aborted at exit with its process group alive

    rows1, rows2 = _jsonl(one / "predictions.jsonl"), _jsonl(two / "cli" / "predictions.jsonl")
    assert [r["id"] for r in rows2] == IDS                                   # each id exactly once, in order
    assert rows2 == rows1                                                    # same predictions, same rows
    m1 = json.loads((one / "metrics.json").read_text())
    m2 = json.loads((two / "cli" / "metrics.json").read_text())
    for key in ("n", "overall", "by_task", "by_qtype", "roomplan"):
        assert m1[key] == m2[key], key
    assert m2["info"]["world_size"] == 2

    synced = [json.loads((two / f"synced_rank{r}.json").read_text()) for r in range(2)]
    assert synced[0]["calls"] == synced[1]["calls"] == 3                    # rank 1 ran one dummy batch
    for s in synced:                                                          # dummy output was dropped
        assert s["ids"] == IDS
        assert s["predictions"] == [r["prediction"] for r in rows1]
        assert s["metrics"] == m1["overall"]


def test_roomplan_records_end_to_end(model, eval_records, tmp_path):
    """A Stage 2 record goes through generation with the layout budget and is scored as a layout."""
    from vqkit.roomplan import Room

    gold, _ = Room.from_text("wall 0 x=0 y=0 w=400 h=250 yaw=0\ntable x=50 y=60 w=120 h=75 d=80 yaw=0")
    qa = json.loads(eval_records.read_text().splitlines()[1])
    records = [{"id": "room-0", "task": "roomplan", "images": qa["images"], "question": "Describe the room layout.",
                "roomplan": gold.to_capturedroom()}, qa]
    path = eval_records.parent / "mixed_roomplan.jsonl"  # next to the images (the data root)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    cfg = copy.deepcopy(model.config)
    cfg.eval.roomplan_max_new_tokens = 6
    rows, metrics = evaluate(model, cfg, path, batch_size=1, language=False, progress=False)
    assert [r["id"] for r in rows] == ["room-0", "sqa3d-0"]
    assert rows[0]["answers"] == [] and rows[0]["roomplan"] == gold.to_capturedroom()
    assert metrics["overall"]["n"] == 1 and metrics["roomplan"]["n"] == 1
    assert 0.0 <= metrics["roomplan"]["parse_rate"] <= 100.0
    # re-scoring the written file gives the same layout scores without the model
    write_results(tmp_path / "out", rows, metrics)
    assert rescore(tmp_path / "out" / "predictions.jsonl", language=False)["roomplan"] == metrics["roomplan"]


def test_a_conversation_file_gives_one_prediction_per_assistant_turn(tiny_model_dir, eval_records, tmp_path):
    images = [f"img/0_{v}.png" for v in range(2)]
    samples = [{"id": "room-1", "images": images, "question_type": "color", "answers": [["brown"], ["yes"], ["2"]],
                "conversations": [{"from": "human", "value": "<image><image>\nWhat color is the chair?"},
                                  {"from": "gpt", "value": "brown"},
                                  {"from": "human", "value": "Is the door open?"}, {"from": "gpt", "value": "yes"},
                                  {"from": "human", "value": "How many chairs are there?"},
                                  {"from": "gpt", "value": "2"}]},
               {"id": "photo-1", "image": images[1],
                "messages": [{"role": "user", "content": "Can I sit on the sofa?\n<image>"},
                             {"role": "assistant", "content": "yes"}]}]
    path = eval_records.parent / "conversations.json"
    path.write_text(json.dumps(samples))
    out = tmp_path / "eval"
    assert vqkit_main(["eval", "--model", str(tiny_model_dir), "--data", str(path), "--out", str(out),
                       "--no-language-metrics"]) == 0
    rows = _jsonl(out / "predictions.jsonl")
    assert [(r["id"], r.get("turn")) for r in rows] == [("room-1", 1), ("room-1", 2), ("room-1", 3), ("photo-1", None)]
    assert [r["answers"] for r in rows] == [["brown"], ["yes"], ["2"], ["yes"]]
    assert rows[1]["question"] == "Is the door open?" and rows[0]["qtype"] == "color"
    assert json.loads((out / "metrics.json").read_text())["n"] == 4
