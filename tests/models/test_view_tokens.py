"""The view-token checks both connectors share: one message per mistake, the same from the Perceiver
and the patch merger, each naming the setting to change."""

import pytest
import torch

from vqkit.errors import ConfigError
from vqkit.models.patch_merger import PatchMerger
from vqkit.models.projector import PerceiverResampler
from vqkit.models.view_tokens import check_grid, check_views

SPECIAL = 2


def connectors():
    """The Perceiver (with position tables) and the patch merger, merging 1 x 1 so that both read the
    same grid limits: 4 view slots, grids up to 4 x 4, 2 special tokens."""
    torch.manual_seed(0)
    shared = {"max_views": 4, "num_special_tokens": SPECIAL, "max_grid": 4}
    return [PerceiverResampler(in_dim=8, out_dim=8, dim=8, num_latents=2, num_layers=1, num_heads=2,
                               pos_embed=True, **shared),
            PatchMerger(in_dim=8, out_dim=8, merge_size=1, **shared)]


def _message(module, views: int, tokens: int, grid_hw) -> str:
    with pytest.raises(ConfigError) as err:
        module(torch.randn(1, views, tokens, 8), grid_hw=grid_hw)
    return str(err.value)


@pytest.mark.parametrize("views, tokens, grid_hw, expected", [
    (5, SPECIAL + 4, (2, 2), "model.projector.max_views is 4 but a batch has 5 views; raise max_views or "
                             "lower data.num_views"),
    (1, SPECIAL + 5, (2, 2), "the projector got 7 tokens per view, but a 2x2 patch grid has 4 + 2 special tokens"),
    (1, SPECIAL + 10, (2, 5), "a 2x5 patch grid exceeds model.projector.max_grid=4; raise max_grid"),
])
def test_both_connectors_refuse_the_same_batch_with_the_same_line(views, tokens, grid_hw, expected):
    assert [_message(m, views, tokens, grid_hw) for m in connectors()] == [expected, expected]


def test_the_checks_pass_what_fits():
    check_views(4, 4)
    assert check_grid(SPECIAL + 12, (3, 4), num_special_tokens=SPECIAL, max_grid=4) == (3, 4)
    for module in connectors():
        assert torch.isfinite(module(torch.randn(2, 4, SPECIAL + 16, 8), grid_hw=(4, 4))).all()


def test_a_merged_grid_is_measured_in_cells():
    """Merged 2 x 2, a 7 x 8 grid is 4 x 4 cells and fits tables of 4; 9 rows are 5 cells and do not."""
    assert check_grid(SPECIAL + 56, (7, 8), num_special_tokens=SPECIAL, max_grid=4, merge_size=2) == (7, 8)
    with pytest.raises(ConfigError, match=r"a 9x8 patch grid merged 2x2 has 5x4 cells, more than "
                                          r"model.projector.max_grid=4; raise max_grid"):
        check_grid(SPECIAL + 72, (9, 8), num_special_tokens=SPECIAL, max_grid=4, merge_size=2)
