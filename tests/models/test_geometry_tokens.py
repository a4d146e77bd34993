"""Geometry tokens: relative poses (torch vs numpy), scale normalisation, K normalisation, MLP."""

import numpy as np
import pytest
import torch

from vqkit.cameras import intrinsics, look_at
from vqkit.cameras import relative_poses as np_relative_poses
from vqkit.config import GeometryConfig
from vqkit.errors import DataError
from vqkit.models.geometry_tokens import GeometryEncoder, geometry_features, relative_poses


def scan(views=3, scale=1.0, seed=0):
    """World-to-camera poses of cameras around a room centre (z-up world), like a phone scan."""
    rng = np.random.default_rng(seed)
    Rs, ts = [], []
    for _ in range(views):
        eye = np.array([rng.uniform(-2, 2), rng.uniform(-2, 2), 1.5]) * scale
        R, t = look_at(eye, np.array([0.1, 0.2, 1.0]) * scale)
        Rs.append(R)
        ts.append(t)
    return np.stack(Rs), np.stack(ts)


def batch_of(R, t, W=56, H=42, bins=16):
    V = len(R)
    K = intrinsics(40.0, 41.0, W / 2, H / 2)
    return {
        "R": torch.tensor(R, dtype=torch.float32)[None],
        "t": torch.tensor(t, dtype=torch.float32)[None],
        "K": torch.tensor(np.stack([K] * V), dtype=torch.float32)[None],
        "depth_hist": torch.full((1, V, bins), 1.0 / bins),
        "image_hw": (H, W),
    }


def test_relative_poses_match_numpy():
    R, t = scan(4)
    R_rel, t_rel = relative_poses(torch.tensor(R), torch.tensor(t))
    R_np, t_np = np_relative_poses(R, t)
    np.testing.assert_allclose(R_rel.numpy(), R_np, atol=1e-10)
    np.testing.assert_allclose(t_rel.numpy(), t_np, atol=1e-10)
    np.testing.assert_allclose(R_rel[0].numpy(), np.eye(3), atol=1e-10)


def test_features_are_invariant_to_world_frame_and_scale():
    R, t = scan(3)
    base = geometry_features(batch_of(R, t))
    # Move the whole scan: a rigid world transform (x_world' = A x_world + b) and a 3x scale.
    A, _ = look_at(np.array([1.0, -2.0, 0.5]), np.array([0.0, 1.0, 0.7]))
    b = np.array([3.0, -1.0, 2.0])
    # x_cam = R x + t = R A^T (x' - b) + t  ->  R' = R A^T, t' = t - R A^T b ; scaling world by 3 scales t' by 3
    R2 = R @ A.T
    t2 = (t - np.einsum("vij,j->vi", R2, b)) * 3.0
    moved = geometry_features(batch_of(R2, t2))
    torch.testing.assert_close(base, moved, rtol=1e-4, atol=1e-4)
    # the layout: 9 rotation, 3 translation, 4 intrinsics, bins histogram
    assert base.shape == (1, 3, 16 + 16)
    torch.testing.assert_close(base[0, 0, :9], torch.eye(3).flatten())
    torch.testing.assert_close(base[0, 0, 9:12], torch.zeros(3))
    # mean distance of the other views to view 0 is 1 after normalisation
    assert base[0, 1:, 9:12].norm(dim=-1).mean().item() == pytest.approx(1.0, abs=1e-5)
    torch.testing.assert_close(base[0, 0, 12:16], torch.tensor([40 / 56, 41 / 42, 0.5, 0.5]))


def test_single_view_and_coincident_cameras_do_not_divide_by_zero():
    R, t = scan(1)
    f = geometry_features(batch_of(R, t))
    assert torch.isfinite(f).all()
    R3 = np.stack([R[0]] * 3)
    t3 = np.stack([t[0]] * 3)
    assert torch.isfinite(geometry_features(batch_of(R3, t3))).all()


def test_padding_views_do_not_change_valid_features():
    R, t = scan(3)
    full = batch_of(R, t)
    mask = torch.tensor([[True, True, False]])
    a = geometry_features(full, mask)
    b = geometry_features(batch_of(R[:2], t[:2]))
    torch.testing.assert_close(a[:, :2], b, rtol=1e-5, atol=1e-6)
    assert (a[:, 2] == 0).all()


def test_encoder_shapes_and_bin_check():
    torch.manual_seed(0)
    enc = GeometryEncoder.from_config(GeometryConfig(hidden=32), out_dim=24)
    R, t = scan(2)
    out = enc(batch_of(R, t))
    assert out.shape == (1, 2, 24) and torch.isfinite(out).all()
    out.sum().backward()
    assert all(p.grad is not None for p in enc.parameters())
    with pytest.raises(DataError, match="depth_bins"):
        enc(batch_of(R, t, bins=8))
