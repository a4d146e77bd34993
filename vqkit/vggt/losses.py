"""VGGT's training losses and the scene normalisation they assume (vqkit's implementation, written from
the VGGT paper and the description of its training code).

**Normalisation** (:func:`normalize_scene`). VGGT predicts cameras in the frame of the first view and
in a scale fixed by the training data: every sample's scene is expressed relative to view 0 (view 0
becomes ``[I | 0]``) and divided by the mean distance of its valid 3D points (every view's depth map
back-projected into view 0's camera frame) to view 0's camera centre. Translations, depths and points
are then O(1) whatever the room's size, and the camera head learns the pose *encoding* of that scene
(:func:`vqkit.vggt.pose_encoding.extri_intri_to_pose_encoding`).

**Camera loss** (:func:`camera_loss`): over the camera head's refinement iterations, each weighted
``gamma ** (n - 1 - i)`` (the last counts most) and averaged, the L1 (or Huber) distance of the
predicted pose encoding to the ground truth's, split into translation (3), quaternion (4) and field
of view (2) parts: ``weight_trans * L_T + weight_rot * L_R + weight_focal * L_FL``, each the mean over
the real views' elements (the translation part clamped at 100 per element against outliers).

**Depth and point losses** (:func:`regression_loss`): aleatoric, confidence-weighted regression over
the valid pixels: ``gamma * |err| * conf - alpha * log(conf)`` (the confidence ``conf > 1`` lowers the
weight of pixels the model is unsure of, at the price of the log term), plus the plain ``|err|``,
plus a **gradient term** (:func:`gradient_loss`): the L1 difference between neighbouring pixels of the
residual ``pred - gt`` in x and y, at 4 scales (every 1, 2, 4, 8 pixels), which penalises a wrong
local shape even where the level is right. ``|err|`` is the absolute error for depth and the
Euclidean distance for 3D points. ``valid_range`` (VGGT: 0.98) drops the worst pixels' terms
(above that quantile, among at least 1000) as outliers.

All functions are pure torch and differentiable in the predictions; shapes are in the docstrings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from vqkit.vggt.pose_encoding import extri_intri_to_pose_encoding

TRANSLATION_CLAMP = 100.0
"""Per-element cap of the translation loss (a badly scaled sample must not dominate a batch)."""
QUANTILE_MIN_ELEMENTS = 1000
"""``valid_range`` filtering applies only to at least this many pixel terms, as upstream."""


@dataclass
class NormalizedScene:
    """Ground truth in VGGT's normalised frame (see :func:`normalize_scene`)."""

    extrinsics: Tensor
    """[B, S, 3, 4] world-to-camera relative to view 0, translations divided by ``scale``."""
    depths: Tensor
    """[B, S, H, W] depth divided by ``scale`` (0 where invalid)."""
    world_points: Tensor
    """[B, S, H, W, 3] each pixel's 3D point in view 0's camera frame, divided by ``scale``."""
    valid: Tensor
    """bool [B, S, H, W]: pixels with a finite, positive depth in a real view."""
    scale: Tensor
    """[B] the mean distance of the valid points to view 0's camera centre (1 where none is valid)."""
    sample_valid: Tensor
    """bool [B]: samples with at least one valid pixel (the others carry no supervision)."""


def pixel_rays(intrinsics: Tensor, height: int, width: int) -> Tensor:
    """[..., 3, 3] pixel intrinsics -> camera-frame rays with z = 1 through every pixel centre
    (u = j + 0.5, v = i + 0.5, as :func:`vqkit.cameras.backproject_depth`): [..., H, W, 3]."""
    device, dtype = intrinsics.device, intrinsics.dtype
    v, u = torch.meshgrid(torch.arange(height, device=device, dtype=dtype) + 0.5,
                          torch.arange(width, device=device, dtype=dtype) + 0.5, indexing="ij")
    fx, fy = intrinsics[..., 0, 0, None, None], intrinsics[..., 1, 1, None, None]
    cx, cy = intrinsics[..., 0, 2, None, None], intrinsics[..., 1, 2, None, None]
    x = (u - cx) / fx
    y = (v - cy) / fy
    return torch.stack([x, y, torch.ones_like(x)], dim=-1)


def relative_extrinsics(extrinsics: Tensor) -> Tensor:
    """[B, S, 3, 4] world-to-camera -> the same cameras with view 0's camera frame as the world:
    ``R_i R_0^T`` and ``t_i - R_i R_0^T t_0`` (view 0 becomes ``[I | 0]``)."""
    R, t = extrinsics[..., :3], extrinsics[..., 3]
    R_rel = R @ R[:, :1].transpose(-1, -2)
    t_rel = t - (R_rel @ t[:, :1, :, None])[..., 0]
    return torch.cat([R_rel, t_rel[..., None]], dim=-1)


