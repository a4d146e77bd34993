"""VGGT's predictions -> a record's camera geometry (``R``, ``t``, ``K``, ``depth_hist``).

For the S views of one record, from the camera head's pose encoding and the depth head's depth:

- ``R``, ``t``: world-to-camera, OpenCV axes, **relative to view 0** (view 0 is exactly (I, 0); the
  world frame is view 0's camera frame), as in :mod:`vqkit.cameras`.
- ``K``: the pixel intrinsics of each **image file as stored**. VGGT's intrinsics describe the
  model's input (principal point at its centre); the views reached it through vqkit's resize, crop
  or pad (:class:`vqkit.data.images.ResizePlan`) and the padding to a common size
  (:func:`vqkit.data.images.load_views`' shifts), and both are undone here.
- ``depth_hist``: the fraction of each view's pixels per depth bin over [0, max_depth] m
  (:func:`vqkit.cameras.depth_histogram`), counting only the pixels of the view itself (not the
  white padding).

**Scale.** VGGT is trained on scenes normalised to unit mean point distance from the first camera,
so its translations and depths are known only up to one factor per record; records are metric. One
factor ``scale`` (metres per VGGT unit) multiplies every ``t`` and every depth of the record:

1. ``reference_depth`` given (metric depth maps of the views, e.g. a record with ``depths`` but no
   poses): the ratio of the medians of the reference and the predicted depth over the pixels valid
   in both (``scale_source == "depth"``) -- metric, as far as the depth maps are;
2. else ``median_depth_m`` (default :data:`DEFAULT_MEDIAN_DEPTH_M`): the factor that puts the median
   predicted depth of the record's views at that prior (``"prior"``); set it to the median depth of
   the training corpus (:func:`median_depth_from_histograms` reads it from the records' histograms);
3. ``median_depth_m=None``: VGGT's own units are kept (``"none"``).

What the geometry encoder (:mod:`vqkit.models.geometry_tokens`) then receives: ``R`` relative to view
0, and ``K`` normalised by the image size, are scale-free and exact as predicted; ``t`` is divided
there by the mean camera distance, so the factor cancels; only ``depth_hist`` depends on it. With
the prior, the histogram keeps the *shape* of the predicted depth distribution (how near and how
spread the surfaces are, relative to each other) but its level is the prior's: from predicted
geometry the model cannot read a room's absolute size, which nothing in the photos fixes anyway.
Records trained on carry their true metric histograms; the prior keeps predicted ones in the same
range (an unscaled VGGT depth of ~1 unit would put nearly all pixels in the first bins).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from vqkit.cameras import (
    crop_intrinsics,
    depth_histogram,
    relative_poses,
    resize_intrinsics,
)
from vqkit.errors import DataError
from vqkit.vggt.pose_encoding import pose_encoding_to_extri_intri

DEFAULT_MEDIAN_DEPTH_M = 2.6
"""Prior median depth (m) of an indoor view: the pooled median of the synthetic benchmark's depth
maps is 2.64 m (800 views of data/synth), the median of its per-view medians 2.91 m."""


@dataclass(frozen=True)
class PredictedGeometry:
    """One record's camera geometry from VGGT's heads, in the record conventions (S views)."""

    R: np.ndarray
    """[S, 3, 3] float64 world-to-camera rotations, view 0 = identity."""
    t: np.ndarray
    """[S, 3] float64 world-to-camera translations (x ``scale``), view 0 = 0."""
    K: np.ndarray
    """[S, 3, 3] float64 pixel intrinsics of the stored image files."""
    depth_hist: np.ndarray
    """[S, bins] float32 fraction of each view's pixels per depth bin (depth x ``scale``)."""
    scale: float
    """Metres per VGGT unit applied to ``t`` and the depth."""
    scale_source: str
    """"depth" (reference depth maps), "prior" (``median_depth_m``) or "none"."""
    median_depth: float
    """Median depth of the views' pixels after scaling (the prior, when scale_source is "prior")."""

    def as_geom_token(self) -> dict:
        """The record field ``geom_token``: {"R", "t", "K", "depth_hist"} as JSON lists."""
        return {"R": self.R.tolist(), "t": self.t.tolist(), "K": self.K.tolist(),
                "depth_hist": self.depth_hist.astype(float).tolist()}


