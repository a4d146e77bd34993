"""VGGT, the whole model: the aggregator and its camera, depth and point heads (vqkit's implementation).

``VGGT(img_size=518, patch_size=14, embed_dim=1024)`` has the official model's state-dict keys and
shapes (``aggregator.*``, ``camera_head.*``, ``point_head.*``, ``depth_head.*``: 1403 tensors), so
the official ``model.pt`` / ``model.safetensors`` loads into it strictly; the official file's 394
``track_head.*`` keys are dropped, and the load says so (vqkit has no track head).

- camera head: :class:`~vqkit.vggt.camera_head.CameraHead` on the last layer's camera tokens
  -> pose encoding [B, S, 9] (:mod:`~vqkit.vggt.pose_encoding` turns it into extrinsics
  and intrinsics).
- depth head: :class:`~vqkit.vggt.dpt_head.DPTHead` (output_dim 2, "exp") -> depth
  [B, S, H, W, 1] along the camera's z, with a confidence [B, S, H, W].
- point head: DPTHead (output_dim 4, "inv_log") -> 3D points [B, S, H, W, 3] in the first
  view's camera frame, with a confidence.

The heads run in float32 with autocast off, as upstream, whatever precision the aggregator ran in.
:mod:`~vqkit.vggt.predicted_geometry` turns the predictions into a record's geometry.

Usage::

    vggt = VGGT.from_pretrained("ckpts/VGGT-1B/model.pt").eval()     # official weights, strict
    out = vggt(images)                          # images [B, S, 3, H, W] in [0, 1]
    out.pose_enc, out.depth, out.world_points   # [B, S, 9], [B, S, H, W, 1], [B, S, H, W, 3]

    tiny = VGGT(img_size=28, embed_dim=64, depth=2, num_heads=4, patch_embed="conv",
                dpt_features=32, dpt_out_channels=(16, 32, 64, 64), camera_num_heads=4)
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from vqkit.errors import ConfigError
from vqkit.vggt.aggregator import Aggregator, pretrained_or_seeded
from vqkit.vggt.camera_head import CameraHead
from vqkit.vggt.dpt_head import DPTHead
from vqkit.vggt.weights import load_vggt_weights

OFFICIAL_DPT_LAYERS = (4, 11, 17, 23)
"""The aggregator layers the official dense heads read (of 24)."""


def default_dpt_layers(depth: int) -> list[int]:
    """The four layers the dense heads read: the official (4, 11, 17, 23) for 24 layers, else the
    last layer of each quarter of the aggregator (repeating layers when it has fewer than four)."""
    if depth == 24:
        return list(OFFICIAL_DPT_LAYERS)
    return [max(0, (depth * (i + 1)) // 4 - 1) for i in range(4)]


def camera_head(embed_dim: int, trunk_depth: int = 4, num_heads: int = 16) -> CameraHead:
    """VGGT's camera head for an aggregator of width ``embed_dim`` (its outputs are 2 x wider)."""
    return CameraHead(2 * embed_dim, trunk_depth=trunk_depth, num_heads=num_heads)


DENSE_HEADS = {"depth": (2, "exp"), "point": (4, "inv_log")}
"""The dense heads VGGT has: output channels (prediction + confidence) and activation."""


def dense_head(kind: str, embed_dim: int, patch_size: int = 14, features: int = 256,
               out_channels: Sequence[int] = (256, 512, 1024, 1024), layers: Sequence[int] = OFFICIAL_DPT_LAYERS
               ) -> DPTHead:
    """VGGT's depth (``kind="depth"``: exp depth) or point (``"point"``: inv_log points) head."""
    output_dim, activation = DENSE_HEADS[kind]
    return DPTHead(2 * embed_dim, patch_size=patch_size, output_dim=output_dim, activation=activation,
                   conf_activation="expp1", features=features, out_channels=list(out_channels),
                   intermediate_layer_idx=list(layers))