def normalize_scene(extrinsics: Tensor, intrinsics: Tensor, depths: Tensor,
                    view_mask: Tensor | None = None) -> NormalizedScene:
    """Express each sample relative to view 0 and at unit mean point distance (VGGT's training frame).

    Args:
        extrinsics: [B, S, 3, 4] world-to-camera (OpenCV), metres.
        intrinsics: [B, S, 3, 3] pixel intrinsics of the model's input (H x W).
        depths: [B, S, H, W] metric depth (z along the camera axis), 0 or non-finite = invalid.
        view_mask: bool [B, S], True = real view (padding views have no valid pixel); None = all real.
    """
    H, W = depths.shape[-2:]
    extrinsics, intrinsics, depths = extrinsics.double(), intrinsics.double(), depths.double()
    valid = torch.isfinite(depths) & (depths > 0)
    if view_mask is not None:
        valid &= view_mask.to(torch.bool)[:, :, None, None]
    depths = torch.where(valid, depths, torch.zeros_like(depths))
    rel = relative_extrinsics(extrinsics)
    cam_points = pixel_rays(intrinsics, H, W) * depths[..., None]  # [B, S, H, W, 3] in each camera's frame
    R, t = rel[..., :3], rel[..., 3]
    # camera i -> view 0: x0 = R_i^T (x_i - t_i)
    world = torch.einsum("bsji,bshwj->bshwi", R, cam_points - t[:, :, None, None, :])
    count = valid.sum(dim=(1, 2, 3))
    dist = (world.norm(dim=-1) * valid).sum(dim=(1, 2, 3))
    sample_valid = count > 0
    scale = torch.where(sample_valid, dist / count.clamp(min=1), torch.ones_like(dist)).clamp(min=1e-6)
    rel = torch.cat([R, (t / scale[:, None, None])[..., None]], dim=-1)
    return NormalizedScene(extrinsics=rel.float(), depths=(depths / scale[:, None, None, None]).float(),
                           world_points=(world * valid[..., None] / scale[:, None, None, None, None]).float(),
                           valid=valid, scale=scale.float(), sample_valid=sample_valid)


def gt_pose_encoding(scene: NormalizedScene, intrinsics: Tensor, image_hw: tuple[int, int]) -> Tensor:
    """[B, S, 9] the pose encoding the camera head should predict for a normalised scene."""
    return extri_intri_to_pose_encoding(scene.extrinsics, intrinsics.float(), image_hw)


def _distance(pred: Tensor, target: Tensor, loss_type: str, huber_delta: float) -> Tensor:
    if loss_type == "l1":
        return (pred - target).abs()
    if loss_type == "huber":
        return F.huber_loss(pred, target, reduction="none", delta=huber_delta)
    raise ValueError(f"camera loss_type must be 'l1' or 'huber', got {loss_type!r}")


def camera_loss(pose_enc_list: Sequence[Tensor], gt_pose_enc: Tensor, frame_mask: Tensor | None = None, *,
                loss_type: str = "l1", gamma: float = 0.6, weight_trans: float = 1.0, weight_rot: float = 1.0,
                weight_focal: float = 0.5, huber_delta: float = 1.0) -> dict[str, Tensor]:
    """The camera head's loss over its iterations (module docstring).

    Args:
        pose_enc_list: the head's estimate of each iteration, [B, S, 9] each (``VGGTOutput.pose_enc_list``).
        gt_pose_enc: [B, S, 9] (:func:`gt_pose_encoding`).
        frame_mask: bool [B, S] of the views that count (real views of samples with ground truth);
            None = all.
    Returns:
        ``loss_camera`` (the weighted sum) and its parts ``loss_T``, ``loss_R``, ``loss_FL``.
    """
    if not pose_enc_list:
        raise ValueError("camera_loss needs the estimate of at least one iteration")
    mask = torch.ones(gt_pose_enc.shape[:2], dtype=torch.bool, device=gt_pose_enc.device) \
        if frame_mask is None else frame_mask.to(torch.bool)
    n = len(pose_enc_list)
    totals = [pose_enc_list[-1].new_zeros(()) for _ in range(3)]
    for i, pred in enumerate(pose_enc_list):
        weight = gamma ** (n - 1 - i)
        if not bool(mask.any()):
            parts = [(pred * 0).sum()] * 3  # no supervision: zero, still in the graph
        else:
            diff = _distance(pred[mask], gt_pose_enc[mask].to(pred.dtype), loss_type, huber_delta)
            parts = [diff[:, :3].clamp(max=TRANSLATION_CLAMP).mean(), diff[:, 3:7].mean(), diff[:, 7:].mean()]
        totals = [total + weight * part for total, part in zip(totals, parts, strict=True)]
    loss_T, loss_R, loss_FL = (total / n for total in totals)
    return {"loss_camera": weight_trans * loss_T + weight_rot * loss_R + weight_focal * loss_FL,
            "loss_T": loss_T, "loss_R": loss_R, "loss_FL": loss_FL}


def _quantile_filter(values: Tensor, valid_range: float) -> Tensor:
    """The terms below the ``valid_range`` quantile (of the detached values), when there are at least
    :data:`QUANTILE_MIN_ELEMENTS` and enough remain; else all of them."""
    if valid_range <= 0 or values.numel() <= QUANTILE_MIN_ELEMENTS:
        return values
    k = max(1, min(values.numel(), round(valid_range * (values.numel() - 1)) + 1))
    threshold = values.detach().flatten().kthvalue(k).values
    kept = values[values < threshold]
    return kept if kept.numel() > QUANTILE_MIN_ELEMENTS else values


