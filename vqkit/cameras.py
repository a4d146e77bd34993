"""Camera geometry shared by the whole kit.

Conventions (docs/design.md, section 2):
- World frame: metres. vqkit's synthetic rooms are z-up with the floor at z = 0.
- ``R, t`` are **world-to-camera** in OpenCV axes (x right, y down, z forward):
  ``x_cam = R @ x_world + t``. This is VGGT's extrinsic convention. ScanNet and ARKit store
  camera-to-world poses; :func:`invert_pose` converts between the two.
- ``K`` is the 3x3 pixel intrinsic matrix of the image *as stored*; pixel centres sit at integer
  coordinates + 0.5 in continuous coordinates, so resizing by ``s`` scales fx, fy, cx, cy by ``s``
  and cropping at (x0, y0) subtracts (x0, y0) from the principal point.
- ``depth_hist``: fraction of *valid* depth pixels in each of B bins over [0, max_depth] m (depths
  beyond max_depth fall in the last bin; 0 = invalid and not counted). Sums to 1 (0 if no valid pixel).

All functions take and return numpy arrays (float64 unless stated).
"""

from __future__ import annotations

import numpy as np


def invert_pose(R: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Invert a rigid transform: (R, t) world-to-camera <-> camera-to-world. Works on [..., 3, 3]."""
    R = np.asarray(R, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    R_inv = np.swapaxes(R, -1, -2)
    t_inv = -np.einsum("...ij,...j->...i", R_inv, t)
    return R_inv, t_inv


def pose_matrix(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Stack (R, t) into a 4x4 homogeneous matrix."""
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = t
    return T


def split_pose(T: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split a 4x4 homogeneous matrix into (R, t)."""
    T = np.asarray(T, dtype=np.float64)
    return T[:3, :3].copy(), T[:3, 3].copy()


def are_rotations(R: np.ndarray, atol: float = 1e-3) -> np.ndarray:
    """Per matrix of R [..., 3, 3]: True when it is a proper rotation (orthonormal, det +1) within atol.
    One batched check: validating a corpus calls this once per record, not once per view."""
    R = np.asarray(R, dtype=np.float64)
    if R.shape[-2:] != (3, 3):
        return np.zeros(R.shape[:-2], dtype=bool)
    finite = np.isfinite(R).all(axis=(-2, -1))
    R = np.where(finite[..., None, None], R, 0.0)
    gram_err = np.abs(R @ np.swapaxes(R, -1, -2) - np.eye(3)) - 1e-5 * np.eye(3)  # np.allclose's rtol on I
    return finite & (gram_err <= atol).all(axis=(-2, -1)) & (np.abs(np.linalg.det(R) - 1.0) < atol)


def is_rotation(R: np.ndarray, atol: float = 1e-3) -> bool:
    """True when R is a proper rotation (orthonormal, det +1) within atol."""
    R = np.asarray(R, dtype=np.float64)
    return R.shape == (3, 3) and bool(are_rotations(R, atol))


def look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray = (0.0, 0.0, 1.0)) -> tuple[np.ndarray, np.ndarray]:
    """World-to-camera (R, t) of an OpenCV camera at ``eye`` looking at ``target`` (world z-up).

    Camera axes: z forward (towards target), x right, y down (so -y points along ``up``).
    """
    eye = np.asarray(eye, dtype=np.float64)
    forward = np.asarray(target, dtype=np.float64) - eye
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, np.asarray(up, dtype=np.float64))
    if np.linalg.norm(right) < 1e-8:
        raise ValueError("look_at: viewing direction is parallel to up")
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    R = np.stack([right, down, forward])  # rows = camera axes in world coordinates
    return R, -R @ eye


def intrinsics(fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    """3x3 pixel intrinsic matrix."""
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def intrinsics_from_fov(width: int, height: int, hfov_deg: float) -> np.ndarray:
    """Pinhole K for an image of width x height with horizontal field of view hfov_deg (square pixels)."""
    fx = 0.5 * width / np.tan(np.deg2rad(hfov_deg) / 2)
    return intrinsics(fx, fx, width / 2.0, height / 2.0)


def scale_intrinsics(K: np.ndarray, sx: float, sy: float | None = None) -> np.ndarray:
    """K of an image resized by (sx, sy) (new size = old size * s)."""
    sy = sx if sy is None else sy
    K = np.array(K, dtype=np.float64)
    K[0, :] *= sx
    K[1, :] *= sy
    K[2, :] = [0.0, 0.0, 1.0]
    return K


def resize_intrinsics(K: np.ndarray, old_wh: tuple[int, int], new_wh: tuple[int, int]) -> np.ndarray:
    """K of an image resized from old (w, h) to new (w, h)."""
    return scale_intrinsics(K, new_wh[0] / old_wh[0], new_wh[1] / old_wh[1])


def crop_intrinsics(K: np.ndarray, x0: float, y0: float) -> np.ndarray:
    """K of the crop whose top-left corner is (x0, y0) in the original; a negative offset = padding."""
    K = np.array(K, dtype=np.float64)
    K[0, 2] -= x0
    K[1, 2] -= y0
    return K


def project(points_world: np.ndarray, R: np.ndarray, t: np.ndarray, K: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project [N, 3] world points: returns (pixels [N, 2] as (u, v), depth [N])."""
    cam = np.asarray(points_world, dtype=np.float64) @ np.asarray(R).T + np.asarray(t)
    z = cam[:, 2]
    uv = cam @ np.asarray(K).T
    with np.errstate(divide="ignore", invalid="ignore"):
        pix = uv[:, :2] / uv[:, 2:3]
    return pix, z


def backproject_depth(depth: np.ndarray, K: np.ndarray, R: np.ndarray, t: np.ndarray,
                      stride: int = 1) -> np.ndarray:
    """World points [N, 3] of the valid (> 0, finite) pixels of a metric depth map [H, W].

    Depth is the z of the camera frame (not the ray length). Pixel (i, j) is sampled at its centre
    (u = j + 0.5, v = i + 0.5), matching how the synthetic renderer casts rays.
    """
    depth = np.asarray(depth, dtype=np.float64)[::stride, ::stride]
    h, w = depth.shape
    v, u = np.meshgrid(np.arange(h) * stride + 0.5, np.arange(w) * stride + 0.5, indexing="ij")
    valid = np.isfinite(depth) & (depth > 0)
    z = depth[valid]
    pix = np.stack([u[valid], v[valid], np.ones_like(z)], axis=-1)
    cam = (pix @ np.linalg.inv(K).T) * z[:, None]
    R_c2w, t_c2w = invert_pose(R, t)
    return cam @ R_c2w.T + t_c2w


def depth_histogram(depth_m: np.ndarray, bins: int = 16, max_depth: float = 10.0) -> np.ndarray:
    """Fraction of valid depth pixels in each of ``bins`` bins over [0, max_depth] metres.

    Invalid pixels (0, negative, non-finite) are not counted; depths >= max_depth go to the last bin.
    Returns float32 [bins] summing to 1, or all zeros when no pixel is valid.
    """
    d = np.asarray(depth_m, dtype=np.float64).ravel()
    d = d[np.isfinite(d) & (d > 0)]
    if d.size == 0:
        return np.zeros(bins, dtype=np.float32)
    idx = np.minimum((d / max_depth * bins).astype(np.int64), bins - 1)
    hist = np.bincount(idx, minlength=bins).astype(np.float64)
    return (hist / d.size).astype(np.float32)


def depth_png_to_metres(depth_mm: np.ndarray) -> np.ndarray:
    """16-bit PNG depth in millimetres (0 = invalid) -> float32 metres (0 = invalid)."""
    return np.asarray(depth_mm, dtype=np.float32) / 1000.0


def metres_to_depth_png(depth_m: np.ndarray) -> np.ndarray:
    """Metric depth -> uint16 millimetres, 0 where invalid or beyond 65.535 m."""
    d = np.nan_to_num(np.asarray(depth_m, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    mm = np.round(d * 1000.0)
    mm[(mm < 0) | (mm > 65535)] = 0
    return mm.astype(np.uint16)


def frustum_corners(K: np.ndarray, R: np.ndarray, t: np.ndarray, width: int, height: int,
                    depth: float = 0.3) -> np.ndarray:
    """World coordinates [5, 3] of a camera frustum: the centre, then the image corners at ``depth``
    (top-left, top-right, bottom-right, bottom-left), for drawing camera poses."""
    corners = np.array([[0, 0, 1], [width, 0, 1], [width, height, 1], [0, height, 1]], dtype=np.float64)
    cam = (corners @ np.linalg.inv(K).T) * depth
    R_c2w, centre = invert_pose(R, t)
    return np.vstack([centre, cam @ R_c2w.T + centre])


def camera_centre(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Camera position in world coordinates, -R^T t."""
    return invert_pose(R, t)[1]


def relative_poses(R: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Express V world-to-camera poses [V, 3, 3], [V, 3] relative to view 0 (view 0 becomes identity).

    Returns (R_rel, t_rel) with x_cam_i = R_rel_i @ x_cam0 + t_rel_i.
    """
    R = np.asarray(R, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    R0_inv, t0_inv = invert_pose(R[0], t[0])
    R_rel = R @ R0_inv
    t_rel = np.einsum("vij,j->vi", R, t0_inv) + t
    return R_rel, t_rel


def axis_angle_to_matrix(axis_angle: np.ndarray) -> np.ndarray:
    """Rodrigues: axis-angle vector [3] (angle = norm) -> rotation matrix [3, 3]."""
    v = np.asarray(axis_angle, dtype=np.float64)
    theta = np.linalg.norm(v)
    if theta < 1e-12:
        return np.eye(3)
    k = v / theta
    Kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(theta) * Kx + (1 - np.cos(theta)) * Kx @ Kx


def matrix_to_axis_angle(R: np.ndarray) -> np.ndarray:
    """Rotation matrix [3, 3] -> axis-angle vector [3] (inverse of axis_angle_to_matrix)."""
    R = np.asarray(R, dtype=np.float64)
    cos = np.clip((np.trace(R) - 1) / 2, -1.0, 1.0)
    theta = np.arccos(cos)
    if theta < 1e-12:
        return np.zeros(3)
    if np.pi - theta < 1e-6:
        # Near 180 degrees the antisymmetric part vanishes; take the axis from R + I.
        M = (R + np.eye(3)) / 2
        axis = np.sqrt(np.clip(np.diag(M), 0, None))
        i = int(np.argmax(axis))
        axis = M[i] / axis[i]
        return axis / np.linalg.norm(axis) * theta
    w = np.array([R[2, 1] - R[1, 2], R[0, 2] - R[2, 0], R[1, 0] - R[0, 1]]) / (2 * np.sin(theta))
    return w * theta
