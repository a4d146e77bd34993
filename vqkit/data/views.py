"""Which of a record's views a sample uses: evenly spaced, a seeded random spread (training), the first,
or random (training), then view dropout in training. The feature cache stores the views this picks
without dropout (every view when training draws them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from vqkit.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from vqkit.config.schema import DataConfig


def choose_views(num_available: int, num_views: int, sampling: str, dropout: float, train: bool,
                 rng: np.random.Generator) -> list[int]:
    """Indices (sorted, so temporal order is kept) of the views a sample uses.

    More views than ``num_views``: ``uniform`` = evenly spaced (first and last included), ``first``,
    ``spread`` (training: the views split into ``num_views`` equal stretches in order, one drawn from
    each, so a video's frames still cover it from start to end) or ``random`` (training: any
    ``num_views``); evaluation uses ``uniform`` for both. Then, in training, each view is dropped with
    probability ``dropout``, always keeping at least one.
    """
    if num_available <= num_views:
        views = list(range(num_available))
    elif sampling == "first":
        views = list(range(num_views))
    elif sampling == "random" and train:
        views = sorted(rng.choice(num_available, size=num_views, replace=False).tolist())
    elif sampling == "spread" and train:
        edges = np.arange(num_views + 1) * num_available // num_views
        views = [int(rng.integers(lo, hi)) for lo, hi in zip(edges[:-1], edges[1:], strict=True)]
    elif sampling in ("uniform", "random", "spread"):
        views = np.round(np.linspace(0, num_available - 1, num_views)).astype(int).tolist()
    else:
        raise ConfigError(f"data.view_sampling must be spread, uniform, first or random, got {sampling!r}")
    if train and dropout > 0 and len(views) > 1:
        keep = rng.random(len(views)) >= dropout
        if not keep.any():
            keep[rng.integers(len(views))] = True
        views = [v for v, k in zip(views, keep, strict=True) if k]
    return views


def cached_views(num_available: int, data_cfg: DataConfig) -> list[int]:
    """View indices of a record that the cache stores: what the dataset picks without dropout
    (evaluation-mode choice), or every view when training samples them at random."""
    if data_cfg.view_sampling in ("random", "spread"):
        return list(range(num_available))
    return choose_views(num_available, data_cfg.num_views, data_cfg.view_sampling, 0.0, False,
                        np.random.default_rng(0))