def gradient_loss(pred: Tensor, gt: Tensor, mask: Tensor, scales: int = 4) -> Tensor:
    """Multi-scale gradient matching term of [N, H, W, C] predictions against [N, H, W, C] targets
    over the bool [N, H, W] mask: at every ``2 ** s``-th pixel (s < ``scales``), the L1 difference
    between neighbouring residuals ``pred - gt`` in x and y where both neighbours are valid, summed
    and divided by the valid elements (pixels x channels); the scales' values averaged."""
    total = pred.new_zeros(())
    for s in range(scales):
        step = 2 ** s
        p, g = pred[:, ::step, ::step], gt[:, ::step, ::step]
        m = mask[:, ::step, ::step, None].expand_as(p).to(p.dtype)
        residual = (p - g) * m
        grad_x = (residual[:, :, 1:] - residual[:, :, :-1]).abs() * m[:, :, 1:] * m[:, :, :-1]
        grad_y = (residual[:, 1:] - residual[:, :-1]).abs() * m[:, 1:] * m[:, :-1]
        count = m.sum()
        if bool(count > 0):
            total = total + (grad_x.clamp(max=100).sum() + grad_y.clamp(max=100).sum()) / count
    return total / scales


def regression_loss(pred: Tensor, gt: Tensor, valid: Tensor, conf: Tensor, *, gamma: float = 1.0,
                    alpha: float = 0.2, gradient: bool = True, valid_range: float = -1.0) -> dict[str, Tensor]:
    """Confidence-weighted regression of a dense prediction (module docstring).

    Args:
        pred, gt: [B, S, H, W, C] (C = 1 for depth, 3 for points).
        valid: bool [B, S, H, W] pixels with ground truth.
        conf: [B, S, H, W] the head's confidence (> 0; VGGT's is ``1 + exp``).
    Returns:
        ``conf`` (mean of ``gamma * |err| * conf - alpha * log(conf)``), ``reg`` (mean ``|err|``),
        ``grad`` (:func:`gradient_loss`, 0 when ``gradient`` is off); zeros in the graph when no
        pixel is valid.
    """
    if not bool(valid.any()):
        zero = (pred * 0).sum() + (conf * 0).sum()
        return {"conf": zero, "reg": zero, "grad": zero}
    err = torch.linalg.vector_norm(gt[valid] - pred[valid], dim=-1)
    conf_terms = gamma * err * conf[valid] - alpha * torch.log(conf[valid])
    grad = pred.new_zeros(())
    if gradient:
        B, S, H, W, C = pred.shape
        grad = gradient_loss(pred.reshape(B * S, H, W, C), gt.reshape(B * S, H, W, C), valid.reshape(B * S, H, W))
    return {"conf": _quantile_filter(conf_terms, valid_range).mean(), "reg": _quantile_filter(err, valid_range).mean(),
            "grad": grad}


def depth_loss(depth: Tensor, depth_conf: Tensor, gt_depth: Tensor, valid: Tensor, **kwargs) -> dict[str, Tensor]:
    """Depth [B, S, H, W, 1] (or [B, S, H, W]) and its confidence [B, S, H, W] against the normalised
    depth [B, S, H, W] on ``valid``: ``loss_conf_depth``, ``loss_reg_depth``, ``loss_grad_depth`` (their
    sum is the depth loss); ``kwargs`` as :func:`regression_loss`."""
    if depth.ndim == 4:
        depth = depth[..., None]
    parts = regression_loss(depth, gt_depth[..., None].to(depth.dtype), valid, depth_conf, **kwargs)
    return {f"loss_{name}_depth": value for name, value in parts.items()}


def point_loss(points: Tensor, points_conf: Tensor, gt_points: Tensor, valid: Tensor, **kwargs) -> dict[str, Tensor]:
    """The point map [B, S, H, W, 3] (view 0's frame) and its confidence against the normalised points:
    ``loss_conf_point``, ``loss_reg_point``, ``loss_grad_point``; ``kwargs`` as :func:`regression_loss`."""
    parts = regression_loss(points, gt_points.to(points.dtype), valid, points_conf, **kwargs)
    return {f"loss_{name}_point": value for name, value in parts.items()}


def downsample_to(target_hw: tuple[int, int], *maps: Tensor) -> list[Tensor]:
    """Ground-truth maps [B, S, H, W(, C)] subsampled (every k-th pixel, never blended: depths and
    validity stay exact) to a head's output size ``target_hw`` when its ``down_ratio`` > 1."""
    out = []
    for m in maps:
        H, W = m.shape[2:4]
        if (H, W) == tuple(target_hw):
            out.append(m)
            continue
        if H % target_hw[0] or W % target_hw[1]:
            raise ValueError(f"cannot subsample {H}x{W} ground truth to the head's {target_hw[0]}x{target_hw[1]}")
        out.append(m[:, :, :: H // target_hw[0], :: W // target_hw[1]])
    return out
