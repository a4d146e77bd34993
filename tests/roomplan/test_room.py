"""vqkit.roomplan.room: a Room's parts, and its two serialisations as methods (the text form and
CapturedRoom JSON) agreeing with the functions they stand for."""

from __future__ import annotations

import math

import pytest
from helpers import random_room

from vqkit.roomplan import Opening, Room, RoomObject, Wall
from vqkit.roomplan.capturedroom import to_capturedroom
from vqkit.roomplan.text import room_to_text


def test_surfaces_are_doors_then_windows_then_openings():
    door = Opening("d", "door", "w", (0, 0, 1), 1, 2, 0)
    window = Opening("n", "window", "w", (1, 0, 1.5), 1, 1, 0)
    gap = Opening("g", "opening", None, (2, 0, 1), 1, 2, 0)
    room = Room(openings=[gap], windows=[window], doors=[door])
    assert room.surfaces() == [door, window, gap]
    assert Room().surfaces() == []


@pytest.mark.parametrize("part", ["walls", "doors", "windows", "openings", "objects"])
def test_a_room_with_any_one_element_is_not_empty(part):
    element = {"walls": Wall("w", (0, 0, 1), 3, 2, 0),
               "objects": RoomObject("o", "bed", (0, 0, 0.3), (2, 0.6, 1.6), 0)}.get(
        part, Opening("x", {"doors": "door", "windows": "window"}.get(part, "opening"), None, (0, 0, 1), 1, 2, 0))
    assert Room().is_empty()
    assert not Room(**{part: [element]}).is_empty()


def test_methods_are_the_modules_functions():
    room = random_room(5)
    assert room.to_text() == room_to_text(room)
    assert room.to_capturedroom() == to_capturedroom(room)
    problems: list[str] = []
    back = Room.from_capturedroom(room.to_capturedroom(), problems=problems)
    assert problems == [] and back.to_text() == room.to_text()


def test_quantized_is_the_room_as_its_text_stores_it():
    """Centimetres and whole degrees: what a model trained on the text can at best write back."""
    room = Room(walls=[Wall("a", (0.123456, -2.0, 1.3), 4.00049, 2.6, 0.0)],
                objects=[RoomObject("t", "table", (0.3333, 0.2, 0.375), (1.6, 0.75, 0.9), 0.01)])
    q = room.quantized()
    assert q == Room.from_text(room.to_text())[0]
    assert q.walls[0].center[0] == pytest.approx(0.12) and q.walls[0].width == pytest.approx(4.0)
    assert q.objects[0].center[0] == pytest.approx(0.33) and q.objects[0].yaw == pytest.approx(math.radians(1))
    assert q.quantized() == q  # quantising twice changes nothing
    assert room != q
