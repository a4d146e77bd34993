"""The Perceiver resampler: shapes, view embedding, padding mask, gradients."""

import pytest
import torch

from vqkit.config import ProjectorConfig
from vqkit.errors import ConfigError
from vqkit.models.projector import PerceiverResampler


def make(**kw):
    torch.manual_seed(0)
    args = dict(dim=32, num_latents=6, num_layers=2, num_heads=4, max_views=4)
    args.update(kw)
    return PerceiverResampler(in_dim=20, out_dim=48, **args).eval()


def test_output_shape_is_fixed_whatever_the_views():
    proj = make()
    for views, patches in ((1, 5), (3, 7)):
        out = proj(torch.randn(2, views, patches, 20))
        assert out.shape == (2, 6, 48)
        assert torch.isfinite(out).all()


def test_from_config_defaults_follow_the_seed():
    cfg = ProjectorConfig()
    assert (cfg.num_latents, cfg.num_layers) == (128, 6)
    assert cfg.pos_embed
    proj = PerceiverResampler.from_config(ProjectorConfig(num_latents=3, num_layers=1, num_heads=2), 8, 16,
                                          num_special_tokens=1)
    assert proj.num_latents == 3 and len(proj.layers) == 1
    assert proj(torch.randn(1, 2, 5, 8), grid_hw=(2, 2)).shape == (1, 3, 16)


def test_padding_views_are_ignored():
    """A padded view (view_mask False) must not change the output, whatever it contains."""
    proj = make()
    x = torch.randn(1, 3, 5, 20)
    mask = torch.tensor([[True, True, False]])
    a = proj(x, mask)
    x2 = x.clone()
    x2[:, 2] = torch.randn(5, 20) * 100
    b = proj(x2, mask)
    torch.testing.assert_close(a, b)
    # ...and equals running on the real views only
    c = proj(x[:, :2], torch.tensor([[True, True]]))
    torch.testing.assert_close(a, c, rtol=1e-5, atol=1e-5)
    # without the mask the garbage view does change the output (the test can fail)
    assert not torch.allclose(proj(x2), a, atol=1e-4)


def test_view_embedding_makes_views_distinguishable():
    """Swapping two views' tokens changes the output (pure set attention would not)."""
    proj = make()
    x = torch.randn(1, 2, 5, 20)
    swapped = x.flip(1)
    assert not torch.allclose(proj(x), proj(swapped), atol=1e-5)
    with torch.no_grad():
        proj.view_embed.weight.zero_()
    torch.testing.assert_close(proj(x), proj(swapped), rtol=1e-5, atol=1e-5)


def test_too_many_views_is_a_config_error():
    with pytest.raises(ConfigError, match="max_views"):
        make()(torch.randn(1, 5, 2, 20))


def test_gradients_reach_every_parameter():
    proj = make().train()
    out = proj(torch.randn(2, 2, 3, 20), torch.tensor([[True, True], [True, False]]))
    out.square().mean().backward()
    missing = [n for n, p in proj.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


def test_samples_are_independent_in_a_batch():
    proj = make()
    x = torch.randn(3, 2, 4, 20)
    torch.testing.assert_close(proj(x)[1:2], proj(x[1:2]), rtol=1e-5, atol=1e-5)


def test_position_embedding_tells_patches_apart():
    """With pos_embed, moving a patch's content to another grid cell changes the output; without
    it the Perceiver sees a set and cannot tell."""
    x = torch.randn(1, 1, 2 + 6, 20)  # 2 special tokens + a 2x3 grid
    moved = x.clone()
    moved[0, 0, 2], moved[0, 0, 7] = x[0, 0, 7], x[0, 0, 2]
    plain = make()
    torch.testing.assert_close(plain(x), plain(moved), rtol=1e-5, atol=1e-5)
    proj = make(pos_embed=True, num_special_tokens=2)
    assert not torch.allclose(proj(x, grid_hw=(2, 3)), proj(moved, grid_hw=(2, 3)), atol=1e-5)
    # rows and columns are separate tables: a 3x2 grid is another layout of the same 6 patches
    assert not torch.allclose(proj(x, grid_hw=(2, 3)), proj(x, grid_hw=(3, 2)), atol=1e-5)


def test_position_embedding_checks_the_grid():
    proj = make(pos_embed=True, num_special_tokens=2, max_grid=4)
    with pytest.raises(ConfigError, match="grid_hw"):
        proj(torch.randn(1, 1, 8, 20))
    with pytest.raises(ConfigError, match="2x2 patch grid has 4 \\+ 2 special"):
        proj(torch.randn(1, 1, 8, 20), grid_hw=(2, 2))
    with pytest.raises(ConfigError, match="max_grid=4"):
        proj(torch.randn(1, 1, 12, 20), grid_hw=(1, 10))
