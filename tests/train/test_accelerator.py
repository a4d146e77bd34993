"""vqkit.train.accelerator: the DeepSpeed JSON's "auto" values filled from the vqkit config (batch sizes,
accumulation, clipping, precision, ZeRO's buckets from the LLM's width), what is set by hand kept, and
the accelerator a CPU run gets."""

from __future__ import annotations

import json

import pytest
from helpers import REPO

from vqkit.config import Config, config_from_dict, load_config
from vqkit.errors import ConfigError
from vqkit.train.accelerator import describe, fill_deepspeed_config, make_accelerator, uses_deepspeed


def test_deepspeed_auto_values_come_from_the_vqkit_config(tmp_path):
    cfg = load_config(REPO / "configs" / "stage1_3d.yaml", ["train.mixed_precision=bf16"])
    for name in ("zero2.json", "zero3.json"):
        ds = fill_deepspeed_config(REPO / "configs" / "deepspeed" / name, cfg, world_size=16)
        # the recipe's global batch 192 on 16 GPUs: 12 x 1 x 16
        assert ds["train_micro_batch_size_per_gpu"] == 12 and ds["gradient_accumulation_steps"] == 1
        assert ds["train_batch_size"] == 192 and ds["bf16"]["enabled"] is True
        assert ds["fp16"]["enabled"] is False and "auto" not in json.dumps(ds)
    bad = tmp_path / "bad.json"
    bad.write_text('{"optimizer": {"params": {"lr": "auto"}}}')
    with pytest.raises(ConfigError, match="optimizer.params.lr"):
        fill_deepspeed_config(bad, cfg, world_size=1)


def test_zero_buckets_follow_the_llms_hidden_size_and_hand_set_values_stay(tmp_path):
    cfg = config_from_dict({"model": {"llm": {"config_overrides": {"hidden_size": 64}}},
                            "train": {"max_grad_norm": 0.0, "mixed_precision": "fp16", "batch_size_per_gpu": 3}})
    ds = fill_deepspeed_config(REPO / "configs" / "deepspeed" / "zero3.json", cfg, world_size=2)
    zero = ds["zero_optimization"]
    assert (zero["reduce_bucket_size"], zero["stage3_prefetch_bucket_size"],
            zero["stage3_param_persistence_threshold"]) == (64 * 64, int(0.9 * 64 * 64), 640)
    assert ds["gradient_clipping"] == 0.0 and ds["fp16"]["enabled"] is True and ds["bf16"]["enabled"] is False
    assert ds["train_batch_size"] == 3 * 1 * 2 and ds["gradient_accumulation_steps"] == 1  # grad_accum unset: 1
    assert zero["stage"] == 3 and zero["overlap_comm"] is True  # the file's own values are kept
    mine = tmp_path / "mine.json"
    mine.write_text(json.dumps({"train_micro_batch_size_per_gpu": 7, "gradient_accumulation_steps": "auto",
                                "bf16": {"enabled": True}, "zero_optimization": {"stage": 2, "reduce_bucket_size": 5}}))
    ds = fill_deepspeed_config(mine, cfg, world_size=1)
    assert ds["train_micro_batch_size_per_gpu"] == 7 and ds["bf16"]["enabled"] is True  # set by hand: kept
    assert ds["gradient_accumulation_steps"] == 1
    assert ds["zero_optimization"]["reduce_bucket_size"] == 5


def test_a_missing_or_broken_deepspeed_file_is_one_line(tmp_path):
    with pytest.raises(ConfigError, match=r"train.deepspeed: .*nope.json not found \(see configs/deepspeed/\)"):
        fill_deepspeed_config(tmp_path / "nope.json", Config(), world_size=1)
    broken = tmp_path / "broken.json"
    broken.write_text('{"zero_optimization": {"stage": 2,}}')
    with pytest.raises(ConfigError, match=r"broken.json: not valid JSON"):
        fill_deepspeed_config(broken, Config(), world_size=1)


def test_a_cpu_run_gets_one_process_without_deepspeed():
    accelerator = make_accelerator(Config())
    assert not uses_deepspeed(accelerator) and accelerator.num_processes == 1
    assert describe(accelerator, Config()) == ("1 process(es) on cpu | global batch 4 = 4 x grad_accum 1 x 1 | "
                                               "mixed precision no")


def test_the_global_batch_fills_the_deepspeed_json_on_any_number_of_processes():
    """train.global_batch_size: DeepSpeed's batch and accumulation follow the process count, and the
    product stays the global batch (the engine checks batch = micro-batch x accumulation x processes)."""
    cfg = config_from_dict({"model": {"llm": {"config_overrides": {"hidden_size": 64}}},
                            "train": {"global_batch_size": 24, "batch_size_per_gpu": 3}})
    for world, accumulation in ((1, 8), (2, 4), (4, 2), (8, 1)):
        ds = fill_deepspeed_config(REPO / "configs" / "deepspeed" / "zero2.json", cfg, world_size=world)
        assert (ds["train_batch_size"], ds["gradient_accumulation_steps"]) == (24, accumulation)
    with pytest.raises(ConfigError, match="train.global_batch_size 24 is not a multiple of batch_size_per_gpu 3 x "
                                          r"16 process\(es\) = 48; use a GPU count that divides 24"):
        fill_deepspeed_config(REPO / "configs" / "deepspeed" / "zero2.json", cfg, world_size=16)