def _as_numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu", torch.float64).numpy()
    return np.asarray(x, dtype=np.float64)


def view_boxes(plans: Sequence, shifts: np.ndarray | None, image_hw: tuple[int, int] | None = None) -> np.ndarray:
    """int [S, 4]: each view's image inside the model's input as (x0, y0, x1, y1), padding excluded.

    ``plans``: each view's :class:`vqkit.data.images.ResizePlan` (anything with ``resized``,
    ``offset`` and ``out``); ``shifts``: each view's (dx, dy) inside the common H x W input
    (None = all at (0, 0)); ``image_hw`` (H, W), when given, is checked to hold every view.
    """
    shifts = np.zeros((len(plans), 2)) if shifts is None else np.asarray(shifts)
    boxes = np.zeros((len(plans), 4), dtype=np.int64)
    for v, plan in enumerate(plans):
        (rw, rh), (x0, y0), (ow, oh) = plan.resized, plan.offset, plan.out
        dx, dy = int(shifts[v, 0]), int(shifts[v, 1])
        if image_hw is not None and (dx < 0 or dy < 0 or dx + ow > image_hw[1] or dy + oh > image_hw[0]):
            raise ValueError(f"view {v}: a {ow}x{oh} image at ({dx}, {dy}) does not fit the "
                             f"{image_hw[1]}x{image_hw[0]} input")
        # the resized image covers [-x0, -x0 + rw) of the plan's output (a crop when x0 >= 0, a pad else)
        left, right = max(0, -x0), min(ow, rw - x0)
        top, bottom = max(0, -y0), min(oh, rh - y0)
        boxes[v] = dx + left, dy + top, dx + right, dy + bottom
    return boxes


def view_masks(plans: Sequence, shifts: np.ndarray | None, image_hw: tuple[int, int]) -> np.ndarray:
    """bool [S, H, W]: the pixels of the model's input that show each view's image (not padding);
    arguments as :func:`view_boxes`."""
    H, W = image_hw
    masks = np.zeros((len(plans), H, W), dtype=bool)
    for v, (x0, y0, x1, y1) in enumerate(view_boxes(plans, shifts, image_hw)):
        masks[v, y0:y1, x0:x1] = True
    return masks


def _checked_cameras(pose_enc: np.ndarray, image_hw: tuple[int, int], where: str) -> tuple[np.ndarray, np.ndarray]:
    """[S, 9] -> world-to-camera (R [S, 3, 3], t [S, 3]) and K [S, 3, 3] of the model input; refuses
    non-finite or degenerate encodings."""
    for v, enc in enumerate(pose_enc):
        if not np.isfinite(enc).all():
            raise DataError(f"{where}: the camera head's prediction for view {v} is not finite ({enc.tolist()}); "
                            f"it cannot be used as geometry")
        if np.linalg.norm(enc[3:7]) < 1e-8:
            raise DataError(f"{where}: the predicted rotation of view {v} is degenerate (a zero quaternion)")
        if not (0 < enc[7] < np.pi and 0 < enc[8] < np.pi):
            raise DataError(f"{where}: the predicted field of view of view {v} ({enc[7]:.4g}, {enc[8]:.4g} rad) "
                            f"is outside (0, pi)")
    extrinsics, intrinsics = pose_encoding_to_extri_intri(torch.from_numpy(pose_enc), image_hw)
    R, t = relative_poses(extrinsics[:, :, :3].numpy(), extrinsics[:, :, 3].numpy())
    return (R, t), intrinsics.numpy()


