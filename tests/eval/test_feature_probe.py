"""vqkit probe-features: the targets by hand, the probe on planted and on empty features, and the
command on the small synthetic set."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import REPO

from vqkit.eval.feature_probe import ABSENT, chance_scores, fit_probe, object_targets
from vqkit.synth.catalogue import CATEGORIES, COLOURS

SPECIAL, GRID = 5, 8


def test_targets_name_each_visible_category_colour_and_absent_otherwise():
    layout = {"objects": [
        {"category": "chair", "colour": "red", "visible_views": [0]},
        {"category": "chair", "colour": "red", "visible_views": []},
        {"category": "sofa", "colour": "blue", "visible_views": []},  # only hidden sofas: not there to see
    ]}
    targets = object_targets(layout)
    order = list(CATEGORIES)
    assert targets[order.index("chair")] == COLOURS.index("red")
    assert targets[order.index("sofa")] == ABSENT
    assert targets.count(ABSENT) == len(CATEGORIES) - 1


def _rooms(n: int, planted: bool, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n rooms of 2 views: each category present with probability 1/2 in a random colour. Every token
    is one background vector plus a little noise (as real features, not noise the LayerNorm would
    blow up); with ``planted``, each present category adds one-hot category and colour channels to a
    patch of its own merged 2 x 2 cell (as an object on its own, not bound to another in one cell)."""
    g = torch.Generator().manual_seed(seed)
    k, c = len(CATEGORIES), len(COLOURS)
    targets = torch.where(torch.rand(n, k, generator=g) < 0.5, torch.randint(0, c, (n, k), generator=g), ABSENT)
    background = torch.randn(k + c, generator=torch.Generator().manual_seed(99))
    feats = background + torch.randn(n, 2, SPECIAL + GRID * GRID, k + c, generator=g) * 0.1
    if planted:
        cells = GRID // 2
        for room in range(n):
            present = (targets[room] != ABSENT).nonzero().flatten().tolist()
            for cat, slot in zip(present, torch.randperm(2 * cells * cells, generator=g).tolist(), strict=False):
                view, cell = divmod(slot, cells * cells)
                patch = SPECIAL + (cell // cells) * 2 * GRID + (cell % cells) * 2  # the cell's top-left patch
                feats[room, view, patch, cat] += 3.0
                feats[room, view, patch, k + targets[room, cat]] += 3.0
    return feats.half(), targets


@pytest.mark.parametrize("planted", [True, False])
def test_probe_reads_what_the_features_hold_and_nothing_else(planted):
    scores = fit_probe(_rooms(400, planted, 0), _rooms(100, planted, 1), (GRID, GRID), num_special_tokens=SPECIAL,
                       epochs=20, batch_size=16, seed=0)
    assert scores["train_rooms"] == 400 and scores["val_rooms"] == 100
    if planted:
        assert scores["colour_accuracy"] > 0.9 and scores["presence_accuracy"] > 0.9, scores
    else:  # noise: nothing beyond the answer frequencies
        assert scores["colour_accuracy"] < scores["colour_chance"] + 0.15, scores
        assert scores["presence_accuracy"] < scores["presence_chance"] + 0.1, scores


def test_chance_is_the_commonest_training_answer():
    train = torch.tensor([[0, 0, ABSENT], [0, 1, ABSENT]])
    val = torch.tensor([[0, 1, ABSENT], [ABSENT, ABSENT, ABSENT]])
    colour, presence = chance_scores(train, val)
    assert colour == pytest.approx(0.5)          # always colour 0: right for one of the 2 present
    assert presence == pytest.approx(2 / 6)      # 4 of 6 train pairs present -> always "present": 2 of 6 val


def test_probe_features_command_on_the_synthetic_rooms(synth_dir, tmp_path, monkeypatch, capsys):
    from vqkit.commands import main

    monkeypatch.chdir(REPO)
    out, cache = tmp_path / "probe.json", tmp_path / "cache"
    args = ["probe-features", "--config", "configs/first_demo.yaml", "--data", str(synth_dir), "--cache", str(cache),
            "--set", "data.image_size=56", "--set", "model.encoder.img_size=56", "--set", "data.num_views=2",
            "--epochs", "2", "--no-progress", "--out", str(out)]
    assert main(args) == 0
    assert "object colour" in capsys.readouterr().out
    scores = json.loads(out.read_text())
    rooms = {split: len({json.loads(line)["scene_id"] for line in open(synth_dir / f"{split}.jsonl")})
             for split in ("train", "val")}
    assert (scores["train_rooms"], scores["val_rooms"], scores["epochs"]) == (rooms["train"], rooms["val"], 2)
    for key in ("colour_accuracy", "presence_accuracy", "colour_chance", "presence_chance"):
        assert 0.0 <= scores[key] <= 1.0
    assert (cache / "index.json").is_file() and scores["layers"] == [-1]
    # a result file is never silently replaced
    before = out.read_text()
    assert main(args) == 2
    assert "--overwrite" in capsys.readouterr().err and out.read_text() == before
