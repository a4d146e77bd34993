"""VGGT's training losses against values computed by hand, and the scene normalisation."""

from __future__ import annotations

import math

import pytest
import torch

from vqkit.vggt.losses import (
    camera_loss,
    depth_loss,
    gradient_loss,
    gt_pose_encoding,
    normalize_scene,
    point_loss,
    regression_loss,
)
from vqkit.vggt.pose_encoding import pose_encoding_to_extri_intri


def _two_view_scene():
    """Two 1 x 2 px views (fx = fy = 1, principal point (1, 0.5)): pixel centres look along
    x = -0.5 and x = +0.5 at z = 1. View 0 sees (-1, 0, 2) at its left pixel, view 1 (1 m to the
    side of view 0) sees a point 4 m away at its right pixel; the other pixels are invalid."""
    K = torch.tensor([[1.0, 0, 1], [0, 1, 0.5], [0, 0, 1]]).expand(1, 2, 3, 3)
    R = torch.eye(3).expand(1, 2, 3, 3)
    t = torch.tensor([[[0.0, 0, 1], [1.0, 0, 1]]])  # world-to-camera; relative: t1 - t0 = (1, 0, 0)
    extrinsics = torch.cat([R, t[..., None]], dim=-1)
    depths = torch.tensor([[[[2.0, 0.0]], [[0.0, 4.0]]]])
    return extrinsics, K, depths


def test_normalize_scene_is_relative_to_view_0_at_unit_mean_point_distance():
    extrinsics, K, depths = _two_view_scene()
    scene = normalize_scene(extrinsics, K, depths)
    # view 0's point (-1, 0, 2); view 1's point (2, 0, 4) in its frame = (1, 0, 4) in view 0's
    scale = (math.sqrt(5) + math.sqrt(17)) / 2
    assert scene.scale.item() == pytest.approx(scale)
    assert torch.allclose(scene.extrinsics[0, 0], torch.cat([torch.eye(3), torch.zeros(3, 1)], dim=1))
    assert torch.allclose(scene.extrinsics[0, 1, :, 3], torch.tensor([1.0 / scale, 0, 0]))
    assert torch.allclose(scene.depths[0, :, 0], torch.tensor([[2 / scale, 0], [0, 4 / scale]]))
    assert torch.allclose(scene.world_points[0, 1, 0, 1], torch.tensor([1.0, 0, 4]) / scale)
    assert torch.allclose(scene.world_points[0, 0, 0, 0], torch.tensor([-1.0, 0, 2]) / scale)
    assert scene.valid.tolist() == [[[[True, False]], [[False, True]]]]
    assert scene.sample_valid.tolist() == [True]


def test_normalize_scene_ignores_padding_views_and_samples_without_depth():
    extrinsics, K, depths = _two_view_scene()
    only_view_0 = normalize_scene(extrinsics, K, depths, view_mask=torch.tensor([[True, False]]))
    assert only_view_0.scale.item() == pytest.approx(math.sqrt(5))
    empty = normalize_scene(extrinsics, K, torch.zeros_like(depths))
    assert empty.scale.item() == 1.0 and empty.sample_valid.tolist() == [False]


def test_gt_pose_encoding_round_trips_to_the_normalised_cameras():
    extrinsics, K, depths = _two_view_scene()
    scene = normalize_scene(extrinsics, K, depths)
    encoding = gt_pose_encoding(scene, K, (1, 2))
    back, intrinsics = pose_encoding_to_extri_intri(encoding, (1, 2))
    assert torch.allclose(back, scene.extrinsics, atol=1e-6)
    assert torch.allclose(intrinsics[..., 0, 0], torch.ones(1, 2))


def test_camera_loss_by_hand():
    gt = torch.zeros(1, 2, 9)
    first = torch.zeros(1, 2, 9)
    first[..., :3] = 1.0       # |dT| = 1 on 6 elements
    first[..., 3:7] = 0.5      # |dq| = 0.5
    first[..., 7:] = 2.0       # |dfov| = 2
    last = torch.zeros(1, 2, 9)
    last[0, 0, 0] = 300.0      # one outlier, clamped at 100: mean over 6 elements = 100 / 6
    out = camera_loss([first, last], gt, gamma=0.5, weight_trans=1.0, weight_rot=1.0, weight_focal=0.5)
    # iteration weights 0.5 (first) and 1 (last), averaged over the 2 iterations
    assert out["loss_T"].item() == pytest.approx((0.5 * 1.0 + 1.0 * 100 / 6) / 2)
    assert out["loss_R"].item() == pytest.approx(0.5 * 0.5 / 2)
    assert out["loss_FL"].item() == pytest.approx(0.5 * 2.0 / 2)
    assert out["loss_camera"].item() == pytest.approx(out["loss_T"].item() + out["loss_R"].item()
                                                      + 0.5 * out["loss_FL"].item())


