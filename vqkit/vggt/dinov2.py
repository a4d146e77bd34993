"""DINOv2 ViT with register tokens, as used by VGGT for its patch embedding.

Key names match the official ``aggregator.patch_embed.*`` weights (``cls_token``, ``pos_embed``,
``register_tokens``, ``mask_token``, ``patch_embed.proj``, ``blocks.N``, ``norm``). The model only
returns the final-normed patch tokens, which is all VGGT uses.

Positional embedding: learned for the ``1 + M*M`` tokens of the training grid (M = img_size /
patch_size, 37 for VGGT); other grids interpolate the M x M table bicubically with antialiasing in
float32 (DINOv2's ``interpolate_pos_encoding`` with VGGT's settings: offset 0, i.e. an explicit
output size).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vqkit.vggt.layers import Block, PatchEmbed

# name -> (width, depth, heads); the official VGGT release uses dinov2_vitl14_reg
DINOV2_PRESETS: dict[str, tuple[int, int, int]] = {
    "dinov2_vits14_reg": (384, 12, 6),
    "dinov2_vitb14_reg": (768, 12, 12),
    "dinov2_vitl14_reg": (1024, 24, 16),
    "dinov2_vitg2_reg": (1536, 40, 24),
}


class DinoVisionTransformer(nn.Module):
    """[B, 3, H, W] (ImageNet-normalised) -> patch tokens [B, (H/p)*(W/p), C]."""

    def __init__(
        self,
        img_size: int = 518,
        patch_size: int = 14,
        embed_dim: int = 1024,
        depth: int = 24,
        num_heads: int = 16,
        mlp_ratio: float = 4.0,
        num_register_tokens: int = 4,
        init_values: float | None = 1.0,
        interpolate_antialias: bool = True,
        interpolate_offset: float = 0.0,
    ) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.num_register_tokens = num_register_tokens
        self.interpolate_antialias = interpolate_antialias
        self.interpolate_offset = interpolate_offset
        grid = img_size // patch_size
        # Parameters first, then submodules in the order of the official checkpoint's key list
        # (patch_embed, blocks, norm), so state_dict() keys come out in the same order.
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + grid * grid, embed_dim))
        self.register_tokens = (
            nn.Parameter(torch.zeros(1, num_register_tokens, embed_dim)) if num_register_tokens else None
        )
        # Unused at inference (masked-image training only) but part of the official weights.
        self.mask_token = nn.Parameter(torch.zeros(1, embed_dim), requires_grad=False)
        self.patch_embed = PatchEmbed(patch_size=patch_size, in_chans=3, embed_dim=embed_dim)
        self.blocks = nn.ModuleList(
            Block(embed_dim, num_heads, mlp_ratio=mlp_ratio, init_values=init_values, norm_eps=1e-6)
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self._init_weights()

    def _init_weights(self) -> None:
        """DINOv2's init (timm ViT): truncated normal 0.02 for pos_embed and Linear weights."""
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        if self.register_tokens is not None:
            nn.init.normal_(self.register_tokens, std=1e-6)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def interpolate_pos_encoding(self, x: Tensor, height: int, width: int) -> Tensor:
        """Positional embedding [1, 1 + h*w, C] for an image of height x width pixels.

        x [B, 1 + h*w, C] only supplies the token count and dtype. The stored table is returned
        unchanged for the training grid; otherwise the M x M patch table is resized to (h, w) in
        float32 and cast back to x's dtype.
        """
        num_patches = x.shape[1] - 1
        num_stored = self.pos_embed.shape[1] - 1
        if num_patches == num_stored and height == width:
            return self.pos_embed
        pos_embed = self.pos_embed.float()
        cls_pos, patch_pos = pos_embed[:, :1], pos_embed[:, 1:]
        dim = x.shape[-1]
        grid_h, grid_w = height // self.patch_size, width // self.patch_size
        M = int(math.sqrt(num_stored))
        if M * M != num_stored:
            raise ValueError(f"pos_embed holds {num_stored} patch positions, not a square grid")
        if self.interpolate_offset:
            # DINOv1's historical kludge: a scale factor slightly above the exact ratio
            size_kwargs = {"scale_factor": ((grid_h + self.interpolate_offset) / M,
                                            (grid_w + self.interpolate_offset) / M)}
        else:
            size_kwargs = {"size": (grid_h, grid_w)}
        patch_pos = F.interpolate(
            patch_pos.reshape(1, M, M, dim).permute(0, 3, 1, 2),
            mode="bicubic",
            antialias=self.interpolate_antialias,
            **size_kwargs,
        )
        patch_pos = patch_pos.permute(0, 2, 3, 1).reshape(1, grid_h * grid_w, dim)
        return torch.cat([cls_pos, patch_pos], dim=1).to(x.dtype)

    def forward(self, images: Tensor) -> Tensor:
        """images [B, 3, H, W] -> final-normed patch tokens [B, (H/p)*(W/p), C] (cls/registers dropped)."""
        B, _, H, W = images.shape
        x = self.patch_embed(images)
        x = torch.cat([self.cls_token.expand(B, -1, -1), x], dim=1)
        x = x + self.interpolate_pos_encoding(x, H, W)
        if self.register_tokens is not None:
            # registers go after cls and carry no positional embedding
            x = torch.cat([x[:, :1], self.register_tokens.expand(B, -1, -1), x[:, 1:]], dim=1)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)[:, 1 + self.num_register_tokens:]
