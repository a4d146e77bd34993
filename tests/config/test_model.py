"""vqkit.config.model: the model sections' checks refuse what cannot be built, saying how to fix it,
and accept every value at the edge of what can."""

from __future__ import annotations

import pytest

from vqkit.config import config_from_dict
from vqkit.errors import ConfigError

REFUSED = [
    ({"encoder": {"patch_size": 0}}, "model.encoder.patch_size must be positive"),
    ({"encoder": {"embed_dim": 100, "num_heads": 3}},
     r"model.encoder.embed_dim \(100\) must be divisible by num_heads \(3\)"),
    ({"encoder": {"depth": 0, "layers": [0]}}, "model.encoder.depth must be >= 1"),
    ({"encoder": {"layers": []}}, r"needs at least one layer index, e.g. \[-1\]"),
    ({"encoder": {"layers": [2], "depth": 2}}, "model.encoder.layers: 2 is outside a 2-layer aggregator"),
    ({"encoder": {"layers": [-3], "depth": 2}}, "model.encoder.layers: -3 is outside a 2-layer aggregator"),
    ({"projector": {"num_latents": 0}}, "model.projector.num_latents must be >= 1"),
    ({"projector": {"max_grid": 0}}, "model.projector.max_grid must be >= 1"),
    ({"projector": {"num_layers": 0}}, "model.projector.num_layers must be >= 1"),
    ({"projector": {"merge_size": 0}}, "model.projector.merge_size must be >= 1"),
    ({"projector": {"type": "qformer"}}, "model.projector.type: 'qformer' is not one of"),
    ({"geometry": {"depth_bins": 0}}, "model.geometry.depth_bins must be >= 1"),
    ({"geometry": {"median_depth_m": 0.0}}, r"model.geometry.median_depth_m must be > 0 \(metres\)"),
    ({"lora": {"r": 0}}, "model.lora.r must be >= 1"),
    ({"lora": {"enabled": True, "full_finetune": True}}, "choose either enabled .adapters. or full_finetune, not both"),
]


@pytest.mark.parametrize("model, message", REFUSED,
                         ids=[f"{next(iter(m))}.{next(iter(next(iter(m.values()))))}" for m, _ in REFUSED])
def test_what_cannot_be_built_is_refused_saying_how_to_fix_it(model, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict({"model": model})


def test_edge_values_are_accepted():
    cfg = config_from_dict({"model": {"encoder": {"depth": 2, "layers": [-2, 1], "embed_dim": 96, "num_heads": 3},
                                      "projector": {"num_latents": 1, "merge_size": 1},
                                      "lora": {"enabled": False, "full_finetune": True, "r": 1}}})
    assert cfg.model.encoder.layers == [-2, 1] and cfg.model.lora.full_finetune
