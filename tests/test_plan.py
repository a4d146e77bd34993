"""vqkit plan: byte counts from the meta model, ZeRO partitioning, batch search, CPU probe."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import yaml

from test_cache import corpus, tiny_config, tokenizer_dir  # noqa: F401 - shared fixtures
from vqkit.config import Config, to_dict
from vqkit.data.tokenizer import load_tokenizer
from vqkit.plan import MB, count_activations, make_plan
from vqkit.models.vlm import build_model


def test_tiny_plan_counts_bytes(corpus, tokenizer_dir):  # noqa: F811
    cfg = tiny_config(corpus.root, tokenizer_dir)
    plan = make_plan(cfg, device="cpu", gpu_mem_gb=4)
    model = build_model(cfg, tokenizer=load_tokenizer(cfg.model.llm), device="meta")
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert plan.trainable == n_train
    assert plan.grads == 4 * n_train and plan.optimizer == 8 * n_train
    assert plan.params["encoder"][0] == 4 * sum(p.numel() for p in model.encoder.parameters())
    assert plan.baseline > 50 * MB  # torch + transformers are loaded
    # Activations grow with the sequence and shrink with gradient checkpointing.
    longer = make_plan(cfg, device="cpu", gpu_mem_gb=4, seq_len=2 * cfg.data.max_length)
    assert longer.per_sample > plan.per_sample
    act = count_activations(model, cfg, 32, 2, (28, 28), model.llm.dtype)
    assert act.llm_layers > 0 and act.vision > 0 and act.num_layers == 1
    assert plan.batch_size == cfg.train.batch_size_per_gpu  # capped at the global batch


def test_zero_partitioning_on_gpus(corpus, tokenizer_dir):  # noqa: F811
    cfg = tiny_config(corpus.root, tokenizer_dir)
    cfg.train.grad_accum = 4
    z0 = make_plan(cfg, gpus=4, zero=0, gpu_mem_gb=1)
    z2 = make_plan(cfg, gpus=4, zero=2, gpu_mem_gb=1)
    z3 = make_plan(cfg, gpus=4, zero=3, gpu_mem_gb=1)
    assert z0.optimizer == 2 * z0.grads  # two fp32 moments, replicated
    assert z2.optimizer == math.ceil(z2.trainable * 12 / 4) and z2.grads == math.ceil(z2.trainable * 2 / 4)
    assert z2.params["encoder"][1] == "bfloat16"  # DeepSpeed bf16 casts the whole module
    assert z3.params["llm"][0] == math.ceil(z2.params["llm"][0] / 4)
    assert z0.global_batch == 4 * 4 * 4
    tight = make_plan(cfg, gpus=4, zero=0, gpu_mem_gb=(z0.static + 3 * z0.per_sample) / 2**30 + 2.0)
    assert tight.batch_size == 3 and tight.grad_accum == math.ceil(64 / (3 * 4))


@pytest.mark.slow
def test_full_size_plan_on_gpus_with_zero():
    cfg = Config()  # VGGT-1B + Qwen3-4B defaults, built on the meta device only
    cfg.data.train = []
    one = make_plan(cfg, gpus=8, zero=0, gpu_mem_gb=80)
    z2 = make_plan(cfg, gpus=8, zero=2, gpu_mem_gb=80)
    z3 = make_plan(cfg, gpus=8, zero=3, gpu_mem_gb=80)
    assert one.params["llm"][1] == "bfloat16+float32"  # bf16 base, fp32 LoRA
    assert 7.5e9 < one.params["llm"][0] < 8.5e9  # ~4.0B parameters in bf16
    assert 3.5e9 < one.params["encoder"][0] < 3.8e9  # 909M in fp32
    assert z2.optimizer == math.ceil(z2.trainable * 12 / 8)
    assert z3.params["llm"][0] == pytest.approx(z2.params["llm"][0] / 8, rel=1e-6)
    assert z3.batch_size >= z2.batch_size >= 1
    for p in (one, z2, z3):
        assert p.grad_accum == math.ceil(p.global_batch / (p.batch_size * 8))
        assert p.total(p.batch_size) <= p.capacity
        assert p.total(p.batch_size + 1) > p.capacity or p.batch_size == p.global_batch
    cfg.model.llm.gradient_checkpointing = True
    assert make_plan(cfg, gpus=8, zero=2).per_sample < z2.per_sample


@pytest.mark.slow
def test_cpu_probe_within_20_percent(corpus, tokenizer_dir, tmp_path):  # noqa: F811
    cfg = tiny_config(corpus.root, tokenizer_dir)
    cfg.train.batch_size_per_gpu = 8
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(to_dict(cfg)))
    proc = subprocess.run([sys.executable, "-m", "vqkit.plan", "--config", str(path), "--device", "cpu",
                           "--gpu-mem", "4", "--probe", "--json"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    probe = r["probe"][0]
    assert probe["batch_size"] == 8 and probe["peak_mb"] > 0
    assert abs(probe["error"]) < 0.2, probe
