"""Patch merger: every view's aggregator patch tokens, 2 x 2 neighbours merged, as LLM tokens.

The connector of VG-LLM (Zheng et al., "Learning from Videos for 3D World", 2025), which feeds VGGT's
patch features to Qwen2.5-VL through the same kind of merger Qwen2.5-VL uses for its own vision
tokens: each patch token is normalised, the ``merge_size x merge_size`` neighbours of a cell are
concatenated, and an MLP (Linear -> GELU -> Linear) maps the merged vector to the LLM's width.

Unlike the Perceiver resampler (:mod:`vqkit.models.projector`), nothing summarises the views before
the LLM: it receives one token per merged cell of every view, so its own attention, conditioned on
the question, picks the image regions an answer needs. The price is a token count that grows with
the views and the image size: ``views x ceil(rows / m) x ceil(cols / m)`` for a ``rows x cols`` patch
grid (:func:`vqkit.tokenizer.vision_token_count` holds the same rule). At VGGT's 518 px the grid is
37 x 37, so a 2 x 2 merge gives 19 x 19 = 361 tokens per view; an odd grid is padded with zero
tokens on its last row / column (after the normalisation, so padding carries no signal).

vqkit additions, as in the Perceiver:
- the camera and register tokens VGGT prepends to each view are left out (VG-LLM uses the patch
  tokens only; the geometry tokens carry the camera);
- a learned **view embedding** (view 0 is VGGT's reference view) and a learned **2D position
  embedding** of the merged cell (``pos_embed``), added in the LLM's width: Qwen3's 1D RoPE only
  tells the LLM the token order, not where a row of the grid ends or which view a token belongs to
  (Qwen2.5-VL has M-RoPE for that);
- optionally (``point_embed``) an embedding of **where each cell is in 3D**: the 3D points of its
  patches (:func:`vqkit.models.patch_points.patch_points`, from depth maps and camera poses, in the
  frame boxes are written in) through Fourier features and an MLP, LLaVA-3D's "3D patches"; a patch
  without a point adds nothing.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from vqkit.errors import ConfigError
from vqkit.models.patch_points import FOURIER_FREQUENCIES, point_features
from vqkit.models.view_tokens import check_grid, check_views


def merged_grid(grid_hw: tuple[int, int], merge_size: int) -> tuple[int, int]:
    """(rows, cols) of merged cells for a patch grid: each side rounded up to whole cells."""
    rows, cols = (int(v) for v in grid_hw)
    return math.ceil(rows / merge_size), math.ceil(cols / merge_size)


def merge_patches(x: torch.Tensor, grid_hw: tuple[int, int], merge_size: int) -> torch.Tensor:
    """Normalised patch tokens [B, S, rows * cols, C] (row-major) -> merged cells [B, S, cells, m*m*C]:
    a cell's ``m x m`` patches concatenated row by row, cells in row-major order. Zero patches complete
    an odd grid (after the normalisation, so they carry nothing)."""
    rows, cols = (int(v) for v in grid_hw)
    out_rows, out_cols = merged_grid(grid_hw, merge_size)
    m = merge_size
    x = F.pad(x.unflatten(2, (rows, cols)), (0, 0, 0, out_cols * m - cols, 0, out_rows * m - rows))
    x = x.unflatten(3, (out_cols, m)).unflatten(2, (out_rows, m))  # [B, S, R, m, Cc, m, C]
    return x.permute(0, 1, 2, 4, 3, 5, 6).flatten(4).flatten(2, 3)


class PatchMerger(nn.Module):
    """Encoder tokens of S views -> ``S x cells`` tokens of the LLM's width (``per_view_tokens``).

    Args:
        in_dim: width C_in of the input tokens (2 * aggregator embed_dim * number of layers used).
        out_dim: the LLM hidden size D_llm.
        merge_size: side of the merged square (2: four patches per token, as VG-LLM and Qwen2.5-VL).
        hidden: the MLP's hidden width (default: the merged width ``merge_size**2 * in_dim``, as
            Qwen2.5-VL's merger).
        max_views: size of the learned view-embedding table.
        pos_embed: add learned row/column embeddings of the merged cells.
        num_special_tokens: tokens per view before the patch tokens (VGGT: 1 camera + 4 registers).
        max_grid: rows and columns of merged cells the position tables cover.
        point_embed: add an embedding of the 3D points of each cell's patches (``points`` in forward).
    """

    per_view_tokens = True
    """The output holds tokens of every view slot, [B, S, T, D]: the model keeps the real views' ones."""

    def __init__(self, in_dim: int, out_dim: int, *, merge_size: int = 2, hidden: int | None = None,
                 max_views: int = 32, pos_embed: bool = True, num_special_tokens: int = 5, max_grid: int = 64,
                 point_embed: bool = False):
        super().__init__()
        if merge_size < 1:
            raise ConfigError(f"model.projector.merge_size must be >= 1, got {merge_size}")
        self.merge_size = merge_size
        self.num_special_tokens = num_special_tokens
        self.max_views = max_views
        self.max_grid = max_grid
        merged = in_dim * merge_size * merge_size
        hidden = hidden or merged
        self.norm = nn.LayerNorm(in_dim)
        self.mlp = nn.Sequential(nn.Linear(merged, hidden), nn.GELU(), nn.Linear(hidden, out_dim))
        self.view_embed = nn.Parameter(torch.randn(max_views, out_dim) * 0.02)
        if pos_embed:
            self.row_embed = nn.Parameter(torch.randn(max_grid, out_dim) * 0.02)
            self.col_embed = nn.Parameter(torch.randn(max_grid, out_dim) * 0.02)
        else:
            self.row_embed = self.col_embed = None
        self.point_mlp = None
        if point_embed:  # per patch of the cell: its point's features and whether it has one
            width = merge_size * merge_size * (4 + 6 * len(FOURIER_FREQUENCIES))
            self.point_mlp = nn.Sequential(nn.Linear(width, out_dim), nn.GELU(), nn.Linear(out_dim, out_dim))

    @classmethod
    def from_config(cls, proj_cfg, in_dim: int, out_dim: int, num_special_tokens: int = 5) -> PatchMerger:
        """Build from :class:`vqkit.config.ProjectorConfig` (``dim`` is the MLP's hidden width)."""
        return cls(in_dim, out_dim, merge_size=proj_cfg.merge_size, hidden=proj_cfg.dim,
                   max_views=proj_cfg.max_views, pos_embed=proj_cfg.pos_embed,
                   num_special_tokens=num_special_tokens, max_grid=proj_cfg.max_grid,
                   point_embed=proj_cfg.point_embed)

    def tokens_per_view(self, grid_hw: tuple[int, int]) -> int:
        rows, cols = merged_grid(grid_hw, self.merge_size)
        return rows * cols

    def forward(self, tokens: torch.Tensor, view_mask: torch.Tensor | None = None,
                grid_hw: tuple[int, int] | None = None, points: tuple[torch.Tensor, torch.Tensor] | None = None
                ) -> torch.Tensor:
        """tokens [B, S, P, C_in], view_mask bool [B, S] (unused: every view slot is merged, the model
        keeps the real views' tokens), grid_hw (rows, cols) of the patch grid -> [B, S, T, D_llm]
        with T = ``tokens_per_view(grid_hw)``, cells in row-major order. ``points``: (points [B, S,
        rows * cols, 3], valid [B, S, rows * cols]) of the patches, for ``point_embed``."""
        if grid_hw is None:
            raise ConfigError("the patch merger needs the patch grid (grid_hw) of the views")
        _, s, p, _ = tokens.shape
        check_views(s, self.max_views)
        m = self.merge_size
        check_grid(p, grid_hw, num_special_tokens=self.num_special_tokens, max_grid=self.max_grid, merge_size=m)
        out_rows, out_cols = merged_grid(grid_hw, m)
        x = self.mlp(merge_patches(self.norm(tokens[:, :, self.num_special_tokens:]), grid_hw, m))  # [B, S, T, D]
        x = x + self.view_embed[:s, None, :].to(x.dtype)
        if self.row_embed is not None:
            pos = (self.row_embed[:out_rows, None, :] + self.col_embed[None, :out_cols, :]).flatten(0, 1)
            x = x + pos.to(x.dtype)
        if self.point_mlp is not None and points is not None:
            pts, valid = points
            valid = valid[..., None].to(x.dtype)
            feats = torch.cat([point_features(pts.to(x.dtype)) * valid, valid], dim=-1)  # [B, S, P, 4 + 6F]
            cell_has_point = merge_patches(valid, grid_hw, m).amax(-1, keepdim=True)  # a cell with no point: nothing
            x = x + self.point_mlp(merge_patches(feats, grid_hw, m)) * cell_has_point
        return x
