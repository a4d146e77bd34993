"""``llm.gradient_checkpointing: auto``: the memory plan decides (off when the batch fits without it),
``vqkit plan`` says so, and true/false stay what they say."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from helpers import tiny_config

from vqkit.commands.plan import main as plan_main
from vqkit.config import to_dict
from vqkit.tools.checkpointing import resolve_gradient_checkpointing
from vqkit.tools.plan import GB, GPU_RESERVE_GB, format_plan, make_plan


@pytest.fixture
def auto_cfg(corpus, tokenizer_dir):
    cfg = tiny_config(corpus.root, tokenizer_dir)
    cfg.model.llm.gradient_checkpointing = "auto"
    cfg.model.llm.config_overrides["num_hidden_layers"] = 4  # enough layers for checkpointing to save memory
    return cfg


def test_the_plan_turns_checkpointing_off_when_the_batch_fits_without_it(auto_cfg):
    roomy = make_plan(auto_cfg, gpu_mem_gb=80)
    assert roomy.gradient_checkpointing is False and "fits in" in roomy.checkpointing_decided_by
    assert roomy.per_sample == roomy.per_sample_without_checkpointing > roomy.per_sample_with_checkpointing
    assert "gradient checkpointing: off (auto: the plan, batch 4 fits in" in format_plan(roomy)
    # Memory for the configured batch with checkpointing but not without: the plan turns it on.
    bs = auto_cfg.train.batch_size_per_gpu
    tight_bytes = roomy.at_activation_peak + bs * (roomy.per_sample_with_checkpointing
                                                   + roomy.per_sample_without_checkpointing) // 2
    tight = make_plan(auto_cfg, gpu_mem_gb=tight_bytes / GB + GPU_RESERVE_GB)
    assert tight.gradient_checkpointing is True and tight.per_sample == tight.per_sample_with_checkpointing
    assert "needs" in tight.checkpointing_decided_by and tight.batch_size >= bs


def test_true_and_false_are_kept_whatever_the_memory(auto_cfg):
    for setting in (True, False):
        auto_cfg.model.llm.gradient_checkpointing = setting
        for memory in (2.5, 80):
            plan = make_plan(auto_cfg, gpu_mem_gb=memory)
            assert plan.gradient_checkpointing is setting and plan.checkpointing_decided_by == "the config"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without a GPU")
def test_resolving_without_a_gpu(auto_cfg):
    cfg, why = resolve_gradient_checkpointing(auto_cfg)
    assert cfg.model.llm.gradient_checkpointing is False and why == "auto: off without a GPU"
    assert auto_cfg.model.llm.gradient_checkpointing == "auto"  # the caller's config is left alone
    cfg.model.llm.gradient_checkpointing = True
    assert resolve_gradient_checkpointing(cfg) == (cfg, "the config")


def test_a_cpu_run_turns_auto_off_even_beside_a_gpu(auto_cfg):
    """``vqkit bench --device cpu``: checkpointing trades compute for GPU memory, so auto is off there."""
    cfg, why = resolve_gradient_checkpointing(auto_cfg, device="cpu")
    assert cfg.model.llm.gradient_checkpointing is False and why == "auto: off without a GPU"
    assert auto_cfg.model.llm.gradient_checkpointing == "auto"
    auto_cfg.model.llm.gradient_checkpointing = True
    assert resolve_gradient_checkpointing(auto_cfg, device="cpu") == (auto_cfg, "the config")


def test_plan_command_reports_the_decision(auto_cfg, tmp_path, capsys):
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(to_dict(auto_cfg)))
    assert plan_main(["--config", str(path), "--gpus", "1", "--gpu-mem", "80", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["gradient_checkpointing"] is False
    assert result["gradient_checkpointing_decided_by"].startswith("auto: the plan, batch 4 fits in")
    assert result["activations_mb_per_sample_without_checkpointing"] == pytest.approx(
        result["activations_mb_per_sample"])
