"""Transformer layers shared by vqkit's VGGT aggregator and its DINOv2 patch embed.

Attribute names (``qkv``, ``q_norm``, ``ls1.gamma``, ``mlp.fc1`` ...) are those of the official VGGT /
DINOv2 code, so the official state dicts load key for key. Shapes: B batch, N tokens, C width,
h heads, d = C / h head width.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vqkit.utils.attention import warn_math_fallback


class LayerScale(nn.Module):
    """Per-channel learned scale of a residual branch: ``x * gamma`` (gamma [C])."""

    def __init__(self, dim: int, init_values: float = 1e-5) -> None:
        super().__init__()
        self.gamma = nn.Parameter(init_values * torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gamma


class Mlp(nn.Module):
    """fc1 -> exact GELU -> fc2; [..., C] -> [..., C]."""

    def __init__(self, dim: int, hidden: int, bias: bool = True) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden, bias=bias)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class PatchEmbed(nn.Module):
    """Non-overlapping patches by one convolution: [B, 3, H, W] -> [B, (H/p)*(W/p), C], row-major."""

    def __init__(self, patch_size: int = 14, in_chans: int = 3, embed_dim: int = 1024) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> Tensor:
        H, W = x.shape[-2:]
        if H % self.patch_size or W % self.patch_size:
            raise ValueError(f"image size {H}x{W} is not a multiple of the patch size {self.patch_size}")
        return self.proj(x).flatten(2).transpose(1, 2)


# --------------------------------------------------------------------------------------------
# 2D rotary position embedding
# --------------------------------------------------------------------------------------------


def patch_positions(grid_h: int, grid_w: int, num_special: int, device=None) -> Tensor:
    """Integer (row, col) position of every token of one frame: [num_special + grid_h*grid_w, 2].

    Patches get (row + 1, col + 1) in row-major order and the special (camera/register) tokens
    (0, 0), so that RoPE leaves the special tokens unrotated (angle 0) wherever they sit.
    """
    rows = torch.arange(grid_h, device=device).repeat_interleave(grid_w)
    cols = torch.arange(grid_w, device=device).repeat(grid_h)
    pos = torch.stack([rows, cols], dim=-1) + 1
    special = torch.zeros(num_special, 2, dtype=pos.dtype, device=device)
    return torch.cat([special, pos], dim=0)


class RotaryPositionEmbedding2D(nn.Module):
    """2D RoPE: the first half of each head is rotated by the row, the second half by the column.

    Within a half of width d/2 the frequencies are ``1 / freq ** (arange(0, d/2, 2) / (d/2))``,
    duplicated to d/2 angles and applied "rotate-half" style, as in VGGT. The module has no
    parameters or buffers (nothing to re-create after a meta-device init); :meth:`tables` builds
    the cos/sin tables once per forward and every block reuses them.
    """

    def __init__(self, frequency: float = 100.0) -> None:
        super().__init__()
        self.frequency = frequency

    def tables(self, positions: Tensor, head_dim: int) -> tuple[Tensor, Tensor]:
        """cos, signed sin of shape [N, head_dim] (float32) for integer positions [N, 2].

        The rotate-half sign is folded into the sin table (negative on the first quarter of each
        half), so :meth:`apply` only swaps quarters instead of negating them on every call.
        """
        if head_dim % 4:
            raise ValueError(f"2D RoPE needs a head width divisible by 4, got {head_dim}")
        half = head_dim // 2
        exponents = torch.arange(0, half, 2, device=positions.device).float() / half
        inv_freq = 1.0 / (self.frequency ** exponents)  # [half / 2]
        angles = positions.float()[..., None] * inv_freq  # [N, 2, half / 2]
        angles = torch.cat([angles, angles], dim=-1)  # [N, 2, half]: rotate-half layout
        angles = angles.flatten(-2)  # [N, head_dim]: row half, then column half
        sign = torch.ones(2, 2, head_dim // 4, device=positions.device)
        sign[:, 0] = -1.0
        return angles.cos(), angles.sin() * sign.flatten()

    @staticmethod
    def rotate(x: Tensor, cos: Tensor, signed_sin: Tensor) -> Tensor:
        """Rotate x [B, h, N, d] with tables [N, d]; computed in x's dtype like the official code.

        (Not named `apply`: that would shadow nn.Module.apply, which DeepSpeed ZeRO-3 calls.)

        Per half (a, b) -> (a cos - b sin, b cos + a sin): the quarters of each half are swapped
        and the sign comes from the table.
        """
        swapped = x.unflatten(-1, (2, 2, -1)).flip(-2).flatten(-3)  # (a1, b1, a2, b2) -> (b1, a1, b2, a2)
        return x * cos.to(x.dtype) + swapped * signed_sin.to(x.dtype)


# --------------------------------------------------------------------------------------------
# Attention and block
# --------------------------------------------------------------------------------------------


class Attention(nn.Module):
    """Multi-head self-attention with optional per-head LayerNorm on q, k and optional 2D RoPE.

    [B, N, C] -> [B, N, C]. Uses ``F.scaled_dot_product_attention`` (flash / memory-efficient
    kernels on GPU, bf16 under autocast).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        qkv_bias: bool = True,
        proj_bias: bool = True,
        qk_norm: bool = False,
        norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        # qk-norm normalises each head's query/key vector (LayerNorm over d, weights shared by heads)
        self.q_norm = nn.LayerNorm(self.head_dim, eps=norm_eps) if qk_norm else nn.Identity()
        self.k_norm = nn.LayerNorm(self.head_dim, eps=norm_eps) if qk_norm else nn.Identity()
        self.proj = nn.Linear(dim, dim, bias=proj_bias)

    def forward(self, x: Tensor, rope: tuple[Tensor, Tensor] | None = None,
                key_mask: Tensor | None = None) -> Tensor:
        """x [B, N, C]; rope = (cos, sin) [N, d] tables from RotaryPositionEmbedding2D, or None;
        key_mask bool [B, N] (True = may be attended to), or None for all keys."""
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # [B, h, N, d] each
        q, k = self.q_norm(q), self.k_norm(k)
        if rope is not None:
            q = RotaryPositionEmbedding2D.rotate(q, *rope)
            k = RotaryPositionEmbedding2D.rotate(k, *rope)
        # LayerNorm runs in float32 under autocast; SDPA wants one dtype (bf16 there)
        q, k = q.to(v.dtype), k.to(v.dtype)
        mask = None if key_mask is None else key_mask[:, None, None, :]  # [B, 1, 1, N]: over heads, queries
        warn_math_fallback("the aggregator", q, k, v, mask)
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.proj(x.transpose(1, 2).reshape(B, N, C))


class Block(nn.Module):
    """Pre-norm transformer block: x + ls1(attn(norm1(x))), then x + ls2(mlp(norm2(x))). [B, N, C]."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        proj_bias: bool = True,
        ffn_bias: bool = True,
        init_values: float | None = None,
        qk_norm: bool = False,
        norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        # registration order = official state-dict order: norm1, attn, ls1, norm2, mlp, ls2
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads, qkv_bias=qkv_bias, proj_bias=proj_bias, qk_norm=qk_norm)
        self.ls1 = LayerScale(dim, init_values) if init_values else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), bias=ffn_bias)
        self.ls2 = LayerScale(dim, init_values) if init_values else nn.Identity()

    def forward(self, x: Tensor, rope: tuple[Tensor, Tensor] | None = None,
                key_mask: Tensor | None = None) -> Tensor:
        """x [B, N, C]; rope and key_mask [B, N] as in :meth:`Attention.forward`."""
        x = x + self.ls1(self.attn(self.norm1(x), rope=rope, key_mask=key_mask))
        return x + self.ls2(self.mlp(self.norm2(x)))
