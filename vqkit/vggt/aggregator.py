"""vqkit's own implementation of VGGT's aggregator (the frozen geometry encoder).

The official package is not on PyPI, so vqkit carries the aggregator itself, written from
docs/design.md (section 8), with the same constructor names and the same state-dict keys and shapes as the
official ``aggregator.*`` weights (1210 tensors, 909,112,320 parameters at full size).

Per view the DINOv2 patch embed turns the image into patch tokens; 1 camera token and
``num_register_tokens`` register tokens are prepended (the first view gets slot 0 of
``camera_token`` / ``register_token``, all other views slot 1, which is how VGGT knows the reference
frame). Then ``depth`` layers alternate a *frame* block (attention within each view) and a *global*
block (attention over all views' tokens). Layer i returns ``cat(frame_out_i, global_out_i)``, i.e.
``[B, S, P, 2C]`` with ``P = patch_start_idx + (H/14) * (W/14)``.

Usage::

    agg = Aggregator.from_pretrained("ckpts/VGGT-1B/model.pt")      # official weights, strict
    outputs, patch_start_idx = agg(images, layers=[-1])             # images [B, S, 3, H, W] in [0, 1]
    feats = agg.encode(images, layers=[-2, -1])                     # [B, S, P, 4C]

    tiny = Aggregator(img_size=28, embed_dim=64, depth=2, num_heads=4, patch_embed="conv")
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from vqkit.errors import ConfigError
from vqkit.vggt.dinov2 import DINOV2_PRESETS, DinoVisionTransformer
from vqkit.vggt.layers import Block, PatchEmbed, RotaryPositionEmbedding2D, patch_positions
from vqkit.vggt.weights import load_aggregator_weights

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def pretrained_or_seeded(cls, enc_cfg, device: torch.device | str | None = None, **kwargs) -> nn.Module:
    """``cls.from_pretrained(enc_cfg.weights)`` when ``model.encoder.weights`` is set, else ``cls(**kwargs)``
    drawn from ``enc_cfg.seed`` (the same weights in every process, without touching the global RNG)."""
    if enc_cfg.weights:
        return cls.from_pretrained(enc_cfg.weights, device=device, **kwargs)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(enc_cfg.seed)
        model = cls(**kwargs)
    return model if device is None else model.to(device)


class Aggregator(nn.Module):
    """VGGT's alternating-attention aggregator: [B, S, 3, H, W] in [0, 1] -> per-layer [B, S, P, 2C].

    Args (official names and defaults):
        img_size: image size the DINOv2 positional embedding was trained for (518 -> 37x37 grid).
        patch_size: pixels per patch side; H and W must be multiples of it.
        embed_dim, depth, num_heads, mlp_ratio: width C, number of (frame, global) block pairs,
            heads (head width C / heads, 64 at full size), MLP width multiple.
        num_register_tokens: register tokens per view (also the DINOv2 registers).
        qkv_bias, proj_bias, ffn_bias: biases of the block Linears.
        patch_embed: "dinov2_vitl14_reg" (official; also dinov2_vit{s,b}14_reg, dinov2_vitg2_reg),
            "dinov2" (a DINOv2 of width embed_dim sized by dinov2_depth / dinov2_num_heads, same key
            names, for tests), or "conv" (one convolution, key ``patch_embed.proj``).
        aa_order: order of the attention types within a layer, ("frame", "global") in VGGT.
        aa_block_size: blocks of one type run before switching (1 in VGGT).
        qk_norm: per-head LayerNorm on queries and keys.
        rope_freq: 2D RoPE base frequency; <= 0 disables RoPE.
        init_values: LayerScale init of the frame/global blocks.
        dinov2_depth, dinov2_num_heads: size of a "dinov2" patch embed.
    """

    def __init__(
        self,
        img_size: int = 518,
        patch_size: int = 14,
        embed_dim: int = 1024,
        depth: int = 24,
        num_heads: int = 16,
        mlp_ratio: float = 4.0,
        num_register_tokens: int = 4,
        qkv_bias: bool = True,
        proj_bias: bool = True,
        ffn_bias: bool = True,
        patch_embed: str = "dinov2_vitl14_reg",
        aa_order: Sequence[str] = ("frame", "global"),
        aa_block_size: int = 1,
        qk_norm: bool = True,
        rope_freq: float = 100,
        init_values: float = 0.01,
        dinov2_depth: int = 24,
        dinov2_num_heads: int = 16,
    ) -> None:
        super().__init__()
        if depth % aa_block_size:
            raise ConfigError(f"Aggregator: depth ({depth}) must be divisible by aa_block_size ({aa_block_size})")
        if sorted(aa_order) != ["frame", "global"]:
            raise ConfigError(f"Aggregator: aa_order must order 'frame' and 'global', got {list(aa_order)}")
        self.img_size = img_size
        self.patch_size = patch_size
        self.embed_dim = embed_dim
        self.depth = depth
        self.num_heads = num_heads
        self.num_register_tokens = num_register_tokens
        self.aa_order = tuple(aa_order)
        self.aa_block_size = aa_block_size
        # Layers the projector reads by default (from_config sets the config's choice).
        self.default_layers: list[int] = [-1]

        # A module's own parameters precede its submodules in state_dict(), so these two come
        # first there, as in the official key list, wherever they are created.
        self.camera_token = nn.Parameter(torch.empty(1, 2, 1, embed_dim))
        self.register_token = nn.Parameter(torch.empty(1, 2, num_register_tokens, embed_dim))
        self.patch_start_idx = 1 + num_register_tokens

        self.patch_embed = self._build_patch_embed(
            patch_embed, img_size, patch_size, num_register_tokens, embed_dim, dinov2_depth, dinov2_num_heads
        )
        self.rope = RotaryPositionEmbedding2D(rope_freq) if rope_freq > 0 else None

        def make_block() -> Block:
            return Block(embed_dim, num_heads, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, proj_bias=proj_bias,
                         ffn_bias=ffn_bias, init_values=init_values, qk_norm=qk_norm)

        self.frame_blocks = nn.ModuleList(make_block() for _ in range(depth))
        self.global_blocks = nn.ModuleList(make_block() for _ in range(depth))

        nn.init.normal_(self.camera_token, std=1e-6)
        nn.init.normal_(self.register_token, std=1e-6)
        self._init_buffers()

    @staticmethod
    def _build_patch_embed(name, img_size, patch_size, num_register_tokens, embed_dim, dino_depth, dino_heads):
        if name == "conv":
            return PatchEmbed(patch_size=patch_size, in_chans=3, embed_dim=embed_dim)
        if name == "dinov2":
            width, depth, heads = embed_dim, dino_depth, dino_heads
        elif name in DINOV2_PRESETS:
            width, depth, heads = DINOV2_PRESETS[name]
            if width != embed_dim:
                raise ConfigError(f"Aggregator: patch_embed {name} has width {width}, but embed_dim is "
                                  f"{embed_dim}; set embed_dim: {width} or patch_embed: dinov2/conv")
        else:
            raise ConfigError(f"Aggregator: unknown patch_embed {name!r}; use one of "
                              f"{['conv', 'dinov2', *DINOV2_PRESETS]}")
        if width % heads:
            raise ConfigError(f"Aggregator: DINOv2 width {width} is not divisible by {heads} heads")
        return DinoVisionTransformer(
            img_size=img_size, patch_size=patch_size, embed_dim=width, depth=depth, num_heads=heads,
            num_register_tokens=num_register_tokens, init_values=1.0,
            interpolate_antialias=True, interpolate_offset=0.0,
        )

    def _init_buffers(self, device: torch.device | str | None = None) -> None:
        """(Re)create the non-persistent ImageNet mean/std buffers [1, 1, 3, 1, 1] (float32).

        They are not in the checkpoint, so after a meta-device init they must be rebuilt for real.
        """
        for name, value in (("_resnet_mean", _IMAGENET_MEAN), ("_resnet_std", _IMAGENET_STD)):
            self.register_buffer(name, torch.tensor(value, device=device).view(1, 1, 3, 1, 1), persistent=False)

    # ----------------------------------------------------------------------------------------
    # Building
    # ----------------------------------------------------------------------------------------

    @staticmethod
    def config_kwargs(enc_cfg) -> dict:
        """Constructor arguments from a :class:`vqkit.config.EncoderConfig`."""
        return dict(
            img_size=enc_cfg.img_size, patch_size=enc_cfg.patch_size, embed_dim=enc_cfg.embed_dim,
            depth=enc_cfg.depth, num_heads=enc_cfg.num_heads, mlp_ratio=enc_cfg.mlp_ratio,
            num_register_tokens=enc_cfg.num_register_tokens, patch_embed=enc_cfg.patch_embed,
            qk_norm=enc_cfg.qk_norm, rope_freq=enc_cfg.rope_freq, init_values=enc_cfg.init_values,
            dinov2_depth=enc_cfg.dinov2_depth, dinov2_num_heads=enc_cfg.dinov2_num_heads,
        )

    @classmethod
    def from_config(cls, enc_cfg, device: torch.device | str | None = None) -> Aggregator:
        """Build from ``model.encoder``: official weights when ``weights`` is set, else a random init
        drawn from ``seed`` (the same weights in every process, without touching the global RNG).
        Frozen (no grads, eval mode) when ``frozen``."""
        model = pretrained_or_seeded(cls, enc_cfg, device, **cls.config_kwargs(enc_cfg))
        model.default_layers = list(enc_cfg.layers)
        if enc_cfg.frozen:
            model.freeze()
        return model

    @classmethod
    def from_pretrained(cls, source: str | os.PathLike, device: torch.device | str | None = None,
                        dtype: torch.dtype | None = None, **kwargs) -> Aggregator:
        """Official weights from a file, a folder or a hub id (see :func:`load_aggregator_weights`).

        The module is built on the meta device and the checkpoint tensors are assigned into it, so
        the 909M parameters exist once (memory-mapped from a .pt file). ``kwargs`` are constructor
        arguments (defaults = VGGT-1B). ``dtype`` casts floating weights (default: as stored).
        """
        with torch.device("meta"):
            model = cls(**kwargs)
        load_aggregator_weights(model, source, dtype=dtype)
        if device is not None:
            model = model.to(device)
        return model

    def freeze(self) -> Aggregator:
        """No parameter trains; forward then runs under ``torch.no_grad()``. Returns self."""
        self.requires_grad_(False)
        return self.eval()

    def store_matmul_weights(self, dtype: torch.dtype) -> Aggregator:
        """Store the weights of every Linear and convolution in ``dtype`` (bf16 for a GPU); norms,
        LayerScale, tokens and the position table stay fp32. Run it under autocast to ``dtype``: autocast
        rounds a matmul's fp32 weights to that dtype at every call anyway, so the outputs are exactly
        those of fp32 weights, without the per-step weight copies and at half the memory. Returns self."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                module.to(dtype)
        return self

    @property
    def matmul_dtype(self) -> torch.dtype:
        """The dtype the Linear weights are stored in (see :meth:`store_matmul_weights`)."""
        return next(m.weight.dtype for m in self.modules() if isinstance(m, nn.Linear))

    def compile_blocks(self, **kwargs) -> Aggregator:
        """``torch.compile`` every transformer block (frame, global and the DINOv2 patch embed's) in place:
        blocks of one kind share their compiled code, and the Python loop over layers stays eager.
        ``kwargs`` go to ``torch.compile``. Returns self."""
        for module in self.modules():
            if isinstance(module, Block):
                module.compile(**kwargs)
        return self

    # ----------------------------------------------------------------------------------------
    # Shapes
    # ----------------------------------------------------------------------------------------

    def resolve_layers(self, layers: Sequence[int] | None) -> list[int]:
        """Layer indices (negative allowed) -> sorted unique non-negative ones; None = all."""
        if layers is None:
            return list(range(self.depth))
        resolved = set()
        for layer in layers:
            if not -self.depth <= layer < self.depth:
                raise ValueError(f"layer {layer} is outside a {self.depth}-layer aggregator")
            resolved.add(layer % self.depth)
        if not resolved:
            raise ValueError("layers must name at least one layer, e.g. [-1]")
        return sorted(resolved)

    def num_tokens(self, height: int, width: int) -> int:
        """Tokens per view P = patch_start_idx + (height/patch) * (width/patch)."""
        return feature_shape_of(self.patch_size, self.embed_dim, self.num_register_tokens, height, width, [-1])[0]

    def feature_dim(self, layers: Sequence[int] | None = None) -> int:
        """Channels of :meth:`encode`: 2 * embed_dim per selected layer (default_layers if None)."""
        return 2 * self.embed_dim * len(layers if layers is not None else self.default_layers)

    # ----------------------------------------------------------------------------------------
    # Forward
    # ----------------------------------------------------------------------------------------

    def forward(self, images: Tensor, layers: Sequence[int] | None = None,
                view_mask: Tensor | None = None) -> tuple[list[Tensor | None], int]:
        """images [B, S, 3, H, W] in [0, 1] -> (outputs, patch_start_idx).

        ``outputs`` has ``depth`` entries; entry i is ``[B, S, P, 2C]`` (frame-block output then
        global-block output of layer i, P = patch_start_idx + (H/p)(W/p)) when i is requested in
        ``layers`` (negative indices count from the end; None = all layers), else None. Layers after
        the last requested one are not computed. Runs under no_grad when no parameter trains.

        ``view_mask`` bool [B, S] (True = real view; real views first, as the collator pads): the
        global attention never attends to padding views, so a sample's real views come out as if
        encoded alone, whatever else is in the batch; padding views are not run through the patch embed
        and the frame blocks at all. The outputs at padding views are meaningless.
        """
        if images.ndim != 5 or images.shape[2] != 3:
            raise ValueError(f"images must be [B, S, 3, H, W], got {tuple(images.shape)}")
        wanted = self.resolve_layers(layers)
        trains = torch.is_grad_enabled() and any(p.requires_grad for p in self.parameters())
        with contextlib.nullcontext() if trains else torch.no_grad():
            return self._forward(images, set(wanted), wanted[-1], view_mask), self.patch_start_idx

    def _forward(self, images: Tensor, wanted: set[int], last: int,
                 view_mask: Tensor | None = None) -> list[Tensor | None]:
        B, S, _, H, W = images.shape
        p = self.patch_size
        if H % p or W % p:
            raise ValueError(f"image size {H}x{W} is not a multiple of the patch size {p}")
        P = self.patch_start_idx + (H // p) * (W // p)
        global_keys = real = None
        if view_mask is not None and not bool(view_mask.all()):
            keep = view_mask.to(device=images.device, dtype=torch.bool)
            keep = keep | ~keep.any(dim=1, keepdim=True)  # a sample without views: no all-masked rows
            global_keys = keep[:, :, None].expand(B, S, P).reshape(B, S * P)  # [B, S*P]
            # Padding views skip the per-view work (the patch embed and the frame blocks: two thirds of
            # VGGT's compute); the global blocks see them as zeros that no real token attends to.
            real = keep.flatten().nonzero().flatten()  # [N] indices into B*S

        def to_all(x: Tensor) -> Tensor:  # [N, P, C] of the real views -> [B*S, P, C], zeros at padding
            return x if real is None else x.new_zeros(B * S, *x.shape[1:]).index_copy(0, real, x)

        def to_real(x: Tensor) -> Tensor:  # [B*S, ...] -> the real views' [N, ...]
            return x if real is None else x.index_select(0, real)

        images = (images - self._resnet_mean) / self._resnet_std
        patch_tokens = self.patch_embed(to_real(images.reshape(B * S, 3, H, W)))  # [N, h*w, C]

        camera = to_real(_first_and_others(self.camera_token, B, S))  # [N, 1, C]
        register = to_real(_first_and_others(self.register_token, B, S))  # [N, R, C]
        tokens = torch.cat([camera, register, patch_tokens], dim=1)  # [N, P, C]
        C = tokens.shape[-1]

        frame_rope = global_rope = None
        if self.rope is not None:
            pos = patch_positions(H // p, W // p, self.patch_start_idx, device=images.device)  # [P, 2]
            frame_rope = self.rope.tables(pos, C // self.num_heads)  # ([P, d], [P, d])
            # global attention sees S frames one after another, each with its own frame positions
            global_rope = tuple(t.repeat(S, 1) for t in frame_rope)

        outputs: list[Tensor | None] = [None] * self.depth
        for start in range(0, last + 1, self.aa_block_size):
            stage: dict[str, list[Tensor]] = {}
            for kind in self.aa_order:
                stage[kind] = []
                for i in range(start, start + self.aa_block_size):
                    if kind == "frame":
                        tokens = self.frame_blocks[i](tokens, rope=frame_rope)  # [N, P, C]
                        out = to_all(tokens)
                    else:
                        out = self.global_blocks[i](to_all(tokens).reshape(B, S * P, C), rope=global_rope,
                                                    key_mask=global_keys).reshape(B * S, P, C)
                        tokens = to_real(out)
                    stage[kind].append(out.reshape(B, S, P, C))
            for j, i in enumerate(range(start, start + self.aa_block_size)):
                if i in wanted:
                    outputs[i] = torch.cat([stage["frame"][j], stage["global"][j]], dim=-1)
        return outputs

    def encode(self, images: Tensor, layers: Sequence[int] | None = None,
               view_mask: Tensor | None = None) -> Tensor:
        """images [B, S, 3, H, W] -> selected layers concatenated on channels [B, S, P, 2C * L].

        ``layers`` defaults to ``default_layers`` (the config's ``model.encoder.layers``), in the
        order given. All P tokens are kept; patch tokens start at ``patch_start_idx``.
        ``view_mask`` [B, S]: padding views are masked out of the global attention (see forward).
        """
        layers = list(layers if layers is not None else self.default_layers)
        outputs, _ = self(images, layers=layers, view_mask=view_mask)
        return torch.cat([outputs[layer % self.depth] for layer in layers], dim=-1)


def _first_and_others(tokens: Tensor, B: int, S: int) -> Tensor:
    """[1, 2, X, C] -> [B*S, X, C]: slot 0 for each sample's first view, slot 1 for the others."""
    first = tokens[:, :1].expand(B, 1, *tokens.shape[2:])
    others = tokens[:, 1:].expand(B, S - 1, *tokens.shape[2:])
    return torch.cat([first, others], dim=1).reshape(B * S, *tokens.shape[2:])


# --------------------------------------------------------------------------------------------
# Feature shapes without building the model
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FeatureShape:
    """Per-view feature layout of :meth:`Aggregator.encode` for one image size."""

    num_tokens: int
    """P = patch_start_idx + grid_h * grid_w tokens per view."""
    channels: int
    """2 * embed_dim * number of selected layers."""
    patch_start_idx: int
    """1 camera + num_register_tokens special tokens precede the patches."""
    grid: tuple[int, int]
    """(H / patch_size, W / patch_size) patch grid, row-major after patch_start_idx."""


def feature_shape_of(patch_size: int, embed_dim: int, num_register_tokens: int, height: int, width: int,
                     layers: Sequence[int]) -> tuple[int, int]:
    """(tokens per view, channels) for an image of height x width."""
    if height % patch_size or width % patch_size:
        raise ConfigError(f"image size {height}x{width} is not a multiple of the patch size {patch_size}")
    return 1 + num_register_tokens + (height // patch_size) * (width // patch_size), 2 * embed_dim * len(layers)


def feature_shape(enc_cfg, height: int, width: int) -> FeatureShape:
    """Feature layout for ``model.encoder`` config and images of height x width pixels."""
    tokens, channels = feature_shape_of(enc_cfg.patch_size, enc_cfg.embed_dim, enc_cfg.num_register_tokens,
                                        height, width, enc_cfg.layers)
    return FeatureShape(tokens, channels, 1 + enc_cfg.num_register_tokens,
                        (height // enc_cfg.patch_size, width // enc_cfg.patch_size))
