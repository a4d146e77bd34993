"""vqkit.vggt.pose_encoding: VGGT's camera pose encoding (absT_quaR_FoV): quaternions against scipy,
round trips both ways, vqkit.cameras' conventions, and parity with the official package when it is
installed."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from vqkit.cameras import intrinsics_from_fov, look_at, project
from vqkit.vggt import extri_intri_to_pose_encoding, pose_encoding_to_extri_intri
from vqkit.vggt.pose_encoding import mat_to_quat, quat_to_mat


def random_cameras(B=2, S=5, H=28, W=42, seed=0):
    """World-to-camera extrinsics [B, S, 3, 4] and centred intrinsics [B, S, 3, 3] (float64)."""
    rng = np.random.default_rng(seed)
    R = Rotation.random(B * S, random_state=seed).as_matrix().reshape(B, S, 3, 3)
    t = rng.normal(size=(B, S, 3))
    extrinsics = torch.from_numpy(np.concatenate([R, t[..., None]], axis=-1))
    f = rng.uniform(20, 60, size=(B, S, 2))
    K = np.zeros((B, S, 3, 3))
    K[..., 0, 0], K[..., 1, 1], K[..., 0, 2], K[..., 1, 2], K[..., 2, 2] = f[..., 0], f[..., 1], W / 2, H / 2, 1
    return extrinsics, torch.from_numpy(K)


def test_quaternions_match_scipy_and_round_trip():
    rotations = Rotation.random(500, random_state=1)
    rotations = Rotation.concatenate([rotations, Rotation.from_rotvec([[np.pi, 0, 0], [0, np.pi, 0],
                                                                       [0, 0, np.pi], [0, 0, 0]])])
    matrices = torch.from_numpy(rotations.as_matrix())
    quat = mat_to_quat(matrices)
    expected = torch.from_numpy(rotations.as_quat())  # x, y, z, w
    expected = torch.where(expected[:, 3:] < 0, -expected, expected)
    close_or_opposite = torch.minimum((quat - expected).abs().amax(-1), (quat + expected).abs().amax(-1))
    assert close_or_opposite.max() < 1e-12 and (quat[:, 3] >= 0).all()
    torch.testing.assert_close(quat_to_mat(quat), matrices, atol=1e-12, rtol=0)
    # the head's raw quaternion need not be unit: quat_to_mat normalises it
    torch.testing.assert_close(quat_to_mat(3.7 * quat), matrices, atol=1e-12, rtol=0)


def test_pose_encoding_round_trips_both_ways():
    extrinsics, intrinsics = random_cameras()
    encoding = extri_intri_to_pose_encoding(extrinsics, intrinsics, (28, 42))
    assert encoding.shape == (2, 5, 9) and encoding.dtype == torch.float64
    back_e, back_k = pose_encoding_to_extri_intri(encoding, (28, 42))
    torch.testing.assert_close(back_e, extrinsics, atol=1e-12, rtol=0)
    torch.testing.assert_close(back_k, intrinsics, atol=1e-10, rtol=0)
    # encoding -> cameras -> encoding (a raw, non-unit quaternion comes back unit, w >= 0)
    raw = torch.randn(3, 4, 9, dtype=torch.float64)
    raw[..., 7:] = torch.rand(3, 4, 2, dtype=torch.float64) * 2 + 0.3  # fields of view in (0.3, 2.3)
    again = extri_intri_to_pose_encoding(*pose_encoding_to_extri_intri(raw, (56, 28)), (56, 28))
    unit = raw[..., 3:7] / raw[..., 3:7].norm(dim=-1, keepdim=True)
    unit = torch.where(unit[..., 3:] < 0, -unit, unit)
    torch.testing.assert_close(again[..., 3:7], unit, atol=1e-12, rtol=0)
    torch.testing.assert_close(again[..., [0, 1, 2, 7, 8]], raw[..., [0, 1, 2, 7, 8]], atol=1e-12, rtol=0)
    extrinsics_only, none = pose_encoding_to_extri_intri(raw, build_intrinsics=False)
    assert none is None and extrinsics_only.shape == (3, 4, 3, 4)


def test_pose_encoding_follows_the_vqkit_camera_conventions():
    """look_at's world-to-camera (R, t) and intrinsics_from_fov's K, through the encoding, project world
    points to the same pixels as vqkit.cameras.project; the horizontal fov is the encoded fov_w."""
    W, H = 64, 48
    K = intrinsics_from_fov(W, H, 70.0)
    R, t = look_at([1.0, -2.0, 1.5], [0.2, 0.5, 1.0])
    extrinsics = torch.from_numpy(np.concatenate([R, t[:, None]], axis=1))[None, None]
    encoding = extri_intri_to_pose_encoding(extrinsics, torch.from_numpy(K)[None, None], (H, W))
    assert encoding[0, 0, 8].item() == pytest.approx(np.deg2rad(70.0))
    E, K2 = (x[0, 0].numpy() for x in pose_encoding_to_extri_intri(encoding, (H, W)))
    points = np.random.default_rng(0).uniform(-1, 1, size=(20, 3)) + [0.2, 0.5, 1.0]
    pixels, depth = project(points, R, t, K)
    camera = points @ E[:, :3].T + E[:, 3]
    uv = camera @ K2.T
    np.testing.assert_allclose(uv[:, :2] / uv[:, 2:], pixels, atol=1e-9)
    np.testing.assert_allclose(camera[:, 2], depth, atol=1e-12)


def test_pose_encoding_rejects_unknown_types():
    with pytest.raises(ValueError, match="unsupported pose encoding"):
        pose_encoding_to_extri_intri(torch.zeros(1, 1, 9), (14, 14), pose_encoding_type="relT_quaR_FoV")


def test_pose_encoding_parity_with_official():
    official = pytest.importorskip("vggt.utils.pose_enc")
    extrinsics, intrinsics = random_cameras(seed=4)
    ours = extri_intri_to_pose_encoding(extrinsics.float(), intrinsics.float(), (28, 42))
    theirs = official.extri_intri_to_pose_encoding(extrinsics.float(), intrinsics.float(), (28, 42))
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0)
    for a, b in zip(pose_encoding_to_extri_intri(theirs, (28, 42)),
                    official.pose_encoding_to_extri_intri(theirs, (28, 42)), strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-6)
