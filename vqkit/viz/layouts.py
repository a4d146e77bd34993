"""RoomPlan layouts drawn from above: gold solid, prediction dashed, objects as labelled boxes."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from vqkit.roomplan import Room, box_corners_2d
from vqkit.viz.scene import KIND_COLOURS, category_colour

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes


def _segment(center, width: float, yaw: float) -> np.ndarray:
    """End points [2, 2] of a wall-like element seen from above."""
    d = np.array([math.cos(yaw), math.sin(yaw)]) * width / 2
    c = np.asarray(center[:2], dtype=np.float64)
    return np.stack([c - d, c + d])


def draw_room(ax: Axes, room: Room, linestyle: str, alpha: float, label_objects: bool, lw: float = 1.0) -> None:
    """Draw one room; ``lw`` scales line widths (the prediction is drawn thinner, on top of gold)."""
    for w in room.walls:
        seg = _segment(w.center, w.width, w.yaw)
        ax.plot(seg[:, 0], seg[:, 1], color=KIND_COLOURS["wall"], lw=4 * lw, ls=linestyle, alpha=alpha,
                solid_capstyle="round")
    for o in room.surfaces():
        seg = _segment(o.center, o.width, o.yaw)
        ax.plot(seg[:, 0], seg[:, 1], color=KIND_COLOURS[o.kind], lw=7 * lw, ls=linestyle, alpha=alpha,
                solid_capstyle="butt")
    for ob in room.objects:
        corners = box_corners_2d(ob.center, ob.size[0], ob.size[2], ob.yaw)
        closed = np.vstack([corners, corners[:1]])
        colour = category_colour(ob.category)
        ax.fill(closed[:, 0], closed[:, 1], color=colour, alpha=0.25 * alpha, lw=0)
        ax.plot(closed[:, 0], closed[:, 1], color=colour, lw=1.5, ls=linestyle, alpha=alpha)
        # The width direction, so a box's yaw is visible: a tick from the centre to the width side.
        tip = np.asarray(ob.center[:2]) + 0.5 * ob.size[0] * np.array([math.cos(ob.yaw), math.sin(ob.yaw)])
        ax.plot([ob.center[0], tip[0]], [ob.center[1], tip[1]], color=colour, lw=1, ls=linestyle, alpha=alpha)
        if label_objects:
            ax.annotate(ob.category, ob.center[:2], fontsize=7, ha="center", va="center", alpha=alpha)


def plot_layout_topdown(gold: Room, pred: Room | None = None, ax: Axes | None = None, title: str | None = None) -> Axes:
    """Draw ``gold`` (solid) and optionally ``pred`` (dashed) seen from above; returns the axes.

    Walls are thick grey lines, doors red, windows blue, openings green (the prediction's at half
    width so gold stays visible underneath); objects are rotated
    rectangles (footprint: width x depth) coloured by category, with a tick along their width axis
    and the category written at the centre. Axes are metres in vqkit's world frame (x right, y up).
    """
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 6))
    draw_room(ax, gold, "-", 1.0, label_objects=True)
    if pred is not None:
        draw_room(ax, pred, "--", 0.9, label_objects=False, lw=0.5)
    handles = [Line2D([], [], color=c, lw=3, label=k) for k, c in KIND_COLOURS.items()]
    handles.append(Line2D([], [], color="k", ls="-", label="gold"))
    if pred is not None:
        handles.append(Line2D([], [], color="k", ls="--", label="predicted"))
    ax.legend(handles=handles, loc="upper right", fontsize=7, framealpha=0.8)
    ax.set_aspect("equal")
    ax.set_xlabel("x (m)")
    ax.set_ylabel("y (m)")
    ax.grid(True, lw=0.3, alpha=0.5)
    if title:
        ax.set_title(title)
    return ax
