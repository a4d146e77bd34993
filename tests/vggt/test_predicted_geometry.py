"""vqkit.vggt.predicted_geometry: the heads' predictions turned into a record's geometry: mapping K back
through vqkit's resize / crop / pad, the scale, and refusing bad predictions (the pose encoding itself:
test_pose_encoding.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from vqkit.cameras import (
    crop_intrinsics,
    depth_histogram,
    intrinsics_from_fov,
    look_at,
    relative_poses,
)
from vqkit.data.images import load_views, plan_resize
from vqkit.data.schema import load_records
from vqkit.errors import DataError
from vqkit.vggt import (
    extri_intri_to_pose_encoding,
    geometry_from_predictions,
    median_depth_from_histograms,
)
from vqkit.vggt.predicted_geometry import view_masks


def write_image(path, w, h):
    Image.fromarray(np.random.default_rng(w * h).integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)


def perfect_prediction(tmp_path, mode, sizes, normalise=0.4, seed=0):
    """Files of the given (w, h) sizes, loaded as vqkit loads a record's views, and what a perfect VGGT
    would predict for them: the true cameras (principal points at the centre) encoded for the model's
    input, and depth in units of ``1 / normalise`` metres. Returns (paths, plans, shifts, pose_enc,
    predicted depth, true metric depth at the input, true R, t, K of the files)."""
    paths = []
    for i, (w, h) in enumerate(sizes):
        paths.append(str(tmp_path / f"view{i}.png"))
        write_image(paths[-1], w, h)
    views, plans, shifts = load_views(paths, 42, mode)
    H, W = views[0].shape[-2:]
    rng = np.random.default_rng(seed)
    Ks = [intrinsics_from_fov(w, h, rng.uniform(50, 80)) for w, h in sizes]
    Rs, ts = zip(*[look_at(rng.normal(size=3) * 2, rng.normal(size=3) * 0.3 + [0, 0, 1]) for _ in sizes], strict=True)
    K_input = np.stack([crop_intrinsics(plan.intrinsics(K), -dx, -dy)
                        for K, plan, (dx, dy) in zip(Ks, plans, shifts, strict=True)])
    np.testing.assert_allclose(K_input[:, :2, 2], [[W / 2, H / 2]] * len(sizes))  # centred, as VGGT assumes
    extrinsics = np.concatenate([np.stack(Rs), np.stack(ts)[..., None] * normalise], axis=-1)
    pose_enc = extri_intri_to_pose_encoding(torch.from_numpy(extrinsics), torch.from_numpy(K_input), (H, W))
    metric = rng.uniform(0.5, 6.0, size=(len(sizes), H, W)) * view_masks(plans, shifts, (H, W))
    predicted = np.where(metric > 0, metric * normalise, np.nan)  # garbage (NaN) on the padding
    return plans, shifts, pose_enc.numpy(), predicted[..., None], metric, np.stack(Rs), np.stack(ts), np.stack(Ks)


@pytest.mark.parametrize("mode,sizes", [("crop", [(84, 56), (84, 56), (70, 70)]),
                                        ("pad", [(84, 56), (56, 98)])])
def test_geometry_recovers_true_cameras_and_metric_depth(tmp_path, mode, sizes):
    plans, shifts, pose_enc, depth, metric, R, t, K = perfect_prediction(tmp_path, mode, sizes)
    geometry = geometry_from_predictions(pose_enc, depth, plans, shifts, reference_depth=metric)
    R_rel, t_rel = relative_poses(R, t)
    np.testing.assert_allclose(geometry.R, R_rel, atol=1e-9)
    np.testing.assert_allclose(geometry.R[0], np.eye(3), atol=1e-12)
    np.testing.assert_allclose(geometry.t, t_rel, atol=1e-9)  # metric again: scale = 1 / 0.4
    assert geometry.scale == pytest.approx(2.5) and geometry.scale_source == "depth"
    np.testing.assert_allclose(geometry.K, K, atol=1e-9)  # the K of each file as stored
    masks = view_masks(plans, shifts, metric.shape[1:])
    expected = np.stack([depth_histogram(metric[v][masks[v]]) for v in range(len(sizes))])
    np.testing.assert_allclose(geometry.depth_hist, expected, atol=1e-6)
    assert geometry.depth_hist.dtype == np.float32


def test_geometry_scale_prior_and_units(tmp_path):
    plans, shifts, pose_enc, depth, metric, R, t, _K = perfect_prediction(tmp_path, "crop", [(84, 56), (84, 56)])
    prior = geometry_from_predictions(pose_enc, depth, plans, shifts, median_depth_m=3.0)
    assert prior.scale_source == "prior" and prior.median_depth == pytest.approx(3.0)
    _, t_rel = relative_poses(R, t)
    np.testing.assert_allclose(prior.t, t_rel * 0.4 * prior.scale, atol=1e-9)  # t and depth share the scale
    own = geometry_from_predictions(pose_enc, depth, plans, shifts, median_depth_m=None)
    assert own.scale == 1.0 and own.scale_source == "none"
    np.testing.assert_allclose(own.t, t_rel * 0.4, atol=1e-9)
    np.testing.assert_allclose(own.R, prior.R)
    np.testing.assert_allclose(own.K, prior.K)
    # reference depth without a valid pixel falls back to the prior
    fallback = geometry_from_predictions(pose_enc, depth, plans, shifts, reference_depth=np.zeros_like(metric))
    assert fallback.scale_source == "prior"
    # torch tensors from the heads work as they come ([S, 9] and [S, H, W, 1])
    from_torch = geometry_from_predictions(torch.from_numpy(pose_enc).float(), torch.from_numpy(depth).float(),
                                           plans, shifts, median_depth_m=3.0)
    np.testing.assert_allclose(from_torch.R, prior.R, atol=1e-6)


def test_geometry_is_a_valid_record_field(tmp_path):
    plans, shifts, pose_enc, depth, _metric, *_ = perfect_prediction(tmp_path, "pad", [(84, 56), (56, 98)])
    geometry = geometry_from_predictions(pose_enc, depth, plans, shifts)
    record = {"images": ["view0.png", "view1.png"], "question": "q?", "answer": "a",
              "geom_token": geometry.as_geom_token()}
    (tmp_path / "records.jsonl").write_text(json.dumps(record) + "\n")
    loaded = load_records(str(tmp_path / "records.jsonl"), depth_bins=16)[0].geometry
    np.testing.assert_allclose(loaded.R, geometry.R, atol=1e-6)
    np.testing.assert_allclose(loaded.K, geometry.K, rtol=1e-6)
    np.testing.assert_allclose(loaded.depth_hist, geometry.depth_hist)


def test_non_finite_or_degenerate_predictions_are_refused(tmp_path):
    plans, shifts, pose_enc, depth, *_ = perfect_prediction(tmp_path, "crop", [(84, 56), (84, 56)])
    bad = pose_enc.copy()
    bad[1, 4] = np.nan
    with pytest.raises(DataError, match="room7: the camera head's prediction for view 1 is not finite"):
        geometry_from_predictions(bad, depth, plans, shifts, where="room7")
    bad = depth.copy()
    bad[0, 3, 5] = np.inf
    with pytest.raises(DataError, match="predicted depth of view 0 is not finite and positive at 1 pixel"):
        geometry_from_predictions(pose_enc, bad, plans, shifts)
    bad = pose_enc.copy()
    bad[0, 7] = 0.0  # fov 0: a relu'd field of view, an infinite focal length
    with pytest.raises(DataError, match="field of view of view 0"):
        geometry_from_predictions(bad, depth, plans, shifts)
    bad = pose_enc.copy()
    bad[1, 3:7] = 0.0
    with pytest.raises(DataError, match="rotation of view 1 is degenerate"):
        geometry_from_predictions(bad, depth, plans, shifts)
    with pytest.raises(ValueError, match="resize plans"):
        geometry_from_predictions(pose_enc, depth, plans[:1], shifts)


def test_view_masks_cover_only_the_image():
    pad = plan_resize(84, 56, 42, "pad")  # 42 x 28 inside a 42 x 42 square: 7 white rows above and below
    masks = view_masks([pad], None, (42, 42))
    assert masks[0, 7:35].all() and not masks[0, :7].any() and not masks[0, 35:].any()
    crop = plan_resize(84, 56, 42, "crop")  # 42 x 28, shifted down by 7 rows in a 42 x 42 input
    masks = view_masks([crop], np.array([[0, 7]]), (42, 42))
    assert masks.sum() == 42 * 28 and masks[0, 7:35].all()
    with pytest.raises(ValueError, match="does not fit"):
        view_masks([crop], np.array([[0, 20]]), (42, 42))


def test_median_depth_from_histograms():
    depths = np.random.default_rng(0).gamma(4.0, 0.7, size=(6, 5000))
    hists = np.stack([depth_histogram(d, 64, 10.0) for d in depths] + [np.zeros(64)])  # an empty view is skipped
    assert median_depth_from_histograms(hists) == pytest.approx(np.median(depths), abs=10.0 / 64)
    with pytest.raises(DataError, match="no view"):
        median_depth_from_histograms(np.zeros((2, 16)))
