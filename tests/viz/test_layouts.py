"""vqkit.viz.layouts: the top-down layout figure draws every element of a room where it is (walls and
openings as segments along their yaw, objects as their rotated footprints), gold solid and the
prediction dashed."""

from __future__ import annotations

import math

import matplotlib
import numpy as np
import pytest
from helpers import random_room

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.colors import to_hex  # noqa: E402
from matplotlib.text import Text  # noqa: E402

from vqkit.roomplan import Opening, Room, RoomObject, Wall, box_corners_2d  # noqa: E402
from vqkit.viz import plot_layout_topdown  # noqa: E402
from vqkit.viz.scene import KIND_COLOURS, category_colour  # noqa: E402


def test_plot_layout_topdown(tmp_path):
    gold = random_room(4)
    pred = Room.from_text(random_room(4).to_text())[0]
    pred.objects = pred.objects[:-2]
    ax = plot_layout_topdown(gold, pred, title="scene 4")
    n_gold = len(gold.walls) + len(gold.surfaces()) + 2 * len(gold.objects)
    n_pred = len(pred.walls) + len(pred.surfaces()) + 2 * len(pred.objects)
    assert len(ax.lines) == n_gold + n_pred
    assert sum(line.get_linestyle() == "--" for line in ax.lines) == n_pred
    assert {t.get_text() for t in ax.texts} == {o.category for o in gold.objects}
    ax.figure.savefig(tmp_path / "layout.png")
    assert (tmp_path / "layout.png").stat().st_size > 1000
    plt.close(ax.figure)


def _drawn(ax, linestyle: str) -> list[tuple[np.ndarray, str]]:
    """(points [N, 2], colour) of every line drawn in ``linestyle``."""
    return [(np.asarray(line.get_xydata()), to_hex(line.get_color())) for line in ax.lines
            if line.get_linestyle() == linestyle]


def _find(drawn, points: np.ndarray, colour: str) -> int:
    """How many drawn lines have exactly these points (in either direction) and this colour."""
    return sum(c == colour and p.shape == points.shape and (np.allclose(p, points, atol=1e-9)
                                                            or np.allclose(p, points[::-1], atol=1e-9))
               for p, c in drawn)


def test_every_element_is_drawn_in_its_place():
    """A wall of 4 m at 90 degrees runs from y - 2 to y + 2; a door on it covers its own 0.9 m; an
    object turned 30 degrees is its rotated footprint with a tick along its width, and its name sits at
    its centre."""
    wall = Wall("w", (1.0, 0.0, 1.3), 4.0, 2.6, math.pi / 2)
    door = Opening("d", "door", "w", (1.0, 0.5, 1.05), 0.9, 2.1, math.pi / 2, True)
    window = Opening("n", "window", "w", (1.0, -1.0, 1.5), 1.2, 1.0, math.pi / 2)
    table = RoomObject("t", "table", (-0.5, 0.25, 0.4), (1.6, 0.8, 0.9), math.radians(30))
    ax = plot_layout_topdown(Room(walls=[wall], doors=[door], windows=[window], objects=[table]))
    solid = _drawn(ax, "-")
    assert _find(solid, np.array([[1.0, -2.0], [1.0, 2.0]]), KIND_COLOURS["wall"]) == 1
    assert _find(solid, np.array([[1.0, 0.05], [1.0, 0.95]]), KIND_COLOURS["door"]) == 1
    assert _find(solid, np.array([[1.0, -1.6], [1.0, -0.4]]), KIND_COLOURS["window"]) == 1
    colour = to_hex(category_colour("table"))
    footprint = box_corners_2d((-0.5, 0.25), 1.6, 0.9, math.radians(30))
    assert _find(solid, np.vstack([footprint, footprint[:1]]), colour) == 1
    tip = np.array([-0.5, 0.25]) + 0.8 * np.array([math.cos(math.radians(30)), math.sin(math.radians(30))])
    assert _find(solid, np.array([[-0.5, 0.25], tip]), colour) == 1
    assert len(solid) == 5  # nothing else
    (label,) = ax.texts
    assert label.get_text() == "table" and label.xy == pytest.approx((-0.5, 0.25))
    (fill,) = ax.patches
    np.testing.assert_allclose(fill.get_xy()[:4], footprint, atol=1e-9)
    # the whole room is in view
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    assert x0 <= footprint[:, 0].min() and x1 >= 1.0 and y0 <= -2.0 and y1 >= 2.0
    plt.close(ax.figure)


def test_the_prediction_is_dashed_over_the_gold_in_its_own_place():
    gold = random_room(2)
    pred = Room(walls=gold.walls[:3], objects=[RoomObject("p", "sofa", (0.0, 0.0, 0.4), (2.0, 0.8, 0.9), 0.0)])
    ax = plot_layout_topdown(gold, pred)
    dashed = _drawn(ax, "--")
    for w in pred.walls:
        d = np.array([math.cos(w.yaw), math.sin(w.yaw)]) * w.width / 2
        ends = np.stack([np.array(w.center[:2]) - d, np.array(w.center[:2]) + d])
        assert _find(dashed, ends, KIND_COLOURS["wall"]) == 1
    sofa = box_corners_2d((0.0, 0.0), 2.0, 0.9, 0.0)
    assert _find(dashed, np.vstack([sofa, sofa[:1]]), to_hex(category_colour("sofa"))) == 1
    assert len(dashed) == 3 + 2  # three walls, the sofa's outline and its tick
    assert {t.get_text() for t in ax.texts} == {o.category for o in gold.objects}  # gold is labelled, pred not
    plt.close(ax.figure)


def test_names_do_not_overprint_and_the_legend_lists_what_is_drawn_beside_the_plan():
    """A television on a storage unit (the same centre): both names readable, apart. The legend sits
    beside the plan (covering none of it) and lists the kinds drawn: no "opening" for a room without
    one, no gold/predicted line styles when only gold is drawn."""
    wall = Wall("w", (0.0, -2.0, 1.3), 4.0, 2.6, 0.0)
    door = Opening("d", "door", "w", (0.5, -2.0, 1.05), 0.9, 2.1, 0.0, True)
    storage = RoomObject("s", "storage", (0.0, 1.0, 0.4), (1.2, 0.8, 0.4), 0.0)
    television = RoomObject("t", "television", (0.0, 1.0, 1.0), (1.0, 0.6, 0.1), 0.0)
    room = Room(walls=[wall], doors=[door], objects=[storage, television])
    ax = plot_layout_topdown(room, title="scene")
    fig = ax.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    names = {t.get_text(): _words(t, renderer) for t in ax.texts}  # the words, no leader line
    assert set(names) == {"storage", "television"}
    assert not names["storage"].overlaps(names["television"])
    legend = ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["wall", "door"]
    assert not legend.get_window_extent(renderer).overlaps(ax.get_window_extent(renderer))
    assert min(t.get_fontsize() for t in legend.get_texts()) >= 9
    # With a prediction: its kinds too, and the two line styles.
    pred = Room(walls=[wall], windows=[Opening("n", "window", "w", (-1.0, -2.0, 1.5), 1.0, 1.0, 0.0)])
    ax = plot_layout_topdown(room, pred)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["wall", "door", "window", "gold", "predicted"]


def _words(annotation, renderer):
    """Where an annotation's words are on the figure (its box without the leader line)."""
    annotation.update_positions(renderer)
    return Text.get_window_extent(annotation, renderer)
