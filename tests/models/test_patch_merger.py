"""The patch merger (VG-LLM-style connector): which patches a token merges, odd grids, token counts
that agree with the collator's rule, view and position embeddings, gradients; and in a VQModel."""

import dataclasses

import pytest
import torch

from vqkit.config import ModelConfig, ProjectorConfig
from vqkit.errors import ConfigError
from vqkit.models.patch_merger import PatchMerger, merged_grid
from vqkit.tokenizer import vision_token_count

SPECIAL = 2


def make(**kw):
    torch.manual_seed(0)
    args = {"merge_size": 2, "hidden": 24, "max_views": 4, "num_special_tokens": SPECIAL, "max_grid": 8}
    args.update(kw)
    return PatchMerger(in_dim=6, out_dim=10, **args).eval()


def views(b, s, rows, cols, c=6, seed=0):
    return torch.randn(b, s, SPECIAL + rows * cols, c, generator=torch.Generator().manual_seed(seed))


def test_output_is_one_token_per_merged_cell_of_every_view():
    proj = make()
    out = proj(views(2, 3, 4, 6), grid_hw=(4, 6))
    assert out.shape == (2, 3, 2 * 3, 10) and torch.isfinite(out).all()
    assert proj.tokens_per_view((4, 6)) == 6


def test_a_token_sees_exactly_its_own_two_by_two_patches():
    """Changing one patch changes only the token of its cell; the special tokens change nothing."""
    proj = make()
    x = views(1, 1, 4, 4)
    base = proj(x, grid_hw=(4, 4))
    row, col = 2, 1  # -> cell (1, 0), token 2 of a 2x2 cell grid
    changed = x.clone()
    changed[0, 0, SPECIAL + row * 4 + col] = torch.randn(6)  # not a constant shift: the norm removes those
    diff = (proj(changed, grid_hw=(4, 4)) - base).abs().sum(-1)[0, 0]
    assert diff[2] > 1e-3 and torch.all(diff[[0, 1, 3]] == 0)
    specials = x.clone()
    specials[0, 0, :SPECIAL] = 100.0
    torch.testing.assert_close(proj(specials, grid_hw=(4, 4)), base)


def test_patch_order_inside_a_cell_matters():
    """The four patches are concatenated, not pooled: swapping two inside a cell changes its token."""
    proj = make()
    x = views(1, 1, 2, 2)
    swapped = x.clone()
    swapped[0, 0, SPECIAL], swapped[0, 0, SPECIAL + 1] = x[0, 0, SPECIAL + 1], x[0, 0, SPECIAL]
    assert not torch.allclose(proj(x, grid_hw=(2, 2)), proj(swapped, grid_hw=(2, 2)), atol=1e-5)


def test_odd_grids_round_up_as_at_vggts_518_px():
    assert merged_grid((37, 37), 2) == (19, 19)  # 518 px / 14: 361 tokens per view
    proj = make()
    out = proj(views(1, 2, 3, 5), grid_hw=(3, 5))
    assert out.shape == (1, 2, 2 * 3, 10) and torch.isfinite(out).all()


def test_views_and_cells_are_told_apart():
    proj = make()
    x = views(1, 2, 2, 2)
    same = torch.cat([x[:, :1], x[:, :1]], dim=1)  # two identical views
    out = proj(same, grid_hw=(2, 2))
    assert not torch.allclose(out[0, 0], out[0, 1], atol=1e-5)  # the view embedding
    flat = make(pos_embed=False)
    grid = views(1, 1, 2, 4)
    left_right = grid.clone()
    left_right[0, 0, SPECIAL:] = grid[0, 0, SPECIAL:].unflatten(0, (2, 4)).roll(2, dims=1).flatten(0, 1)
    a, b = proj(grid, grid_hw=(2, 4)), proj(left_right, grid_hw=(2, 4))
    assert not torch.allclose(a[0, 0, 0], b[0, 0, 1], atol=1e-5)  # same content, another cell
    a, b = flat(grid, grid_hw=(2, 4)), flat(left_right, grid_hw=(2, 4))
    torch.testing.assert_close(a[0, 0, 0], b[0, 0, 1])  # without pos_embed only the order tells


