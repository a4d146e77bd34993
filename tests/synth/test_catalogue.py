"""vqkit.synth.catalogue: what the rooms are made of. Every category is a RoomPlan category with a
size range, a shape and a place in the placement order; colour names never collide; an object's
layout box is exactly the extent of the boxes that render it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vqkit import roomplan
from vqkit.synth import catalogue
from vqkit.synth.catalogue import CATEGORIES, SIZES, finish_object, footprint, local_bounds, object_parts


def test_categories_are_roomplan_categories_with_sizes_and_a_place():
    """Stage 2 writes the synthetic rooms as RoomPlan layouts: a category RoomPlan lacks would be lost."""
    assert set(CATEGORIES) <= set(roomplan.CATEGORIES)
    assert set(SIZES) == set(CATEGORIES) == set(catalogue.PLACE_ORDER)
    assert len(catalogue.PLACE_ORDER) == len(CATEGORIES)
    assert set(catalogue.AGAINST_WALL) <= set(CATEGORIES) and set(catalogue.MAX_COUNT) <= set(CATEGORIES)
    words = [w for singular_plural in CATEGORIES.values() for w in singular_plural]
    assert len(words) == len(set(words))  # a question word names one category
    assert catalogue.SEMANTIC_CLASSES == ["floor", "wall", "ceiling", "door", "window", *CATEGORIES]


def test_colour_names_never_collide():
    """An answer 'red' or 'grey' names one thing: object colours, wall paints and floor tiles are
    told apart by name, and each palette's colours are told apart by value."""
    names = [list(p) for p in (catalogue.PALETTE, catalogue.WALL_PALETTE, catalogue.FLOOR_PALETTE)]
    assert sum(len(n) for n in names) == len(set().union(*map(set, names)))
    assert catalogue.COLOURS == list(catalogue.PALETTE)
    for palette in (catalogue.PALETTE, catalogue.WALL_PALETTE, catalogue.FLOOR_PALETTE):
        rgb = np.array(list(palette.values()))
        assert np.all((rgb >= 0) & (rgb <= 1))
        gaps = np.linalg.norm(rgb[:, None] - rgb[None], axis=-1) + np.eye(len(rgb))
        assert gaps.min() > 0.1


@pytest.mark.parametrize("category", list(CATEGORIES))
def test_shapes_are_solid_boxes_of_the_sampled_size(category):
    """Every part has volume; the shape stands on its base, is as wide as sampled (a toilet's tank
    is narrower) and at least as tall (a sink's tap and a television's stand add to it)."""
    for corner in (0, 1):  # the smallest and the largest size of the category
        w, d, h = (SIZES[category][k][corner] for k in range(3))
        parts = object_parts(category, w, d, h)
        assert parts and all(p[0] < p[1] and p[2] < p[3] and p[4] < p[5] for p in parts)
        x0, x1, y0, y1, z0, z1 = local_bounds(parts)
        assert z0 == 0  # stands on its base
        assert x1 - x0 == pytest.approx(w, abs=1e-9) or category == "toilet"  # the toilet's tank is narrower
        assert x1 - x0 <= w + 1e-9 and y1 - y0 >= min(d, 0.08) and z1 >= h - 1e-9
    with pytest.raises(ValueError, match="unknown category lamp"):
        object_parts("lamp", 1, 1, 1)


@pytest.mark.parametrize("yaw_deg", [0, 90, 180, 270])
def test_the_layout_box_is_the_rendered_extent(yaw_deg):
    """finish_object's centre and size, and footprint(), are the bounds of the world corners of every
    part, for each of the four yaws the generator uses."""
    yaw = math.radians(yaw_deg)
    for category in CATEGORIES:
        w, d, h = (SIZES[category][k][1] for k in range(3))
        obj = {"_parts": object_parts(category, w, d, h), "yaw": yaw, "_origin": np.array([2.0, 3.0, 0.4])}
        finish_object(obj)
        c, s = math.cos(yaw), math.sin(yaw)
        corners = np.array([[2.0 + c * x - s * y, 3.0 + s * x + c * y, 0.4 + z] for p in obj["_parts"]
                            for x in p[0:2] for y in p[2:4] for z in p[4:6]])
        lo, hi = corners.min(0), corners.max(0)
        np.testing.assert_allclose(obj["center"], (lo + hi) / 2, atol=1e-4)
        width, height, depth = obj["size"]
        along_x = (width, depth) if yaw_deg in (0, 180) else (depth, width)  # size is in the object's frame
        np.testing.assert_allclose([along_x[0], along_x[1], height], hi - lo, atol=1e-4)
        np.testing.assert_allclose(footprint(obj), [lo[0], lo[1], hi[0], hi[1]], atol=1e-9)
