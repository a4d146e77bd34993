"""vqkit pretrain-encoder: the run folder and the weights file it writes, exact resume after kill -9,
heads-only training, data without poses or depth, and the file as model.encoder.weights."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from helpers import REPO, TINY_PRETRAIN_ENCODER, tiny_pretrain_config, write_jsonl
from helpers import logged_losses as losses
from safetensors import safe_open

from vqkit.config import EncoderConfig, config_from_dict
from vqkit.errors import ConfigError, DataError
from vqkit.train import checkpoint as ckpt
from vqkit.train.encoder_pretrain import INITIAL_FOV, build_vggt, pretrain_encoder


def cli(*args):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen([sys.executable, "-m", "vqkit", "pretrain-encoder", *args], env=env, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_run_writes_official_layout_weights_that_load_as_encoder_and_heads(synth_dir, tmp_path):
    from vqkit.vggt import Aggregator
    from vqkit.vggt.weights_file import describe_vggt_file, vggt_from_file

    cfg = config_from_dict(tiny_pretrain_config(synth_dir, tmp_path / "run", eval_every_steps=3, eval_samples=2))
    result = pretrain_encoder(cfg, progress=False)
    run_dir = tmp_path / "run"
    weights = run_dir / "encoder" / "model.safetensors"
    assert result.final_dir == run_dir / "encoder" and result.steps == 6 and weights.is_file()
    assert [p.name for p in ckpt.list_checkpoints(run_dir)] == ["step_000003", "step_000006"]
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "loss" in r]
    assert [r["step"] for r in steps] == [1, 2, 3, 4, 5, 6]
    assert {"loss_camera", "loss_T", "loss_R", "loss_FL", "loss_conf_depth", "loss_reg_depth",
            "loss_grad_depth", "samples_per_s", "lr", "proj_lr"} <= set(steps[0])
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in steps)
    evals = [r for r in rows if "eval_rotation_error_deg" in r]
    assert [r["step"] for r in evals] == [3, 6] and 0 <= evals[0]["eval_rotation_error_deg"] <= 180

    with safe_open(str(weights), "pt") as f:
        keys = list(f.keys())
    assert {k.split(".")[0] for k in keys} == {"aggregator", "camera_head", "depth_head"}
    info = describe_vggt_file(weights)
    assert info.encoder["embed_dim"] == 32 and info.heads["dpt_features"] == 8 and info.image_size == 56
    # the trained weights are the last checkpoint's, under the official names
    trained = ckpt.load_file(str(run_dir / "checkpoints" / "step_000006" / "trainable.safetensors"))
    model, _, _ = vggt_from_file(weights)
    state = model.state_dict()
    assert set(trained) == set(state) and all(torch.equal(trained[k], state[k]) for k in trained)
    # model.encoder.weights loads its aggregator strictly (the VQ model's encoder)
    agg = Aggregator.from_config(EncoderConfig(**TINY_PRETRAIN_ENCODER, weights=str(weights)))
    assert torch.equal(agg.camera_token, state["aggregator.camera_token"])


def test_kill_after_checkpoint_then_resume_gives_the_same_losses(synth_dir, tmp_path):
    steps = {"max_steps": 8, "save_every_steps": 4}
    reference = tmp_path / "reference"
    pretrain_encoder(config_from_dict(tiny_pretrain_config(synth_dir, reference, **steps)), progress=False)

    killed = tmp_path / "killed"
    config = tmp_path / "cfg.yaml"
    config.write_text(yaml.safe_dump(tiny_pretrain_config(synth_dir, killed, **steps)))
    proc = cli("--config", str(config), "--no-progress")
    marker = killed / "checkpoints" / "step_000004" / ckpt.COMPLETE
    deadline = time.time() + 240
    while not marker.exists():
        assert proc.poll() is None, proc.stdout.read()
        assert time.time() < deadline, "no checkpoint within 240 s"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "encoder").exists()

    resumed = cli("--config", str(config), "--resume", "auto", "--no-progress")
    out, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, out
    assert "resumed from" in out and "encoder weights saved to" in out
    want, got = losses(reference), losses(killed)
    assert sorted(got) == sorted(want) == list(range(1, 9))
    for step in range(1, 9):
        assert abs(got[step] - want[step]) <= 1e-6, (step, got[step], want[step])


def test_a_changed_learning_rate_is_refused_on_resume(synth_dir, tmp_path):
    data = tiny_pretrain_config(synth_dir, tmp_path / "run", max_steps=2, save_every_steps=1)
    pretrain_encoder(config_from_dict(data), progress=False)
    data["train"].update(max_steps=3, lr=5e-3)
    with pytest.raises(ConfigError, match=r"train.lr 0.001 -> 0.005"):
        pretrain_encoder(config_from_dict(data), resume="auto", progress=False)


def test_heads_only_training_leaves_the_aggregator_as_it_was(synth_dir, tmp_path, tiny_vggt_file):
    from vqkit.vggt.weights_file import vggt_from_file

    data = tiny_pretrain_config(synth_dir, tmp_path / "run", max_steps=2, save_every_steps=0)
    data["model"]["encoder"]["weights"] = str(tiny_vggt_file)
    data["encoder_pretrain"]["train_aggregator"] = False
    pretrain_encoder(config_from_dict(data), progress=False)
    before, _, _ = vggt_from_file(tiny_vggt_file)
    after, _, _ = vggt_from_file(tmp_path / "run" / "encoder" / "model.safetensors")
    old, new = before.state_dict(), after.state_dict()
    assert all(torch.equal(old[k], new[k]) for k in old if k.startswith("aggregator."))
    assert any(not torch.equal(old[k], new[k]) for k in old if k.startswith("camera_head."))


def test_a_random_camera_head_starts_at_a_usable_field_of_view(synth_dir, tmp_path):
    model = build_vggt(config_from_dict(tiny_pretrain_config(synth_dir, tmp_path)))
    with torch.no_grad():
        fov = model(torch.rand(1, 2, 3, 56, 56)).pose_enc[..., 7:]
    # each of the 4 iterations adds INITIAL_FOV / 4 through the bias of the zeroed rows
    assert torch.allclose(fov, torch.full_like(fov, INITIAL_FOV), atol=1e-6)


def test_records_without_poses_or_depth_are_named(synth_dir, tmp_path):
    records = [json.loads(line) for line in (synth_dir / "train.jsonl").read_text().splitlines()[:3]]
    for r in records:
        r["images"] = [str(synth_dir / p) for p in r["images"]]
        r["depths"] = [str(synth_dir / p) for p in r["depths"]]
        r["semantics"] = [str(synth_dir / p) for p in r["semantics"]]
        r["geom_token"] = None
    write_jsonl(tmp_path / "nogeo.jsonl", records)
    data = tiny_pretrain_config(synth_dir, tmp_path / "run")
    data["data"]["train"] = [{"path": str(tmp_path / "nogeo.jsonl")}]
    data["data"]["allow_outside_root"] = True
    pattern = r"no record with poses .* 0 view sets .* 3 records .* \(2 repeated views, 1 without poses"
    with pytest.raises(DataError, match=pattern):
        pretrain_encoder(config_from_dict(data), progress=False)


@pytest.mark.slow
@pytest.mark.parametrize("deepspeed", [None, "zero2.json"])
def test_torchrun_two_processes(synth_dir, tmp_path, deepspeed):
    """DDP (and DeepSpeed ZeRO-2) over 2 CPU processes: every rank steps, rank 0 writes one weights file
    that loads in a single process."""
    from vqkit.vggt.weights_file import vggt_from_file

    run_dir = tmp_path / "run"
    config = tmp_path / "cfg.yaml"
    config.write_text(yaml.safe_dump(tiny_pretrain_config(synth_dir, run_dir, max_steps=3, save_every_steps=2,
                                                          grad_accum=1)))
    extra = ["--deepspeed", str(REPO / "configs" / "deepspeed" / deepspeed)] if deepspeed else []
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    out = subprocess.run([str(Path(sys.executable).parent / "torchrun"), "--nproc_per_node", "2",
                          "--master_port", str(29600 + os.getpid() % 1000), "-m", "vqkit", "pretrain-encoder",
                          "--config", str(config), "--no-progress", *extra],
                         env=env, cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "2 process(es)" in out.stdout + out.stderr
    assert sorted(losses(run_dir)) == [1, 2, 3]
    model, _, _ = vggt_from_file(run_dir / "encoder" / "model.safetensors")
    assert model.camera_head is not None and model.depth_head is not None


def _semantic_config(synth_dir, run_dir, **pretrain):
    cfg = tiny_pretrain_config(synth_dir, run_dir, eval_every_steps=3, eval_samples=2)
    cfg["encoder_pretrain"] = {"geometry_heads": False, "semantic_weight": 1.0, "semantic_classes": 15,
                               "colour_weight": 10.0, **pretrain}
    return cfg


def test_semantic_objective_alone_writes_an_aggregator_file_and_scores_held_out_cells(synth_dir, tmp_path):
    from vqkit.vggt import Aggregator

    run_dir = tmp_path / "run"
    result = pretrain_encoder(config_from_dict(_semantic_config(synth_dir, run_dir)), progress=False)
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "loss" in r]
    assert len(steps) == 6 and {"loss_semantic", "loss_colour"} <= set(steps[0]) and "loss_camera" not in steps[0]
    evals = [r for r in rows if "eval_semantic_cell_accuracy" in r]
    assert [r["step"] for r in evals] == [3, 6]
    assert all(0 <= r["eval_semantic_cell_accuracy"] <= 100 and 0 <= r["eval_semantic_mean_recall"] <= 100
               for r in evals)
    with safe_open(str(result.final_dir / "model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert {k.split(".")[0] for k in keys} == {"aggregator"}  # the semantic head stays behind
    trained = ckpt.load_file(str(run_dir / "checkpoints" / "step_000006" / "trainable.safetensors"))
    assert any(k.startswith("semantic_head.") for k in trained)  # ... but resumes with the run
    weights = str(result.final_dir / "model.safetensors")
    agg = Aggregator.from_config(EncoderConfig(**TINY_PRETRAIN_ENCODER, weights=weights))
    assert torch.equal(agg.camera_token, trained["aggregator.camera_token"])


def test_semantic_objective_learns_the_rooms_classes(synth_dir, tmp_path):
    """Fifty steps on the 12 tiny rooms: the class-balanced semantic loss falls from chance (log 15 = 2.7;
    ~2.05 after 50 steps when written) and the colour loss to a fraction of its start."""
    cfg = _semantic_config(synth_dir, tmp_path / "run")
    cfg["train"].update(max_steps=50, save_every_steps=0, eval_every_steps=0, grad_accum=1, lr=3e-3, proj_lr=3e-3)
    pretrain_encoder(config_from_dict(cfg), progress=False)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    semantic = [r["loss_semantic"] for r in rows if "loss_semantic" in r]
    colour = [r["loss_colour"] for r in rows if "loss_colour" in r]
    assert sum(semantic[-5:]) / 5 < 0.85 * sum(semantic[:5]) / 5, semantic
    assert sum(colour[-5:]) < 0.2 * sum(colour[:5]), colour


def test_semantic_settings_and_data_are_checked(synth_dir, tmp_path):
    with pytest.raises(ConfigError, match="nothing to train"):
        config_from_dict(_semantic_config(synth_dir, tmp_path / "a", semantic_weight=0.0, colour_weight=0.0))
    with pytest.raises(ConfigError, match="semantic_classes must be in 2..255"):
        config_from_dict(_semantic_config(synth_dir, tmp_path / "a", semantic_classes=0))
    with pytest.raises(ConfigError, match=r"semantic_cells \(3\) must divide the patch size \(14\)"):
        cfg = config_from_dict(_semantic_config(synth_dir, tmp_path / "a", semantic_cells=3))
        pretrain_encoder(cfg, progress=False)
    # records without semantic maps: a one-line error naming what is missing and where
    plain = tmp_path / "plain.jsonl"
    write_jsonl(plain, [{k: v for k, v in json.loads(line).items() if k != "semantics"}
                        for line in (synth_dir / "train.jsonl").read_text().splitlines()])
    cfg = _semantic_config(synth_dir, tmp_path / "b")
    cfg["data"].update(train=[{"path": str(plain)}], image_root=str(synth_dir))
    with pytest.raises(DataError,
                       match=r"no record with semantic maps \(semantics\): 0 view sets .* without semantic maps"):
        pretrain_encoder(config_from_dict(cfg), progress=False)
