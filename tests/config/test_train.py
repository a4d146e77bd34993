"""vqkit.config.train: the training and encoder-pretraining sections' checks refuse a run that cannot
go, saying how to fix it, and accept every value at the edge of what can."""

from __future__ import annotations

import pytest

from vqkit.config import config_from_dict
from vqkit.errors import ConfigError

REFUSED = [
    ("train", {"max_steps": 0}, "train.max_steps must be >= 1"),
    ("train", {"batch_size_per_gpu": 0}, "train.batch_size_per_gpu must be >= 1"),
    ("train", {"grad_accum": 0}, "train.grad_accum must be >= 1"),
    ("train", {"lr": 0.0}, "train.lr and train.proj_lr must be > 0"),
    ("train", {"proj_lr": -1e-4}, "train.lr and train.proj_lr must be > 0"),
    ("train", {"log_every_steps": 0}, "train.log_every_steps must be >= 1"),
    ("train", {"save_every_steps": -1}, "train.save_every_steps must be >= 0"),
    ("train", {"keep_checkpoints": 0}, "train.keep_checkpoints must be >= 1"),
    ("train", {"betas": [0.9]}, r"train.betas needs two values, e.g. \[0.9, 0.999\]"),
    ("train", {"global_batch_size": 192, "grad_accum": 12},
     r"train.global_batch_size \(192\) and train.grad_accum \(12\) are both set: grad_accum is derived from the "
     r"global batch; drop one \(--set train.grad_accum=null, or --set train.global_batch_size=null\)"),
    ("train", {"global_batch_size": 100, "batch_size_per_gpu": 16},
     r"train.global_batch_size \(100\) must be a positive multiple of train.batch_size_per_gpu \(16\)"),
    ("encoder_pretrain", {"dpt_out_channels": [4, 8, 16]}, "dpt_out_channels needs 4 values"),
    ("encoder_pretrain", {"dpt_layers": [0, 1]}, r"dpt_layers needs 4 layer indices \(or null for the default\)"),
    ("encoder_pretrain", {"dpt_features": 7}, "encoder_pretrain.dpt_features must be even"),
    ("encoder_pretrain", {"camera_trunk_depth": 0}, "camera_trunk_depth must be >= 1"),
    ("encoder_pretrain", {"valid_range": 1.0}, r"valid_range must be < 1 \(a quantile; <= 0 disables it\)"),
    ("encoder_pretrain", {"colour_weight": -1.0}, "semantic_weight and colour_weight must be >= 0"),
    ("encoder_pretrain", {"geometry_heads": False, "semantic_weight": 0.0, "colour_weight": 0.0},
     r"nothing to train \(geometry_heads is false"),
    ("encoder_pretrain", {"semantic_weight": 1.0, "semantic_classes": 1}, "semantic_classes must be in 2..255"),
    ("encoder_pretrain", {"semantic_cells": 0}, "semantic_cells must be >= 1"),
]


@pytest.mark.parametrize("section, values, message", REFUSED,
                         ids=[f"{section}.{next(iter(values))}" for section, values, _ in REFUSED])
def test_a_run_that_cannot_go_is_refused_saying_how_to_fix_it(section, values, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict({section: values})


def test_edge_values_are_accepted():
    cfg = config_from_dict({"train": {"max_steps": 1, "save_every_steps": 0, "keep_checkpoints": 1},
                            "encoder_pretrain": {"valid_range": 0.0, "dpt_features": 2, "dpt_layers": None,
                                                 "semantic_weight": 1.0, "semantic_classes": 255}})
    assert cfg.train.save_every_steps == 0 and cfg.encoder_pretrain.semantic_classes == 255


def test_the_global_batch_derives_the_accumulation_for_any_process_count():
    """train.global_batch_size: grad_accum = global / (batch x processes), the same samples per step on any
    number of GPUs; a count it does not divide is one line naming a batch that does; unset, the old rule."""
    cfg = config_from_dict({"train": {"global_batch_size": 192, "batch_size_per_gpu": 16}})
    assert [cfg.train.accumulation(n) for n in (1, 2, 3, 4, 6, 12)] == [12, 6, 4, 3, 2, 1]
    assert all(cfg.train.global_batch(n) == 192 for n in (1, 2, 3, 4, 6, 12))
    with pytest.raises(ConfigError) as refused:
        cfg.train.accumulation(8)
    assert str(refused.value) == ("train.global_batch_size 192 is not a multiple of batch_size_per_gpu 16 x 8 "
                                  "process(es) = 128; use --set train.batch_size_per_gpu=12")
    with pytest.raises(ConfigError, match="use a GPU count that divides 192"):
        cfg.train.accumulation(256)
    old = config_from_dict({"train": {"batch_size_per_gpu": 16, "grad_accum": 12}})
    assert old.train.accumulation(8) == 12 and old.train.global_batch(8) == 1536  # grows with the GPUs
    assert config_from_dict({}).train.accumulation(4) == 1  # grad_accum unset: 1
