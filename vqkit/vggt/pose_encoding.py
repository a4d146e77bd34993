"""VGGT's camera pose encoding and its conversion to and from extrinsics / intrinsics (torch).

The camera head predicts, per view, a 9-vector in the ``absT_quaR_FoV`` encoding:

    [T (3), quaternion x y z w (4, scalar last), fov_h, fov_w]   (radians)

- ``T`` and the quaternion's rotation ``R`` form the **extrinsics** ``[R | T]`` [..., 3, 4]:
  camera-from-world in OpenCV axes (x right, y down, z forward), ``x_cam = R @ x_world + T``, the
  same convention as the records' ``R``, ``t`` (:mod:`vqkit.cameras`).
- The fields of view give pinhole **intrinsics** with the principal point at the image centre:
  ``fy = (H / 2) / tan(fov_h / 2)``, ``fx = (W / 2) / tan(fov_w / 2)``, ``cx = W / 2``, ``cy = H / 2``
  for an image of H x W pixels (the model's input).

The function names and arguments are the official ones (``vggt.utils.pose_enc``), so code written
for the official package reads the same. Everything works on any leading dimensions ([B, S] in
VGGT) and keeps the input's dtype (float64 in, float64 out).
"""

from __future__ import annotations

import torch
from torch import Tensor

POSE_ENCODING_DIMS = {"absT_quaR_FoV": 9}
"""Width of each supported pose encoding."""


def _check_type(pose_encoding_type: str) -> None:
    if pose_encoding_type not in POSE_ENCODING_DIMS:
        raise ValueError(f"unsupported pose encoding {pose_encoding_type!r}; vqkit knows {sorted(POSE_ENCODING_DIMS)}")


def quat_to_mat(quaternions: Tensor) -> Tensor:
    """Quaternions [..., 4] (x, y, z, w; scalar last) -> rotation matrices [..., 3, 3].

    The quaternion need not have unit norm (the camera head's raw output does not): the formula
    divides by the squared norm, so any non-zero q gives a proper rotation.
    """
    x, y, z, w = quaternions.unbind(-1)
    s = 2.0 / (quaternions * quaternions).sum(-1)
    rows = (
        1 - s * (y * y + z * z), s * (x * y - z * w), s * (x * z + y * w),
        s * (x * y + z * w), 1 - s * (x * x + z * z), s * (y * z - x * w),
        s * (x * z - y * w), s * (y * z + x * w), 1 - s * (x * x + y * y),
    )
    return torch.stack(rows, dim=-1).unflatten(-1, (3, 3))


def mat_to_quat(matrix: Tensor) -> Tensor:
    """Rotation matrices [..., 3, 3] -> unit quaternions [..., 4] (x, y, z, w), with w >= 0.

    Each of the four components can be read off the diagonal (``4 q_i^2 = 1 +- m00 +- m11 +- m22``);
    the other three then follow from the off-diagonal sums and differences divided by it. Of the
    four ways, the one with the largest denominator is the best conditioned, and it is the one taken.
    """
    if matrix.shape[-2:] != (3, 3):
        raise ValueError(f"rotation matrices must be [..., 3, 3], got {tuple(matrix.shape)}")
    m = matrix.flatten(-2).unbind(-1)
    m00, m01, m02, m10, m11, m12, m20, m21, m22 = m
    four_sq = torch.stack([1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22, 1 + m00 + m11 + m22], -1)
    two_abs = four_sq.clamp(min=0).sqrt()  # 2|x|, 2|y|, 2|z|, 2|w|
    # Row i: (x, y, z, w) times 4 * q_i, computed from the diagonal entry of component i.
    scaled = torch.stack([
        torch.stack([four_sq[..., 0], m01 + m10, m02 + m20, m21 - m12], -1),
        torch.stack([m01 + m10, four_sq[..., 1], m12 + m21, m02 - m20], -1),
        torch.stack([m02 + m20, m12 + m21, four_sq[..., 2], m10 - m01], -1),
        torch.stack([m21 - m12, m02 - m20, m10 - m01, four_sq[..., 3]], -1),
    ], dim=-2)  # [..., 4, 4]
    best = two_abs.argmax(dim=-1, keepdim=True)  # [..., 1]
    row = scaled.gather(-2, best[..., None].expand(*best.shape[:-1], 1, 4)).squeeze(-2)
    quat = row / (2.0 * two_abs.gather(-1, best))
    return torch.where(quat[..., 3:] < 0, -quat, quat)


def extri_intri_to_pose_encoding(extrinsics: Tensor, intrinsics: Tensor, image_size_hw: tuple[int, int],
                                 pose_encoding_type: str = "absT_quaR_FoV") -> Tensor:
    """Cameras -> pose encoding: extrinsics [..., 3, 4] (camera-from-world, OpenCV) and intrinsics
    [..., 3, 3] (pixels) of images of ``image_size_hw`` = (H, W) -> [..., 9].

    Only the focal lengths of the intrinsics are encoded (as fields of view); the principal point
    is assumed at the image centre, as VGGT's training data has it.
    """
    _check_type(pose_encoding_type)
    H, W = image_size_hw
    quat = mat_to_quat(extrinsics[..., :3, :3])
    fov_h = 2 * torch.atan((H / 2) / intrinsics[..., 1, 1])
    fov_w = 2 * torch.atan((W / 2) / intrinsics[..., 0, 0])
    return torch.cat([extrinsics[..., :3, 3], quat, fov_h[..., None], fov_w[..., None]], dim=-1)


def pose_encoding_to_extri_intri(pose_encoding: Tensor, image_size_hw: tuple[int, int] | None = None,
                                 pose_encoding_type: str = "absT_quaR_FoV",
                                 build_intrinsics: bool = True) -> tuple[Tensor, Tensor | None]:
    """Pose encoding [..., 9] -> (extrinsics [..., 3, 4], intrinsics [..., 3, 3] or None).

    Extrinsics are camera-from-world in OpenCV axes; intrinsics (when ``build_intrinsics``; needs
    ``image_size_hw`` = (H, W) of the model's input) have the principal point at (W/2, H/2).
    """
    _check_type(pose_encoding_type)
    T, quat, fov = pose_encoding[..., :3], pose_encoding[..., 3:7], pose_encoding[..., 7:9]
    extrinsics = torch.cat([quat_to_mat(quat), T[..., None]], dim=-1)
    if not build_intrinsics:
        return extrinsics, None
    if image_size_hw is None:
        raise ValueError("pose_encoding_to_extri_intri: image_size_hw is needed to build intrinsics")
    H, W = image_size_hw
    fy = (H / 2.0) / torch.tan(fov[..., 0] / 2.0)
    fx = (W / 2.0) / torch.tan(fov[..., 1] / 2.0)
    intrinsics = pose_encoding.new_zeros(*pose_encoding.shape[:-1], 3, 3)
    intrinsics[..., 0, 0] = fx
    intrinsics[..., 1, 1] = fy
    intrinsics[..., 0, 2] = W / 2
    intrinsics[..., 1, 2] = H / 2
    intrinsics[..., 2, 2] = 1.0
    return extrinsics, intrinsics
