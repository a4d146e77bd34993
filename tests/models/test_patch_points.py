"""3D points of the patch merger's patches (LLaVA-3D's 3D patches): where the depth maps put them, in the
frame boxes are written in, and the merger's embedding of them."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import tiny_train_config
from PIL import Image

from vqkit import cameras as geo
from vqkit.models.patch_merger import PatchMerger
from vqkit.models.patch_points import patch_points, to_box_frame
from vqkit.roomplan import RoomObject
from vqkit.roomplan.grounding import first_view_frame


def _scene(synth_dir, scene_id="scene00000"):
    folder = synth_dir / "scenes" / scene_id
    cams = json.loads((folder / "cameras.json").read_text())
    layout = json.loads((folder / "layout.json").read_text())
    depths = torch.stack([torch.from_numpy(geo.depth_png_to_metres(np.asarray(Image.open(synth_dir / c["depth"]))))
                          for c in cams])[None]
    R = torch.tensor([c["R"] for c in cams], dtype=torch.float32)[None]
    t = torch.tensor([c["t"] for c in cams], dtype=torch.float32)[None]
    K = torch.tensor([c["K"] for c in cams], dtype=torch.float32)[None]
    return layout, depths, R, t, K


def test_points_lie_in_the_room_and_in_front_of_the_first_view(synth_dir):
    layout, depths, R, t, K = _scene(synth_dir)
    grid = (depths.shape[-2] // 14, depths.shape[-1] // 14)
    points, valid = patch_points(depths, R, t, K, grid, 14, "scene")
    assert points.shape == (1, 2, grid[0] * grid[1], 3) and bool(valid.all())
    lo, hi = np.array(layout["room"]["bbox"][:3]) - 0.05, np.array(layout["room"]["bbox"][3:]) + 0.05
    p = points[valid].numpy()
    assert np.all((p >= lo) & (p <= hi))
    first, _ = patch_points(depths, R, t, K, grid, 14, "first_view")
    assert bool((first[0, 0, :, 1] > 0).all())  # what the first view shows is ahead of it (+y)
    assert torch.allclose(first[..., 2], points[..., 2])  # heights unchanged


def test_frame_agrees_with_the_grounding_boxes_frame():
    rng = np.random.default_rng(0)
    for _ in range(5):
        R, t = geo.look_at(rng.uniform(0, 4, 3), rng.uniform(0, 4, 3))
        pts = rng.uniform(-3, 6, (7, 3))
        ours = to_box_frame(torch.tensor(pts, dtype=torch.float64)[None], torch.tensor(R)[None], torch.tensor(t)[None],
                            "first_view")[0].numpy()
        frame = first_view_frame(R, t)
        theirs = [frame.to_frame(RoomObject("o", "bed", p, (1, 1, 1), 0.0)).center for p in pts]
        assert np.allclose(ours, theirs, atol=1e-9)


def test_invalid_depth_gives_no_point_and_the_merger_adds_nothing_there():
    depths = torch.zeros(1, 1, 28, 28)
    depths[0, 0, :14, :14] = 2.0  # only the first patch sees something
    R, t = torch.eye(3)[None, None], torch.zeros(1, 1, 3)
    K = torch.tensor([[20.0, 0, 14], [0, 20.0, 14], [0, 0, 1]])[None, None]
    points, valid = patch_points(depths, R, t, K, (2, 2), 14)
    assert valid.tolist() == [[[True, False, False, False]]]
    assert points[0, 0, 0, 2] == pytest.approx(2.0) and points[0, 0, 0, 0] < 0  # left of centre
    merger = PatchMerger(8, 16, merge_size=1, point_embed=True, num_special_tokens=0)
    tokens = torch.randn(1, 1, 4, 8)
    with torch.no_grad():
        plain = merger(tokens, None, (2, 2))
        placed = merger(tokens, None, (2, 2), (points, valid))
    assert not torch.allclose(placed[0, 0, 0], plain[0, 0, 0])
    assert torch.equal(placed[0, 0, 1:], plain[0, 0, 1:])


def test_a_view_without_intrinsics_gets_no_points():
    """Geometry dropout and padding views leave K = 0: those views are not placed (and nothing raises)."""
    depths = torch.full((1, 2, 28, 28), 2.0)
    R, t = torch.eye(3).repeat(1, 2, 1, 1), torch.zeros(1, 2, 3)
    K = torch.tensor([[20.0, 0, 14], [0, 20.0, 14], [0, 0, 1]]).repeat(1, 2, 1, 1)
    K[0, 1] = 0.0
    points, valid = patch_points(depths, R, t, K, (2, 2), 14)
    assert valid[0, 0].all() and not valid[0, 1].any() and torch.isfinite(points).all()


def test_a_model_with_point_embeddings_trains_on_grounding_records(synth_dir, tmp_path):
    from vqkit.config import config_from_dict
    from vqkit.train import run

    cfg = tiny_train_config(synth_dir, tmp_path / "run", max_steps=2, save_every_steps=0)
    cfg["model"]["projector"] = {"type": "patch_merger", "point_embed": True}
    cfg["data"].update(train=[{"path": str(synth_dir / "grounding_train.jsonl")}],
                       val=[{"path": str(synth_dir / "grounding_val.jsonl")}], load_depth=True,
                       box_frame="first_view", view_dropout=0.0, geometry_dropout=0.5)  # some views unplaced
    result = run(config_from_dict(cfg), progress=False)
    assert result.steps == 2
    from vqkit.data.dataset import build_dataloader
    from vqkit.models.builder import load_model

    model = load_model(result.final_dir)
    batch = next(iter(build_dataloader(model.config, "val", model.tokenizer, batch_size=2, shuffle=False)))
    from vqkit.models.patch_points import batch_patch_points

    points, valid = batch_patch_points(batch, [0, 1], model.patch_grid(batch), model.encoder.patch_size,
                                       model.config.data.box_frame)
    assert bool(valid.any()) and torch.isfinite(points[valid]).all()  # the cells are placed in 3D
    with pytest.raises(Exception, match="data.load_depth: true"):
        cfg["data"]["load_depth"] = False
        config_from_dict(cfg)

