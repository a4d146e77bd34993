"""The checks both connectors make on the aggregator tokens they receive, written once.

The Perceiver resampler (:mod:`vqkit.models.projector`) and the patch merger
(:mod:`vqkit.models.patch_merger`) both read ``[B, S, P, C]`` tokens: S views, each P = the special
(camera, register) tokens then a ``rows x cols`` grid of patch tokens; both hold a learned table per
view slot (``model.projector.max_views``) and row / column tables (``model.projector.max_grid``). A
batch outside those tables is a one-line :class:`~vqkit.errors.ConfigError` that names the setting.
"""

from __future__ import annotations

import math

from vqkit.errors import ConfigError


def check_views(num_views: int, max_views: int) -> None:
    """A batch's view slots fit the view-embedding table."""
    if num_views > max_views:
        raise ConfigError(f"model.projector.max_views is {max_views} but a batch has {num_views} views; "
                          f"raise max_views or lower data.num_views")


def check_grid(tokens_per_view: int, grid_hw: tuple[int, int], *, num_special_tokens: int, max_grid: int,
               merge_size: int = 1) -> tuple[int, int]:
    """A view's tokens are its special tokens plus a ``grid_hw`` patch grid, and the grid (merged
    ``merge_size x merge_size`` into cells, 1: not merged) fits the position tables. Returns
    (rows, cols) of the patch grid."""
    rows, cols = (int(v) for v in grid_hw)
    if rows * cols + num_special_tokens != tokens_per_view:
        raise ConfigError(f"the projector got {tokens_per_view} tokens per view, but a {rows}x{cols} patch grid "
                          f"has {rows * cols} + {num_special_tokens} special tokens")
    m = merge_size
    cells = (math.ceil(rows / m), math.ceil(cols / m))
    if max(cells) > max_grid:
        if m == 1:
            raise ConfigError(f"a {rows}x{cols} patch grid exceeds model.projector.max_grid={max_grid}; "
                              f"raise max_grid")
        raise ConfigError(f"a {rows}x{cols} patch grid merged {m}x{m} has {cells[0]}x{cells[1]} cells, more "
                          f"than model.projector.max_grid={max_grid}; raise max_grid")
    return rows, cols


__all__ = ["check_grid", "check_views"]
