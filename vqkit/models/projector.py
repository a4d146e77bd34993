"""Perceiver resampler: a variable number of views x patches -> a fixed number of LLM tokens.

After open_flamingo's ``PerceiverResampler`` (Alayrac et al., Flamingo, 2022): a set of learned
latent queries cross-attends to the encoder tokens *and to themselves* (keys/values are the
concatenation [tokens; latents]), followed by an MLP, for ``num_layers`` layers. The cost is linear
in the number of input tokens, and the output length no longer depends on how many views a sample
has, so the LLM always sees ``num_latents`` vision tokens.

vqkit additions:
- an input LayerNorm + projection from the aggregator's width (2 * embed_dim per selected layer) to
  the resampler's width ``dim``;
- a learned **view embedding** added to every token of view ``s`` (view 0 = the reference view,
  whose frame the VGGT aggregator treats specially), so the latents can tell views apart;
- a learned **2D position embedding** (``pos_embed``): row + column embeddings on the patch tokens
  and one embedding per special (camera, register) token. VGGT encodes positions with RoPE inside
  attention only, so its output tokens carry no explicit position; without one, a latent could
  select tokens by content alone and never gather "the tokens of one image region";
- a key padding mask, so the zero-filled padding views of a batch are never attended to;
- a final LayerNorm and projection to the LLM hidden size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vqkit.errors import ConfigError
from vqkit.models.view_tokens import check_grid, check_views
from vqkit.utils.attention import warn_math_fallback


class FeedForward(nn.Sequential):
    """Pre-norm MLP: LayerNorm -> Linear(dim, mult*dim) -> GELU -> Linear(mult*dim, dim)."""

    def __init__(self, dim: int, mult: int = 4):
        super().__init__(
            nn.LayerNorm(dim),
            nn.Linear(dim, dim * mult, bias=False),
            nn.GELU(),
            nn.Linear(dim * mult, dim, bias=False),
        )


class PerceiverAttention(nn.Module):
    """Latents attend to [media tokens; latents] (Flamingo's cross-attention with latent self-keys)."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        if dim % num_heads:
            raise ConfigError(f"model.projector: dim ({dim}) must be divisible by num_heads ({num_heads})")
        self.num_heads = num_heads
        self.norm_media = nn.LayerNorm(dim)
        self.norm_latents = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_kv = nn.Linear(dim, 2 * dim, bias=False)
        self.to_out = nn.Linear(dim, dim, bias=False)

    def forward(self, media: torch.Tensor, latents: torch.Tensor, media_mask: torch.Tensor | None) -> torch.Tensor:
        """media [B, N, dim], latents [B, L, dim], media_mask bool [B, N] (True = attend) -> [B, L, dim]."""
        b, n, dim = media.shape
        num_latents = latents.shape[1]
        media = self.norm_media(media)
        latents = self.norm_latents(latents)
        kv_input = torch.cat([media, latents], dim=1)  # [B, N + L, dim]
        q = self.to_q(latents)
        k, v = self.to_kv(kv_input).chunk(2, dim=-1)
        h = self.num_heads
        q, k, v = (x.unflatten(-1, (h, dim // h)).transpose(1, 2) for x in (q, k, v))  # [B, h, T, d]
        mask = None
        if media_mask is not None:
            # Latents are always valid keys, so every query has at least one key even if a sample's
            # media were all padding (no NaN from an all-masked softmax row).
            keep = torch.cat([media_mask, media_mask.new_ones(b, num_latents)], dim=1)
            mask = keep[:, None, None, :]  # [B, 1, 1, N + L], broadcast over heads and queries
        warn_math_fallback("the Perceiver", q, k, v, mask)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.to_out(out.transpose(1, 2).flatten(2))


class PerceiverResampler(nn.Module):
    """Encoder tokens of S views -> ``num_latents`` tokens of the LLM's width.

    Args:
        in_dim: width C_in of the input tokens (2 * aggregator embed_dim * number of layers used).
        out_dim: the LLM hidden size D_llm.
        dim: internal width (default: out_dim).
        num_latents, num_layers, num_heads, ff_mult: Perceiver sizes (seed: 128 latents, 6 layers).
        max_views: size of the learned view-embedding table.
        pos_embed: add learned row/column embeddings to patch tokens (then ``forward`` needs ``grid_hw``).
        num_special_tokens: tokens per view before the patch tokens (VGGT: 1 camera + 4 registers).
        max_grid: size of the row and column tables.
    """

    per_view_tokens = False
    """The output is [B, num_latents, D] whatever the views (the patch merger's is per view)."""

    def __init__(self, in_dim: int, out_dim: int, *, dim: int | None = None, num_latents: int = 128,
                 num_layers: int = 6, num_heads: int = 8, max_views: int = 32, ff_mult: int = 4,
                 pos_embed: bool = False, num_special_tokens: int = 5, max_grid: int = 64):
        super().__init__()
        dim = dim or out_dim
        self.max_views = max_views
        self.num_special_tokens = num_special_tokens
        self.max_grid = max_grid
        if pos_embed:
            self.row_embed = nn.Parameter(torch.randn(max_grid, dim) * 0.02)
            self.col_embed = nn.Parameter(torch.randn(max_grid, dim) * 0.02)
            self.special_embed = nn.Parameter(torch.randn(num_special_tokens, dim) * 0.02)
        else:
            self.row_embed = self.col_embed = self.special_embed = None
        self.input_norm = nn.LayerNorm(in_dim)
        self.input_proj = nn.Linear(in_dim, dim)
        self.view_embed = nn.Embedding(max_views, dim)
        self.latents = nn.Parameter(torch.randn(num_latents, dim) * 0.02)
        self.layers = nn.ModuleList(
            nn.ModuleList([PerceiverAttention(dim, num_heads), FeedForward(dim, ff_mult)])
            for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(dim)
        self.out_proj = nn.Linear(dim, out_dim)
        nn.init.normal_(self.view_embed.weight, std=0.02)

    @classmethod
    def from_config(cls, proj_cfg, in_dim: int, out_dim: int, num_special_tokens: int = 5) -> PerceiverResampler:
        """Build from :class:`vqkit.config.ProjectorConfig`."""
        return cls(in_dim, out_dim, dim=proj_cfg.dim, num_latents=proj_cfg.num_latents,
                   num_layers=proj_cfg.num_layers, num_heads=proj_cfg.num_heads,
                   max_views=proj_cfg.max_views, ff_mult=proj_cfg.ff_mult, pos_embed=proj_cfg.pos_embed,
                   num_special_tokens=num_special_tokens, max_grid=proj_cfg.max_grid)

    @property
    def num_latents(self) -> int:
        return self.latents.shape[0]

    def position_embedding(self, num_tokens: int, grid_hw: tuple[int, int]) -> torch.Tensor:
        """[P, dim]: the special tokens' embeddings, then row + column embeddings in row-major order."""
        rows, cols = check_grid(num_tokens, grid_hw, num_special_tokens=self.num_special_tokens,
                                max_grid=self.max_grid)
        patches = (self.row_embed[:rows, None, :] + self.col_embed[None, :cols, :]).flatten(0, 1)
        return torch.cat([self.special_embed, patches], dim=0)

    def forward(self, tokens: torch.Tensor, view_mask: torch.Tensor | None = None,
                grid_hw: tuple[int, int] | None = None) -> torch.Tensor:
        """tokens [B, S, P, C_in], view_mask bool [B, S] (True = real view), grid_hw (rows, cols) of
        the patch grid (needed with ``pos_embed``) -> [B, num_latents, D_llm]."""
        b, s, p, _ = tokens.shape
        check_views(s, self.max_views)
        x = self.input_proj(self.input_norm(tokens))  # [B, S, P, dim]
        x = x + self.view_embed.weight[:s, None, :]  # view s's embedding on each of its P tokens
        if self.row_embed is not None:
            if grid_hw is None:
                raise ConfigError("model.projector.pos_embed needs the patch grid (grid_hw) of the views")
            x = x + self.position_embedding(p, grid_hw).to(x.dtype)
        x = x.flatten(1, 2)  # [B, S*P, dim]
        media_mask = None
        if view_mask is not None:
            media_mask = view_mask.to(torch.bool)[:, :, None].expand(b, s, p).flatten(1)  # [B, S*P]
        latents = self.latents.to(x.dtype).expand(b, -1, -1)  # [B, L, dim]
        for attn, ff in self.layers:
            latents = latents + attn(x, latents, media_mask)
            latents = latents + ff(latents)
        return self.out_proj(self.norm(latents))
