"""vqkit plan: byte counts from the meta model, ZeRO partitioning, batch search."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from helpers import REPO, tiny_config

from vqkit.config import Config, load_config
from vqkit.errors import ConfigError
from vqkit.models.builder import build_model
from vqkit.tokenizer import load_tokenizer
from vqkit.tools.memory_accounting import RealKernelsOnMeta, SavedTensors, count_activations
from vqkit.tools.plan import MB, answer_positions, format_plan, make_plan


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
    # Room for 3 samples, but 3 does not divide the 16 samples per GPU per step: 2 x 8 x 4 GPUs = 64 (was
    # 3 x 6 x 4 = 72 for the global batch 64).
    tight = make_plan(cfg, gpus=4, zero=0, gpu_mem_gb=(z0.static + 3 * z0.per_sample) / 2**30 + 2.0)
    assert tight.largest_batch == 3 and tight.batch_size == 2 and tight.grad_accum == 8
    assert tight.batch_size * tight.grad_accum * 4 == tight.global_batch == 64
    assert any("batch 3 fits but does not divide the 16 samples per GPU" in n for n in tight.notes)
    forced = make_plan(cfg, gpus=4, zero=0, gpu_mem_gb=1, batch_size=3)  # --batch-size 3: said, not hidden
    assert forced.batch_size == 3 and forced.grad_accum == 6
    assert "batch 3 x grad_accum 6 x 4 GPU(s) = 72, not the config's global batch 64" in " ".join(forced.notes)


@pytest.mark.slow
def test_full_size_plan_on_gpus_with_zero():
    cfg = Config()  # VGGT-1B + Qwen3-4B defaults, built on the meta device only
    cfg.data.train = []
    one = make_plan(cfg, gpus=8, zero=0, gpu_mem_gb=80)
    z2 = make_plan(cfg, gpus=8, zero=2, gpu_mem_gb=80)
    z3 = make_plan(cfg, gpus=8, zero=3, gpu_mem_gb=80)
    assert one.params["llm"][1] == "bfloat16+float32"  # bf16 base, fp32 LoRA
    assert 7.5e9 < one.params["llm"][0] < 8.5e9  # ~4.0B parameters in bf16
    # The frozen encoder on a GPU: 909M parameters, its Linear and convolution weights stored in bf16 (as
    # build_encoder stores them), its norms, LayerScale, tokens and position table in fp32; DeepSpeed's bf16
    # engine holds all of it in bf16.
    encoder = build_model(cfg, device="meta").encoder
    matmul = sum(p.numel() for m in encoder.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))
                 for p in m.parameters(recurse=False))
    total = sum(p.numel() for p in encoder.parameters())
    assert total == 909_112_320 and 0.99 * total < matmul < total
    assert one.params["encoder"] == (2 * matmul + 4 * (total - matmul), "bfloat16+float32")
    assert z2.params["encoder"] == (2 * total, "bfloat16")
    assert z2.optimizer == math.ceil(z2.trainable * 12 / 8)
    assert z3.params["llm"][0] == pytest.approx(z2.params["llm"][0] / 8, rel=1e-6)
    assert z3.batch_size >= z2.batch_size >= 1
    for p in (one, z2, z3):
        assert p.batch_size * p.grad_accum * 8 == p.global_batch  # exactly the global batch it names
        assert p.total(p.batch_size) <= p.capacity and p.batch_size <= p.largest_batch
        assert p.total(p.largest_batch + 1) > p.capacity
    cfg.model.llm.gradient_checkpointing = True
    assert make_plan(cfg, gpus=8, zero=2).per_sample < z2.per_sample


def test_meta_pass_saves_what_fused_attention_saves():
    q = torch.empty(2, 4, 8, 16, device="meta", requires_grad=True)
    kv = torch.empty(2, 4, 300, 16, device="meta", requires_grad=True)
    counter = SavedTensors()
    with counter.context(), RealKernelsOnMeta(counter):
        out = F.scaled_dot_product_attention(q * 1, kv * 1, kv * 2)
    assert out.shape == (2, 4, 8, 16) and out.requires_grad
    # q, k, v, the output and the fp32 log-sum-exp; not meta's math path with its [.., 8, 300] probabilities.
    assert counter.total() == 4 * (2 * 4 * 8 * 16) * 2 + 4 * (2 * 4 * 300 * 16) * 2 + 4 * (2 * 4 * 8)


def test_meta_autocast_matches_real_autocast_and_counts_weights_once():
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Linear(24, 48), torch.nn.GELU(), torch.nn.Linear(48, 24))
    x = torch.randn(5, 7, 24, requires_grad=True)
    real = SavedTensors(mlp)
    with real.context(), torch.autocast("cpu", dtype=torch.bfloat16):
        mlp(mlp(x))  # the same weights twice: autocast reuses their bf16 copies
    meta_mlp = torch.nn.Sequential(torch.nn.Linear(24, 48), torch.nn.GELU(), torch.nn.Linear(48, 24)).to("meta")
    counted = SavedTensors(meta_mlp)
    with counted.context(), RealKernelsOnMeta(counted, torch.bfloat16):
        y = meta_mlp(meta_mlp(torch.empty(5, 7, 24, device="meta", requires_grad=True)))
    assert y.dtype == torch.bfloat16
    # autocast keeps one bf16 copy of each weight and bias for the step; the backward saves the weights'.
    assert counted.fixed == 2 * (24 * 48 + 48 + 48 * 24 + 24)
    weight_copies = 2 * (24 * 48 + 48 * 24)
    assert counted.total() == real.total() - weight_copies  # the activations, to the byte


def test_logits_only_at_the_answer_positions(corpus, tokenizer_dir):  # noqa: F811
    cfg = tiny_config(corpus.root, tokenizer_dir)
    tokenizer = load_tokenizer(cfg.model.llm)
    k = answer_positions(cfg, tokenizer, batch_size=4)
    assert 2 <= k < cfg.data.max_length  # an answer and its end token, never the whole sequence
    measured = make_plan(cfg, device="cpu", gpu_mem_gb=4)
    assert measured.answer_tokens == k
    every = make_plan(cfg, device="cpu", gpu_mem_gb=4, answer_tokens=cfg.data.max_length)
    assert every.per_sample > measured.per_sample


def test_packed_rows_count_a_sample_at_its_own_tokens(corpus, tokenizer_dir):  # noqa: F811
    """Packed, a sample costs its mean length with logits at its label tokens; a micro-batch of
    tokens_per_batch tokens holds that budget over a sample's tokens. A patch merger's vision block is
    sized from the records' images."""
    from vqkit.tools.plan import format_plan
    from vqkit.tools.plan_tokens import packed_sample

    cfg = tiny_config(corpus.root, tokenizer_dir, turns=3)
    cfg.model.projector.type = "patch_merger"
    padded = make_plan(cfg, device="cpu", gpu_mem_gb=4)
    cfg.data.packing = True
    packed = make_plan(cfg, device="cpu", gpu_mem_gb=4)
    sample = packed_sample(cfg, load_tokenizer(cfg.model.llm))
    assert packed.packing and packed.seq_len == round(sample["mean_tokens"]) < padded.seq_len == cfg.data.max_length
    assert packed.answer_tokens == round(sample["mean_label_tokens"]) <= padded.answer_tokens
    assert packed.per_sample < padded.per_sample
    assert "packed rows" in format_plan(packed)
    cfg.train.tokens_per_batch = 10 * cfg.data.max_length
    budget = make_plan(cfg, device="cpu", gpu_mem_gb=4)
    assert budget.batch_size == cfg.train.tokens_per_batch // packed.seq_len and budget.tokens_per_batch == 640
    assert not budget.notes or "global batch" not in " ".join(budget.notes)
    assert "tokens_per_batch 640" in format_plan(budget)


