"""Training: run dir, exact resume after kill -9, notebook API == CLI, faults, DeepSpeed JSON."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from helpers import REPO
from helpers import logged_losses as losses
from helpers import tiny_train_config as tiny_config

from vqkit.config import config_from_dict, load_config
from vqkit.errors import VQKitError
from vqkit.train import checkpoint as ckpt
from vqkit.train import run


def write_config(tmp_path: Path, data: dict, name="cfg.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def cli(*args, env=None, **kwargs):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.Popen([sys.executable, "-m", "vqkit.train", *args], env=env, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs)


def test_run_writes_the_run_directory_and_a_loadable_model(synth_dir, tmp_path):
    cfg = config_from_dict(tiny_config(synth_dir, tmp_path / "run"))
    result = run(cfg, progress=False)
    run_dir = tmp_path / "run"
    assert result.steps == 6 and result.final_dir == run_dir / "final"
    assert load_config(run_dir / "config.yaml") == cfg
    logged = losses(run_dir)
    assert sorted(logged) == [1, 2, 3, 4, 5, 6] and not any(math.isnan(v) for v in logged.values())
    record = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[0])
    assert {"step", "loss", "lr", "samples_per_s", "tokens_per_s", "eta_s"} <= set(record)
    assert list((run_dir / "tb").glob("events.out.tfevents.*"))
    assert [p.name for p in ckpt.list_checkpoints(run_dir)] == ["step_000003", "step_000006"]
    assert not list((run_dir / "checkpoints").glob(".tmp_*"))

    # The saved model is the trained one: its weights are the last checkpoint's, and the frozen parts the
    # folder rebuilds from its config give the same logits as a model built independently.
    from safetensors.torch import load_file

    import vqkit
    from vqkit.data.dataset import build_dataloader
    from vqkit.models.builder import build_model

    model = vqkit.load_model(run_dir / "final").eval()
    trained = load_file(str(run_dir / "checkpoints" / "step_000006" / "trainable.safetensors"))
    saved = model.trainable_state_dict()
    assert set(saved) == set(trained) and all(torch.equal(saved[k], trained[k]) for k in trained)
    rebuilt = build_model(cfg).eval()
    assert not any(torch.equal(rebuilt.trainable_state_dict()[k], trained[k]) for k in trained if "lora_B" in k)
    rebuilt.load_trainable(trained)
    batch = next(iter(build_dataloader(cfg, "val", model.tokenizer, batch_size=3, shuffle=False)))
    with torch.no_grad():
        assert torch.allclose(model(batch).logits, rebuilt(batch).logits, atol=1e-6)


def test_existing_run_dir_is_never_overwritten_silently(synth_dir, tmp_path):
    cfg = config_from_dict(tiny_config(synth_dir, tmp_path / "run", max_steps=1, save_every_steps=0))
    run(cfg, progress=False)
    with pytest.raises(VQKitError, match="already holds a run"):
        run(cfg, progress=False)
    cfg.train.overwrite = True
    run(cfg, progress=False)


def packed_token_batches(data: dict) -> dict:
    """A config packed into micro-batches of at most 300 tokens (several samples each, not a fixed number)."""
    data["data"].update(packing=True, packing_buffer=8, turns=3)
    data["train"]["tokens_per_batch"] = 300
    return data


@pytest.mark.parametrize("batching", ["samples", "packed tokens"])
def test_kill_after_checkpoint_then_resume_gives_the_same_losses(synth_dir, tmp_path, batching):
    steps = {"max_steps": 8, "save_every_steps": 4}

    def config(run_dir):
        data = tiny_config(synth_dir, run_dir, **steps)
        return packed_token_batches(data) if batching == "packed tokens" else data

    reference = tmp_path / "reference"
    run(config_from_dict(config(reference)), progress=False)

    killed = tmp_path / "killed"
    config = write_config(tmp_path, config(killed))
    proc = cli("--config", str(config), "--no-progress")
    marker = killed / "checkpoints" / "step_000004" / ckpt.COMPLETE
    deadline = time.time() + 240
    while not marker.exists():
        assert proc.poll() is None, proc.stdout.read()
        assert time.time() < deadline, "no checkpoint within 240 s"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)  # kill -9: no chance to clean up
    proc.wait()
    assert not (killed / "final").exists()

    resumed = cli("--config", str(config), "--resume", "auto", "--no-progress")
    out, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, out
    assert "resumed from" in out
    want, got = losses(reference), losses(killed)
    assert sorted(got) == sorted(want) == list(range(1, 9))
    for step in range(1, 9):
        assert abs(got[step] - want[step]) <= 1e-6, (step, got[step], want[step])


def test_notebook_api_and_cli_give_identical_losses(synth_dir, tmp_path):
    api_dir, cli_dir = tmp_path / "api", tmp_path / "cli"
    run(config_from_dict(tiny_config(synth_dir, api_dir, max_steps=4, save_every_steps=0)), progress=False)
    config = write_config(tmp_path, tiny_config(synth_dir, tmp_path / "unused", max_steps=4, save_every_steps=0))
    proc = cli("--config", str(config), "--output-dir", str(cli_dir), "--no-progress")
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    assert losses(api_dir) == losses(cli_dir)


def test_non_finite_loss_skips_the_step_and_aborts_after_k_in_a_row(synth_dir, tmp_path, monkeypatch, capsys):
    from vqkit.models.vqmodel import VQModel

    real_forward = VQModel.forward
    calls = {"n": 0}
    poisoned = {3, 4}  # micro-batches 3 and 4 = optimizer step 2 (grad_accum 2)

    def forward(self, batch):
        calls["n"] += 1
        out = real_forward(self, batch)
        if calls["n"] in poisoned or calls["n"] > 8:
            out.loss = out.loss * float("nan")
        return out

    monkeypatch.setattr(VQModel, "forward", forward)
    cfg = config_from_dict(tiny_config(synth_dir, tmp_path / "run", max_steps=8, save_every_steps=0,
                                       max_nonfinite_steps=3))
    with pytest.raises(VQKitError, match="3 non-finite losses in a row"):
        run(cfg, progress=False)
    text = capsys.readouterr().out
    assert "non-finite loss at step 2; step skipped" in text
    logged = losses(tmp_path / "run")
    assert 2 not in logged and {1, 3, 4} <= set(logged)


def mixed_config(synth_dir: Path, run_dir: Path, **train) -> dict:
    """The tiny config over one-word QA answers and Stage 2 layouts of hundreds of tokens, so micro-batches
    and steps hold very different numbers of label tokens."""
    data = tiny_config(synth_dir, run_dir, **train)
    data["model"]["llm"]["config_overrides"]["max_position_embeddings"] = 1024
    data["data"].update(train=[{"path": str(synth_dir / "train.jsonl")},
                               {"path": str(synth_dir / "roomplan_train.jsonl")}], max_length=640)
    return data


def test_logged_loss_is_token_weighted_over_the_log_window(synth_dir, tmp_path, monkeypatch):
    """A log line over several steps is their summed token loss over their label tokens (every rank's),
    like each step's loss, not the mean of the steps' losses."""
    from vqkit.train import recipe
    from vqkit.train.step import train_step

    results = []

    def recorded(*args, **kwargs):  # the real step; only its results are kept
        results.append(train_step(*args, **kwargs))
        return results[-1]

    monkeypatch.setattr(recipe, "train_step", recorded)
    run(config_from_dict(mixed_config(synth_dir, tmp_path / "run", max_steps=3, log_every_steps=3,
                                      save_every_steps=0)), progress=False)
    assert len(results) == 3 and len({r.global_tokens for r in results}) > 1
    tokens = sum(r.global_tokens for r in results)
    weighted = sum(r.loss * r.global_tokens for r in results) / tokens
    logged = losses(tmp_path / "run")
    assert list(logged) == [3] and abs(logged[3] - weighted) <= 1e-9
    assert abs(logged[3] - sum(r.loss for r in results) / 3) > 1e-6


def _launch_torchrun(config: Path, *extra) -> str:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    out = subprocess.run([str(Path(sys.executable).parent / "torchrun"), "--nproc_per_node", "2",
                          "--master_port", str(29500 + os.getpid() % 1000), "-m", "vqkit.train",
                          "--config", str(config), "--no-progress", *extra],
                         check=False, env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out.stdout + out.stderr


def _torchrun(tmp_path, synth_dir, run_dir, *extra, data: dict | None = None):
    data = data or tiny_config(synth_dir, run_dir, max_steps=3, save_every_steps=2)
    config = write_config(tmp_path, data)
    _launch_torchrun(config, *extra)
    import vqkit

    model = vqkit.load_model(run_dir / "final")  # a 2-process run loads in one process
    assert model is not None
    return losses(run_dir)


# Loss and weights of a 2-process run against 1 process: float rounding of the gradient's all-reduce and
# of differently padded micro-batches, through 3 AdamW steps (measured: about 1e-7 for the losses).
DDP_TOLERANCE = 1e-5


@pytest.mark.slow
@pytest.mark.ci
def test_torchrun_two_process_ddp(synth_dir, tmp_path):
    """2 processes x batch 4 x grad_accum 2 train as 1 process x batch 8 x grad_accum 2: the same losses
    and weights. The sampler gives the ranks the interleaved halves of the same 16 samples per step
    (per-sample randomness is seeded by the sample, not the rank), and the step weighs every label token
    of the global batch alike on both. LoRA dropout is off: its masks differ by process and batch layout."""
    from safetensors.torch import load_file

    def config(run_dir: Path, batch: int) -> dict:
        data = mixed_config(synth_dir, run_dir, max_steps=3, save_every_steps=2, batch_size_per_gpu=batch)
        data["model"]["lora"]["dropout"] = 0.0
        return data

    two = _torchrun(tmp_path, synth_dir, tmp_path / "ddp", data=config(tmp_path / "ddp", 4))
    run(config_from_dict(config(tmp_path / "one", 8)), progress=False)
    one = losses(tmp_path / "one")
    assert sorted(two) == sorted(one) == [1, 2, 3]
    assert all(abs(two[step] - one[step]) <= DDP_TOLERANCE for step in one), (two, one)
    assert len(set(one.values())) == 3  # three different losses: a stalled run would not match them
    trained = [load_file(str(tmp_path / name / "final" / "trainable.safetensors")) for name in ("ddp", "one")]
    assert set(trained[0]) == set(trained[1])
    difference = max(float((trained[0][k] - trained[1][k]).abs().max()) for k in trained[0])
    assert difference <= DDP_TOLERANCE, difference


@pytest.mark.slow
def test_a_two_process_run_resumed_on_one_process_keeps_its_global_batch(synth_dir, tmp_path, capsys):
    """train.global_batch_size 16 at batch 4: 2 processes accumulate 2 micro-batches, 1 process 4. A run
    checkpointed on 2 processes and resumed on 1 trains its last step on the same 16 samples, with the
    loss the 2-process run had there."""
    run_dir = tmp_path / "run"
    data = tiny_config(synth_dir, run_dir, max_steps=3, save_every_steps=2, global_batch_size=16, grad_accum=None)
    data["model"]["lora"]["dropout"] = 0.0  # its masks differ by process and batch layout
    two = _torchrun(tmp_path, synth_dir, run_dir, data=data)
    shutil.rmtree(run_dir / "checkpoints" / "step_000003")  # as if stopped after the step-2 checkpoint
    shutil.rmtree(run_dir / "final")
    capsys.readouterr()
    assert run(config_from_dict(data), resume="auto", progress=False).steps == 3
    printed = capsys.readouterr().out
    assert ("resumed on 1 process(es) x batch 4 (the checkpoint: 2 x 4): global batch 16 = 4 x grad_accum 4 x 1 "
            "as before") in printed
    assert abs(losses(run_dir)[3] - two[3]) <= DDP_TOLERANCE, (losses(run_dir), two)
    assert json.loads((run_dir / "final" / "trainer_state.json").read_text())["samples_seen"] == 3 * 16


@pytest.mark.slow
def test_torchrun_two_process_zero3(synth_dir, tmp_path):
    """ZeRO-3 trains, exports a model that loads in one process, and resumes from its own
    (partitioned) checkpoint with the same loss."""
    run_dir = tmp_path / "zero3"
    zero3 = ("--deepspeed", str(REPO / "configs/deepspeed/zero3.json"))
    logged = _torchrun(tmp_path, synth_dir, run_dir, *zero3)
    assert sorted(logged) == [1, 2, 3]
    from safetensors.torch import load_file

    final = load_file(str(run_dir / "final" / "trainable.safetensors"))

    # As if killed after the checkpoint of step 2: resume it and train step 3 again.
    shutil.rmtree(run_dir / "checkpoints" / "step_000003")
    shutil.rmtree(run_dir / "final")
    out = _launch_torchrun(tmp_path / "cfg.yaml", *zero3, "--resume", "auto")
    assert "resumed from" in out and "step_000002 at step 2" in out, out[-3000:]
    assert abs(losses(run_dir)[3] - logged[3]) <= 1e-6, (losses(run_dir)[3], logged[3])
    # The same tensors bit for bit (not the same file bytes: safetensors writes its metadata map in an
    # order that varies between processes).
    resumed = load_file(str(run_dir / "final" / "trainable.safetensors"))
    assert resumed.keys() == final.keys() and all(torch.equal(resumed[k], final[k]) for k in final)


@pytest.mark.slow
def test_torchrun_two_process_packed_token_batches_resume_each_rank_where_it_was(synth_dir, tmp_path):
    """Batches measured in tokens give each rank its own number of batches per epoch: a checkpoint keeps
    every rank's data position, and a resumed 2-process run trains the same steps again."""
    run_dir = tmp_path / "packed"
    data = packed_token_batches(tiny_config(synth_dir, run_dir, max_steps=6, save_every_steps=3))
    data["data"]["packing_buffer"] = 4
    logged = _torchrun(tmp_path, synth_dir, run_dir, data=data)
    state = json.loads((run_dir / "checkpoints" / "step_000003" / ckpt.TRAINER_STATE).read_text())
    positions = state["data_positions"]
    assert len(positions) == 2 and positions[0] != positions[1]  # the ranks are at different batches
    import shutil

    shutil.rmtree(run_dir / "checkpoints" / "step_000006")
    shutil.rmtree(run_dir / "final")
    out = _launch_torchrun(tmp_path / "cfg.yaml", "--resume", "auto")
    assert "step_000003 at step 3" in out, out[-3000:]
    resumed = losses(run_dir)
    assert all(abs(resumed[step] - logged[step]) <= 1e-6 for step in (4, 5, 6)), (resumed, logged)


def test_monitor_reads_progress(synth_dir, tmp_path, capsys):
    from vqkit.commands.monitor import main
    from vqkit.tools.monitor import run_status

    run(config_from_dict(tiny_config(synth_dir, tmp_path / "run", max_steps=2, save_every_steps=0)), progress=False)
    status = run_status(tmp_path / "run")
    assert status["step"] == 2 and status["finished"] and status["loss"] is not None
    assert main([str(tmp_path / "run")]) == 0
    assert "step 2/2" in capsys.readouterr().out


def test_trains_rooms_and_2d_conversations_in_one_run(synth_dir, tmp_path, capsys):
    from conversation_fixtures import gpt, human, photos, write_json

    samples = [{"image": p, "conversations": [human("<image>\nWhat colour is it?"), gpt("red"),
                                              human("Is it a chair?"), gpt("yes")]} for p in photos(tmp_path, 6)]
    conversations = write_json(tmp_path / "llava.json", samples)
    data = tiny_config(synth_dir, tmp_path / "run", max_steps=2, save_every_steps=0)
    data["data"]["train"] = [{"path": str(synth_dir / "train.jsonl"), "weight": 0.75, "name": "rooms"},
                             {"path": str(conversations), "weight": 0.25, "name": "llava"}]
    result = run(config_from_dict(data), progress=False)
    assert result.steps == 2 and all(math.isfinite(v) for v in losses(tmp_path / "run").values())
    printed = capsys.readouterr().out
    assert "data source llava: 6 samples (6 conversation samples, 12 turns) -> 19 per epoch (24.4%)" in printed
    assert "data source rooms: 72 samples -> 59 per epoch (75.6%)" in printed  # 78 a epoch: 0.25 x 78 = 19.5


def test_a_training_set_smaller_than_one_batch_gives_the_numbers(synth_dir, tmp_path):
    """It used to say only "the training set is smaller than one batch per process"."""
    cfg = config_from_dict(tiny_config(synth_dir, tmp_path / "run", max_steps=1, save_every_steps=0,
                                       batch_size_per_gpu=100, grad_accum=1))
    with pytest.raises(VQKitError) as e:
        run(cfg, progress=False)
    assert str(e.value) == ("the training set is smaller than one batch per process: 72 sample(s) for "
                            "train.batch_size_per_gpu 100 x 1 process(es) = 100; lower train.batch_size_per_gpu "
                            "or add data")
