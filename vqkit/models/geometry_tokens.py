"""Geometry tokens: one LLM token per view from its camera pose, intrinsics and depth statistics.

Per view the encoder sees (conventions of :mod:`vqkit.cameras`):

- ``R_rel`` (9): rotation of view i relative to view 0, ``R_i @ R_0^T``, so view 0 is the identity
  and the tokens do not depend on the arbitrary world frame of a scan;
- ``t_rel / scale`` (3): translation of view i relative to view 0 (``x_cam_i = R_rel x_cam_0 + t_rel``)
  divided by the scale of the view set, the mean distance of the other valid views' camera centres to
  view 0 (``||t_rel_i||``), falling back to 1 when every camera sits at view 0. Room scans differ in
  size by an order of magnitude; dividing keeps the inputs O(1) while ``depth_hist`` still carries
  metric scale;
- ``K`` normalised by the image size (4): fx/W, fy/H, cx/W, cy/H (resolution independent);
- ``depth_hist`` (bins): fraction of valid depth pixels per depth bin.

These go through an MLP to the LLM hidden size. Records without geometry (``geom_mask`` False)
get no geometry tokens at all; the model selects the valid views of records that have it.
"""

from __future__ import annotations

import torch
from torch import nn

from vqkit.errors import DataError

NUM_POSE_FEATURES = 9 + 3 + 4


def relative_poses(R: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """World-to-camera poses [..., S, 3, 3], [..., S, 3] relative to view 0 (torch version of
    :func:`vqkit.cameras.relative_poses`): returns (R_rel, t_rel) with
    ``x_cam_i = R_rel_i @ x_cam_0 + t_rel_i``; view 0 becomes (I, 0)."""
    R0, t0 = R[..., :1, :, :], t[..., :1, :]
    R_rel = R @ R0.transpose(-1, -2)
    t_rel = t - (R_rel @ t0.unsqueeze(-1)).squeeze(-1)
    return R_rel, t_rel


def geometry_features(geometry: dict, view_mask: torch.Tensor | None = None, eps: float = 1e-6) -> torch.Tensor:
    """The per-view input vector of the geometry encoder.

    Args:
        geometry: ``R`` [B, S, 3, 3], ``t`` [B, S, 3], ``K`` [B, S, 3, 3] (pixels of the image as fed to
            the model), ``depth_hist`` [B, S, bins], ``image_hw`` (H, W).
        view_mask: bool [B, S], True = real view (padding views do not count in the scale).
    Returns:
        float32 [B, S, 16 + bins].
    """
    R = geometry["R"].float()
    t = geometry["t"].float()
    K = geometry["K"].float()
    hist = geometry["depth_hist"].float()
    H, W = (float(v) for v in geometry["image_hw"])
    R_rel, t_rel = relative_poses(R, t)
    dist = t_rel.norm(dim=-1)  # [B, S]: distance of camera i's centre to camera 0's
    valid = torch.ones_like(dist, dtype=torch.bool) if view_mask is None else view_mask.to(torch.bool)
    others = valid.clone()
    others[:, 0] = False  # view 0 is at distance 0 by construction
    count = others.sum(dim=1)
    scale = (dist * others).sum(dim=1) / count.clamp(min=1)
    scale = torch.where(scale > eps, scale, torch.ones_like(scale))  # one view, or all at one spot
    t_norm = t_rel / scale[:, None, None]
    k = torch.stack([K[..., 0, 0] / W, K[..., 1, 1] / H, K[..., 0, 2] / W, K[..., 1, 2] / H], dim=-1)
    feats = torch.cat([R_rel.flatten(-2), t_norm, k, hist], dim=-1)
    return feats * valid[..., None]  # padding views: zeros (they are never turned into tokens)


class GeometryEncoder(nn.Module):
    """[B, S, 16 + bins] camera features -> [B, S, D_llm] geometry tokens (a 2-hidden-layer MLP).

    Args:
        depth_bins: bins of depth_hist.
        hidden: MLP width.
        out_dim: the LLM hidden size.
    """

    def __init__(self, depth_bins: int, hidden: int, out_dim: int):
        super().__init__()
        self.depth_bins = depth_bins
        self.mlp = nn.Sequential(
            nn.Linear(NUM_POSE_FEATURES + depth_bins, hidden),
            nn.GELU(),
            nn.Linear(hidden, hidden),
            nn.GELU(),
            nn.Linear(hidden, out_dim),
        )

    @classmethod
    def from_config(cls, geo_cfg, out_dim: int) -> GeometryEncoder:
        """Build from :class:`vqkit.config.GeometryConfig`."""
        return cls(geo_cfg.depth_bins, geo_cfg.hidden, out_dim)

    def forward(self, geometry: dict, view_mask: torch.Tensor | None = None) -> torch.Tensor:
        """geometry dict (see :func:`geometry_features`), view_mask [B, S] -> tokens [B, S, D_llm]."""
        bins = geometry["depth_hist"].shape[-1]
        if bins != self.depth_bins:
            raise DataError(f"geometry.depth_hist has {bins} bins but model.geometry.depth_bins is "
                            f"{self.depth_bins}")
        feats = geometry_features(geometry, view_mask)
        weight = self.mlp[0].weight
        return self.mlp(feats.to(device=weight.device, dtype=weight.dtype))