def test_token_count_rule_agrees_with_the_module():
    """vqkit.tokenizer.vision_token_count (what the collator emits) = what the merger writes."""
    for merge, (h, w), v in ((2, (112, 112), 4), (2, (518, 518), 8), (3, (98, 70), 2), (1, (28, 42), 3)):
        cfg = ModelConfig(projector=ProjectorConfig(type="patch_merger", merge_size=merge))
        proj = PatchMerger(6, 10, merge_size=merge, num_special_tokens=5)
        grid = (h // 14, w // 14)
        assert vision_token_count(cfg, v, False, (h, w)) == v * proj.tokens_per_view(grid)
        assert vision_token_count(cfg, v, True, (h, w)) == v * proj.tokens_per_view(grid) + v
    with pytest.raises(ConfigError, match="image_hw"):
        vision_token_count(ModelConfig(projector=ProjectorConfig(type="patch_merger")), 2, False)
    perceiver = ModelConfig(projector=ProjectorConfig(num_latents=7))
    assert vision_token_count(perceiver, 3, True, (112, 112)) == vision_token_count(perceiver, 3, True) == 10


def test_bad_shapes_are_config_errors():
    proj = make()
    with pytest.raises(ConfigError, match="grid_hw"):
        proj(views(1, 1, 2, 2))
    with pytest.raises(ConfigError, match="2x3 patch grid has 6 \\+ 2 special"):
        proj(views(1, 1, 2, 2), grid_hw=(2, 3))
    with pytest.raises(ConfigError, match="max_views"):
        proj(views(1, 5, 2, 2), grid_hw=(2, 2))
    with pytest.raises(ConfigError, match="max_grid=8"):
        proj(views(1, 1, 1, 18), grid_hw=(1, 18))
    with pytest.raises(ConfigError, match="merge_size"):
        ProjectorConfig(type="patch_merger", merge_size=0)


def test_gradients_reach_every_parameter():
    proj = make().train()
    proj(views(2, 2, 2, 4), grid_hw=(2, 4)).square().mean().backward()
    assert [n for n, p in proj.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0] == []


def test_from_config_sizes():
    cfg = ProjectorConfig(type="patch_merger", merge_size=3, dim=16, max_views=5, max_grid=9)
    proj = PatchMerger.from_config(cfg, 8, 12, num_special_tokens=1)
    assert proj.mlp[0].in_features == 9 * 8 and proj.mlp[0].out_features == 16 and proj.mlp[2].out_features == 12
    assert proj.view_embed.shape == (5, 12) and proj.row_embed.shape == (9, 12)
    default = PatchMerger.from_config(dataclasses.replace(cfg, dim=None), 8, 12)
    assert default.mlp[0].out_features == 9 * 8  # Qwen2.5-VL's merger: hidden = merged width


# ---------------------------------------------------------------------------------- in a VQModel

@pytest.fixture(scope="module")
def merger_model(tmp_path_factory):
    """A tiny VQModel with the patch merger over 56 px views (a 4x4 patch grid: 4 tokens per view)."""
    from vqkit.config import config_from_dict
    from vqkit.models.builder import build_model
    from vqkit.tokenizer import load_tokenizer, train_tokenizer

    tok_dir = tmp_path_factory.mktemp("tok") / "tokenizer"
    train_tokenizer(["what colour is the chair?", "is there a bed?", "red", "blue", "yes", "no"], tok_dir,
                    vocab_size=300)
    cfg = config_from_dict({"model": {
        "encoder": {"img_size": 56, "embed_dim": 16, "depth": 1, "num_heads": 2, "patch_embed": "conv"},
        "projector": {"type": "patch_merger", "max_views": 4},
        "geometry": {"hidden": 16, "depth_bins": 8},
        "llm": {"name_or_path": str(tok_dir), "from_config": True,
                "config_overrides": {"model_type": "qwen3", "hidden_size": 32, "intermediate_size": 64,
                                     "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1,
                                     "head_dim": 16, "max_position_embeddings": 256}},
        "lora": {"enabled": False, "full_finetune": True}}, "train": {"seed": 5}})
    tok = load_tokenizer(cfg.model.llm)
    return cfg, tok, build_model(cfg, tok).eval()


def merger_sample(n_views, geometry, seed, hw=(56, 56), answer="red"):
    from vqkit.cameras import intrinsics

    g = torch.Generator().manual_seed(seed)
    K = torch.tensor(intrinsics(40.0, 40.0, hw[1] / 2, hw[0] / 2), dtype=torch.float32)
    return {"images": torch.rand(n_views, 3, *hw, generator=g), "R": torch.eye(3).repeat(n_views, 1, 1),
            "t": torch.randn(n_views, 3, generator=g), "K": K.repeat(n_views, 1, 1),
            "depth_hist": torch.full((n_views, 8), 1 / 8) if geometry else torch.zeros(n_views, 8),
            "has_geometry": geometry, "question": "what colour is the chair?", "answer": answer,
            "meta": {"id": f"m{seed}"}}


def merger_batch(cfg, tok, samples, mode="train"):
    from vqkit.config import DataConfig
    from vqkit.data.collate import Collator

    data = DataConfig(image_size=56, max_length=128, prompt_template="{question}\n<image>\n{answer}")
    return Collator(tok, cfg.model, data, mode=mode)(samples)


def test_the_model_writes_each_real_views_tokens_then_geometry(merger_model):
    cfg, tok, model = merger_model
    batch = merger_batch(cfg, tok, [merger_sample(3, True, 0), merger_sample(2, False, 1), merger_sample(1, True, 2)])
    assert [m["num_vision_tokens"] for m in batch["meta"]] == [3 * 4 + 3, 2 * 4, 1 * 4 + 1]
    with torch.no_grad():
        tokens = model.encode(batch)
        assert [t.shape[0] for t in tokens] == [15, 8, 5]
        # sample 1's tokens are its two views' cells, in view order, whatever the padding view holds
        feats = model.encode_views(batch["images"], batch["view_mask"])
        alone = model.projector(feats[1:2, :2], grid_hw=(4, 4))[0].flatten(0, 1)
        torch.testing.assert_close(tokens[1], alone)
    model.train()
    out = model(batch)
    out.loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.projector.parameters())
    model.zero_grad(set_to_none=True)
    model.eval()