def _scale(depth: np.ndarray, masks: np.ndarray, reference_depth, median_depth_m: float | None) -> tuple[float, str]:
    if reference_depth is not None:
        reference = _as_numpy(reference_depth)
        if reference.shape != depth.shape:
            raise ValueError(f"reference_depth has shape {reference.shape}, the prediction {depth.shape}")
        both = masks & np.isfinite(reference) & (reference > 0)
        if both.any():
            return float(np.median(reference[both]) / np.median(depth[both])), "depth"
    if median_depth_m is not None:
        return float(median_depth_m / np.median(depth[masks])), "prior"
    return 1.0, "none"


def geometry_from_predictions(pose_enc, depth, plans: Sequence, shifts: np.ndarray | None = None, *,
                              reference_depth=None, median_depth_m: float | None = DEFAULT_MEDIAN_DEPTH_M,
                              depth_bins: int = 16, max_depth: float = 10.0,
                              where: str = "predicted geometry") -> PredictedGeometry:
    """One record's geometry from VGGT's predictions for its S views (see the module docstring).

    Args:
        pose_enc: [S, 9] the camera head's pose encoding (``VGGTOutput.pose_enc[b, :S]``).
        depth: [S, H, W] or [S, H, W, 1] the depth head's depth (``VGGTOutput.depth[b, :S]``), at
            the model's input size H x W.
        plans: each view's :class:`vqkit.data.images.ResizePlan` (from ``load_image`` /
            ``load_views``): how its file became the model's input.
        shifts: [S, 2] each view's (dx, dy) inside the common input (``load_views``' third
            result); None when every view is the full input.
        reference_depth: [S, H, W] metric depth in metres at the input geometry (0 = invalid), to
            fix the scale; None to use ``median_depth_m`` (or VGGT's units when that is None too).
        depth_bins, max_depth: of ``depth_hist`` (``model.geometry``).
        where: names the record or file in errors.
    Returns:
        :class:`PredictedGeometry`. Raises :class:`DataError` naming the view when a prediction is
        not finite (or the depth not positive) on the view's pixels, or a camera is degenerate.
    """
    pose_enc, depth = _as_numpy(pose_enc), _as_numpy(depth)
    if depth.ndim == 4 and depth.shape[-1] == 1:
        depth = depth[..., 0]
    if pose_enc.ndim != 2 or pose_enc.shape[1] != 9 or depth.ndim != 3 or len(depth) != len(pose_enc):
        raise ValueError(f"pose_enc must be [S, 9] and depth [S, H, W] for the same S, got "
                         f"{pose_enc.shape} and {depth.shape}")
    if len(plans) != len(pose_enc):
        raise ValueError(f"{len(plans)} resize plans for {len(pose_enc)} views")
    image_hw = depth.shape[1:]
    masks = view_masks(plans, shifts, image_hw)
    for v in range(len(depth)):
        bad = int((~(np.isfinite(depth[v]) & (depth[v] > 0)) & masks[v]).sum())
        if bad:
            raise DataError(f"{where}: the predicted depth of view {v} is not finite and positive at {bad} "
                            f"pixel(s); it cannot be used as geometry")
    (R, t), K_input = _checked_cameras(pose_enc, image_hw, where)
    scale, source = _scale(depth, masks, reference_depth, median_depth_m)
    depth = depth * scale
    shifts = np.zeros((len(plans), 2)) if shifts is None else np.asarray(shifts, dtype=np.float64)
    K = np.stack([_file_intrinsics(K_input[v], plan, shifts[v]) for v, plan in enumerate(plans)])
    hist = np.stack([depth_histogram(depth[v][masks[v]], depth_bins, max_depth) for v in range(len(depth))])
    return PredictedGeometry(R=R, t=t * scale, K=K, depth_hist=hist, scale=scale, scale_source=source,
                             median_depth=float(np.median(depth[masks])))


