"""vqkit bench on a tiny config: every figure present and consistent; its FLOP counts against a count
by hand of the tiny model's matmuls, and its MFU arithmetic."""

from __future__ import annotations

import contextlib
import json

import pytest
import torch
import yaml
from helpers import tiny_config

from vqkit.commands.bench import main
from vqkit.config import to_dict
from vqkit.data.dataset import build_dataloader
from vqkit.models.builder import build_model
from vqkit.tokenizer import load_tokenizer
from vqkit.tools.bench import count_flops, ensure_data, format_table
from vqkit.tools.bench_report import format_encoder
from vqkit.train.optim import build_optimizer


def test_bench_json_has_the_figures(corpus, tokenizer_dir, tmp_path, capsys):  # noqa: F811
    cfg = tiny_config(corpus.root, tokenizer_dir)
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(to_dict(cfg)))
    assert main(["--config", str(path), "--json", "--batch-size", "4", "--steps", "2", "--warmup", "1",
                 "--data-batches", "1", "--device", "cpu", "--peak-tflops", "0.5", "--encoder-repeats", "1"]) == 0
    r = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("data_samples_per_s", "step_s", "step_s_cached", "step_cpu_s", "train_samples_per_s", "peak_mem_mb",
                "encoder_s_per_8_frames_518"):
        assert r[key] > 0, key
    assert r["batch_size"] == 4
    assert r["train_samples_per_s"] == pytest.approx(4 / r["step_s_cached"])
    # The cached step does not run the encoder; the uncached one does.
    assert r["breakdown_s_cached"]["encoder"] < 1e-3 < r["breakdown_s"]["encoder"]
    parts = r["breakdown_s"]
    assert parts["total"] == pytest.approx(sum(parts[k] for k in ("encoder", "projector", "llm_fwd_bwd", "optimizer")),
                                           rel=0.05)
    # FLOPs: per part, model <= hardware; the encoder's only in the uncached step.
    by_part = r["flops_by_part"]
    assert r["model_flops_per_step"] == sum(p["model"] for p in by_part.values())
    assert r["flops_by_part_cached"]["encoder"]["hardware"] == 0 < by_part["encoder"]["model"]
    assert all(0 < p["model"] <= p["hardware"] for p in by_part.values())
    # MFU is model FLOPs over the full step's median time over the peak given; the same for hardware FLOPs.
    peak = 0.5e12
    assert r["peak_flops"] == peak and "--peak-tflops" in r["peak_source"]
    assert r["mfu_model"] == pytest.approx(r["model_flops_per_step"] / r["step_s"] / peak)
    assert r["mfu_hardware"] == pytest.approx(r["hardware_flops_per_step"] / r["step_s"] / peak)
    assert r["mfu_model_cached"] == pytest.approx(r["model_flops_per_step_cached"] / r["step_s_cached"] / peak)
    assert r["mfu_hardware_cached"] == pytest.approx(r["hardware_flops_per_step_cached"] / r["step_s_cached"] / peak)
    llm = by_part["llm"]
    assert llm["model_utilisation"] == pytest.approx(llm["model"] / llm["seconds"] / peak)
    # Which attention kernel each part ran (the CPU's flash kernel here); the share of padding tokens.
    assert set(r["attention_kernels"]) == {"encoder", "projector", "llm"}
    assert 0.0 <= r["padding_share"] < 1.0
    assert r["gradient_checkpointing"] is False and r["liger_kernels"] is False
    assert r["optimizer"] == "AdamW (for-loop)" and r["encoder_matmul_dtype"] == "float32"
    enc = r["encoder_8x518"]
    assert enc["frames"] == 8 and enc["size"] == 518 and "fp32" in enc["setup"] and enc["flops"] > 0
    # Packing: the same samples unpadded and packed, from images and cached; the config trains unpacked.
    p = r["packing"]
    assert r["data_packing"] is False and r["step_s"] == p["uncached_unpacked"]["step_s"]
    for source in ("uncached", "cached"):
        unpacked, packed = p[f"{source}_unpacked"], p[f"{source}_packed"]
        assert unpacked["samples"] == packed["samples"] == 4
        assert unpacked["label_tokens"] == packed["label_tokens"] == r["label_tokens"] > 0
        assert unpacked["tokens"] == packed["tokens"] == packed["seq_len"]  # one row, every token real
        assert packed["padding_share"] == 0.0 < unpacked["padding_share"]
        assert packed["label_tokens_per_s"] == pytest.approx(packed["label_tokens"] / packed["step_s"])
        assert p[f"{source}_speedup"] == pytest.approx(packed["label_tokens_per_s"] / unpacked["label_tokens_per_s"])
        assert set(packed["breakdown_s"]) == set(r["breakdown_s"])
    table = format_table(r)
    for text in ("DataLoader samples/s", "LLM fwd+bwd", "MFU (model FLOPs)", "hardware FLOPs utilisation",
                 "padding share", "8 frames of 518 x 518", "fp32 on the CPU", "packed over unpacked, label tokens/s",
                 "1x"):
        assert text in table, text


