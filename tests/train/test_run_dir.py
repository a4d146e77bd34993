"""The run directory: the signals that ask a run to stop become a flag checked between steps (StopRequest);
a resumed run keeps its checkpoint's config (or refuses the change in one line); a failed attempt is
recorded in RUN/failed.json, and a folder that never trained is reused by a retry."""

from __future__ import annotations

import json
import os
import shutil
import signal

import pytest
from helpers import tiny_train_config

from vqkit.config import config_from_dict
from vqkit.config.io import load_config, to_dict
from vqkit.errors import ConfigError, DataError, VQKitError
from vqkit.train import run
from vqkit.train.run_dir import (
    FAILED_FILE,
    RESUMABLE_KEYS,
    StopRequest,
    prepare_run_dir,
    read_failure,
    record_failure,
    resume_config_changes,
)


def test_sigterm_sets_the_flag_however_often_it_arrives():
    """Slurm signals every process of the job and torchrun forwards its own SIGTERM too: the worker
    sees two or more, and must still finish its step and save (no KeyboardInterrupt mid-step)."""
    with StopRequest() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested


def test_a_second_ctrl_c_stops_at_once():
    with StopRequest() as stop:
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.requested
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)


def test_handlers_are_restored():
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    with StopRequest():
        assert signal.getsignal(signal.SIGTERM) is not before[0]
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before


def _rows(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_resume_config_changes_allows_only_what_a_checkpoint_does_not_fix():
    saved = to_dict(config_from_dict({}))
    assert resume_config_changes(saved, saved, "ckpt") == {}
    longer = config_from_dict({"train": {"max_steps": 2000, "log_every_steps": 5}, "eval": {"batch_size": 2},
                               "data": {"num_workers": 4}})
    assert resume_config_changes(saved, to_dict(longer), "ckpt") == {
        "train.max_steps": [1000, 2000], "train.log_every_steps": [10, 5], "eval.batch_size": [8, 2],
        "data.num_workers": [0, 4]}
    other = config_from_dict({"train": {"lr": 5e-3, "max_steps": 2000}, "model": {"lora": {"r": 8}}})
    with pytest.raises(ConfigError) as e:
        resume_config_changes(saved, to_dict(other), "RUN/checkpoints/step_000004")
    message = str(e.value)
    assert "\n" not in message
    assert message.startswith("cannot resume from RUN/checkpoints/step_000004 with a different config: "
                              "model.lora.r 16 -> 8; train.lr 0.0002 -> 0.005. ")
    assert "train.max_steps" not in message.split(". ")[0]  # an allowed change is not blamed
    assert "Keys that may change on resume: train.max_steps" in message and "eval.*" in message
    assert "train.lr" not in RESUMABLE_KEYS


def test_resume_with_a_changed_lr_is_refused_and_config_yaml_never_lies(synth_dir, tmp_path):
    """`--resume auto --set train.lr=5e-3` used to resume at the old schedule (lr 5e-4 at step 3) while
    config.yaml said 0.005; now it is refused and nothing in the run changes. An allowed change
    (max_steps) is applied, written to config.yaml and logged."""
    run_dir = tmp_path / "run"
    cfg = config_from_dict(tiny_train_config(synth_dir, run_dir, max_steps=4, save_every_steps=2))
    run(cfg, progress=False)
    shutil.rmtree(run_dir / "final")
    shutil.rmtree(run_dir / "checkpoints" / "step_000004")  # as if killed after the step-2 checkpoint
    checkpoint_state = json.loads((run_dir / "checkpoints" / "step_000002" / "trainer_state.json").read_text())
    assert checkpoint_state["config"] == to_dict(cfg)
    config_before = (run_dir / "config.yaml").read_text()
    metrics_before = (run_dir / "metrics.jsonl").read_text()

    changed = config_from_dict(tiny_train_config(synth_dir, run_dir, max_steps=4, save_every_steps=2, lr=5e-3))
    with pytest.raises(ConfigError, match=r"step_000002 with a different config: train.lr 0.001 -> 0.005\. "):
        run(changed, resume="auto", progress=False)
    assert (run_dir / "config.yaml").read_text() == config_before
    assert (run_dir / "metrics.jsonl").read_text() == metrics_before
    assert not (run_dir / FAILED_FILE).exists()  # the run did not fail: it was not started

    longer = config_from_dict(tiny_train_config(synth_dir, run_dir, max_steps=6, save_every_steps=2))
    result = run(longer, resume="auto", progress=False)
    assert result.steps == 6
    assert load_config(run_dir / "config.yaml") == longer
    event = next(r for r in _rows(run_dir) if "config_changes" in r)
    assert event["step"] == 2 and event["config_changes"] == {"train.max_steps": [4, 6]}
    assert json.loads((run_dir / "final" / "trainer_state.json").read_text())["step"] == 6


def test_a_failed_attempt_is_recorded_and_its_folder_reused(synth_dir, tmp_path):
    """Failing before the first step used to leave a folder that blocked the retry ("already holds a
    run") with no record of the failure."""
    run_dir = tmp_path / "run"
    broken = tiny_train_config(synth_dir, run_dir, max_steps=2, save_every_steps=0)
    broken["data"]["train"] = [{"path": str(tmp_path / "missing.jsonl")}]
    with pytest.raises(DataError, match="missing.jsonl: record file not found"):
        run(config_from_dict(broken), progress=False)
    failure = read_failure(run_dir)
    assert failure["error"] == f"{tmp_path / 'missing.jsonl'}: record file not found" and failure["step"] == 0

    result = run(config_from_dict(tiny_train_config(synth_dir, run_dir, max_steps=2, save_every_steps=0)),
                 progress=False)
    assert result.steps == 2 and (run_dir / "final").is_dir()
    assert read_failure(run_dir) is None
    assert [r["step"] for r in _rows(run_dir) if "loss" in r] == [1, 2]  # nothing of the failed attempt left


def test_prepare_run_dir_keeps_a_run_that_trained(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "notes.txt").write_text("mine")
    (run_dir / "config.yaml").write_text("train: {}\n")
    (run_dir / "metrics.jsonl").write_text('{"step": 3, "loss": 1.0}\n')  # steps logged, no checkpoint
    record_failure(run_dir, RuntimeError("CUDA error: out of memory\ntraceback..."), step=3)
    assert read_failure(run_dir)["error"] == "RuntimeError: CUDA error: out of memory"
    with pytest.raises(VQKitError, match=r"already holds a run \(its last attempt failed at step 3: RuntimeError: "
                                         r"CUDA error: out of memory\)"):
        prepare_run_dir(run_dir, resuming=False, overwrite=False, is_main=True)
    assert (run_dir / "metrics.jsonl").exists()
    prepare_run_dir(run_dir, resuming=False, overwrite=True, is_main=True)
    assert sorted(p.name for p in run_dir.iterdir()) == ["notes.txt"]  # the user's own file stays
