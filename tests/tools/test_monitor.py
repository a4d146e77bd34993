"""vqkit monitor: a failed run shows as failed, with its error and what to do next."""

from __future__ import annotations

import json

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
    assert vqkit_main(["monitor", str(run_dir), "--watch", "--json"]) == 0
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
