"""What a whole-VGGT weights file holds and says about itself, writing one, and the model it describes.

``vqkit pretrain-encoder`` writes ``model.safetensors`` in the official layout (``aggregator.*``,
``camera_head.*``, ``depth_head.*``, optionally ``point_head.*``), so ``model.encoder.weights`` loads
its aggregator like the official checkpoint's and the geometry heads load its heads. Because a
demo-size model differs from VGGT-1B in sizes that the tensors do not all reveal (attention heads,
the layers the dense heads read), the file also carries, in the safetensors metadata under
:data:`META_KEY`, a JSON description: the aggregator's architecture (``model.encoder`` fields), the
heads' sizes (:class:`vqkit.vggt.VGGT` arguments) and the image size and resize mode it was
trained at. An official file has no description: it is VGGT-1B, at 518 px.

:func:`describe_vggt_file` reads what a file holds (its parts, from the keys alone) and its
description; :func:`head_kwargs` turns that into the ``VGGT`` head arguments.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from vqkit.errors import CheckpointError
from vqkit.utils.files import write_safetensors
from vqkit.version import __version__
from vqkit.vggt.weights import (
    VGGT_PARTS,
    _part,
    read_vggt_state_dict,
    resolve_checkpoint,
)

META_KEY = "vqkit_vggt"
"""The safetensors metadata key of a vqkit-written file's description."""

ENCODER_ARCH_FIELDS = ("img_size", "patch_size", "embed_dim", "depth", "num_heads", "mlp_ratio",
                       "num_register_tokens", "patch_embed", "dinov2_depth", "dinov2_num_heads", "qk_norm",
                       "rope_freq", "init_values")
"""The ``model.encoder`` fields that fix the aggregator's architecture (not its weights or use)."""

HEAD_SIZE_ARGS = ("dpt_layers", "dpt_features", "dpt_out_channels", "camera_trunk_depth", "camera_num_heads")
"""The :class:`VGGT` arguments that size its heads."""

OFFICIAL_IMAGE_SIZE = 518
"""The image width VGGT-1B was trained at (the official preprocessing)."""


@dataclass(frozen=True)
class VGGTFileInfo:
    """What :func:`describe_vggt_file` found in a weights file."""

    source: str
    parts: tuple[str, ...]
    """The model parts with keys in the file (``aggregator``, ``camera_head``, ``depth_head``, ...)."""
    encoder: dict | None = None
    """The aggregator's architecture (:data:`ENCODER_ARCH_FIELDS`) of a vqkit-written file, else None."""
    heads: dict = field(default_factory=dict)
    """The head sizes (:data:`HEAD_SIZE_ARGS`) of a vqkit-written file (empty: the official ones)."""
    image_size: int | None = None
    """The image width it was trained at (None: not said; official files: 518)."""
    resize_mode: str | None = None

    def has(self, *parts: str) -> bool:
        return all(p in self.parts for p in parts)


def _metadata(path) -> dict:
    if path.suffix != ".safetensors":
        return {}
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
    except Exception as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from exc
    if META_KEY not in meta:
        return {}
    try:
        return json.loads(meta[META_KEY])
    except ValueError as exc:
        raise CheckpointError(f"{path}: metadata {META_KEY} is not valid JSON ({exc})") from exc


def describe_vggt_file(source: str | os.PathLike) -> VGGTFileInfo:
    """The parts a whole-VGGT file (path, folder or hub id) holds and, for a vqkit-written one, its
    description (module docstring). Reads the keys only (a safetensors header; a .pt is memory-mapped)."""
    path = resolve_checkpoint(source)
    _, keys = read_vggt_state_dict(path, parts=())
    parts = tuple(p for p in VGGT_PARTS if any(_part(k) == p for k in keys))
    meta = _metadata(path)
    official = not meta and "aggregator" in parts
    return VGGTFileInfo(source=str(source), parts=parts, encoder=meta.get("encoder"), heads=meta.get("heads", {}),
                        image_size=meta.get("image_size", OFFICIAL_IMAGE_SIZE if official else None),
                        resize_mode=meta.get("resize_mode", "crop" if official else None))