def test_real_size_plan_matches_the_h200_measurement():
    """The stage-1 model at its real size (VGGT-1B + Qwen3-4B, random weights) was run on an H200 by
    scripts/gpu_real_size.sh; the plan, built on the meta device here, must stay close to it.

    That run's code held the frozen encoder's weights in fp32 and stepped with foreach AdamW (one
    moment-sized temporary); the plan counts today's bf16 matmul weights and fused AdamW, so those two
    terms are put back as they were measured, and the rest of the plan is checked as it is."""
    bench = REPO / "docs" / "benchmarks" / "h200_stage1_real_size"
    probe = json.loads((bench / "probe.json").read_text())["probe"]
    cfg = load_config(REPO / "configs" / "stage1_3d.yaml",
                      ["model.encoder.weights=null", "model.llm.from_config=true",
                       "model.llm.gradient_checkpointing=true"])
    for row in probe:
        if row["fits"] and row["batch_size"] in (1, 8, 64):
            # 15 positions with labels per batch: what answer_positions measured on that run's data.
            plan = make_plan(cfg, gpus=1, gpu_mem_gb=139.8, seq_len=row["seq_len"], batch_size=row["batch_size"],
                             answer_tokens=15)
            plan.params["encoder"] = (4 * 909_112_320, "float32")
            plan.step_transient = plan.grads
            assert plan.total(row["batch_size"]) / MB == pytest.approx(row["peak_mb"], rel=0.10), row