def _file_intrinsics(K_input: np.ndarray, plan, shift: np.ndarray) -> np.ndarray:
    """K of the model's input -> K of the image file: undo the padding shift, the crop/pad window
    and the resize (the inverse of ``ResizePlan.intrinsics``, then the shift)."""
    K_view = crop_intrinsics(K_input, shift[0], shift[1])  # the view sits at (dx, dy) in the input
    K_resized = crop_intrinsics(K_view, -plan.offset[0], -plan.offset[1])
    return resize_intrinsics(K_resized, plan.resized, plan.src)


def median_depth_from_histograms(depth_hists, max_depth: float = 10.0) -> float:
    """The median depth (m) of views described by their ``depth_hist`` rows [N, bins] (each view
    weighs the same; all-zero rows, views without valid depth, are skipped), interpolated linearly
    within the bin that holds it. E.g. the training corpus' median, as the prior of
    :func:`geometry_from_predictions`."""
    hists = _as_numpy(depth_hists).reshape(-1, np.shape(depth_hists)[-1])
    hists = hists[hists.sum(axis=1) > 0]
    if not len(hists):
        raise DataError("median_depth_from_histograms: no view has a non-empty depth histogram")
    pooled = hists.mean(axis=0) / hists.mean(axis=0).sum()
    width = max_depth / len(pooled)
    before = np.concatenate([[0.0], np.cumsum(pooled)[:-1]])
    b = int(np.searchsorted(np.cumsum(pooled), 0.5))
    return float(width * (b + (0.5 - before[b]) / pooled[b]))


# --------------------------------------------------------------------------------------------
# A batch, in torch: what the geometry encoder receives when VQModel predicts geometry
# --------------------------------------------------------------------------------------------


def box_masks(boxes: torch.Tensor | None, view_mask: torch.Tensor, image_hw: tuple[int, int]) -> torch.Tensor:
    """bool [B, S, H, W]: the pixels of each real view that show its image, from ``boxes`` [B, S, 4]
    (x0, y0, x1, y1; :func:`view_boxes`) or, without boxes, the whole input."""
    H, W = image_hw
    B, S = view_mask.shape
    if boxes is None:
        return view_mask.to(torch.bool)[:, :, None, None].expand(B, S, H, W)
    ys = torch.arange(H, device=view_mask.device)[None, None, :, None]
    xs = torch.arange(W, device=view_mask.device)[None, None, None, :]
    b = boxes.to(view_mask.device)[..., None, None]
    inside = (xs >= b[:, :, 0]) & (xs < b[:, :, 2]) & (ys >= b[:, :, 1]) & (ys < b[:, :, 3])
    return inside & view_mask.to(torch.bool)[:, :, None, None]


def _where(ids, b: int) -> str:
    return f"sample '{ids[b]}'" if ids is not None and b < len(ids) else f"sample {b}"


def check_predictions(pose_enc: torch.Tensor, depth: torch.Tensor, masks: torch.Tensor, ids=None) -> None:
    """Refuse predictions that cannot be geometry: a non-finite pose encoding, a zero quaternion or a
    field of view outside (0, pi) at a real view, or a depth that is not finite and positive at one of
    its pixels. DataError naming the sample (``ids``) and view."""
    real = masks.flatten(2).any(-1)  # [B, S]
    enc = pose_enc.detach().double()
    fov_ok = (enc[..., 7:] > 0).all(-1) & (enc[..., 7:] < math.pi).all(-1)
    enc_ok = torch.isfinite(enc).all(-1) & (enc[..., 3:7].norm(dim=-1) > 1e-8) & fov_ok
    d = depth.detach()
    depth_ok = ~((~(torch.isfinite(d) & (d > 0)) & masks).flatten(2).any(-1))
    bad = real & ~(enc_ok & depth_ok)
    if bool(bad.any()):
        b, v = (int(i) for i in bad.nonzero()[0])
        if not bool(enc_ok[b, v]):
            what = f"camera of view {v} is not finite or degenerate (pose encoding {_short(enc[b, v])})"
        else:
            what = f"depth of view {v} is not finite and positive at every pixel"
        raise DataError(f"{_where(ids, b)}: the predicted {what}, so it is not used as geometry; give the cameras "
                        f"(a cameras file or geom_token), or go without geometry (vqkit ask --no-geometry, "
                        f"model.geometry.source: records)")