def test_bench_cache_replaces_the_configs_own(corpus, tokenizer_dir, tmp_path, capsys):  # noqa: F811
    """--cache DIR used to still read (and refuse) the config's data.feature_cache; now DIR is built and
    used, and the config's folder is not looked at."""
    cfg = tiny_config(corpus.root, tokenizer_dir)
    cfg.data.feature_cache = str(tmp_path / "elsewhere")  # the config's own: does not exist here
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(to_dict(cfg)))
    mine = tmp_path / "mine"
    assert main(["--config", str(path), "--json", "--batch-size", "2", "--steps", "1", "--warmup", "0",
                 "--data-batches", "1", "--device", "cpu", "--encoder-repeats", "1", "--cache", str(mine)]) == 0
    assert (mine / "index.json").is_file() and not (tmp_path / "elsewhere").exists()
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["step_s_cached"] > 0


def test_bench_encoder_only(corpus, tokenizer_dir, tmp_path, capsys):
    cfg = tiny_config(corpus.root, tokenizer_dir)
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(to_dict(cfg)))
    assert main(["--config", str(path), "--encoder-only", "--json", "--device", "cpu", "--encoder-repeats", "1",
                 "--warmup", "0"]) == 0
    r = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert r["encoder_s_per_8_frames_518"] > 0 and r["peak_flops"] is None
    assert "8 frames of 518 x 518" in format_encoder(r)


def test_ensure_data_points_at_a_synthetic_folder(corpus, tokenizer_dir, tmp_path):  # noqa: F811
    cfg = tiny_config(corpus.root, tokenizer_dir)
    same, generated = ensure_data(cfg)
    assert generated is None and same.data.train[0].path == cfg.data.train[0].path
    folder = tmp_path / "synth"
    (folder / "tokenizer").mkdir(parents=True)
    (folder / "train.jsonl").write_text(corpus.path.read_text())
    cfg.model.llm.name_or_path = str(tmp_path / "missing_tokenizer")
    moved, _ = ensure_data(cfg, str(folder))
    assert moved.data.train[0].path == str(folder / "train.jsonl") and moved.data.val == []
    assert moved.model.llm.tokenizer == str(folder / "tokenizer")


# ---------------------------------------------------------------------- FLOPs against a hand count


