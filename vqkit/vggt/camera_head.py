"""VGGT's camera head: each view's camera token -> its pose encoding (vqkit's implementation).

Written from the description of the official ``vggt.heads.camera_head.CameraHead``; the constructor
arguments, their defaults and the state-dict keys are the official ones, so ``camera_head.*`` of the
official checkpoint loads key for key (216.2M parameters at full size).

How it predicts, per sample of S views:

1. The camera token (index 0) of the **last** aggregator layer, ``[B, S, 2C]``, is layer-normed
   (``token_norm``).
2. ``num_iterations`` refinement steps (4 by default). Step 1 starts from a learned "empty" pose
   (``empty_pose_tokens``, 9 numbers); later steps from the previous estimate, detached (no
   gradient flows through the iterations). That pose is embedded (``embed_pose``) and modulates the
   camera tokens the way DiT conditions on a timestep (adaLN): SiLU + Linear give a shift, scale and
   gate, ``tokens + gate * (norm(tokens) * (1 + scale) + shift)``.
3. The modulated tokens go through the trunk (``trunk_depth`` pre-norm transformer blocks, the
   aggregator's kind without qk-norm or RoPE) -- attention runs **across the views** of a sample --
   then ``trunk_norm`` and a two-layer MLP (``pose_branch``, hidden width dim/2) give a delta that
   is added to the estimate.
4. The estimate of every step is activated (translation, quaternion, field of view each by its
   own activation; see :func:`activate_pose`) and returned; the last one is the prediction.

The quaternion is not normalised: :func:`vqkit.vggt.pose_encoding.quat_to_mat` divides by
its norm. Predicted poses live in the frame of the first view and in the scale of VGGT's training
(see :mod:`vqkit.vggt.predicted_geometry`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vqkit.errors import ConfigError
from vqkit.vggt.layers import Block
from vqkit.vggt.pose_encoding import POSE_ENCODING_DIMS


def _inverse_log(x: Tensor) -> Tensor:
    """sign(x) * (exp(|x|) - 1): undoes a log(1 + |y|) squashing of y."""
    return torch.sign(x) * torch.expm1(x.abs())


POSE_ACTIVATIONS = {
    "linear": lambda x: x,
    "inv_log": _inverse_log,
    "exp": torch.exp,
    "relu": F.relu,
}
"""Activations the camera head may apply to each part of its estimate."""


def activate_pose(pose_enc: Tensor, trans_act: str = "linear", quat_act: str = "linear",
                  fl_act: str = "linear") -> Tensor:
    """[..., 9] raw estimate -> activated pose encoding: translation [:3], quaternion [3:7] and field
    of view [7:] each through its named activation (:data:`POSE_ACTIVATIONS`)."""
    parts = (pose_enc[..., :3], pose_enc[..., 3:7], pose_enc[..., 7:])
    activations = (trans_act, quat_act, fl_act)
    return torch.cat([POSE_ACTIVATIONS[act](part) for part, act in zip(parts, activations, strict=True)], dim=-1)


class PoseBranch(nn.Module):
    """fc1 -> exact GELU -> fc2, [..., dim] -> [..., out] (the official ``Mlp`` with its own output width)."""

    def __init__(self, dim: int, hidden: int, out: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, out)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class CameraHead(nn.Module):
    """Aggregator outputs -> per-view pose encodings [B, S, 9], refined over several iterations.

    Args (official names and defaults):
        dim_in: width of the aggregator's outputs, 2C (2048 for VGGT-1B).
        trunk_depth: transformer blocks of the trunk.
        pose_encoding_type: only "absT_quaR_FoV" (see :mod:`vqkit.vggt.pose_encoding`).
        num_heads, mlp_ratio, init_values: of the trunk blocks (LayerScale init 0.01).
        trans_act, quat_act, fl_act: activations of translation, quaternion and field of view
            (:data:`POSE_ACTIVATIONS`); "relu" keeps the fields of view non-negative.
    """

    def __init__(
        self,
        dim_in: int = 2048,
        trunk_depth: int = 4,
        pose_encoding_type: str = "absT_quaR_FoV",
        num_heads: int = 16,
        mlp_ratio: float = 4,
        init_values: float = 0.01,
        trans_act: str = "linear",
        quat_act: str = "linear",
        fl_act: str = "relu",
    ) -> None:
        super().__init__()
        if pose_encoding_type not in POSE_ENCODING_DIMS:
            raise ConfigError(f"CameraHead: unsupported pose_encoding_type {pose_encoding_type!r}; "
                              f"use one of {sorted(POSE_ENCODING_DIMS)}")
        for name, act in (("trans_act", trans_act), ("quat_act", quat_act), ("fl_act", fl_act)):
            if act not in POSE_ACTIVATIONS:
                raise ConfigError(f"CameraHead: unknown {name} {act!r}; use one of {sorted(POSE_ACTIVATIONS)}")
        self.target_dim = POSE_ENCODING_DIMS[pose_encoding_type]
        self.pose_encoding_type = pose_encoding_type
        self.trans_act, self.quat_act, self.fl_act = trans_act, quat_act, fl_act
        self.trunk_depth = trunk_depth

        # registration order = the official state-dict order (own parameter first, then these)
        self.trunk = nn.ModuleList(Block(dim_in, num_heads, mlp_ratio=mlp_ratio, init_values=init_values)
                                   for _ in range(trunk_depth))
        self.token_norm = nn.LayerNorm(dim_in)
        self.trunk_norm = nn.LayerNorm(dim_in)
        self.empty_pose_tokens = nn.Parameter(torch.zeros(1, 1, self.target_dim))
        self.embed_pose = nn.Linear(self.target_dim, dim_in)
        self.poseLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim_in, 3 * dim_in))
        self.adaln_norm = nn.LayerNorm(dim_in, elementwise_affine=False, eps=1e-6)
        self.pose_branch = PoseBranch(dim_in, dim_in // 2, self.target_dim)

    def forward(self, aggregated_tokens_list: Sequence[Tensor | None], num_iterations: int = 4,
                view_mask: Tensor | None = None) -> list[Tensor]:
        """Aggregator outputs (per layer ``[B, S, P, dim_in]``; only the last is read) -> the
        activated pose encoding [B, S, 9] of each of ``num_iterations`` steps (the last is the
        prediction).

        ``view_mask`` bool [B, S] (True = real view): padding views are left out of the trunk's
        attention across views, so real views are predicted as if alone.
        """
        tokens = aggregated_tokens_list[-1]
        if tokens is None:
            raise ValueError("CameraHead needs the last aggregator layer's output")
        pose_tokens = self.token_norm(tokens[:, :, 0])  # [B, S, C]: the camera token of each view
        key_mask = None
        if view_mask is not None and not bool(view_mask.all()):
            keep = view_mask.to(device=tokens.device, dtype=torch.bool)
            key_mask = keep | ~keep.any(dim=1, keepdim=True)  # a sample without views: no all-masked rows
        return self._refine(pose_tokens, num_iterations, key_mask)

    def _refine(self, pose_tokens: Tensor, num_iterations: int, key_mask: Tensor | None) -> list[Tensor]:
        B, S, _ = pose_tokens.shape
        estimate: Tensor | None = None
        estimates = []
        for _ in range(num_iterations):
            if estimate is None:
                condition = self.embed_pose(self.empty_pose_tokens.expand(B, S, -1))
            else:
                estimate = estimate.detach()  # each step refines; no backpropagation through the steps
                condition = self.embed_pose(estimate)
            shift, scale, gate = self.poseLN_modulation(condition).chunk(3, dim=-1)
            x = pose_tokens + gate * (self.adaln_norm(pose_tokens) * (1 + scale) + shift)
            for block in self.trunk:
                x = block(x, key_mask=key_mask)
            delta = self.pose_branch(self.trunk_norm(x))
            estimate = delta if estimate is None else estimate + delta
            estimates.append(activate_pose(estimate, self.trans_act, self.quat_act, self.fl_act))
        return estimates
