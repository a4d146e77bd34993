"""vqkit.config.data: the data section's checks refuse what the loader and the collator cannot use,
saying how to fix it, and accept every value at the edge of what they can."""

from __future__ import annotations

import pytest

from vqkit.config import config_from_dict
from vqkit.errors import ConfigError

REFUSED = [
    ({"image_size": 225}, "data.image_size must be a multiple of 14 .VGGT patch size., got 225; try 224"),
    ({"image_size": 5}, "got 5; try 14"),
    ({"num_views": 0}, "data.num_views must be >= 1"),
    ({"view_dropout": 1.0}, r"data.view_dropout must be in \[0, 1\)"),
    ({"view_dropout": -0.1}, r"data.view_dropout must be in \[0, 1\)"),
    ({"geometry_dropout": 1.5}, r"data.geometry_dropout must be in \[0, 1\]"),
    ({"max_length": 15}, "data.max_length must be >= 16"),
    ({"turns": 0}, "data.turns must be >= 1"),
    ({"prompt_template": "{question} {answer}"}, "must be 'chat' or contain {question}, <image> and {answer}"),
    ({"prompt_template": "{answer} <image> {question}"}, r"must end with {answer} \(the label span\)"),
    ({"train": [{"path": ""}]}, r"data source needs a path \(a .json/.jsonl file or a glob\)"),
    ({"train": [{"path": "a.jsonl", "weight": 0}]}, "data source a.jsonl: weight must be > 0, got 0"),
    ({"on_error": "ignore"}, "not one of"),
]


@pytest.mark.parametrize("data, message", REFUSED, ids=[next(iter(d)) for d, _ in REFUSED])
def test_what_cannot_be_loaded_is_refused_saying_how_to_fix_it(data, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict({"data": data})


def test_edge_values_are_accepted():
    data = config_from_dict({"data": {"image_size": 14, "view_dropout": 0.0, "geometry_dropout": 1.0, "max_length": 16,
                                      "prompt_template": "{question}\n<image>\n{answer}\n  ",
                                      "train": ["a.jsonl", {"path": "b/*.jsonl", "weight": 0.5}]}}).data
    assert data.image_size == 14 and data.prompt_template.endswith("{answer}\n  ")
    assert [(s.path, s.weight) for s in data.train] == [("a.jsonl", 1.0), ("b/*.jsonl", 0.5)]
