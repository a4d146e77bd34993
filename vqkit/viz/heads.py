"""What VGGT's camera and depth heads predict for one room, beside the truth: camera frusta (true solid,
predicted dashed) and depth maps (true, predicted, relative error).

    prediction = viz.predict_room(weights, record)        # weights: RUN/encoder/model.safetensors
    viz.plot_predicted_cameras(prediction)
    viz.plot_predicted_depth(prediction)

The prediction is in the record conventions (:func:`vqkit.vggt.predicted_geometry_from_predictions`):
relative to view 0, scaled by the record's depth maps when it has them (else the median-depth prior).
To draw both sets of cameras in the room, the predicted ones are placed through the **true** view 0:
view 0 coincides by construction, and every other predicted frustum shows how far the heads are from
where that camera really stood.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from vqkit import cameras as geo
from vqkit.viz.scene import FRUSTUM_EDGES, VIEW_COLOURS, load_scene, polyline


@dataclass
class RoomPrediction:
    """The heads' prediction for one room (V views) and the truth, as :func:`predict_room` returns it."""

    images: list[str]
    R_true: np.ndarray
    """[V, 3, 3] world-to-camera of the record."""
    t_true: np.ndarray
    K_true: np.ndarray
    R_pred: np.ndarray
    """[V, 3, 3] world-to-camera in the world of the true view 0 (see the module docstring)."""
    t_pred: np.ndarray
    K_pred: np.ndarray
    """[V, 3, 3] predicted intrinsics of the stored image files."""
    depth_true: list[np.ndarray | None]
    """Per view the metric depth at the model's input (None without depth maps)."""
    depth_pred: np.ndarray
    """[V, H, W] predicted depth in metres (x ``scale``) at the model's input."""
    scale: float
    scale_source: str
    rotation_error_deg: np.ndarray
    """[V] angle between each predicted and true camera rotation (view 0: 0 by construction)."""
    position_error_m: np.ndarray
    """[V] distance in metres between each predicted and true camera centre, in the world of the
    true view 0 at the prediction's ``scale`` (view 0: 0 by construction)."""
    title: str = ""

    def error_text(self, view: int) -> str:
        """How far the heads put a camera from where it stood, e.g. ``"18 deg, 2.7 m off"``."""
        return f"{self.rotation_error_deg[view]:.0f} deg, {self.position_error_m[view]:.1f} m off"


def predict_room(weights: str | os.PathLike, source: Any, index: int = 0, *, device=None) -> RoomPrediction:
    """Run the VGGT of ``weights`` (a whole-VGGT file with camera and depth heads) on one room:
    ``source`` is a record, a record file (``index`` picks the record) or a synthetic scene folder,
    with cameras (and depth maps, which fix the scale)."""
    import torch

    from vqkit.data.images import load_depth, load_views, pad_to_common
    from vqkit.errors import DataError
    from vqkit.vggt import geometry_from_predictions
    from vqkit.vggt.weights_file import vggt_from_file

    scene = load_scene(source, index)
    if not scene.has_geometry:
        raise DataError(f"{scene.title or source}: the room has no cameras to compare the prediction with")
    vggt, info, _ = vggt_from_file(weights, device=device)
    size, mode = info.image_size or 518, info.resize_mode or "crop"
    images, plans, shifts = load_views(scene.images, size, mode)
    depth_true = None
    if scene.depths:
        maps = [load_depth(p, plan) for p, plan in zip(scene.depths, plans, strict=True)]
        depth_true = pad_to_common(maps, 0.0, shifts)[0]
    with torch.no_grad():
        out = vggt(torch.stack(images)[None].to(next(vggt.parameters()).device))
    reference = torch.stack(depth_true) if depth_true is not None else None
    pred = geometry_from_predictions(out.pose_enc[0], out.depth[0], plans, shifts, reference_depth=reference)
    # predicted cameras relative to view 0 -> the world of the true view 0: x_cam_i = R_i (R0^T (x - c0))
    R0, t0 = scene.R[0], scene.t[0]
    R_pred = pred.R @ R0
    t_pred = pred.t + np.einsum("vij,j->vi", pred.R, t0)
    rel_true, _ = geo.relative_poses(scene.R, scene.t)
    errors = np.array([np.degrees(np.linalg.norm(geo.matrix_to_axis_angle(p.T @ q)))
                       for p, q in zip(pred.R, rel_true, strict=True)])
    centres_true = -np.einsum("vji,vj->vi", scene.R, scene.t)  # -R^T t per view
    centres_pred = -np.einsum("vji,vj->vi", R_pred, t_pred)
    return RoomPrediction(images=list(scene.images), R_true=scene.R, t_true=scene.t, K_true=scene.K, R_pred=R_pred,
                          t_pred=t_pred, K_pred=pred.K,
                          depth_true=([d.numpy() for d in depth_true] if depth_true is not None
                                      else [None] * len(images)),
                          depth_pred=out.depth[0, ..., 0].cpu().numpy() * pred.scale, scale=pred.scale,
                          scale_source=pred.scale_source, rotation_error_deg=errors,
                          position_error_m=np.linalg.norm(centres_pred - centres_true, axis=1), title=scene.title)


