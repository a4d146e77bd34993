"""Geometry from VGGT's heads inside the vision-question model: :class:`GeometryPredictor`.

``model.geometry.source: heads | auto`` gives views without camera poses (photos, records without
``geom_token``, geometry dropout) the geometry VGGT's camera and depth heads predict from the same
aggregator pass that feeds the projector. The predictor holds only the two heads (frozen, float32);
the aggregator is the model's own encoder, loaded from the same ``model.encoder.weights`` file, so
heads and aggregator were trained together.

    predictor = GeometryPredictor.from_encoder_config(cfg.model.encoder)   # heads of the weights file
    layers = predictor.layers                  # aggregator layers the heads read
    geometry = predictor(tokens, view_mask, patch_start_idx, image_hw, geometry_cfg=cfg.model.geometry)

``geometry`` is what the geometry encoder reads (:func:`vqkit.vggt.predicted_geometry.batch_geometry`:
R, t relative to view 0, K of the input, depth_hist at the scale of ``model.geometry.median_depth_m``
or of the batch's depth maps). Predictions that are not finite are refused (a DataError naming the
sample), never used.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from vqkit.errors import CheckpointError, ConfigError, DataError
from vqkit.utils.distributed import zero3_partitioned
from vqkit.vggt.model import camera_head, default_dpt_layers, dense_head
from vqkit.vggt.predicted_geometry import batch_geometry, box_masks
from vqkit.vggt.weights import read_vggt_state_dict
from vqkit.vggt.weights_file import (
    VGGTFileInfo,
    check_encoder_matches,
    describe_vggt_file,
)

HEAD_PARTS = ("camera_head", "depth_head")
"""The parts of a VGGT file geometry needs."""


def missing_heads(info: VGGTFileInfo) -> list[str]:
    """The parts of :data:`HEAD_PARTS` a VGGT file (its :func:`describe_vggt_file`) does not hold."""
    return [p for p in HEAD_PARTS if p not in info.parts]


def geometry_heads_available(enc_cfg) -> tuple[bool, str]:
    """Whether ``model.encoder.weights`` holds a camera and a depth head, and if not, why (one line)."""
    if not enc_cfg.weights:
        return False, "model.encoder.weights is not set (a random aggregator has no trained heads)"
    try:
        info = describe_vggt_file(enc_cfg.weights)
    except CheckpointError as e:
        return False, str(e)
    missing = missing_heads(info)
    if missing:
        return False, f"{enc_cfg.weights} has no {' or '.join(p + '.*' for p in missing)} keys"
    return True, ""


class GeometryPredictor(nn.Module):
    """VGGT's camera and depth heads, frozen: aggregator tokens -> geometry (module docstring).

    Args:
        embed_dim, patch_size: of the aggregator (its outputs are 2 x embed_dim wide).
        aggregator_depth: its number of layers (resolves the dense head's layer indices).
        dpt_layers, dpt_features, dpt_out_channels, camera_trunk_depth, camera_num_heads: head sizes
            (:class:`vqkit.vggt.VGGT`'s arguments; the official ones by default).
    """

    def __init__(self, embed_dim: int, patch_size: int = 14, aggregator_depth: int = 24, *,
                 dpt_layers: Sequence[int] | None = None, dpt_features: int = 256,
                 dpt_out_channels: Sequence[int] = (256, 512, 1024, 1024), camera_trunk_depth: int = 4,
                 camera_num_heads: int = 16):
        super().__init__()
        layers = list(dpt_layers) if dpt_layers is not None else default_dpt_layers(aggregator_depth)
        self.aggregator_depth = aggregator_depth
        self.camera_head = camera_head(embed_dim, camera_trunk_depth, camera_num_heads)
        self.depth_head = dense_head("depth", embed_dim, patch_size, dpt_features, dpt_out_channels, layers)
        self.requires_grad_(False)
        self.eval()

    @property
    def layers(self) -> list[int]:
        """The aggregator layers (non-negative, sorted) the heads read: the last, and the depth head's."""
        depth = self.aggregator_depth
        return sorted({depth - 1, *(layer % depth for layer in self.depth_head.intermediate_layer_idx)})

    def train(self, mode: bool = True) -> GeometryPredictor:
        return super().train(False)  # frozen: always in eval mode

    @classmethod
    def from_encoder_config(cls, enc_cfg, device: torch.device | str | None = None) -> GeometryPredictor:
        """The heads of ``model.encoder.weights`` (a whole-VGGT file: the official checkpoint or vqkit
        pretrain-encoder's), loaded strictly. A file without them, or with heads that do not fit, is a
        CheckpointError / ConfigError naming the keys; on the meta device only the architecture is built."""
        if not enc_cfg.weights:
            raise ConfigError("model.geometry.source heads / auto predicts geometry with VGGT's camera and depth "
                              "heads, which need model.encoder.weights (the official VGGT-1B checkpoint, or "
                              "RUN/encoder/model.safetensors of vqkit pretrain-encoder); or use source: records")
        info = describe_vggt_file(enc_cfg.weights)
        check_encoder_matches(info, enc_cfg)
        missing = missing_heads(info)
        if missing:
            raise CheckpointError(f"{enc_cfg.weights}: no {' or '.join(p + '.*' for p in missing)} keys, so it cannot "
                                  f"predict geometry (model.geometry.source heads / auto); it holds "
                                  f"{', '.join(info.parts) or 'nothing of VGGT'}. Use the official checkpoint or "
                                  f"vqkit pretrain-encoder's RUN/encoder/model.safetensors, or source: records")
        meta = device is not None and torch.device(device).type == "meta"
        with torch.device("meta") if meta else contextlib.nullcontext():
            predictor = cls(enc_cfg.embed_dim, enc_cfg.patch_size, enc_cfg.depth, **_sizes(info))
        if not meta:
            predictor.load_heads(enc_cfg.weights, info)
            if device is not None:
                predictor.to(device)
        return predictor

    def load_heads(self, source, info: VGGTFileInfo | None = None) -> None:
        """``camera_head.*`` and ``depth_head.*`` of a VGGT file, strictly: a missing, unexpected or
        mis-shaped key is a CheckpointError naming it."""
        state, _ = read_vggt_state_dict(source, HEAD_PARTS)
        expected = self.state_dict()
        missing = sorted(k for k in expected if k not in state)
        unexpected = sorted(k for k in state if k not in expected)
        shapes = sorted(k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape))
        if missing or unexpected or shapes:
            parts = [f"{label} {len(keys)} key(s): {', '.join(keys[:8])}{' ...' if len(keys) > 8 else ''}"
                     for label, keys in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", shapes))
                     if keys]
            raise CheckpointError(f"{source}: the camera / depth head weights do not fit ({'; '.join(parts)}); "
                                  f"the file's heads were trained with other sizes than its description says")
        self.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)

    @torch.no_grad()
    def forward(self, tokens: Sequence[Tensor | None], view_mask: Tensor, patch_start_idx: int,
                image_hw: tuple[int, int], *, geometry_cfg=None, pixel_boxes: Tensor | None = None,
                reference_depth: Tensor | None = None, ids=None) -> dict[str, Tensor]:
        """Aggregator outputs (per layer [B, S, P, 2C], :attr:`layers` present) -> geometry of the B
        samples' views (:func:`vqkit.vggt.predicted_geometry.batch_geometry`). ``geometry_cfg``:
        ``model.geometry`` (bins, max depth, the median-depth prior)."""
        as_float = [None if t is None else t.float() for t in tokens]
        device = next(t for t in as_float if t is not None).device
        B, S = view_mask.shape
        shape = torch.zeros(1, 1, 1, 1, 1, device=device).expand(B, S, 3, *image_hw)  # the heads read its size only
        with torch.autocast(device_type=device.type, enabled=False):
            pose_enc = self.camera_head(as_float, view_mask=view_mask)[-1]
            depth, _ = self.depth_head(as_float, shape, patch_start_idx)
        bins = geometry_cfg.depth_bins if geometry_cfg is not None else 16
        return batch_geometry(pose_enc, depth, view_mask, pixel_mask=box_masks(pixel_boxes, view_mask, image_hw),
                              reference_depth=reference_depth,
                              median_depth_m=geometry_cfg.median_depth_m if geometry_cfg is not None else 2.6,
                              depth_bins=bins, max_depth=geometry_cfg.max_depth if geometry_cfg is not None else 10.0,
                              ids=ids)

    def fill(self, geometry: dict, marked: Tensor, tokens: Sequence[Tensor | None], view_mask: Tensor,
             patch_start_idx: int, image_hw: tuple[int, int], *, geometry_cfg=None, pixel_boxes: Tensor | None = None,
             reference_depth: Tensor | None = None, ids=None) -> dict:
        """A batch's ``geometry`` (R, t, K, depth_hist of B samples) with the samples ``marked`` (bool
        [B]) given the predicted geometry of their views; the other samples keep theirs.

        Only the marked samples go through the heads, except under DeepSpeed ZeRO-3, where every rank must
        call the heads the same number of times whatever its data: then all samples do."""
        marked = marked.to(device=view_mask.device, dtype=torch.bool)
        rows = torch.arange(len(marked), device=marked.device) if zero3_partitioned(self) else marked.nonzero()[:, 0]
        picked = rows.tolist()
        predicted = self([None if t is None else t[rows] for t in tokens], view_mask[rows], patch_start_idx, image_hw,
                         geometry_cfg=geometry_cfg, pixel_boxes=None if pixel_boxes is None else pixel_boxes[rows],
                         reference_depth=None if reference_depth is None else reference_depth[rows],
                         ids=None if ids is None else [ids[i] for i in picked])
        use = marked[rows]
        merged = dict(geometry)
        for key in ("R", "t", "K", "depth_hist"):
            value = geometry[key].clone()
            value[rows[use]] = predicted[key][use].to(device=value.device, dtype=value.dtype)
            merged[key] = value
        return merged

    def fill_batch(self, geometry: dict, batch: dict, samples: list[int], tokens: Sequence[Tensor | None],
                   patch_start_idx: int, image_hw: tuple[int, int], geometry_cfg=None) -> dict:
        """:meth:`fill` for the ``samples`` of a collated batch (its ``predict_geometry`` marks, view
        mask, ``pixel_boxes``, metric ``depths`` when loaded, and record ids for errors); ``geometry``
        and ``tokens`` hold those samples only."""
        meta = batch.get("meta") or []
        ids = [meta[i].get("id", i) if i < len(meta) and isinstance(meta[i], dict) else i for i in samples]
        rows = {k: batch[k][samples] for k in ("pixel_boxes", "depths") if batch.get(k) is not None}
        view_mask = batch["view_mask"][samples].to(torch.bool)
        return self.fill(geometry, batch["predict_geometry"][samples], tokens, view_mask, patch_start_idx, image_hw,
                         geometry_cfg=geometry_cfg, pixel_boxes=rows.get("pixel_boxes"),
                         reference_depth=rows.get("depths"), ids=ids)


