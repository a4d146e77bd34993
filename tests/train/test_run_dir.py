"""The run directory: the signals that ask a run to stop become a flag checked between steps (StopRequest);
a resumed run keeps its checkpoint's config (or refuses the change in one line); a failed attempt is
recorded in RUN/failed.json, and a folder that never trained is reused by a retry; a run locks its folder
from the moment it takes it, so a second run on that folder fails in one line while the first lives."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest
import yaml
from helpers import REPO, logged_losses, tiny_train_config

from vqkit.config import Config, config_from_dict
from vqkit.config.io import load_config, to_dict
from vqkit.errors import ConfigError, DataError, VQKitError
from vqkit.train import run
from vqkit.train.run_dir import (
    FAILED_FILE,
    LOCK_FILE,
    RESUMABLE_KEYS,
    RunDirLock,
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


def test_with_a_global_batch_the_batch_per_process_may_change_on_resume():
    """With train.global_batch_size kept, the per-process batch is a memory choice (the accumulation
    follows, each step keeps its samples); without it, it changes the global batch and is refused. A
    checkpoint that wrote grad_accum 1 resumes under a config that leaves it unset (None = 1)."""
    def config(**train):
        return to_dict(config_from_dict({"train": train}))

    saved = config(global_batch_size=192, batch_size_per_gpu=16)
    assert resume_config_changes(saved, config(global_batch_size=192, batch_size_per_gpu=12), "ckpt") == {
        "train.batch_size_per_gpu": [16, 12]}
    with pytest.raises(ConfigError, match=r"train.global_batch_size 192 -> 96"):
        resume_config_changes(saved, config(global_batch_size=96, batch_size_per_gpu=12), "ckpt")
    with pytest.raises(ConfigError, match=r"train.batch_size_per_gpu 16 -> 12"):
        resume_config_changes(config(batch_size_per_gpu=16, grad_accum=12), config(batch_size_per_gpu=12,
                                                                                   grad_accum=12), "ckpt")
    written_before = config(grad_accum=1)
    assert resume_config_changes(written_before, config(), "ckpt") == {}


def test_resume_with_another_batch_per_process_keeps_the_global_batch_and_the_data_order(synth_dir, tmp_path,
                                                                                          capsys):
    """Resumed with half the batch per process (train.global_batch_size set), the run takes twice the
    micro-batches per step from the same position in the epoch: its steps see the samples an uninterrupted
    run's see, and give the same losses (float rounding of differently padded micro-batches aside)."""
    run_dir = tmp_path / "run"

    def config(batch: int) -> Config:
        data = tiny_train_config(synth_dir, run_dir, max_steps=4, save_every_steps=2, global_batch_size=8,
                                 batch_size_per_gpu=batch, grad_accum=None)
        data["model"]["lora"]["dropout"] = 0.0  # its masks follow the batch layout
        return config_from_dict(data)

    run(config(4), progress=False)
    want = logged_losses(run_dir)
    shutil.rmtree(run_dir / "final")
    shutil.rmtree(run_dir / "checkpoints" / "step_000004")  # as if killed after the step-2 checkpoint
    capsys.readouterr()
    assert run(config(2), resume="auto", progress=False).steps == 4
    printed = capsys.readouterr().out
    assert ("resumed on 1 process(es) x batch 2 (the checkpoint: 1 x 4): global batch 8 = 2 x grad_accum 4 x 1 "
            "as before") in printed
    assert "| global batch 8 = 2 x grad_accum 4 x 1 |" in printed
    got = logged_losses(run_dir)
    assert sorted(got) == [1, 2, 3, 4] and len(set(want.values())) == 4
    assert all(abs(got[step] - want[step]) <= 1e-5 for step in (3, 4)), (got, want)
    state = json.loads((run_dir / "final" / "trainer_state.json").read_text())
    assert state["samples_seen"] == 4 * 8


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


def _lock_holder_pid(run_dir) -> int | None:
    try:
        return json.loads((run_dir / LOCK_FILE).read_text())["pid"]
    except (OSError, ValueError, KeyError):
        return None


def test_a_run_still_starting_holds_its_folder_against_a_second_run(synth_dir, tmp_path):
    """Two real processes on one reused folder (a failed attempt's): the first `vqkit train` locks it as
    it starts; the second fails in one line naming the folder and the first's pid and host, and leaves
    the folder alone. Killed (a crash), the first holds nothing: a new run takes the folder."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    record_failure(run_dir, RuntimeError("an earlier attempt"), step=0)
    config = tmp_path / "cfg.yaml"
    config.write_text(yaml.safe_dump(tiny_train_config(synth_dir, run_dir, max_steps=100000, save_every_steps=0)))
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    first = subprocess.Popen([sys.executable, "-m", "vqkit", "train", "--config", str(config), "--no-progress"],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while _lock_holder_pid(run_dir) != first.pid:
            assert first.poll() is None, first.stderr.read()
            assert time.time() < deadline, "the first run never took its folder"
            time.sleep(0.05)
        second = config_from_dict(tiny_train_config(synth_dir, run_dir, max_steps=2, save_every_steps=0))
        with pytest.raises(VQKitError) as err:
            run(second, progress=False)
        assert str(err.value) == (f"run directory {run_dir} is in use by another run (pid {first.pid} on "
                                  f"{socket.gethostname()}); wait for it to end, or choose another --output-dir")
        assert _lock_holder_pid(run_dir) == first.pid
    finally:
        first.kill()  # SIGKILL: no cleanup runs, as in a crash
        first.wait(timeout=60)
        first.stderr.close()
    failure = read_failure(run_dir)  # the earlier attempt's, or none if the first run got to replace it
    assert failure is None or failure["error"] == "RuntimeError: an earlier attempt"  # never the second's
    result = run(config_from_dict(tiny_train_config(synth_dir, run_dir, max_steps=2, save_every_steps=0)),
                 progress=False)
    assert result.steps == 2 and (run_dir / "final").is_dir()
    assert _lock_holder_pid(run_dir) == os.getpid()  # the last holder, recorded
    with RunDirLock(run_dir) as lock:  # released when the run ended
        assert lock.held


def test_the_lock_is_exclusive_between_processes_and_ends_with_its_holder(tmp_path):
    """A lock held by another live process is refused without waiting, whatever its file says; the
    holder's normal exit frees it."""
    run_dir = tmp_path / "fresh" / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from vqkit.train.run_dir import RunDirLock; "
                               f"lock = RunDirLock({str(run_dir)!r}).acquire(); print('held', flush=True); "
                               "sys.stdin.read()"],
        env={**os.environ, "PYTHONPATH": str(REPO)}, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(VQKitError, match=rf"^run directory {run_dir} is in use by another run "
                                             rf"\(pid {holder.pid} on "):
            RunDirLock(run_dir).acquire()
        (run_dir / LOCK_FILE).write_text("garbage")  # what the file says does not decide: the lock does
        with pytest.raises(VQKitError, match=r"in use by another run \(its holder is starting\)"):
            RunDirLock(run_dir).acquire()
    finally:
        holder.stdin.close()  # the holder exits normally
        holder.wait(timeout=60)
        holder.stdout.close()
    lock = RunDirLock(run_dir).acquire()
    assert _lock_holder_pid(run_dir) == os.getpid()
    lock.release()
    assert not lock.held

