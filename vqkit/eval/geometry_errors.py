"""How well VGGT's heads predict cameras and depth on posed views (``vqkit eval-geometry``, and the
periodic check of ``vqkit pretrain-encoder``).

Per view set (a room's views, :mod:`vqkit.data.posed_views`), for every pair of views i < j:

- **rotation error**: the angle of ``R_pred_ij^T R_true_ij``, where ``R_ij = R_j R_i^T`` is the
  rotation from camera i to camera j (world-to-camera ``R``; independent of the world frame);
- **translation direction error**: the angle between the predicted and the true relative translation
  ``t_ij = t_j - R_ij t_i`` (camera i's centre seen from camera j). Directions only, so the unknown
  scale of VGGT's translations does not matter; no sign folding (a reversed direction is 180 degrees).
  Pairs whose true cameras share a centre are skipped.

Both are reported as medians over all pairs (degrees). **Depth AbsRel**: per view, the prediction is
scaled so its median equals the true depth's median over the valid pixels ("median scaling", VGGT's
depth is up to scale), then ``mean(|pred - true| / true)`` over those pixels; averaged over views.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from vqkit.vggt.losses import relative_extrinsics
from vqkit.vggt.pose_encoding import pose_encoding_to_extri_intri


def rotation_angle_deg(R_a: Tensor, R_b: Tensor) -> Tensor:
    """Angle (degrees) of the rotation ``R_a^T R_b`` between [..., 3, 3] rotations."""
    cos = ((R_a.transpose(-1, -2) @ R_b).diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2
    return torch.rad2deg(torch.acos(cos.clamp(-1.0, 1.0)))


def relative_pose_errors(pred: Tensor, true: Tensor) -> tuple[Tensor, Tensor]:
    """Rotation and translation-direction errors (degrees) of every pair i < j of S views, from
    world-to-camera extrinsics [S, 3, 4] (any world frame, any scale). Returns (rotation [P],
    translation [P']) with P = S (S - 1) / 2 and P' <= P (pairs with coincident true centres skipped)."""
    pred, true = pred.double(), true.double()
    i, j = torch.triu_indices(len(pred), len(pred), offset=1)

    def pairs(ext):
        R, t = ext[..., :3], ext[..., 3]
        R_ij = R[j] @ R[i].transpose(-1, -2)
        return R_ij, t[j] - (R_ij @ t[i, :, None])[..., 0]

    (R_p, t_p), (R_t, t_t) = pairs(pred), pairs(true)
    rotation = rotation_angle_deg(R_p, R_t)
    keep = t_t.norm(dim=-1) > 1e-9
    cos = F.cosine_similarity(t_p[keep], t_t[keep], dim=-1, eps=1e-12)
    return rotation.float(), torch.rad2deg(torch.acos(cos.clamp(-1.0, 1.0))).float()


def depth_abs_rel(pred: Tensor, true: Tensor, valid: Tensor) -> float | None:
    """AbsRel of one view's predicted depth [H, W] after median scaling, over ``valid`` [H, W] pixels
    (None when no pixel is valid or the prediction's median is not positive)."""
    p, t = pred[valid].double(), true[valid].double()
    if not len(t) or not bool(p.median() > 0):
        return None
    p = p * (t.median() / p.median())
    return float(((p - t).abs() / t).mean())


@torch.no_grad()
def evaluate_geometry(vggt, dataset, *, batch_size: int = 8, device: torch.device | str | None = None,
                      progress: bool = False) -> dict[str, Any]:
    """The module's figures for ``vggt`` (a :class:`vqkit.vggt.VGGT` with camera and depth
    heads) on a view-set dataset (:func:`vqkit.data.posed_views.build_view_set_dataset`):
    ``rotation_error_deg``, ``translation_error_deg`` (medians over pairs), ``depth_abs_rel`` (mean
    over views), ``rotation_within_10_deg`` (% of pairs), and ``rooms``, ``pairs``, ``views``, ``seconds``."""
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm

    from vqkit.data.posed_views import collate_view_sets

    device = torch.device(device) if device is not None else next(vggt.parameters()).device
    was_training = vggt.training
    vggt.eval()
    started = time.time()
    rotations, translations, abs_rels, rooms = [], [], [], 0
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_view_sets)
    for batch in tqdm(loader, desc="eval-geometry", disable=not progress, dynamic_ncols=True):
        images, view_mask = batch["images"].to(device), batch["view_mask"].to(device)
        out = vggt(images, view_mask=view_mask)
        pred_ext, _ = pose_encoding_to_extri_intri(out.pose_enc.float().cpu(), tuple(images.shape[-2:]))
        geometry = batch["geometry"]
        true_ext = torch.cat([geometry["R"], geometry["t"][..., None]], dim=-1)
        depth = out.depth[..., 0].float().cpu() if out.depth is not None else None
        for b in range(images.shape[0]):
            S = int(batch["view_mask"][b].sum())
            rooms += 1
            rot, trans = relative_pose_errors(pred_ext[b, :S], relative_extrinsics(true_ext[b:b + 1, :S])[0])
            rotations.append(rot)
            translations.append(trans)
            if depth is None:
                continue
            for v in range(S):
                true = batch["depths"][b, v]
                value = depth_abs_rel(depth[b, v], true, torch.isfinite(true) & (true > 0))
                if value is not None:
                    abs_rels.append(value)
    vggt.train(was_training)
    rotation, translation = torch.cat(rotations), torch.cat(translations)
    return {"rotation_error_deg": _median(rotation), "translation_error_deg": _median(translation),
            "depth_abs_rel": sum(abs_rels) / len(abs_rels) if abs_rels else None,
            "rotation_within_10_deg": float((rotation < 10).float().mean() * 100) if len(rotation) else None,
            "rooms": rooms, "pairs": len(rotation), "views": len(abs_rels), "seconds": time.time() - started}


def _median(values: Tensor) -> float | None:
    return float(values.median()) if len(values) else None


def compare_geometry(source, data: list[str], *, rooms: int = 300, baseline: bool = True, views: int = 8,
                     image_size: int | None = None, batch_size: int = 8, device=None, seed: int = 0,
                     progress: bool = False) -> dict[str, Any]:
    """:func:`evaluate_geometry` of the VGGT in ``source`` (a weights file, folder or hub id; its
    architecture from the file's description) on the first ``rooms`` view sets of ``data``, and, with
    ``baseline``, of the same architecture untrained (random init from ``seed``). The images are read at
    the file's training size (``image_size`` overrides), up to ``views`` per room."""
    from vqkit.config.schema import DataConfig
    from vqkit.data.posed_views import build_view_set_dataset
    from vqkit.errors import CheckpointError
    from vqkit.vggt.weights_file import describe_vggt_file, vggt_from_file

    parts = describe_vggt_file(source).parts
    if "camera_head" not in parts or "depth_head" not in parts:
        raise CheckpointError(f"{source}: has no camera and depth heads to evaluate (it holds {', '.join(parts)})")
    model, info, _ = vggt_from_file(source, device=device)
    size = image_size or info.image_size or 518
    data_cfg = dataclasses.replace(DataConfig(), image_size=size, resize_mode=info.resize_mode or "crop",
                                   num_views=views, view_sampling="uniform")
    dataset = build_view_set_dataset(data_cfg, data, train=False, limit=rooms)
    result: dict[str, Any] = {"encoder": str(source), "data": [str(d) for d in data], "image_size": size,
                              "trained": evaluate_geometry(model, dataset, batch_size=batch_size, progress=progress)}
    if baseline:
        untrained, _, _ = vggt_from_file(source, device=device, untrained=True, seed=seed)
        result["untrained"] = evaluate_geometry(untrained, dataset, batch_size=batch_size, progress=progress)
    if info.heads or info.encoder:
        result["description"] = {"encoder": info.encoder, "heads": info.heads}
    return result


def format_geometry_table(result: dict[str, Any]) -> str:
    """The figures of :func:`compare_geometry` side by side."""
    columns = [k for k in ("trained", "untrained") if k in result]
    rows = [("rotation error (median, deg)", "rotation_error_deg", "{:.1f}"),
            ("translation direction error (median, deg)", "translation_error_deg", "{:.1f}"),
            ("depth AbsRel (median-scaled, mean)", "depth_abs_rel", "{:.3f}"),
            ("pairs with rotation error < 10 deg (%)", "rotation_within_10_deg", "{:.1f}")]
    lines = [f"{'':<44}" + "".join(f"{c:>12}" for c in columns)]
    for label, key, fmt in rows:
        cells = []
        for c in columns:
            value = result[c].get(key)
            missing = value is None or (isinstance(value, float) and math.isnan(value))
            cells.append(f"{'-' if missing else fmt.format(value):>12}")
        lines.append(f"{label:<44}" + "".join(cells))
    first = result[columns[0]]
    lines.append(f"{first['rooms']} rooms, {first['pairs']} view pairs, {first['views']} depth maps at "
                 f"{result['image_size']} px")
    return "\n".join(lines)