@pytest.mark.slow  # builds the real-size model on the meta device in a fresh process (~10 s CPU)
def test_plan_keeps_the_recipes_global_batch_on_8_gpus():
    """docs/cluster.md's 8-GPU plan of stage1_3d.yaml with the launch line's DeepSpeed JSON: the recipe's
    global batch 192 (was 1536: eight times the one-GPU batch), batch x grad_accum x GPUs exactly that, the
    ZeRO stage of zero2.json, and no hub call for the known LLM (offline by default)."""
    args = [sys.executable, "-m", "vqkit", "plan", "--config", "configs/stage1_3d.yaml", "--gpus", "8",
            "--deepspeed", "configs/deepspeed/zero2.json", "--gpu-mem", "80"]
    env = {k: v for k, v in __import__("os").environ.items() if k != "HF_HUB_OFFLINE"}
    out = subprocess.run(args + ["--json"], cwd=REPO, capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr
    plan = json.loads(out.stdout.strip().splitlines()[-1])
    assert (plan["global_batch"], plan["global_batch_source"], plan["zero"]) == (192, "train.global_batch_size", 2)
    assert plan["batch_size_per_gpu"] * plan["grad_accum"] * 8 == 192
    assert plan["batch_size_per_gpu"] <= plan["largest_batch_size_per_gpu"]
    text = subprocess.run(args, cwd=REPO, capture_output=True, text=True, env=env, timeout=600).stdout
    assert "ZeRO stage: 2 (the stage of configs/deepspeed/zero2.json)" in text
    assert (f"global batch 192 (train.global_batch_size) = batch_size_per_gpu {plan['batch_size_per_gpu']} x "
            f"grad_accum {plan['grad_accum']} x 8 GPU(s)") in text
    assert ("78.00 GB  (80 GB less 2 GB kept free for the CUDA context and the allocator's fragmentation)"
            in text)


def test_the_plan_keeps_the_global_batch_and_says_what_it_assumes(corpus, tokenizer_dir, tmp_path):  # noqa: F811
    """train.global_batch_size: the plan for N GPUs keeps it (the accumulation makes up the rest); unset, a
    note says the global batch grows with N; the ZeRO stage comes from the DeepSpeed JSON unless --zero says
    it, and the two must agree; the capacity is the card less the reserve, and the text says so."""
    cfg = tiny_config(corpus.root, tokenizer_dir)
    cfg.train.global_batch_size, cfg.train.batch_size_per_gpu = 48, 4
    for gpus in (1, 2, 4, 8):
        plan = make_plan(cfg, gpus=gpus, gpu_mem_gb=80)
        assert plan.global_batch == 48 and plan.batch_size * plan.grad_accum * gpus == 48
        assert plan.zero == 0 and plan.zero_source.startswith("no DeepSpeed JSON")
    text = format_plan(make_plan(cfg, gpus=8, gpu_mem_gb=80))
    assert "global batch 48 (train.global_batch_size) = batch_size_per_gpu 6 x grad_accum 1 x 8 GPU(s)" in text
    assert "to train it: --set train.batch_size_per_gpu=6" in text and "train.grad_accum=" not in text
    assert "(80 GB less 2 GB kept free for the CUDA context" in text
    assert "no ZeRO: a launch line with --deepspeed configs/deepspeed/zero2.json" in text
    assert "does not divide over 5 GPUs" in " ".join(make_plan(cfg, gpus=5, gpu_mem_gb=80).notes)

    cfg.train.global_batch_size, cfg.train.grad_accum = None, 3
    grows = make_plan(cfg, gpus=4, gpu_mem_gb=80)
    assert grows.global_batch == 4 * 3 * 4 and grows.global_batch_source == "batch_size_per_gpu 4 x grad_accum 3 x 4"
    assert any("train.global_batch_size is not set: on 4 GPUs this config trains with 48" in n for n in grows.notes)
    assert "to train it: --set train.batch_size_per_gpu=12 --set train.grad_accum=1" in format_plan(grows)
    assert "to train it: the config as it is" in format_plan(make_plan(cfg, gpus=4, gpu_mem_gb=80, batch_size=4))

    cfg.train.deepspeed = str(REPO / "configs" / "deepspeed" / "zero3.json")
    zero3 = make_plan(cfg, gpus=4, gpu_mem_gb=80)
    assert zero3.zero == 3 and zero3.zero_source == f"the stage of {cfg.train.deepspeed}"
    with pytest.raises(ConfigError, match="--zero 2 disagrees with train.deepspeed .*zero3.json \\(ZeRO-3\\)"):
        make_plan(cfg, gpus=4, zero=2, gpu_mem_gb=80)