def cached_layer_outputs(feats: Tensor, configured: Sequence[int], depth: int,
                         wanted: Sequence[int]) -> list[Tensor | None]:
    """Per-layer aggregator outputs from cached features ``feats`` [B, S, P, C] (the ``configured``
    layers, ``model.encoder.layers``, concatenated on channels): the ``wanted`` layers must be among
    them, since the feature cache stores only those (else a DataError saying what to do)."""
    resolved = [layer % depth for layer in configured]
    missing = sorted(set(wanted) - set(resolved))
    if missing:
        raise DataError(f"predicting geometry from cached features needs aggregator layers {missing}, which the "
                        f"feature cache does not store (it holds model.encoder.layers {resolved}); train from "
                        f"images (no data.feature_cache), or fill geom_token first (vqkit prep geometry)")
    width = feats.shape[-1] // len(resolved)
    outputs: list[Tensor | None] = [None] * depth
    for k, layer in enumerate(resolved):
        outputs[layer] = feats[..., k * width:(k + 1) * width]
    return outputs


def _sizes(info: VGGTFileInfo) -> dict:
    keys = ("dpt_layers", "dpt_features", "dpt_out_channels", "camera_trunk_depth", "camera_num_heads")
    return {k: info.heads[k] for k in keys if info.heads.get(k) is not None}
