"""RoomPlan layouts drawn from above: gold solid, prediction dashed, objects as labelled boxes."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from vqkit.roomplan import Room, box_corners_2d
from vqkit.viz.labels import label_points_2d
from vqkit.viz.scene import KIND_COLOURS, category_colour

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes


def _segment(center, width: float, yaw: float) -> np.ndarray:
    """End points [2, 2] of a wall-like element seen from above."""
    d = np.array([math.cos(yaw), math.sin(yaw)]) * width / 2
    c = np.asarray(center[:2], dtype=np.float64)
    return np.stack([c - d, c + d])


def draw_room(ax: Axes, room: Room, linestyle: str, alpha: float, label_objects: bool, lw: float = 1.0) -> None:
    """Draw one room; ``lw`` scales line widths (the prediction is drawn thinner, on top of gold).
    ``label_objects`` writes each object's category at its centre, moved aside where labels would
    print over each other (call it last, when the axes hold everything they will show)."""
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
        label_objects_of(ax, room)


def label_objects_of(ax: Axes, room: Room, fontsize: float = 8, taken: list | None = None) -> list:
    """Each object's category at its centre, none printed over another (:func:`label_points_2d`)."""
    return label_points_2d(ax, [ob.center[:2] for ob in room.objects], [ob.category for ob in room.objects],
                           ["black"] * len(room.objects), fontsize=fontsize, taken=taken)


def legend_outside(ax: Axes, handles: list, fontsize: float = 9) -> None:
    """The legend beside the axes, to their right, so that it covers nothing drawn."""
    if handles:
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0,
                  fontsize=fontsize, framealpha=0.9)


def layout_handles(rooms: list[Room], styles: list[tuple[str, str]] | None = None) -> list:
    """Legend entries for what ``rooms`` draw: the element kinds present in any of them, then the
    line styles (``styles``: ``(linestyle, label)``, e.g. gold solid vs predicted dashed)."""
    from matplotlib.lines import Line2D

    present = set()
    for room in rooms:
        present |= {"wall"} if room.walls else set()
        present |= {s.kind for s in room.surfaces()}
    handles = [Line2D([], [], color=c, lw=3, label=k) for k, c in KIND_COLOURS.items() if k in present]
    handles += [Line2D([], [], color="k", ls=ls, label=label) for ls, label in styles or []]
    return handles


def plot_layout_topdown(gold: Room, pred: Room | None = None, ax: Axes | None = None, title: str | None = None,
                        *, labels: bool = True) -> Axes:
    """Draw ``gold`` (solid) and optionally ``pred`` (dashed) seen from above; returns the axes.

    Walls are thick grey lines, doors red, windows blue, openings green (the prediction's at half
    width so gold stays visible underneath); objects are rotated
    rectangles (footprint: width x depth) coloured by category, with a tick along their width axis
    and the category written at the centre (moved aside, with a leader line, where names would print
    over each other). The legend, beside the plan, lists the element kinds drawn and, with ``pred``,
    gold solid vs predicted dashed. Axes are metres in vqkit's world frame (x right, y up).
    ``labels=False`` leaves the names to the caller (:func:`label_objects_of` once its figure's layout
    is final).
    """
    import matplotlib.pyplot as plt

    own_figure = ax is None
    if ax is None:
        _, ax = plt.subplots(figsize=(7.5, 6))
    draw_room(ax, gold, "-", 1.0, label_objects=False)
    if pred is not None:
        draw_room(ax, pred, "--", 0.9, label_objects=False, lw=0.5)
    ax.set_aspect("equal")
    ax.set_xlabel("x (m)")
    ax.set_ylabel("y (m)")
    ax.grid(True, lw=0.3, alpha=0.5)
    if title:
        ax.set_title(title)
    # Line styles only tell gold from a prediction: with gold alone there is nothing to tell apart.
    styles = [("-", "gold"), ("--", "predicted")] if pred is not None else None
    legend_outside(ax, layout_handles([gold] + ([pred] if pred is not None else []), styles))
    if own_figure:
        ax.figure.tight_layout()  # before the labels are placed: it rescales the axes
    if labels:
        label_objects_of(ax, gold)
    return ax