def test_padding_views_and_cached_features_change_nothing(merger_model):
    cfg, tok, model = merger_model
    with torch.no_grad():
        alone = model(merger_batch(cfg, tok, [merger_sample(2, True, 1)])).logits
        together = model(merger_batch(cfg, tok, [merger_sample(2, True, 1), merger_sample(3, True, 0)])).logits
        torch.testing.assert_close(together[:1, : alone.shape[1]], alone, rtol=1e-4, atol=1e-4)
        batch = merger_batch(cfg, tok, [merger_sample(3, True, 0), merger_sample(1, False, 1)])
        cached = {k: v for k, v in batch.items() if k != "images"}
        cached["features"] = model.encode_views(batch["images"], batch["view_mask"])
        torch.testing.assert_close(model(cached).loss, model(batch).loss)


def test_the_batchs_padded_image_size_sets_the_count(merger_model):
    """A 28x56 view alone has a 2x4 grid (2 tokens); batched with a 56x56 one it is padded to 56x56
    (4 tokens), and the model agrees with the collator either way."""
    cfg, tok, model = merger_model
    short = merger_sample(1, False, 3, hw=(28, 56))
    assert merger_batch(cfg, tok, [short])["meta"][0]["num_vision_tokens"] == 2
    batch = merger_batch(cfg, tok, [short, merger_sample(1, False, 4)])
    assert [m["num_vision_tokens"] for m in batch["meta"]] == [4, 4]
    with torch.no_grad():
        assert torch.isfinite(model(batch).loss)
        assert torch.isfinite(model(merger_batch(cfg, tok, [short])).loss)


def test_generation_and_save_load(merger_model, tmp_path):
    from vqkit.models.builder import load_model

    cfg, tok, model = merger_model
    samples = [merger_sample(3, True, 0), merger_sample(1, False, 1)]
    batch = merger_batch(cfg, tok, samples, mode="generate")
    answers = model.generate(batch, max_new_tokens=3)
    assert answers == [model.generate(merger_batch(cfg, tok, [s], mode="generate"), max_new_tokens=3)[0]
                       for s in samples]
    loaded = load_model(model.save_pretrained(tmp_path / "final")).eval()
    train_batch = merger_batch(cfg, tok, samples)
    with torch.no_grad():
        assert torch.equal(model(train_batch).logits, loaded(train_batch).logits)


def test_real_size_stage1_with_the_merger_on_the_meta_device():
    """configs/stage1_3d.yaml with the merger: VGGT-1B's 2048 channels, Qwen3-4B's 2560 width, 448 px
    views (a 32x32 patch grid: 256 tokens per view, 2056 for 8 views with geometry)."""
    from helpers import REPO

    from vqkit.config import load_config
    from vqkit.models.builder import build_model

    cfg = load_config(REPO / "configs" / "stage1_3d.yaml", ["model.projector.type=patch_merger"])
    model = build_model(cfg, device="meta")
    c, merged, d = 2048, 4 * 2048, 2560
    expected = 2 * c + merged * merged + merged + merged * d + d + 32 * d + 2 * 64 * d
    assert model.parameter_counts()["projector"] == (expected, expected)
    assert vision_token_count(cfg.model, 8, True, (448, 448)) == 8 * 16 * 16 + 8
    feats = torch.empty(1, 8, 5 + 32 * 32, c, device="meta")
    assert model.projector(feats, grid_hw=(32, 32)).shape == (1, 8, 256, d)
