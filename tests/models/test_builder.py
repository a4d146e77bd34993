"""The builder's speed options change no result: gradient checkpointing on vs off trains with the same
losses; the frozen encoder's bf16 matmul weights (a GPU's) give exactly what autocast gives with fp32
weights; its compiled blocks give eager's outputs; an unresolved ``gradient_checkpointing: auto`` is on."""

from __future__ import annotations

import logging

import pytest
import torch
from helpers import tiny_config

from vqkit.data.dataset import build_dataloader
from vqkit.models.builder import build_encoder, build_model, encoder_matmul_dtype
from vqkit.tokenizer import load_tokenizer
from vqkit.train.optim import build_optimizer
from vqkit.train.step import train_step


def test_gradient_checkpointing_on_and_off_train_with_the_same_losses(corpus, tokenizer_dir):
    cfg = tiny_config(corpus.root, tokenizer_dir)
    cfg.model.llm.config_overrides["num_hidden_layers"] = 2
    tokenizer = load_tokenizer(cfg.model.llm)
    batches = list(build_dataloader(cfg, "train", tokenizer, batch_size=4, shuffle=False))[:2]
    losses = {}
    for checkpointing in (False, True):
        cfg.model.llm.gradient_checkpointing = checkpointing
        model = build_model(cfg, tokenizer).train()
        assert model.llm.is_gradient_checkpointing == checkpointing
        optimizer = build_optimizer(model, cfg.train, device="cpu")
        losses[checkpointing] = [train_step(model, optimizer, [batches[step % 2]], max_grad_norm=1.0).loss
                                 for step in range(4)]
    assert losses[True] == pytest.approx(losses[False], rel=1e-5, abs=1e-6)
    assert losses[False][0] != losses[False][2]  # the steps did train


def test_unresolved_auto_checkpointing_is_on_and_says_so(corpus, tokenizer_dir, caplog):
    cfg = tiny_config(corpus.root, tokenizer_dir)
    cfg.model.llm.gradient_checkpointing = "auto"
    with caplog.at_level(logging.WARNING, logger="vqkit.models.builder"):
        model = build_model(cfg, load_tokenizer(cfg.model.llm))
    assert model.llm.is_gradient_checkpointing
    assert "no memory plan resolved it" in caplog.text


def test_bf16_matmul_weights_give_what_autocast_gives_fp32_weights(corpus, tokenizer_dir):
    enc_cfg = tiny_config(corpus.root, tokenizer_dir).model.encoder
    assert encoder_matmul_dtype("cpu") == torch.float32 and encoder_matmul_dtype("meta") == torch.float32
    fp32 = build_encoder(enc_cfg, device="cpu")
    stored = build_encoder(enc_cfg, device="cpu").store_matmul_weights(torch.bfloat16)
    assert fp32.matmul_dtype == torch.float32 and stored.matmul_dtype == torch.bfloat16
    dtypes = {p.dtype for n, p in stored.named_parameters() if "norm" in n or "gamma" in n or "token" in n}
    assert dtypes == {torch.float32}  # norms, LayerScale, camera/register tokens stay fp32
    images = torch.rand(2, 3, 3, 28, 28, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        expected = fp32.encode(images)
        got = stored.encode(images)
    assert got.dtype == expected.dtype
    assert torch.equal(got, expected)  # autocast rounds fp32 weights to bf16 at every call: the same numbers


@pytest.mark.slow  # inductor compiles 3 block graphs with gcc: ~1 min on 2 idle cores, 3 on a busy machine
def test_compiled_encoder_blocks_give_eager_outputs(corpus, tokenizer_dir):
    cfg = tiny_config(corpus.root, tokenizer_dir)
    eager = build_encoder(cfg.model.encoder, device="cpu")
    cfg.model.encoder.compile = True
    compiled = build_encoder(cfg.model.encoder, device="cpu")
    assert all(getattr(b, "_compiled_call_impl", None) is not None for b in compiled.frame_blocks)
    images = torch.rand(2, 3, 3, 28, 28, generator=torch.Generator().manual_seed(0))
    view_mask = torch.tensor([[True, True, True], [True, True, False]])
    with torch.inference_mode():
        for mask in (None, view_mask):  # all views real (no attention mask), and a padded sample
            torch.testing.assert_close(compiled.encode(images, view_mask=mask), eager.encode(images, view_mask=mask),
                                       rtol=1e-5, atol=1e-5)