@dataclass
class VGGTOutput:
    """What :class:`VGGT` predicts; a head the model does not have leaves its fields None."""

    pose_enc: Tensor | None = None
    """[B, S, 9] pose encoding of the camera head's last iteration (absT_quaR_FoV)."""
    pose_enc_list: list[Tensor] = field(default_factory=list)
    """[B, S, 9] of every iteration (the camera loss is taken over all of them)."""
    depth: Tensor | None = None
    """[B, S, H, W, 1] depth along each camera's z, in the scale of VGGT's training (not metres)."""
    depth_conf: Tensor | None = None
    """[B, S, H, W] confidence of the depth (> 1)."""
    world_points: Tensor | None = None
    """[B, S, H, W, 3] each pixel's 3D point in the first view's camera frame (same scale)."""
    world_points_conf: Tensor | None = None
    """[B, S, H, W] confidence of the points (> 1)."""
    tokens: list[Tensor | None] = field(default_factory=list)
    """The aggregator's per-layer outputs [B, S, P, 2C] (None for layers not computed), for a
    caller that also feeds them to a projector."""
    patch_start_idx: int = 0
    """Index of the first patch token in each view's tokens."""


class VGGT(nn.Module):
    """Aggregator + camera, point and depth heads; the official ``VGGT`` without its track head.

    Args:
        img_size, patch_size, embed_dim: as the official ``VGGT`` (and the aggregator's).
        enable_camera, enable_point, enable_depth: build that head (official names).
        enable_track: must stay False: vqkit has no track head (the official default is True).
        dpt_layers: the four aggregator layers the dense heads read (default
            :func:`default_dpt_layers`: the official ones at depth 24).
        dpt_features, dpt_out_channels: sizes of the dense heads (official 256 and
            (256, 512, 1024, 1024); smaller for demo-size models).
        camera_trunk_depth, camera_num_heads: size of the camera head's trunk (official 4, 16).
        **aggregator_kwargs: the other :class:`Aggregator` arguments (depth, num_heads,
            patch_embed, ...), official defaults when omitted.
    """

    def __init__(
        self,
        img_size: int = 518,
        patch_size: int = 14,
        embed_dim: int = 1024,
        enable_camera: bool = True,
        enable_point: bool = True,
        enable_depth: bool = True,
        enable_track: bool = False,
        *,
        dpt_layers: Sequence[int] | None = None,
        dpt_features: int = 256,
        dpt_out_channels: Sequence[int] = (256, 512, 1024, 1024),
        camera_trunk_depth: int = 4,
        camera_num_heads: int = 16,
        **aggregator_kwargs,
    ) -> None:
        super().__init__()
        if enable_track:
            raise ConfigError("VGGT: vqkit has no track head; use enable_track=False (loading the official "
                              "weights then drops their track_head.* keys)")
        self.aggregator = Aggregator(img_size=img_size, patch_size=patch_size, embed_dim=embed_dim,
                                     **aggregator_kwargs)
        depth = self.aggregator.depth
        layers = list(dpt_layers) if dpt_layers is not None else default_dpt_layers(depth)
        for layer in layers:
            if not -depth <= layer < depth:
                raise ConfigError(f"VGGT: dpt_layers {layers} name a layer outside the {depth}-layer aggregator")
        # registration order = the official state-dict order: camera, point, depth
        self.camera_head = camera_head(embed_dim, camera_trunk_depth, camera_num_heads) if enable_camera else None
        dense = {"embed_dim": embed_dim, "patch_size": patch_size, "features": dpt_features,
                 "out_channels": dpt_out_channels, "layers": layers}
        self.point_head = dense_head("point", **dense) if enable_point else None
        self.depth_head = dense_head("depth", **dense) if enable_depth else None
        self.track_head = None

    # ----------------------------------------------------------------------------------------
    # Building
    # ----------------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, source: str | os.PathLike, device: torch.device | str | None = None,
                        dtype: torch.dtype | None = None, **kwargs) -> VGGT:
        """Official weights (a model.pt / model.safetensors file, a folder holding one, or a hub id),
        strictly (see :func:`load_vggt_weights`; the load's :class:`WeightsReport` is kept in
        ``weights_report``). Built on the meta device and assigned, so the weights exist once.
        ``dtype`` casts the aggregator only; the heads stay float32. ``kwargs``: constructor
        arguments (defaults = VGGT-1B)."""
        with torch.device("meta"):
            model = cls(**kwargs)
        model.weights_report = load_vggt_weights(model, source, dtype=dtype)
        if device is not None:
            model = model.to(device)
        return model

    @classmethod
    def from_config(cls, enc_cfg, device: torch.device | str | None = None, **kwargs) -> VGGT:
        """The aggregator from ``model.encoder`` (:class:`vqkit.config.EncoderConfig`) with heads:
        the whole checkpoint when ``weights`` is set, else a random init drawn from ``seed`` in
        which the aggregator's weights equal ``Aggregator.from_config``'s (the same feature cache
        serves both). The aggregator is frozen when ``frozen``; the heads are left trainable.
        ``kwargs``: the head arguments of the constructor."""
        model = pretrained_or_seeded(cls, enc_cfg, device, **{**Aggregator.config_kwargs(enc_cfg), **kwargs})
        model.aggregator.default_layers = list(enc_cfg.layers)
        if enc_cfg.frozen:
            model.aggregator.freeze()
        return model

    def freeze(self) -> VGGT:
        """No parameter trains (the forward then runs without autograd); eval mode. Returns self."""
        self.requires_grad_(False)
        return self.eval()

    def head_layers(self) -> list[int]:
        """The aggregator layers (non-negative, sorted) the heads read."""
        wanted = []
        if self.camera_head is not None:
            wanted.append(-1)
        for head in (self.point_head, self.depth_head):
            if head is not None:
                wanted += head.intermediate_layer_idx
        return self.aggregator.resolve_layers(wanted) if wanted else []

    # ----------------------------------------------------------------------------------------
    # Forward
    # ----------------------------------------------------------------------------------------

    def forward(self, images: Tensor, view_mask: Tensor | None = None,
                layers: Sequence[int] | None = None) -> VGGTOutput:
        """images [B, S, 3, H, W] (or [S, 3, H, W]) in [0, 1] -> :class:`VGGTOutput`.

        The aggregator computes the layers the heads read plus ``layers`` (for a caller that also
        wants other layers' tokens; they are in ``tokens``). ``view_mask`` bool [B, S] (True =
        real view, real views first): padding views take no part in the aggregator's global
        attention nor in the camera trunk's attention across views, so each sample's real views are
        predicted as if alone; the predictions at padding views are meaningless.
        """
        if images.ndim == 4:
            images = images[None]
        wanted = self.head_layers() + list(layers or [])
        if not wanted:
            raise ValueError("VGGT: no head is enabled and no layer was asked for")
        tokens, patch_start_idx = self.aggregator(images, layers=wanted, view_mask=view_mask)
        return self.heads(tokens, images, patch_start_idx, view_mask=view_mask)

    def heads(self, tokens: Sequence[Tensor | None], images: Tensor, patch_start_idx: int,
              view_mask: Tensor | None = None) -> VGGTOutput:
        """The heads on aggregator outputs computed elsewhere (``tokens`` must hold
        :meth:`head_layers`); ``images`` [B, S, 3, H, W] give the output size. Float32, autocast
        off; without autograd when neither the heads nor the tokens need gradients."""
        heads = [h for h in (self.camera_head, self.point_head, self.depth_head) if h is not None]
        # autograd is needed when a head trains, or when the tokens carry gradients (a trained aggregator)
        trains = torch.is_grad_enabled() and (any(p.requires_grad for h in heads for p in h.parameters())
                                              or any(t is not None and t.requires_grad for t in tokens))
        out = VGGTOutput(tokens=list(tokens), patch_start_idx=patch_start_idx)
        as_float = [None if t is None else t.float() for t in tokens]
        with torch.autocast(device_type=images.device.type, enabled=False), \
                (contextlib.nullcontext() if trains else torch.no_grad()):
            if self.camera_head is not None:
                out.pose_enc_list = self.camera_head(as_float, view_mask=view_mask)
                out.pose_enc = out.pose_enc_list[-1]
            if self.depth_head is not None:
                out.depth, out.depth_conf = self.depth_head(as_float, images, patch_start_idx)
            if self.point_head is not None:
                out.world_points, out.world_points_conf = self.point_head(as_float, images, patch_start_idx)
        return out