def test_camera_loss_masks_views_and_offers_huber():
    gt = torch.zeros(1, 2, 9)
    pred = torch.zeros(1, 2, 9)
    pred[0, 1] = 50.0  # the masked-out view would dominate
    masked = camera_loss([pred], gt, torch.tensor([[True, False]]))
    assert masked["loss_camera"].item() == 0.0
    pred = torch.full((1, 1, 9), 3.0)
    huber = camera_loss([pred], torch.zeros(1, 1, 9), loss_type="huber", huber_delta=1.0)
    assert huber["loss_R"].item() == pytest.approx(3.0 - 0.5)  # delta * (|x| - delta / 2)
    nothing = camera_loss([pred.requires_grad_()], torch.zeros(1, 1, 9), torch.tensor([[False]]))
    nothing["loss_camera"].backward()
    assert nothing["loss_camera"].item() == 0.0 and pred.grad is not None
    with pytest.raises(ValueError, match="loss_type"):
        camera_loss([pred], gt[:, :1], loss_type="l2")


def test_gradient_loss_by_hand():
    pred = torch.tensor([1.0, 2.0, 4.0]).view(1, 1, 3, 1)
    gt = torch.ones(1, 1, 3, 1)
    mask = torch.ones(1, 1, 3, dtype=torch.bool)
    # residuals 0, 1, 3: scale 1 -> (|1-0| + |3-1|) / 3 px = 1; scale 2 (pixels 0, 2) -> |3-0| / 2 = 1.5;
    # scales 4 and 8 keep one pixel -> 0; averaged over 4 scales
    assert gradient_loss(pred, gt, mask).item() == pytest.approx((1.0 + 1.5) / 4)
    mask[0, 0, 1] = False  # no valid neighbours at scale 1; scale 2 unchanged
    assert gradient_loss(pred, gt, mask).item() == pytest.approx(1.5 / 4)


def test_depth_loss_by_hand():
    gt = torch.tensor([2.0, 1.0, 3.0, 5.0]).view(1, 1, 1, 4)
    pred = torch.tensor([1.0, 1.0, 4.0, 0.0]).view(1, 1, 1, 4, 1)
    conf = torch.tensor([2.0, 1.0, math.e, 7.0]).view(1, 1, 1, 4)
    valid = torch.tensor([True, True, True, False]).view(1, 1, 1, 4)
    out = depth_loss(pred, conf, gt, valid, alpha=0.2, gradient=False)
    # |err| = 1, 0, 1 on the valid pixels
    assert out["loss_reg_depth"].item() == pytest.approx(2 / 3)
    conf_terms = [1 * 2 - 0.2 * math.log(2), 0 - 0.2 * math.log(1), 1 * math.e - 0.2 * 1.0]
    assert out["loss_conf_depth"].item() == pytest.approx(sum(conf_terms) / 3)
    assert out["loss_grad_depth"].item() == 0.0
    with_grad = depth_loss(pred[..., 0], conf, gt, valid, gradient=True)
    # residuals -1, 0, 1 (pixel 3 masked): scale 1 -> (1 + 1) / 3; scale 2 -> pixels 0, 2: |1 - -1| / 2 = 1
    assert with_grad["loss_grad_depth"].item() == pytest.approx((2 / 3 + 1.0) / 4)


def test_point_loss_uses_the_euclidean_error():
    gt = torch.zeros(1, 1, 1, 1, 3)
    pred = torch.tensor([3.0, 4.0, 0.0]).view(1, 1, 1, 1, 3)
    out = point_loss(pred, torch.ones(1, 1, 1, 1), gt, torch.ones(1, 1, 1, 1, dtype=torch.bool), gradient=False)
    assert out["loss_reg_point"].item() == pytest.approx(5.0)
    assert out["loss_conf_point"].item() == pytest.approx(5.0)  # conf 1: log term 0


def test_valid_range_drops_the_worst_terms_and_empty_masks_stay_in_the_graph():
    n = 2000
    err = torch.linspace(0.5, 1.5, n)
    err[-10:] = 1000.0  # outliers above the 98% quantile
    pred = err.view(1, 1, 1, n, 1).clone().requires_grad_()
    gt = torch.zeros(1, 1, 1, n)
    conf = torch.ones(1, 1, 1, n)
    valid = torch.ones(1, 1, 1, n, dtype=torch.bool)
    assert depth_loss(pred, conf, gt, valid, gradient=False, valid_range=0.98)["loss_reg_depth"].item() < 1.0
    assert depth_loss(pred, conf, gt, valid, gradient=False)["loss_reg_depth"].item() > 5
    nothing = regression_loss(pred, gt[..., None], torch.zeros_like(valid), conf)
    nothing["conf"].backward()
    assert nothing["conf"].item() == 0.0 and pred.grad is not None