def hand_count(cfg, batch, vocab: int) -> dict[str, int]:
    """Model FLOPs of one training step of the tiny model, matmul by matmul (2 FLOPs per multiply-add):
    the frozen encoder forward only; the projector and the fully trained LLM forward + backward, a
    backward being twice a forward (gradients of the inputs and of the weights; attention's of the
    scores, values, queries and keys)."""
    enc, proj, qwen = cfg.model.encoder, cfg.model.projector, cfg.model.llm.config_overrides
    linear = lambda n, i, o: 2 * n * i * o  # noqa: E731 - n tokens through an i -> o Linear
    B, S, _, H, W = batch["images"].shape
    patches = (H // enc.patch_size) * (W // enc.patch_size)
    P = 1 + enc.num_register_tokens + patches  # camera + registers + patches per view
    C = enc.embed_dim
    block = (linear(B * S * P, C, 3 * C) + linear(B * S * P, C, C)  # qkv, proj
             + linear(B * S * P, C, int(C * enc.mlp_ratio)) + linear(B * S * P, int(C * enc.mlp_ratio), C))
    frame_attention = 2 * (2 * B * S * P * P * C)  # q k^T and p v within each view
    global_attention = 2 * (2 * B * (S * P) ** 2 * C)  # across the views of a sample
    patch_embed = 2 * (B * S * patches) * C * 3 * enc.patch_size ** 2  # the convolution
    encoder = patch_embed + enc.depth * (2 * block + frame_attention + global_attention)

    D, L, N = qwen["hidden_size"], proj.num_latents, S * P  # the Perceiver's width is the LLM's
    perceiver_layer = (linear(B * L, D, D) + linear(B * (N + L), D, 2 * D)  # q from latents, k v from all
                       + 2 * (2 * B * L * (N + L) * D) + linear(B * L, D, D)  # attention, out
                       + linear(B * L, D, proj.ff_mult * D) + linear(B * L, proj.ff_mult * D, D))
    projector = 3 * (linear(B * N, 2 * C * len(enc.layers), D) + proj.num_layers * perceiver_layer
                     + linear(B * L, D, D))

    T = batch["input_ids"].shape[1]
    heads, kv_heads, head_dim, inter = (qwen[k] for k in ("num_attention_heads", "num_key_value_heads",
                                                          "head_dim", "intermediate_size"))
    decoder_layer = (linear(B * T, D, heads * head_dim) + 2 * linear(B * T, D, kv_heads * head_dim)
                     + linear(B * T, heads * head_dim, D) + 2 * (2 * B * heads * T * T * head_dim)
                     + 2 * linear(B * T, D, inter) + linear(B * T, inter, D))
    answer_positions = int((batch["labels"][:, 1:] != -100).any(dim=0).sum())
    llm = 3 * (qwen["num_hidden_layers"] * decoder_layer + linear(B * answer_positions, D, vocab))
    return {"encoder": encoder, "projector": projector, "llm": llm}


@pytest.fixture
def tiny_step(corpus, tokenizer_dir):
    """A tiny model without geometry tokens (their pose arithmetic has 3x3 matmuls too), its optimizer,
    a batch of 4."""
    cfg = tiny_config(corpus.root, tokenizer_dir)
    cfg.model.geometry.enabled = False
    tokenizer = load_tokenizer(cfg.model.llm)
    batch = next(iter(build_dataloader(cfg, "train", tokenizer, batch_size=4, shuffle=False)))
    return cfg, tokenizer, batch


def test_model_flops_equal_a_hand_count(tiny_step):
    cfg, tokenizer, batch = tiny_step
    model = build_model(cfg, tokenizer).train()
    ledgers = count_flops(model, build_optimizer(model, cfg.train, device="cpu"), batch, contextlib.nullcontext())
    expected = hand_count(cfg, batch, model.llm.get_output_embeddings().weight.shape[0])
    assert {part: ledgers[part].model for part in expected} == expected
    assert ledgers["optimizer"].hardware == 0
    # The encoder has no backward: hardware = model. The others run fused attention, whose backward
    # recomputes the scores: one matmul of five, hardware only.
    assert ledgers["encoder"].hardware == expected["encoder"]
    assert ledgers["llm"].hardware > ledgers["llm"].model


def test_checkpointing_adds_hardware_flops_not_model_flops(tiny_step):
    cfg, tokenizer, batch = tiny_step
    counts = {}
    for checkpointing in (False, True):
        cfg.model.llm.gradient_checkpointing = checkpointing
        torch.manual_seed(0)
        model = build_model(cfg, tokenizer).train()
        ledgers = count_flops(model, build_optimizer(model, cfg.train, device="cpu"), batch, contextlib.nullcontext())
        counts[checkpointing] = {part: (led.model, led.hardware) for part, led in ledgers.items()}
    assert {p: m for p, (m, _) in counts[True].items()} == {p: m for p, (m, _) in counts[False].items()}
    recomputed = counts[True]["llm"][1] - counts[False]["llm"][1]
    assert recomputed > 0  # the decoder layer's forward, once more in the backward pass
    expected = hand_count(cfg, batch, 1)
    assert recomputed <= expected["llm"] // 3  # at most one forward of the layers (checkpointing stops early)
    assert counts[True]["projector"] == counts[False]["projector"]


@pytest.mark.slow
def test_gpu_real_size_script_runs_end_to_end_on_the_cpu(tmp_path):
    """scripts/gpu_real_size.sh with DRY_RUN=1: the GPU check's stages at a tiny size on this CPU, so a
    run on a GPU machine can trust it (the "before" and "probe" stages take minutes more; not here)."""
    import os
    import subprocess
    import sys

    from helpers import REPO

    env = {**os.environ, "DRY_RUN": "1", "STAGES": "plan after packing", "PYTHON": sys.executable}
    proc = subprocess.run(["bash", str(REPO / "scripts" / "gpu_real_size.sh"), str(tmp_path / "out")], env=env,
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["files"] == ["bench.json", "env.json", "packing.json", "plan.json"]
    packing = summary["packing"]
    assert packing["trained_packed"]["padding_share"] == 0.0 and packing["cached_packed"]["padding_share"] == 0.0
    assert packing["speedup_label_tokens_per_s"]["cached"] > 0
    assert summary["after"]["model_flops_per_step"] > 0 and summary["memory"]["predicted_mb"] > 0
    assert "aggregator 8 x 518 <= 0.11 s" in summary["acceptance"]
