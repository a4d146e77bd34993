"""Where each patch is in 3D: the mean back-projected point of its pixels, from the views' depth maps and
camera poses, in the frame the model writes boxes in (``data.box_frame``).

LLaVA-3D's "3D patches" give every patch token the 3D position its pixels show, so that pointing at an
object's patches tells the model where the object is; vqkit's patch merger can add an embedding of
these points to each merged cell (``model.projector.point_embed``). A patch with no valid depth (0 in
the map), a view of a sample without camera geometry or without depth maps has no point (``valid``
False), and its embedding is left out.

Frames (as :mod:`vqkit.roomplan.grounding`): ``scene`` is the frame of the records' poses; ``first_view``
the scene frame turned and shifted about the vertical so that the sample's first view stands at
x = y = 0 looking along +y, heights unchanged.
"""

from __future__ import annotations

import math

import torch

FOURIER_FREQUENCIES = (0.5, 1.0, 2.0, 4.0, 8.0)
"""Radians per metre of the sine / cosine features of a point (periods from 12.6 m down to 0.8 m)."""


def point_features(points: torch.Tensor) -> torch.Tensor:
    """[..., 3] metres -> [..., 3 + 6 F]: the point and its sines and cosines at :data:`FOURIER_FREQUENCIES`."""
    freqs = points.new_tensor(FOURIER_FREQUENCIES)
    angles = points[..., None] * freqs  # [..., 3, F]
    return torch.cat([points, angles.sin().flatten(-2), angles.cos().flatten(-2)], dim=-1)


def to_box_frame(points: torch.Tensor, R: torch.Tensor, t: torch.Tensor, box_frame: str) -> torch.Tensor:
    """World points [B, ..., 3] in ``box_frame``; R [B, 3, 3], t [B, 3]: each sample's first view's
    world-to-camera pose (OpenCV axes, z up in the world)."""
    if box_frame == "scene":
        return points
    centre = -(R.transpose(1, 2) @ t[..., None])[..., 0]  # [B, 3]
    forward = R[:, 2, :]  # the camera's z axis in the world = R^T e_z
    down = R[:, 1, :]
    flat = forward[:, :2].norm(dim=-1, keepdim=True) < 1e-6  # looking straight down: the image's up
    forward = torch.where(flat, -down, forward)
    yaw = torch.atan2(forward[:, 1], forward[:, 0]) - math.pi / 2  # the frame's +x (the camera's right)
    c, s = yaw.cos(), yaw.sin()
    shape = (-1,) + (1,) * (points.dim() - 2)
    c, s = c.view(shape), s.view(shape)
    dx = points[..., 0] - centre[:, 0].view(shape)
    dy = points[..., 1] - centre[:, 1].view(shape)
    return torch.stack([c * dx + s * dy, -s * dx + c * dy, points[..., 2]], dim=-1)


def patch_points(depths: torch.Tensor, R: torch.Tensor, t: torch.Tensor, K: torch.Tensor, grid_hw: tuple[int, int],
                 patch_size: int, box_frame: str = "scene") -> tuple[torch.Tensor, torch.Tensor]:
    """Mean 3D point of each patch's valid pixels: depths [B, S, H, W] (metres, 0 = none, padded like the
    images), R [B, S, 3, 3], t [B, S, 3] world-to-camera, K [B, S, 3, 3] of the model's input ->
    (points [B, S, rows * cols, 3] in ``box_frame``, valid [B, S, rows * cols]), patches row-major."""
    B, S, H, W = depths.shape
    rows, cols = (int(v) for v in grid_hw)
    depths = depths[:, :, : rows * patch_size, : cols * patch_size].float()
    h, w = depths.shape[-2:]
    v, u = torch.meshgrid(torch.arange(h, dtype=torch.float32) + 0.5, torch.arange(w, dtype=torch.float32) + 0.5,
                          indexing="ij")
    pix = torch.stack([u, v, torch.ones_like(u)], dim=-1).view(1, 1, h * w, 3)  # [1, 1, N, 3]
    # A view without intrinsics (geometry dropped, a padding view) has K = 0: it gets no points.
    has_camera = (K[..., 0, 0] != 0) & (K[..., 1, 1] != 0)  # [B, S]
    K = torch.where(has_camera[..., None, None], K.float(), torch.eye(3, device=K.device))
    rays = pix @ torch.linalg.inv(K).transpose(-1, -2)  # [B, S, N, 3], camera z = 1
    cam = rays * depths.flatten(2)[..., None]
    world = (cam - t.float()[:, :, None, :]) @ R.float()  # R^T (x_cam - t), row vectors
    world = to_box_frame(world, R[:, 0].float(), t[:, 0].float(), box_frame)
    valid = (depths > 0).float().flatten(2)[..., None]  # [B, S, N, 1]
    per_patch = (world * valid).view(B, S, rows, patch_size, cols, patch_size, 3).sum((3, 5))
    count = valid.view(B, S, rows, patch_size, cols, patch_size, 1).sum((3, 5))
    points = per_patch / count.clamp(min=1.0)
    return points.flatten(2, 3), (count[..., 0] > 0).flatten(2, 3) & has_camera[..., None]


def batch_patch_points(batch: dict, samples: list[int], grid_hw: tuple[int, int], patch_size: int,
                       box_frame: str) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(points, valid) of the patches of a batch's ``samples`` (:func:`patch_points`), or None without depth
    maps; a sample without camera geometry of its own (none, or the geometry it predicts) gets none."""
    if batch.get("depths") is None or batch.get("geometry") is None:
        return None
    g = batch["geometry"]
    points, valid = patch_points(batch["depths"][samples], g["R"][samples], g["t"][samples], g["K"][samples],
                                 grid_hw, patch_size, box_frame)
    predicted = batch.get("predict_geometry", torch.zeros_like(batch["geom_mask"]))
    posed = batch["geom_mask"][samples].to(torch.bool) & ~predicted[samples].to(torch.bool)
    return points, valid & posed[:, None, None]
