"""Text labels that do not print over each other: each label tries a few positions near what it names and
keeps the first whose box on the rendered figure is clear of the labels placed before it.

Used for the object names of a layout seen from above and the camera numbers of the pose figures (two
cameras a few centimetres apart, a television standing on a storage unit).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.transforms import Bbox

#: Offsets in points tried in turn for a 2D label: on its point, then above, below, right, left, the
#: diagonals, and twice as far.
OFFSETS_2D = [(0, 0)] + [(dx * r, dy * r) for r in (1, 2) for dx, dy in
                         ((0, 1), (0, -1), (1, 0), (-1, 0), (1, 1), (-1, 1), (1, -1), (-1, -1))]
#: One step of an offset, in points.
STEP_POINTS = 10.0


#: Clear space kept around each label, in pixels.
PAD_PIXELS = 2.0


def _halo() -> list:
    """A white outline around a label's letters: legible over the lines and points it sits on."""
    from matplotlib import patheffects

    return [patheffects.withStroke(linewidth=2.5, foreground="white")]


def _overlap(box: Bbox, taken: list[Bbox]) -> float:
    """The area of ``box`` (with :data:`PAD_PIXELS` around it) covered by the boxes in ``taken``
    (pixels squared)."""
    total = 0.0
    for other in taken:
        w = min(box.x1, other.x1) - max(box.x0, other.x0) + 2 * PAD_PIXELS
        h = min(box.y1, other.y1) - max(box.y0, other.y0) + 2 * PAD_PIXELS
        total += max(w, 0.0) * max(h, 0.0)
    return total


def _text_box(annotation, renderer) -> Bbox:
    """The box of an annotation's words on the figure, without its leader line."""
    from matplotlib.text import Text

    annotation.update_positions(renderer)
    return Text.get_window_extent(annotation, renderer)


def _renderer(ax: Axes):
    # The limits as they will be drawn: pending autoscaling applied (reading them does it), then an
    # equal aspect's adjustment.
    ax.get_xlim()
    ax.get_ylim()
    ax.apply_aspect()
    return ax.figure.canvas.get_renderer()


def label_points_2d(ax: Axes, points: list, texts: list[str], colours: list, *, fontsize: float = 8,
                    fontweight: str = "normal", centred: bool = True, taken: list[Bbox] | None = None) -> list:
    """Write ``texts[i]`` at data point ``points[i]`` (or beside it: ``centred=False`` starts up and to
    the right) of a 2D axes, each moved to the nearest of :data:`OFFSETS_2D` where it overlaps no label
    written before it; a moved label gets a thin leader line to its point. Returns the Annotations.

    Call after everything that sets the axes' limits is drawn and the figure's layout is final (after
    ``tight_layout``): the boxes are measured on the figure as it will be shown. ``taken``: boxes of
    labels written earlier (by another call) to keep clear of; the new labels' boxes are added to it."""
    renderer = _renderer(ax)
    offsets = OFFSETS_2D if centred else [(0.5, 0.5)] + [(0.5 + dx, 0.5 + dy) for dx, dy in OFFSETS_2D[1:]]
    taken = taken if taken is not None else []
    out = []
    for point, text, colour in zip(points, texts, colours, strict=True):
        xy = (float(point[0]), float(point[1]))
        ann = ax.annotate(text, xy, xytext=(0, 0), textcoords="offset points", ha="center", va="center",
                          fontsize=fontsize, fontweight=fontweight, color=colour, annotation_clip=False,
                          path_effects=_halo())
        best, best_cover = offsets[0], None
        for dx, dy in offsets:
            ann.xyann = (dx * STEP_POINTS, dy * STEP_POINTS)
            cover = _overlap(_text_box(ann, renderer), taken)
            if best_cover is None or cover < best_cover:
                best, best_cover = (dx, dy), cover
            if cover == 0:
                break
        ann.xyann = (best[0] * STEP_POINTS, best[1] * STEP_POINTS)
        if best != (0, 0) and centred:
            ann.remove()  # again, with a leader line from the label to what it names
            ann = ax.annotate(text, xy, xytext=ann.xyann, textcoords="offset points", ha="center", va="center",
                              fontsize=fontsize, fontweight=fontweight, color=colour, annotation_clip=False,
                              path_effects=_halo(),
                              arrowprops={"arrowstyle": "-", "lw": 0.6, "color": colour, "shrinkA": 1, "shrinkB": 0})
        taken.append(_text_box(ann, renderer))
        out.append(ann)
    return out


def label_points_3d(ax, candidates: list[list], texts: list[str], colours: list, *, fontsize: float = 9,
                    fontweight: str = "bold") -> list:
    """Write ``texts[i]`` in a 3D axes at the first of its ``candidates[i]`` (3D points, nearest first)
    whose box, projected in the axes' current view, overlaps no label written before it (else the
    least covered one). Returns the Text artists."""
    from mpl_toolkits.mplot3d import proj3d

    renderer = _renderer(ax)
    taken: list[Bbox] = []
    out = []
    for places, text, colour in zip(candidates, texts, colours, strict=True):
        # The label's size, measured on a 2D twin; a 3D text has no box of its own before it is drawn.
        probe = ax.figure.text(0, 0, text, fontsize=fontsize, fontweight=fontweight)
        extent = probe.get_window_extent(renderer)
        probe.remove()
        best, best_cover, best_box = None, None, None
        for place in places:
            x, y, _ = proj3d.proj_transform(*np.asarray(place, dtype=float), ax.get_proj())
            px, py = ax.transData.transform((x, y))
            box = extent.translated(px - extent.x0, py - extent.y0)  # ha="left", va="baseline"-ish
            cover = _overlap(box, taken)
            if best_cover is None or cover < best_cover:
                best, best_cover, best_box = place, cover, box
            if cover == 0:
                break
        taken.append(best_box)
        out.append(ax.text(*np.asarray(best, dtype=float), text, color=colour, fontsize=fontsize,
                           fontweight=fontweight, path_effects=_halo()))
    return out
