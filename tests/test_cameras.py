"""vqkit.cameras: pose conventions, K under resize/crop, back-projection, depth histograms."""

from __future__ import annotations

import numpy as np
import pytest

from vqkit import cameras as geo


def _random_pose(rng):
    R = geo.axis_angle_to_matrix(rng.normal(size=3))
    return R, rng.normal(size=3)


def test_invert_pose_round_trip_and_batched():
    rng = np.random.default_rng(0)
    R, t = _random_pose(rng)
    Ri, ti = geo.invert_pose(R, t)
    R2, t2 = geo.invert_pose(Ri, ti)
    np.testing.assert_allclose(R2, R, atol=1e-12)
    np.testing.assert_allclose(t2, t, atol=1e-12)
    # x_cam = R x + t and x = Ri x_cam + ti are inverse maps.
    x = rng.normal(size=3)
    np.testing.assert_allclose(Ri @ (R @ x + t) + ti, x, atol=1e-12)
    Rs = np.stack([R, Ri])
    ts = np.stack([t, ti])
    Rb, tb = geo.invert_pose(Rs, ts)
    np.testing.assert_allclose(Rb[0], Ri, atol=1e-12)
    np.testing.assert_allclose(tb[1], t, atol=1e-12)
    np.testing.assert_allclose(geo.split_pose(geo.pose_matrix(R, t))[1], t)


def test_is_rotation_rejects_reflections_and_nan():
    R, _ = _random_pose(np.random.default_rng(1))
    assert geo.is_rotation(R)
    assert not geo.is_rotation(-R)  # det -1
    assert not geo.is_rotation(R * 1.1)
    bad = R.copy()
    bad[0, 0] = np.nan
    assert not geo.is_rotation(bad)


def test_are_rotations_checks_a_stack_like_is_rotation():
    R, _ = _random_pose(np.random.default_rng(2))
    nan = R.copy()
    nan[1, 2] = np.inf
    stack = np.stack([R, -R, R * 1.1, nan, np.eye(3), R @ R])
    expected = [geo.is_rotation(m) for m in stack]
    assert expected == [True, False, False, False, True, True]
    assert geo.are_rotations(stack).tolist() == expected
    assert geo.are_rotations(stack.reshape(2, 3, 3, 3)).shape == (2, 3)


def test_look_at_opencv_axes():
    eye, target = np.array([1.0, 2.0, 1.5]), np.array([4.0, 2.0, 1.5])
    R, t = geo.look_at(eye, target)
    assert geo.is_rotation(R)
    np.testing.assert_allclose(R @ target + t, [0, 0, 3.0], atol=1e-12)  # straight ahead on +z
    # A point above the target is "up" in the image: negative camera y (y points down).
    assert (R @ (target + [0, 0, 1]) + t)[1] < 0
    # World +y is on the left when looking along +x (z-up): negative camera x.
    assert (R @ (target + [0, 1, 0]) + t)[0] < 0
    np.testing.assert_allclose(geo.camera_centre(R, t), eye, atol=1e-12)
    with pytest.raises(ValueError):
        geo.look_at(eye, eye + [0, 0, 1])


def test_intrinsics_resize_and_crop_keep_projection_consistent():
    K = geo.intrinsics_from_fov(640, 480, 60.0)
    assert K[0, 2] == 320 and K[1, 2] == 240
    np.testing.assert_allclose(2 * np.arctan(320 / K[0, 0]), np.deg2rad(60.0))
    p_cam = np.array([0.3, -0.2, 2.0])
    uv = (K @ p_cam)[:2] / p_cam[2]
    K2 = geo.resize_intrinsics(K, (640, 480), (320, 240))
    np.testing.assert_allclose((K2 @ p_cam)[:2] / p_cam[2], uv / 2)
    K3 = geo.crop_intrinsics(K, 100, 50)
    np.testing.assert_allclose((K3 @ p_cam)[:2] / p_cam[2], uv - [100, 50])
    K4 = geo.scale_intrinsics(K, 0.5, 0.25)
    np.testing.assert_allclose(K4[:2, :2].diagonal(), [K[0, 0] * 0.5, K[1, 1] * 0.25])
    np.testing.assert_allclose(K4[2], [0, 0, 1])