def _short(values: torch.Tensor) -> str:
    return "[" + ", ".join(f"{float(x):.3g}" for x in values) + "]"


def batch_geometry(pose_enc: torch.Tensor, depth: torch.Tensor, view_mask: torch.Tensor, *,
                   pixel_mask: torch.Tensor | None = None, reference_depth: torch.Tensor | None = None,
                   median_depth_m: float | None = DEFAULT_MEDIAN_DEPTH_M, depth_bins: int = 16,
                   max_depth: float = 10.0, ids=None) -> dict[str, torch.Tensor]:
    """The geometry a batch's views get from VGGT's predictions, in the frame of the model's input.

    Args:
        pose_enc: [B, S, 9] the camera head's pose encoding; depth: [B, S, H, W(, 1)] the depth head's.
        view_mask: bool [B, S] real views; pixel_mask: bool [B, S, H, W] the pixels showing each view
            (:func:`box_masks`; None = every pixel of a real view).
        reference_depth: [B, S, H, W] metric depth (0 = invalid) fixing the scale where a sample has
            some; else ``median_depth_m`` (module docstring, "Scale").
        ids: names of the samples, for errors.
    Returns:
        ``R`` [B, S, 3, 3] and ``t`` [B, S, 3] world-to-camera relative to view 0 (t in metres after the
        scale), ``K`` [B, S, 3, 3] of the input (principal point at its centre), ``depth_hist``
        [B, S, depth_bins] over each view's pixels, ``scale`` [B]. Raises DataError
        (:func:`check_predictions`) rather than return unusable geometry.
    """
    if depth.ndim == 5:
        depth = depth[..., 0]
    H, W = depth.shape[-2:]
    view_mask = view_mask.to(torch.bool)
    masks = pixel_mask.to(torch.bool) & view_mask[:, :, None, None] if pixel_mask is not None \
        else box_masks(None, view_mask, (H, W))
    check_predictions(pose_enc, depth, masks, ids)
    extrinsics, K = pose_encoding_to_extri_intri(pose_enc.double(), (H, W))
    R, t = extrinsics[..., :3], extrinsics[..., 3]
    R_rel = R @ R[:, :1].transpose(-1, -2)
    t_rel = t - (R_rel @ t[:, :1, :, None])[..., 0]
    depth = depth.double()
    scales = []
    for b in range(depth.shape[0]):
        mine = masks[b]
        scale = 1.0
        if reference_depth is not None:
            ref = reference_depth[b].double()
            both = mine & torch.isfinite(ref) & (ref > 0)
            if bool(both.any()):
                scale = float(ref[both].median() / depth[b][both].median())
                scales.append(scale)
                continue
        if median_depth_m is not None and bool(mine.any()):
            scale = float(median_depth_m / depth[b][mine].median())
        scales.append(scale)
    scale = torch.tensor(scales, dtype=torch.float64, device=depth.device)
    metric = torch.where(masks, depth * scale[:, None, None, None], 0.0)  # padding may hold anything
    bins = ((metric / max_depth) * depth_bins).clamp(min=0).floor().long().clamp(max=depth_bins - 1)
    counts = torch.zeros(*masks.shape[:2], depth_bins, dtype=torch.float64, device=depth.device)
    counts.scatter_add_(-1, bins.flatten(2), masks.flatten(2).double())
    hist = counts / counts.sum(-1, keepdim=True).clamp(min=1)
    dtype = pose_enc.dtype if pose_enc.is_floating_point() else torch.float32
    return {"R": R_rel.to(dtype), "t": (t_rel * scale[:, None, None]).to(dtype), "K": K.to(dtype),
            "depth_hist": hist.to(dtype), "scale": scale.to(dtype)}
