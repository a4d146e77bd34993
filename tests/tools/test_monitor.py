"""vqkit monitor: a failed run shows as failed, with its error and what to do next."""

from __future__ import annotations

import json
import shutil

from vqkit.commands import main as vqkit_main
from vqkit.tools.monitor import format_status, run_status
from vqkit.train.run_dir import record_failure


def test_a_run_that_failed_before_its_first_step_shows_the_failure(tmp_path, capsys):
    """It used to show "step 0/2" and "last log 10 s ago", with no sign that it had failed."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text("train: {max_steps: 2}\n")
    (run_dir / "metrics.jsonl").write_text("")
    record_failure(run_dir, FileNotFoundError("data/train.jsonl: record file not found"), step=0)
    status = run_status(run_dir)
    assert status["failed"]["error"] == "FileNotFoundError: data/train.jsonl: record file not found"
    text = format_status(status)
    assert "step 0/2 (0.0%)  FAILED" in text
    assert "FAILED    at step 0, 0 s ago: FileNotFoundError: data/train.jsonl: record file not found" in text
    assert "run the same command again (no step was trained: the folder is reused)" in text
    assert "last log" not in text
    # --watch stops at a failed run instead of waiting for it forever
    assert vqkit_main(["monitor", str(run_dir), "--watch", "--json"]) == 1  # failed: exit status 1
    assert json.loads(capsys.readouterr().out)["failed"]["step"] == 0


def test_a_run_that_failed_after_a_checkpoint_says_resume(tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints" / "step_000004").mkdir(parents=True)
    (run_dir / "checkpoints" / "step_000004" / "COMPLETE").write_text("4")
    (run_dir / "config.yaml").write_text("train: {max_steps: 8}\n")
    (run_dir / "metrics.jsonl").write_text(json.dumps({"step": 5, "loss": 1.5, "lr": 1e-4, "samples_per_s": 3.0,
                                                       "eta_s": 9.0}) + "\n")
    record_failure(run_dir, RuntimeError("CUDA error: an illegal memory access"), step=5)
    text = format_status(run_status(run_dir))
    assert "FAILED    at step 5" in text and "continue with --resume auto" in text


def _finished_run(folder, steps=8, *, blind=False, model_dir="final", weights="trainable.safetensors"):
    """A run folder as a finished `vqkit train` (or, model_dir="encoder", `vqkit pretrain-encoder`) leaves it."""
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(f"train: {{max_steps: {steps}, save_every_steps: 0}}\n")
    (folder / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "loss": 2.0 / s, "lr": 1e-4,
                                                              "samples_per_s": 4.0, "eta_s": 0.0}) + "\n"
                                                  for s in range(1, steps + 1)))
    model = folder / model_dir
    model.mkdir()
    (model / "config.yaml").write_text((folder / "config.yaml").read_text())
    (model / weights).write_bytes(b"")
    (model / "trainer_state.json").write_text(json.dumps({"step": steps, "world_size": 1}))
    (folder / "eval").mkdir()
    by_qtype = {"colour": {"n": 3, "em": 33.3}, "counting": {"n": 1, "em": 100.0}}
    (folder / "eval" / "metrics.json").write_text(json.dumps({
        "n": 4, "overall": {"n": 4, "em": 50.0}, "by_qtype": by_qtype, "roomplan": None,
        "info": {"data": ["data/val.jsonl"], "step": steps, "trained_blind": blind}}))
    return folder


def test_a_model_folder_is_a_finished_model_with_its_step_and_evaluations(tmp_path, capsys):
    """RUN/final used to show "step 0/800 ... checkpoint (none yet)"."""
    run_dir = _finished_run(tmp_path / "demo", steps=8)
    _finished_run(run_dir / "blind", steps=8, blind=True)
    status = run_status(run_dir / "final")
    assert (status["kind"], status["step"], status["finished"], status["run"]) == ("model", 8, True, str(run_dir))
    text = format_status(status)
    assert text.splitlines()[0] == (f"model     {run_dir / 'final'}: a finished model, step 8 of 8 "
                                    f"(its run: {run_dir})")
    assert "step 0/" not in text and "(none yet)" not in text
    assert "eval      eval: EM 50.0 (4 questions; step 8; data/val.jsonl)" in text
    assert "eval      blind/eval: EM 50.0 (4 questions; a model trained blind; step 8; data/val.jsonl)" in text
    assert "          by qtype: colour 33.3, counting 100.0" in text
    assert vqkit_main(["monitor", str(run_dir / "final")]) == 0
    assert "a finished model, step 8 of 8" in capsys.readouterr().out


def test_a_finished_run_shows_its_model_and_evaluations(tmp_path):
    """runs/demo/blind (no checkpoints: save_every_steps 0) used to say "checkpoint (none yet)"."""
    run_dir = _finished_run(tmp_path / "blind", steps=8, blind=True)
    status = run_status(run_dir)
    assert status["finished"] and status["model"] == str(run_dir / "final") and status["checkpoint"] is None
    text = format_status(status)
    assert "step 8/8 (100.0%)  finished" in text and f"model     {run_dir / 'final'}" in text
    assert "(none yet)" not in text and "eval      eval: EM 50.0" in text


def test_a_run_at_max_steps_is_finished(tmp_path, capsys):
    """An encoder pretraining at 400/400 (it leaves RUN/encoder/, not final/) was not marked finished; nor is
    a run whose last logged step is max_steps before its model is written."""
    encoder_run = _finished_run(tmp_path / "encoder_run", steps=4, model_dir="encoder", weights="model.safetensors")
    assert run_status(encoder_run)["finished"] and run_status(encoder_run)["model"] == str(encoder_run / "encoder")
    assert run_status(encoder_run / "encoder")["kind"] == "model"
    at_end = _finished_run(tmp_path / "at_end", steps=4)
    shutil.rmtree(at_end / "final")
    status = run_status(at_end)
    assert status["finished"] and status["model"] is None and "  finished" in format_status(status)
    assert vqkit_main(["monitor", str(at_end), "--watch", "--interval", "0"]) == 0  # --watch ends: finished
    capsys.readouterr()
    assert vqkit_main(["monitor", str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err.strip() == (f"vqkit monitor: error: {tmp_path / 'nope'}: not found (give a run "
                                               f"folder, train.output_dir, or a model folder, RUN/final)")
