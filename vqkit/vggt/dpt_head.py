"""VGGT's dense heads (depth, point map): a DPT decoder over four aggregator layers (vqkit's
implementation).

Written from the description of the official ``vggt.heads.dpt_head.DPTHead`` (itself after DPT,
"Vision Transformers for Dense Prediction", and Depth Anything V2); constructor arguments, defaults
and state-dict keys are the official ones (32.7M parameters per head at full size).

Per view, for the patch tokens of the four layers ``intermediate_layer_idx``:

1. LayerNorm (one shared ``norm``), the tokens laid out on the patch grid [2C, h, w], a 1x1
   convolution to ``out_channels[i]`` (``projects``), a fixed sinusoidal position embedding of
   the grid (``pos_embed``), and a resize (``resize_layers``): x4 and x2 transposed convolutions,
   identity, a stride-2 convolution. Four feature maps at 4x, 2x, 1x and 1/2 the patch grid.
2. The DPT "scratch": each map to ``features`` channels (3x3, no bias, ``layer{i}_rn``), then
   fusion from coarse to fine (``refinenet4`` .. ``refinenet1``): add the finer map's residual
   unit output, a residual unit, bilinear upsampling to the next size (x2 after the last), a 1x1
   convolution. ``output_conv1`` halves the channels.
3. Bilinear upsampling to the input size (divided by ``down_ratio``), the position embedding again,
   then ``output_conv2`` (3x3 to 32, ReLU, 1x1 to ``output_dim``). The last channel is the
   confidence, the others the prediction, each through its activation (:func:`activate_head`).

Frames are decoded in chunks of ``frames_chunk_size`` (the result does not depend on it).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vqkit.errors import ConfigError


def _inverse_log(x: Tensor) -> Tensor:
    return torch.sign(x) * torch.expm1(x.abs())


def _norm_exp(x: Tensor) -> Tensor:
    norm = x.norm(dim=-1, keepdim=True).clamp(min=1e-8)
    return x / norm * torch.expm1(norm)


def _xy_inv_log(x: Tensor) -> Tensor:
    xy, z = x.split([x.shape[-1] - 1, 1], dim=-1)
    z = _inverse_log(z)
    return torch.cat([xy * z, z], dim=-1)


HEAD_ACTIVATIONS = {
    "inv_log": _inverse_log,  # point maps: sign(x) (exp|x| - 1)
    "exp": torch.exp,  # depth: always positive
    "norm_exp": _norm_exp,
    "norm": lambda x: x / x.norm(dim=-1, keepdim=True),
    "relu": F.relu,
    "xy_inv_log": _xy_inv_log,
    "sigmoid": torch.sigmoid,
    "linear": lambda x: x,
}
"""Activations of a dense prediction (channels last)."""

CONF_ACTIVATIONS = {
    "expp1": lambda c: 1 + c.exp(),  # confidence > 1, as VGGT's confidence-weighted losses expect
    "expp0": torch.exp,
    "sigmoid": torch.sigmoid,
}
"""Activations of the confidence channel."""


def activate_head(out: Tensor, activation: str = "norm_exp", conf_activation: str = "expp1") -> tuple[Tensor, Tensor]:
    """[N, D, H, W] decoder output -> (prediction [N, H, W, D-1], confidence [N, H, W])."""
    channels_last = out.permute(0, 2, 3, 1)
    return (HEAD_ACTIVATIONS[activation](channels_last[..., :-1]),
            CONF_ACTIVATIONS[conf_activation](channels_last[..., -1]))


def uv_position_embedding(grid_h: int, grid_w: int, channels: int, aspect_ratio: float,
                          omega_0: float = 100.0, device=None) -> Tensor:
    """Sinusoidal embedding [channels, grid_h, grid_w] of normalised (u, v) grid coordinates.

    u and v span the image symmetrically around 0, scaled so the image diagonal has length 2
    (``span_x = r / sqrt(r^2 + 1)``, ``span_y = 1 / sqrt(r^2 + 1)``, r = W / H) and sampled at the
    cell centres. Half the channels embed u, half v; each half is sin then cos of the coordinate
    times ``1 / omega_0 ** (k / (channels / 4))``. The coordinates are float32, the angles float64.
    """
    if channels % 4:
        raise ValueError(f"the position embedding needs channels divisible by 4, got {channels}")
    diagonal = math.sqrt(aspect_ratio ** 2 + 1.0)
    span_x, span_y = aspect_ratio / diagonal, 1.0 / diagonal
    u = torch.linspace(-span_x * (grid_w - 1) / grid_w, span_x * (grid_w - 1) / grid_w, grid_w,
                       dtype=torch.float32, device=device)
    v = torch.linspace(-span_y * (grid_h - 1) / grid_h, span_y * (grid_h - 1) / grid_h, grid_h,
                       dtype=torch.float32, device=device)
    quarter = channels // 4
    omega = 1.0 / omega_0 ** (torch.arange(quarter, dtype=torch.float64, device=device) / quarter)

    def embed(coord: Tensor) -> Tensor:  # [n] -> [n, channels / 2]
        angles = coord.double()[:, None] * omega[None]
        return torch.cat([angles.sin(), angles.cos()], dim=-1).float()

    emb_u = embed(u)[None, :, :].expand(grid_h, grid_w, 2 * quarter)
    emb_v = embed(v)[:, None, :].expand(grid_h, grid_w, 2 * quarter)
    return torch.cat([emb_u, emb_v], dim=-1).permute(2, 0, 1)


def interpolate(x: Tensor, size: Sequence[int]) -> Tensor:
    """Bilinear resize of [N, C, h, w] with aligned corners, in pieces of the batch when the output
    would pass 1.5 * 2^30 elements (where some GPU kernels overflow their int32 indexing)."""
    size = (int(size[0]), int(size[1]))
    limit = 1_610_612_736
    elements = size[0] * size[1] * x.shape[0] * x.shape[1]
    if elements <= limit:
        return F.interpolate(x, size=size, mode="bilinear", align_corners=True)
    pieces = x.chunk(elements // limit + 1, dim=0)
    return torch.cat([F.interpolate(p, size=size, mode="bilinear", align_corners=True) for p in pieces]).contiguous()


class ResidualConvUnit(nn.Module):
    """relu(x) + conv2(relu(conv1(relu(x)))), [N, C, h, w] -> same.

    The skip adds the *rectified* input: the official unit applies an in-place ReLU to its input
    before the convolutions, so its skip sees the rectified values, and the weights were trained so.
    """

    def __init__(self, features: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(features, features, kernel_size=3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(x)
        return x + self.conv2(F.relu(self.conv1(x)))


class FeatureFusionBlock(nn.Module):
    """One DPT fusion step: (coarser map [+ finer map]) -> residual unit -> upsample -> 1x1 conv.

    ``forward(x, skip=None, size=None)``: ``x`` [N, C, h, w]; ``skip`` (same shape) goes through
    ``resConfUnit1`` and is added (blocks built with ``has_residual``); ``size`` is the output
    (h, w), default twice the input.
    """

    def __init__(self, features: int, has_residual: bool = True) -> None:
        super().__init__()
        self.out_conv = nn.Conv2d(features, features, kernel_size=1)
        self.has_residual = has_residual
        if has_residual:
            self.resConfUnit1 = ResidualConvUnit(features)
        self.resConfUnit2 = ResidualConvUnit(features)

    def forward(self, x: Tensor, skip: Tensor | None = None, size: Sequence[int] | None = None) -> Tensor:
        if self.has_residual:
            if skip is None:
                raise ValueError("this fusion block adds a finer feature map; pass skip")
            x = x + self.resConfUnit1(skip)
        x = self.resConfUnit2(x)
        x = interpolate(x, size if size is not None else (2 * x.shape[-2], 2 * x.shape[-1]))
        return self.out_conv(x)


class DPTHead(nn.Module):
    """Aggregator outputs -> dense per-pixel prediction and confidence for every view.

    Args (official names and defaults):
        dim_in: width of the aggregator's outputs, 2C (2048 for VGGT-1B).
        patch_size: pixels per patch side.
        output_dim: decoder channels; the last is the confidence, so the prediction has
            ``output_dim - 1`` (VGGT: 2 for depth, 4 for the 3D point map).
        activation, conf_activation: of the prediction (:data:`HEAD_ACTIVATIONS`: VGGT's depth
            uses "exp", its point map "inv_log") and the confidence (:data:`CONF_ACTIVATIONS`).
        features: channels of the fusion blocks.
        out_channels: channels of the four projected token maps.
        intermediate_layer_idx: the four aggregator layers read (negative counts from the end).
        pos_embed: add the sinusoidal grid embedding (before the resizes and before output_conv2).
        feature_only: return the fused features [B, S, features, H, W] instead of a prediction.
        down_ratio: the output is (H / down_ratio, W / down_ratio).
    """

    def __init__(
        self,
        dim_in: int,
        patch_size: int = 14,
        output_dim: int = 4,
        activation: str = "inv_log",
        conf_activation: str = "expp1",
        features: int = 256,
        out_channels: Sequence[int] = (256, 512, 1024, 1024),
        intermediate_layer_idx: Sequence[int] = (4, 11, 17, 23),
        pos_embed: bool = True,
        feature_only: bool = False,
        down_ratio: int = 1,
    ) -> None:
        super().__init__()
        if len(out_channels) != 4 or len(intermediate_layer_idx) != 4:
            raise ConfigError(f"DPTHead: out_channels and intermediate_layer_idx need 4 entries each, got "
                              f"{list(out_channels)} and {list(intermediate_layer_idx)}")
        if activation not in HEAD_ACTIVATIONS:
            raise ConfigError(f"DPTHead: unknown activation {activation!r}; use one of {sorted(HEAD_ACTIVATIONS)}")
        if conf_activation not in CONF_ACTIVATIONS:
            raise ConfigError(f"DPTHead: unknown conf_activation {conf_activation!r}; "
                              f"use one of {sorted(CONF_ACTIVATIONS)}")
        if output_dim < 2 and not feature_only:
            raise ConfigError(f"DPTHead: output_dim must be >= 2 (prediction + confidence), got {output_dim}")
        self.patch_size = patch_size
        self.activation = activation
        self.conf_activation = conf_activation
        self.pos_embed = pos_embed
        self.feature_only = feature_only
        self.down_ratio = down_ratio
        self.intermediate_layer_idx = list(intermediate_layer_idx)

        self.norm = nn.LayerNorm(dim_in)
        self.projects = nn.ModuleList(nn.Conv2d(dim_in, oc, kernel_size=1) for oc in out_channels)
        c0, c1, _, c3 = out_channels
        self.resize_layers = nn.ModuleList([
            nn.ConvTranspose2d(c0, c0, kernel_size=4, stride=4),  # 4x the patch grid
            nn.ConvTranspose2d(c1, c1, kernel_size=2, stride=2),  # 2x
            nn.Identity(),  # 1x
            nn.Conv2d(c3, c3, kernel_size=3, stride=2, padding=1),  # 1/2
        ])
        self.scratch = nn.Module()
        for i, oc in enumerate(out_channels, start=1):
            setattr(self.scratch, f"layer{i}_rn", nn.Conv2d(oc, features, kernel_size=3, padding=1, bias=False))
        for i in range(1, 5):  # the coarsest (4) has no finer map to add
            setattr(self.scratch, f"refinenet{i}", FeatureFusionBlock(features, has_residual=i < 4))
        head_features = features if feature_only else features // 2
        self.scratch.output_conv1 = nn.Conv2d(features, head_features, kernel_size=3, padding=1)
        if not feature_only:
            self.scratch.output_conv2 = nn.Sequential(
                nn.Conv2d(head_features, 32, kernel_size=3, padding=1),
                nn.ReLU(),
                nn.Conv2d(32, output_dim, kernel_size=1),
            )

    def forward(self, aggregated_tokens_list: Sequence[Tensor | None], images: Tensor, patch_start_idx: int,
                frames_chunk_size: int | None = 8) -> Tensor | tuple[Tensor, Tensor]:
        """Aggregator outputs (per layer ``[B, S, P, dim_in]``) and the images [B, S, 3, H, W] they
        came from (only their size is used) -> (prediction [B, S, H', W', output_dim - 1],
        confidence [B, S, H', W']) with (H', W') = (H, W) / down_ratio; or, with ``feature_only``,
        features [B, S, features, H', W']. Views are decoded ``frames_chunk_size`` at a time
        (None: all at once)."""
        S = images.shape[1]
        chunk = S if frames_chunk_size is None or frames_chunk_size >= S else frames_chunk_size
        if chunk <= 0:
            raise ValueError(f"frames_chunk_size must be positive, got {frames_chunk_size}")
        parts = [self._decode(aggregated_tokens_list, images, patch_start_idx, start, min(start + chunk, S))
                 for start in range(0, S, chunk)]
        if self.feature_only:
            return torch.cat(parts, dim=1)
        return torch.cat([p[0] for p in parts], dim=1), torch.cat([p[1] for p in parts], dim=1)

    def _decode(self, tokens_list: Sequence[Tensor | None], images: Tensor, patch_start_idx: int,
                start: int, stop: int) -> Tensor | tuple[Tensor, Tensor]:
        """Views start:stop -> their prediction and confidence (or features)."""
        B, _, _, H, W = images.shape
        S = stop - start
        grid_h, grid_w = H // self.patch_size, W // self.patch_size
        maps = []
        for i, layer in enumerate(self.intermediate_layer_idx):
            tokens = tokens_list[layer]
            if tokens is None:
                raise ValueError(f"DPTHead needs aggregator layer {layer}, which was not computed")
            x = self.norm(tokens[:, start:stop, patch_start_idx:].reshape(B * S, grid_h * grid_w, -1))
            x = self.projects[i](x.transpose(1, 2).reshape(B * S, -1, grid_h, grid_w))
            if self.pos_embed:
                x = self._add_position(x, W / H)
            maps.append(self.resize_layers[i](x))
        x = self._fuse(maps)
        x = interpolate(x, (int(grid_h * self.patch_size / self.down_ratio),
                            int(grid_w * self.patch_size / self.down_ratio)))
        if self.pos_embed:
            x = self._add_position(x, W / H)
        if self.feature_only:
            return x.view(B, S, *x.shape[1:])
        prediction, confidence = activate_head(self.scratch.output_conv2(x), self.activation, self.conf_activation)
        return prediction.view(B, S, *prediction.shape[1:]), confidence.view(B, S, *confidence.shape[1:])

    @staticmethod
    def _add_position(x: Tensor, aspect_ratio: float, ratio: float = 0.1) -> Tensor:
        """x [N, C, h, w] + 0.1 * the (u, v) embedding of its grid (aspect ratio of the image)."""
        embedding = uv_position_embedding(x.shape[-2], x.shape[-1], x.shape[1], aspect_ratio, device=x.device)
        return x + ratio * embedding.to(x.dtype)[None]

    def _fuse(self, maps: list[Tensor]) -> Tensor:
        """The four resized maps (fine to coarse) -> fused features at twice the finest map's size."""
        s = self.scratch
        l1, l2, l3, l4 = (getattr(s, f"layer{i}_rn")(m) for i, m in enumerate(maps, start=1))
        x = s.refinenet4(l4, size=l3.shape[-2:])
        x = s.refinenet3(x, l3, size=l2.shape[-2:])
        x = s.refinenet2(x, l2, size=l1.shape[-2:])
        x = s.refinenet1(x, l1)
        return s.output_conv1(x)
