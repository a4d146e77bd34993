"""Tests for vqkit.vggt: keys and shapes of the official weights, forward shapes, layer
selection, the first-view tokens, strict loading from .pt / .safetensors / folders, and numerical
parity with the official package when it is importable."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from helpers import official_aggregator
from safetensors.torch import save_file

from vqkit.config import EncoderConfig
from vqkit.errors import CheckpointError, ConfigError
from vqkit.vggt import Aggregator, feature_shape, load_aggregator_weights
from vqkit.vggt.layers import RotaryPositionEmbedding2D, patch_positions

REPO = Path(__file__).resolve().parents[2]
TINY = dict(img_size=28, patch_size=14, embed_dim=64, depth=2, num_heads=4, patch_embed="conv")
TINY_DINO = dict(img_size=28, patch_size=14, embed_dim=64, depth=2, num_heads=4, patch_embed="dinov2",
                 dinov2_depth=2, dinov2_num_heads=4)


def tiny(seed: int = 0, **overrides) -> Aggregator:
    """A tiny aggregator whose special tokens and LayerScales are large enough to matter."""
    torch.manual_seed(seed)
    model = Aggregator(**{**TINY, **overrides}).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "token" in name or "gamma" in name:
                param.normal_(0, 0.5)
    return model


def images(B=2, S=3, H=28, W=28, seed=0) -> torch.Tensor:
    return torch.rand(B, S, 3, H, W, generator=torch.Generator().manual_seed(seed))


def whole_model_state(model: Aggregator) -> dict[str, torch.Tensor]:
    """What the official model.pt holds: aggregator.* plus the heads."""
    state = {f"aggregator.{k}": v.clone() for k, v in model.state_dict().items()}
    state["camera_head.trunk.0.norm1.weight"] = torch.ones(8)
    state["depth_head.scratch.output_conv2.0.bias"] = torch.zeros(4)
    state["point_head.projects.0.weight"] = torch.zeros(2, 2)
    return state


# --------------------------------------------------------------------------------------------
# Full-size structure (meta device: no memory, no init cost)
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def full_meta() -> Aggregator:
    with torch.device("meta"):
        return Aggregator()


def test_full_size_parameter_count_and_key_count(full_meta):
    state = full_meta.state_dict()
    assert len(state) == 1210
    assert sum(p.numel() for p in full_meta.parameters()) == 909_112_320
    assert tuple(state["camera_token"].shape) == (1, 2, 1, 1024)
    assert tuple(state["register_token"].shape) == (1, 2, 4, 1024)
    assert tuple(state["patch_embed.pos_embed"].shape) == (1, 1370, 1024)
    assert tuple(state["frame_blocks.23.attn.q_norm.weight"].shape) == (64,)
    assert tuple(state["global_blocks.0.attn.qkv.weight"].shape) == (3072, 1024)
    # the non-persistent normalisation buffers are not part of the weights
    assert not any("resnet" in k for k in state)


def test_tiny_dinov2_uses_the_key_names_of_the_large_one(full_meta):
    def pattern(keys):
        return {re.sub(r"\.\d+\.", ".N.", k) for k in keys}

    small = Aggregator(**TINY_DINO)
    assert pattern(small.state_dict()) == pattern(full_meta.state_dict())
    conv_keys = {k for k in Aggregator(**TINY).state_dict() if k.startswith("patch_embed.")}
    assert conv_keys == {"patch_embed.proj.weight", "patch_embed.proj.bias"}


# --------------------------------------------------------------------------------------------
# Forward
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs", [TINY, TINY_DINO], ids=["conv", "dinov2"])
@pytest.mark.parametrize("hw", [(28, 28), (28, 42), (56, 28)])
def test_forward_shapes(kwargs, hw):
    model = Aggregator(**kwargs).eval()
    H, W = hw
    outputs, patch_start_idx = model(images(2, 3, H, W))
    assert patch_start_idx == 1 + model.num_register_tokens == 5
    P = patch_start_idx + (H // 14) * (W // 14)
    assert len(outputs) == model.depth
    for out in outputs:
        assert out.shape == (2, 3, P, 2 * 64) and torch.isfinite(out).all()
    assert model.num_tokens(H, W) == P


def test_pos_embed_is_interpolated_for_other_grids():
    model = Aggregator(**TINY_DINO).eval()
    dino = model.patch_embed
    with torch.no_grad():
        # a table that grows along rows and is constant along columns
        rows = torch.tensor([0.0, 0.0, 1.0, 1.0])  # 2x2 grid, row-major
        dino.pos_embed[0, 1:] = rows[:, None].expand(4, 64)
        dino.pos_embed[0, 0] = 7.0
    x = torch.zeros(1, 1 + 4, 64)
    assert dino.interpolate_pos_encoding(x, 28, 28) is dino.pos_embed  # training grid: unchanged
    out = dino.interpolate_pos_encoding(torch.zeros(1, 1 + 12, 64), 56, 42)  # 4 x 3 grid
    assert out.shape == (1, 13, 64)
    assert torch.all(out[0, 0] == 7.0)  # cls position is never interpolated
    grid = out[0, 1:, 0].view(4, 3)
    assert torch.allclose(grid, grid[:, :1].expand(4, 3))  # still constant along columns
    assert torch.all(grid[1:, 0] >= grid[:-1, 0]) and grid[-1, 0] > grid[0, 0]  # still rising along rows
    # and the forward uses it: a non-square image runs and differs from the un-interpolated path
    outputs, _ = model(images(1, 2, 28, 42))
    assert outputs[-1].shape == (1, 2, 5 + 6, 128)


def test_layer_selection_returns_none_for_the_others_and_stops_early():
    model = tiny()
    x = images()
    full, _ = model(x)
    calls = []
    hook = model.global_blocks[1].register_forward_hook(lambda *a: calls.append(1))
    only_first, _ = model(x, layers=[0])
    hook.remove()
    assert only_first[1] is None and calls == []  # layer 1 was never computed
    torch.testing.assert_close(only_first[0], full[0])
    last, _ = model(x, layers=[-1])
    assert last[0] is None
    torch.testing.assert_close(last[1], full[1])
    feats = model.encode(x, layers=[-2, -1])
    assert feats.shape == (2, 3, 9, 4 * 64)
    torch.testing.assert_close(feats, torch.cat([full[0], full[1]], dim=-1))
    assert model.feature_dim([-2, -1]) == 256
    with pytest.raises(ValueError, match="outside"):
        model(x, layers=[2])


def test_layer_output_is_frame_then_global_block_output():
    model = tiny()
    outputs, _ = model(images(1, 2))
    frame_half, global_half = outputs[0].split(64, dim=-1)
    # the frame block sees each view alone: running one view by itself as the *first* view
    # reproduces the first view's frame-half exactly
    alone, _ = model(images(1, 2)[:, :1])
    torch.testing.assert_close(alone[0][:, 0, :, :64], frame_half[:, 0])
    assert not torch.allclose(alone[0][:, 0, :, 64:], global_half[:, 0])  # global half mixes views


def test_first_view_gets_its_own_camera_and_register_tokens():
    model = tiny()
    x = images(1, 3)
    out, _ = model(x)
    # views 1 and 2 both use slot 1, so swapping them permutes the outputs (global attention is
    # permutation-equivariant and RoPE positions are per frame)
    swapped, _ = model(x[:, [0, 2, 1]])
    torch.testing.assert_close(swapped[-1], out[-1][:, [0, 2, 1]], atol=1e-5, rtol=1e-5)
    # moving another view into first place changes its features: slot 0 marks the reference view
    moved, _ = model(x[:, [1, 0, 2]])
    assert not torch.allclose(moved[-1][:, 0], out[-1][:, 1], atol=1e-3)
    # with both slots equal, every permutation just permutes the outputs
    with torch.no_grad():
        model.camera_token[:, 1] = model.camera_token[:, 0]
        model.register_token[:, 1] = model.register_token[:, 0]
    out, _ = model(x)
    moved, _ = model(x[:, [1, 0, 2]])
    torch.testing.assert_close(moved[-1], out[-1][:, [1, 0, 2]], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kwargs", [TINY, TINY_DINO])
def test_padding_views_are_skipped_and_real_views_come_out_as_if_alone(kwargs):
    """Samples of 3, 2 and 1 views padded to 3 (padding filled with noise, not zeros): each sample's real
    views equal that sample encoded alone, and only the 6 real views go through the patch embed."""
    model = tiny(**kwargs)
    x = images(3, 3)
    view_mask = torch.tensor([[True, True, True], [True, True, False], [True, False, False]])
    frames_embedded = []
    hook = model.patch_embed.register_forward_hook(lambda m, args, out: frames_embedded.append(args[0].shape[0]))
    with torch.no_grad():
        padded, _ = model(x, view_mask=view_mask)
        assert frames_embedded == [6]
        for b, n in enumerate(view_mask.sum(dim=1).tolist()):
            alone, _ = model(x[b:b + 1, :n])
            for layer in range(2):
                torch.testing.assert_close(padded[layer][b:b + 1, :n], alone[layer], rtol=1e-5, atol=1e-5)
    hook.remove()
    assert padded[1][1, 2, :, :64].abs().max() == 0  # a padding view's frame half: never computed
    # Gradients reach the aggregator through the skipped-view path (encoder pretraining trains it).
    model.requires_grad_(True)
    outputs, _ = model(x, view_mask=view_mask)
    outputs[-1][view_mask].sum().backward()
    assert model.frame_blocks[0].attn.qkv.weight.grad.abs().sum() > 0


def test_frozen_forward_runs_without_grad_and_trainable_with_grad():
    model = tiny()
    x = images(1, 2)
    outputs, _ = model(x)
    assert outputs[-1].requires_grad  # trainable: autograd graph kept
    model.freeze()
    outputs, _ = model(x)
    assert not outputs[-1].requires_grad and not model.training
    assert not any(p.requires_grad for p in model.parameters())


def test_bf16_autocast_close_to_float32():
    model = tiny(patch_embed="dinov2", dinov2_depth=1, dinov2_num_heads=4).freeze()
    x = images(1, 2, 28, 42)
    ref, _ = model(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low, _ = model(x)
    assert torch.isfinite(low[-1]).all()
    scale = ref[-1].abs().max()
    assert (low[-1].float() - ref[-1]).abs().max() < 0.1 * scale


def test_image_size_must_be_a_multiple_of_the_patch():
    with pytest.raises(ValueError, match="multiple of the patch size"):
        tiny()(images(1, 1, 28, 30))


def test_rope_matches_the_pairwise_rotation_formula():
    """Row half: pairs (i, i + d/4) rotate by row * inv_freq[i]; column half likewise by column."""
    head_dim, quarter = 16, 4
    rope = RotaryPositionEmbedding2D(100.0)
    pos = patch_positions(2, 3, num_special=2)  # [2 + 6, 2]
    assert pos[:2].eq(0).all() and pos[2].tolist() == [1, 1] and pos[-1].tolist() == [2, 3]
    x = torch.randn(1, 1, len(pos), head_dim, dtype=torch.float64)
    cos, sin = rope.tables(pos, head_dim)
    got = RotaryPositionEmbedding2D.rotate(x, cos.double(), sin.double())
    inv_freq = 1.0 / 100.0 ** (torch.arange(0, 8, 2, dtype=torch.float64) / 8)
    expected = x.clone()
    for n, (row, col) in enumerate(pos.tolist()):
        for offset, coord in ((0, row), (head_dim // 2, col)):
            for i in range(quarter):
                a, b = x[0, 0, n, offset + i], x[0, 0, n, offset + quarter + i]
                angle = coord * inv_freq[i]
                expected[0, 0, n, offset + i] = a * torch.cos(angle) - b * torch.sin(angle)
                expected[0, 0, n, offset + quarter + i] = b * torch.cos(angle) + a * torch.sin(angle)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(got[..., :2, :], x[..., :2, :])  # special tokens (0, 0) are not rotated


# --------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------


def tiny_cfg(**overrides) -> EncoderConfig:
    return EncoderConfig(**{**TINY_DINO, "dinov2_depth": 1, **overrides})


def test_from_config_is_seeded_frozen_and_leaves_the_global_rng_alone():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = Aggregator.from_config(tiny_cfg(seed=3, layers=[-2]))
    after = torch.rand(1)
    assert torch.equal(before, after)
    b = Aggregator.from_config(tiny_cfg(seed=3))
    c = Aggregator.from_config(tiny_cfg(seed=4))
    for (key, va), vb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(va, vb), key
    assert not torch.equal(a.frame_blocks[0].attn.qkv.weight, c.frame_blocks[0].attn.qkv.weight)
    assert a.default_layers == [-2] and not any(p.requires_grad for p in a.parameters())
    assert a.encode(images(1, 2)).shape == (1, 2, 9, 128)
    trainable = Aggregator.from_config(tiny_cfg(frozen=False))
    assert any(p.requires_grad for p in trainable.parameters())


def test_feature_shape_from_config():
    shape = feature_shape(tiny_cfg(layers=[-2, -1]), 28, 42)
    assert (shape.num_tokens, shape.channels, shape.patch_start_idx, shape.grid) == (11, 256, 5, (2, 3))
    assert feature_shape(EncoderConfig(), 518, 518).num_tokens == 5 + 37 * 37
    with pytest.raises(ConfigError, match="multiple"):
        feature_shape(tiny_cfg(), 28, 29)


def test_unknown_patch_embed_and_wrong_width_are_config_errors():
    with pytest.raises(ConfigError, match="unknown patch_embed"):
        Aggregator(**{**TINY, "patch_embed": "resnet"})
    with pytest.raises(ConfigError, match="embed_dim"):
        Aggregator(**{**TINY, "patch_embed": "dinov2_vitl14_reg"})


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def test_whole_model_pt_loads_and_ignores_the_heads(tmp_path):
    source = tiny(seed=1, patch_embed="dinov2", dinov2_depth=1, dinov2_num_heads=4)
    torch.save(whole_model_state(source), tmp_path / "model.pt")
    kwargs = {**TINY_DINO, "dinov2_depth": 1}
    loaded = Aggregator.from_pretrained(tmp_path / "model.pt", **kwargs).eval()
    # built on meta and assigned: nothing may stay on the meta device, buffers included
    assert not any(t.is_meta for t in [*loaded.parameters(), *loaded.buffers()])
    assert torch.equal(loaded._resnet_std.view(3), torch.tensor([0.229, 0.224, 0.225]))
    assert not loaded.patch_embed.mask_token.requires_grad
    x = images(1, 2, 28, 42)
    torch.testing.assert_close(loaded(x)[0][-1], source(x)[0][-1], atol=0, rtol=0)
    # a folder holding model.pt works too, and so does the config route
    from_folder = Aggregator.from_pretrained(tmp_path, **kwargs)
    assert torch.equal(from_folder.camera_token, source.camera_token)
    from_cfg = Aggregator.from_config(tiny_cfg(weights=str(tmp_path / "model.pt")))
    assert torch.equal(from_cfg.register_token, source.register_token)
    assert not any(p.requires_grad for p in from_cfg.parameters())


def test_safetensors_and_bare_state_dicts_load(tmp_path):
    source = tiny(seed=2)
    save_file(whole_model_state(source), str(tmp_path / "model.safetensors"))
    torch.save(source.state_dict(), tmp_path / "bare.pth")  # no aggregator. prefix
    # the folder prefers model.safetensors over model.pt; a broken model.pt proves it is not read
    (tmp_path / "model.pt").write_bytes(b"not a checkpoint")
    x = images(1, 2)
    expected = source(x)[0][-1]
    for where in (tmp_path / "model.safetensors", tmp_path, tmp_path / "bare.pth"):
        loaded = Aggregator.from_pretrained(where, **TINY).eval()
        torch.testing.assert_close(loaded(x)[0][-1], expected, atol=0, rtol=0)
    # loading into an existing (materialised) module copies in place
    target = Aggregator(**TINY).eval()
    load_aggregator_weights(target, tmp_path / "bare.pth")
    torch.testing.assert_close(target(x)[0][-1], expected, atol=0, rtol=0)


def test_strict_loading_names_missing_and_unexpected_keys(tmp_path):
    state = whole_model_state(tiny())
    missing = dict(state)
    del missing["aggregator.global_blocks.1.ls2.gamma"]
    torch.save(missing, tmp_path / "missing.pt")
    with pytest.raises(CheckpointError, match=r"missing 1 key\(s\): aggregator\.global_blocks\.1\.ls2\.gamma"):
        Aggregator.from_pretrained(tmp_path / "missing.pt", **TINY)
    extra = dict(state)
    extra["aggregator.frame_blocks.2.norm1.weight"] = torch.ones(64)
    torch.save(extra, tmp_path / "extra.pt")
    with pytest.raises(CheckpointError, match=r"unexpected 1 key\(s\): aggregator\.frame_blocks\.2\.norm1\.weight"):
        Aggregator.from_pretrained(tmp_path / "extra.pt", **TINY)
    wrong = dict(state)
    wrong["aggregator.camera_token"] = torch.zeros(1, 2, 1, 32)
    with pytest.raises(CheckpointError, match=r"aggregator\.camera_token has shape \(1, 2, 1, 32\)"):
        load_aggregator_weights(Aggregator(**TINY), wrong)


def test_bad_sources_raise_checkpoint_errors(tmp_path, monkeypatch):
    with pytest.raises(CheckpointError, match="not found"):
        Aggregator.from_pretrained(tmp_path / "nope.pt", **TINY)
    with pytest.raises(CheckpointError, match="no model.safetensors or model.pt"):
        Aggregator.from_pretrained(tmp_path, **TINY)
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="junk.pt"):
        Aggregator.from_pretrained(tmp_path / "junk.pt", **TINY)
    # a hub id offline: a clear message pointing at ckpts/, not a traceback from the hub client
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(CheckpointError, match=r"facebook/VGGT-1B: .*ckpts/VGGT-1B"):
        Aggregator.from_pretrained("facebook/VGGT-1B", **TINY)


# --------------------------------------------------------------------------------------------
# Parity with the official implementation (only where the vggt package is importable)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs", [TINY, {**TINY, "embed_dim": 384, "num_heads": 6,
                                            "patch_embed": "dinov2_vits14_reg"}], ids=["conv", "dinov2"])
def test_numerical_parity_with_official_vggt(kwargs):
    """Every layer against the official aggregator kept whole, and against the official aggregator as
    it is built by default (upstream since May 2026 returns None for the layers its heads do not read):
    vqkit's output equals the official one wherever the official returns one."""
    official_module = pytest.importorskip("vggt.models.aggregator")
    torch.manual_seed(0)
    every_layer = official_aggregator(official_module.Aggregator, **kwargs).eval()
    with torch.no_grad():
        for name, param in every_layer.named_parameters():
            if "token" in name or "gamma" in name:
                param.normal_(0, 0.5)
    as_built = official_module.Aggregator(**kwargs).eval()
    as_built.load_state_dict(every_layer.state_dict(), strict=True)
    ours = Aggregator(**kwargs).eval()
    ours.load_state_dict(every_layer.state_dict(), strict=True)
    assert list(ours.state_dict()) == list(every_layer.state_dict())
    for H, W in [(28, 28), (28, 42)]:
        x = images(2, 3, H, W)
        got, idx = ours(x)
        for official in (every_layer, as_built):
            with torch.no_grad():
                expected, expected_idx = official(x)
            assert idx == expected_idx and len(got) == len(expected)
            compared = [(a, b) for a, b in zip(got, expected, strict=True) if b is not None]
            assert compared, "the official aggregator returned no layer"
            for a, b in compared:
                torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)