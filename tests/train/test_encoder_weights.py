"""A config is what it trains: the encoder weights it names are there, or the run refuses in one line naming
the command that writes them, before anything is written."""

from __future__ import annotations

import shutil

import yaml
from helpers import REPO

from vqkit.commands import main as vqkit_main
from vqkit.train.encoder_weights import weights_maker

DEMO_WEIGHTS = "runs/demo_encoder/encoder/model.safetensors"


def test_the_maker_of_a_pretrained_encoder_is_the_config_that_writes_its_run(in_repo):
    assert weights_maker(DEMO_WEIGHTS) == "vqkit pretrain-encoder --config configs/demo_encoder.yaml writes it"
    assert weights_maker("runs/camera_depth_heads/encoder/model.safetensors") == \
        "vqkit pretrain-encoder --config configs/camera_depth_heads.yaml writes it"
    assert weights_maker("runs/mine/encoder/model.safetensors") == \
        "vqkit pretrain-encoder --config CONFIG --output-dir runs/mine writes it"
    assert weights_maker("ckpts/vggt/model.pt").startswith("give the aggregator's weights")


def test_the_demo_config_trains_the_demo_model_or_names_the_command(synth_dir, tmp_path, monkeypatch, capsys):
    """`vqkit-train --config configs/demo.yaml` used to train on a random aggregator without a word (the demo
    injected its pretrained one); now the config names it, and a schedule that cannot fit is said."""
    monkeypatch.chdir(tmp_path)
    shutil.copytree(REPO / "configs", tmp_path / "configs")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "synth").symlink_to(synth_dir)  # the demo config's data/synth, 12 small rooms
    train = ["train", "--config", "configs/demo.yaml", "--set", "train.max_steps=2", "--set",
             "train.batch_size_per_gpu=2", "--set", "data.image_size=56", "--no-progress"]
    assert vqkit_main(train) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"vqkit train: error: model.encoder.weights {DEMO_WEIGHTS} does not exist: vqkit pretrain-encoder "
                   f"--config configs/demo_encoder.yaml writes it")
    assert not (tmp_path / "runs").exists()  # refused before anything was written
    # the command it names writes them (shortened), and then the demo config trains on them
    assert vqkit_main(["pretrain-encoder", "--config", "configs/demo_encoder.yaml", "--set", "train.max_steps=1",
                       "--set", "train.batch_size_per_gpu=2", "--set", "train.eval_every_steps=0",
                       "--set", "train.warmup_steps=0", "--set", "data.image_size=56", "--no-progress"]) == 0
    capsys.readouterr()
    assert vqkit_main(train) == 0
    out = capsys.readouterr().out
    assert "warning: train.warmup_steps (100) >= train.max_steps (2): the learning rate never leaves its warmup " \
           "and peaks at 2.00e-05 instead of train.lr 1.00e-03" in out
    trained = yaml.safe_load((tmp_path / "runs" / "demo" / "config.yaml").read_text())
    assert trained["model"]["encoder"]["weights"] == DEMO_WEIGHTS