def head_kwargs(info: VGGTFileInfo, *, point: bool | None = None) -> dict:
    """:class:`VGGT` head arguments for a file: each head it holds enabled (``point`` forces the point
    head on or off), with the sizes of its description (the official sizes otherwise)."""
    kwargs = {"enable_camera": info.has("camera_head"), "enable_depth": info.has("depth_head"),
              "enable_point": info.has("point_head") if point is None else point}
    kwargs.update({k: v for k, v in info.heads.items() if k in HEAD_SIZE_ARGS})
    return kwargs


def check_encoder_matches(info: VGGTFileInfo, enc_cfg, where: str = "model.encoder") -> None:
    """A vqkit-written file's aggregator must be the one ``enc_cfg`` describes: a mismatch is a
    CheckpointError naming the fields (an official file carries no description; its tensor shapes are
    checked when it loads)."""
    if not info.encoder:
        return
    wrong = [f"{k}: file {info.encoder[k]!r}, config {getattr(enc_cfg, k)!r}" for k in ENCODER_ARCH_FIELDS
             if k in info.encoder and info.encoder[k] != getattr(enc_cfg, k)]
    if wrong:
        raise CheckpointError(f"{info.source}: this VGGT was trained with another aggregator than {where} "
                              f"describes ({'; '.join(wrong)}); set {where} to the file's architecture")


def save_vggt_file(model: nn.Module, path: str | os.PathLike, enc_cfg, *, head_sizes: Mapping,
                   image_size: int, resize_mode: str, extra: Mapping | None = None) -> os.PathLike:
    """Write ``model`` (a :class:`VGGT`) as one safetensors file in the official layout, atomically,
    with its description (module docstring); ``extra`` adds JSON fields to it (e.g. the training step)."""
    state = {k: v.detach().to("cpu", torch.float32 if v.is_floating_point() else v.dtype).contiguous()
             for k, v in model.state_dict().items()}
    description = {"encoder": {k: getattr(enc_cfg, k) for k in ENCODER_ARCH_FIELDS},
                   "heads": {k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in head_sizes.items()
                             if k in HEAD_SIZE_ARGS},
                   "image_size": int(image_size), "resize_mode": resize_mode, **dict(extra or {})}
    metadata = {"format": "pt", "vqkit_version": __version__, META_KEY: json.dumps(description)}
    return write_safetensors(path, state, metadata=metadata)


def encoder_config_of(info: VGGTFileInfo, base=None):
    """The ``model.encoder`` config of a file's aggregator: its description's architecture over
    ``base`` (default: the VGGT-1B defaults), with ``weights`` = the file."""
    import dataclasses

    from vqkit.config.schema import EncoderConfig

    base = base if base is not None else EncoderConfig()
    return dataclasses.replace(base, weights=info.source, **(info.encoder or {}))


def vggt_from_file(source: str | os.PathLike, *, device: torch.device | str | None = None,
                   untrained: bool = False, seed: int = 0):
    """The whole VGGT a file describes, loaded strictly (``untrained``: the same architecture from a
    random init drawn from ``seed``, the baseline that shows what training taught). Returns
    ``(model, info, encoder config)``; the model is frozen, in eval mode."""
    import dataclasses

    from vqkit.vggt.model import VGGT

    info = describe_vggt_file(source)
    if "aggregator" not in info.parts:
        raise CheckpointError(f"{source}: not a whole-VGGT weights file (no aggregator.* keys)")
    enc = dataclasses.replace(encoder_config_of(info), frozen=True)
    if untrained:
        enc = dataclasses.replace(enc, weights=None, seed=seed)
    model = VGGT.from_config(enc, device=device, **head_kwargs(info))
    return model.freeze(), info, enc
