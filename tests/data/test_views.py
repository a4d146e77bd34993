"""vqkit.data.views: which of a record's views a sample uses (evenly spaced, the first, a seeded random
spread or random in training), view dropout in training only (never every view), and what the feature
cache stores."""

from __future__ import annotations

import numpy as np
import pytest

from vqkit.config import DataConfig
from vqkit.data.views import cached_views, choose_views
from vqkit.errors import ConfigError


def pick(available: int, wanted: int, sampling: str = "uniform", dropout: float = 0.0, train: bool = False,
         seed: int = 0) -> list[int]:
    return choose_views(available, wanted, sampling, dropout, train, np.random.default_rng(seed))


def test_fixed_choices():
    assert pick(10, 4) == [0, 3, 6, 9]  # evenly spaced, first and last included
    assert pick(9, 3) == [0, 4, 8] and pick(5, 1) == [0]
    assert pick(10, 4, "first") == [0, 1, 2, 3]
    for sampling in ("uniform", "first", "random", "spread"):
        assert pick(3, 8, sampling, train=True) == [0, 1, 2]  # fewer views than asked: all of them, in order
    assert pick(10, 4, "random", train=False) == pick(10, 4)  # evaluation never samples at random
    with pytest.raises(ConfigError, match="data.view_sampling must be spread, uniform, first or random, got 'every'"):
        pick(10, 4, "every")


def test_random_training_views_are_distinct_sorted_and_vary():
    draws = [pick(12, 4, "random", train=True, seed=s) for s in range(40)]
    assert all(len(set(d)) == 4 and d == sorted(d) and 0 <= d[0] and d[-1] < 12 for d in draws)
    assert len({tuple(d) for d in draws}) > 20
    assert pick(12, 4, "random", train=True, seed=7) == pick(12, 4, "random", train=True, seed=7)


def test_view_dropout_in_training_only_and_never_every_view():
    kept = [pick(8, 8, dropout=0.5, train=True, seed=s) for s in range(400)]
    assert all(1 <= len(k) <= 8 and set(k) <= set(range(8)) and k == sorted(k) for k in kept)
    assert 3.5 < np.mean([len(k) for k in kept]) < 4.5  # each view dropped with probability 1/2
    assert all(len(pick(4, 4, dropout=0.999, train=True, seed=s)) == 1 for s in range(50))  # at least one stays
    assert pick(8, 8, dropout=0.9, train=False) == list(range(8))
    assert pick(1, 1, dropout=0.9, train=True) == [0]


def test_the_cache_stores_what_evaluation_picks_or_every_view_for_random_sampling():
    assert cached_views(10, DataConfig(num_views=4, view_sampling="uniform", view_dropout=0.5)) == [0, 3, 6, 9]
    assert cached_views(10, DataConfig(num_views=4, view_sampling="first")) == [0, 1, 2, 3]
    assert cached_views(10, DataConfig(num_views=4, view_sampling="random")) == list(range(10))
    assert cached_views(10, DataConfig(num_views=4, view_sampling="spread")) == list(range(10))
    assert cached_views(2, DataConfig(num_views=4)) == [0, 1]


def test_spread_draws_one_view_from_each_stretch_in_training():
    draws = [pick(32, 8, "spread", train=True, seed=s) for s in range(50)]
    for views in draws:
        assert [v // 4 for v in views] == list(range(8))  # one of 0-3, one of 4-7, ...
    assert len({tuple(v) for v in draws}) > 40
    assert pick(32, 8, "spread", train=True, seed=3) == pick(32, 8, "spread", train=True, seed=3)  # seeded


def test_spread_is_evenly_spaced_in_evaluation():
    assert pick(32, 4, "spread") == pick(32, 4) == [0, 10, 21, 31]