def _image_size(image) -> tuple[int, int]:
    """(width, height) of an image file, read from its header."""
    from PIL import Image

    with Image.open(image) as img:
        return img.size


def plot_predicted_cameras(prediction: RoomPrediction, *, frustum_depth: float = 0.5):
    """Frusta seen from above and in 3D: true solid, predicted dashed (same colour per view), with how
    far each view's prediction is off in the legend: rotation and position (``"18 deg, 2.7 m off"``).
    Returns the Figure."""
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(12, 5.5))
    ax3d = fig.add_subplot(1, 2, 1, projection="3d")
    ax2d = fig.add_subplot(1, 2, 2)
    for v, image in enumerate(prediction.images):
        colour = VIEW_COLOURS[v % len(VIEW_COLOURS)]
        w, h = _image_size(image)  # the true and the predicted frustum span the same stored image
        for K, R, t, style, label in ((prediction.K_true[v], prediction.R_true[v], prediction.t_true[v], "-", "true"),
                                      (prediction.K_pred[v], prediction.R_pred[v], prediction.t_pred[v], "--",
                                       f"predicted ({prediction.error_text(v)})")):
            c = geo.frustum_corners(K, R, t, w, h, frustum_depth)
            line = polyline(c, FRUSTUM_EDGES)
            ax3d.plot(line[:, 0], line[:, 1], line[:, 2], style, color=colour, lw=1.5)
            ring = c[[0, 1, 2, 0, 3, 4, 0]]
            ax2d.plot(ring[:, 0], ring[:, 1], style, color=colour, lw=1.5, label=f"view {v} {label}")
            ax2d.plot(c[0, 0], c[0, 1], "o" if style == "-" else "x", color=colour)
    ax2d.set_aspect("equal")
    ax2d.grid(True, lw=0.3, alpha=0.5)
    ax2d.set_xlabel("x (m)")
    ax2d.set_ylabel("y (m)")
    ax2d.set_title("from above")
    ax2d.legend(fontsize=7, loc="best")
    ax3d.set_xlabel("x (m)")
    ax3d.set_ylabel("y (m)")
    ax3d.set_zlabel("z (m)")
    fig.suptitle(f"{prediction.title}: true cameras (solid) and VGGT's heads (dashed; placed through the true "
                 f"view 0, scale from {prediction.scale_source})", fontsize=10)
    fig.tight_layout()
    return fig


def plot_predicted_depth(prediction: RoomPrediction, *, size: float = 2.2):
    """Per view: the image, the true depth, the predicted depth (one colour scale, metres) and the
    relative error |pred - true| / true where the truth is valid. Returns the Figure."""
    import matplotlib.pyplot as plt
    from PIL import Image

    V = len(prediction.images)
    fig, axes = plt.subplots(4, V, figsize=(size * V + 1, size * 4), squeeze=False)
    valid_true = [d for d in prediction.depth_true if d is not None]
    vmax = max([float(d.max()) for d in valid_true] + [float(np.nanpercentile(prediction.depth_pred, 99))])
    depth_image = error_image = None
    for v in range(V):
        with Image.open(prediction.images[v]) as img:
            axes[0, v].imshow(np.asarray(img.convert("RGB")))
        axes[0, v].set_title(f"view {v}", fontsize=9)
        true = prediction.depth_true[v]
        if true is not None:
            depth_image = axes[1, v].imshow(np.where(true > 0, true, np.nan), cmap="viridis", vmin=0, vmax=vmax)
            error = np.where(true > 0, np.abs(prediction.depth_pred[v] - true) / np.where(true > 0, true, 1), np.nan)
            error_image = axes[3, v].imshow(error, cmap="magma", vmin=0, vmax=1)
            axes[3, v].set_title(f"AbsRel {np.nanmean(error):.2f}", fontsize=9)
        axes[2, v].imshow(prediction.depth_pred[v], cmap="viridis", vmin=0, vmax=vmax)
    for row, name in enumerate(("image", "true depth", "predicted depth", "relative error")):
        axes[row, 0].set_ylabel(name, fontsize=9)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    if depth_image is not None:
        fig.colorbar(depth_image, ax=axes[1:3, :].ravel().tolist(), fraction=0.02, pad=0.01, label="depth (m)")
    if error_image is not None:
        fig.colorbar(error_image, ax=axes[3, :].tolist(), fraction=0.02, pad=0.01, label="|pred - true| / true")
    return fig