def test_project_backproject_round_trip():
    rng = np.random.default_rng(2)
    R, t = geo.look_at([0, 0, 1.5], [3, 1, 1.0])
    K = geo.intrinsics_from_fov(32, 24, 70.0)
    # Depth map of a plane: build from known points, then back-project and re-project.
    h, w = 24, 32
    depth = rng.uniform(1.0, 5.0, size=(h, w))
    depth[0, 0] = 0.0  # invalid pixels are skipped
    depth[1, 1] = np.nan
    pts = geo.backproject_depth(depth, K, R, t)
    assert pts.shape == (h * w - 2, 3)
    pix, z = geo.project(pts, R, t, K)
    valid = np.isfinite(depth) & (depth > 0)
    v, u = np.nonzero(valid)
    np.testing.assert_allclose(pix, np.stack([u + 0.5, v + 0.5], 1), atol=1e-9)  # pixel centres
    np.testing.assert_allclose(z, depth[valid], atol=1e-9)  # depth = camera z, not ray length
    pts2 = geo.backproject_depth(depth, K, R, t, stride=2)
    assert len(pts2) == np.sum(valid[::2, ::2])


def test_depth_histogram_and_png_conversions():
    d = np.array([[0.0, 0.5, 1.0], [9.99, 12.0, np.inf]])
    h = geo.depth_histogram(d, bins=10, max_depth=10.0)
    assert h.dtype == np.float32 and h.shape == (10,)
    np.testing.assert_allclose(h.sum(), 1.0, atol=1e-6)
    np.testing.assert_allclose(h[[0, 1, 9]], [0.25, 0.25, 0.5])  # 12 m goes to the last bin
    assert geo.depth_histogram(np.zeros((4, 4))).sum() == 0
    mm = geo.metres_to_depth_png(np.array([1.2345, -1.0, np.nan, 70.0]))
    assert mm.dtype == np.uint16 and mm.tolist() == [1234, 0, 0, 0] or mm.tolist() == [1235, 0, 0, 0]
    np.testing.assert_allclose(geo.depth_png_to_metres(np.array([1500], np.uint16)), [1.5])


def test_frustum_corners_and_relative_poses():
    R, t = geo.look_at([1, 1, 1.5], [3, 1, 1.5])
    K = geo.intrinsics_from_fov(40, 30, 60.0)
    fr = geo.frustum_corners(K, R, t, 40, 30, depth=0.5)
    np.testing.assert_allclose(fr[0], [1, 1, 1.5], atol=1e-12)
    cam = fr[1:] @ R.T + t
    np.testing.assert_allclose(cam[:, 2], 0.5, atol=1e-12)
    pix, _ = geo.project(fr[1:], R, t, K)
    np.testing.assert_allclose(pix, [[0, 0], [40, 0], [40, 30], [0, 30]], atol=1e-9)
    rng = np.random.default_rng(3)
    Rs = np.stack([_random_pose(rng)[0] for _ in range(3)])
    ts = rng.normal(size=(3, 3))
    R_rel, t_rel = geo.relative_poses(Rs, ts)
    np.testing.assert_allclose(R_rel[0], np.eye(3), atol=1e-12)
    np.testing.assert_allclose(t_rel[0], 0, atol=1e-12)
    x = rng.normal(size=3)
    cam0 = Rs[0] @ x + ts[0]
    np.testing.assert_allclose(R_rel[2] @ cam0 + t_rel[2], Rs[2] @ x + ts[2], atol=1e-12)


def test_axis_angle_round_trip_including_pi():
    rng = np.random.default_rng(4)
    for v in [rng.normal(size=3), np.zeros(3), np.array([np.pi, 0, 0]), np.array([0, 0, np.pi - 1e-9])]:
        R = geo.axis_angle_to_matrix(v)
        assert geo.is_rotation(R)
        np.testing.assert_allclose(geo.axis_angle_to_matrix(geo.matrix_to_axis_angle(R)), R, atol=1e-6)
