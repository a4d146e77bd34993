"""A RoomPlan-style room: the Stage 2 target, with its two serialisations as methods.

A :class:`Room` holds walls, doors, windows, openings and objects (:mod:`vqkit.roomplan.elements`) in
vqkit's world frame (metres, z-up, floor at z = 0). ``to_capturedroom`` / ``from_capturedroom`` convert to
and from Apple's CapturedRoom JSON (:mod:`vqkit.roomplan.capturedroom`); ``to_text`` / ``from_text`` to and
from the compact text form a model writes (:mod:`vqkit.roomplan.text`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vqkit.roomplan.capturedroom import read_capturedroom, to_capturedroom
from vqkit.roomplan.elements import Opening, RoomObject, Wall
from vqkit.roomplan.text import read_text, room_to_text


@dataclass
class Room:
    """A RoomPlan-style layout in vqkit's world frame (metres, z-up, floor at z = 0)."""

    walls: list[Wall] = field(default_factory=list)
    doors: list[Opening] = field(default_factory=list)
    windows: list[Opening] = field(default_factory=list)
    openings: list[Opening] = field(default_factory=list)
    objects: list[RoomObject] = field(default_factory=list)

    def surfaces(self) -> list[Opening]:
        """Doors, windows and openings together."""
        return [*self.doors, *self.windows, *self.openings]

    def counts(self) -> str:
        """How many of each element, e.g. "4 walls, 1 doors, 0 windows, 0 openings, 3 objects"."""
        return (f"{len(self.walls)} walls, {len(self.doors)} doors, {len(self.windows)} windows, "
                f"{len(self.openings)} openings, {len(self.objects)} objects")

    def is_empty(self) -> bool:
        return not (self.walls or self.doors or self.windows or self.openings or self.objects)

    def to_capturedroom(self) -> dict:
        """Apple's CapturedRoom JSON dict (y-up). See :func:`vqkit.roomplan.capturedroom.to_capturedroom`."""
        return to_capturedroom(self)

    @classmethod
    def from_capturedroom(cls, data: dict, *, where: str = "roomplan", problems: list[str] | None = None) -> Room:
        """Room from a CapturedRoom JSON dict. See :func:`vqkit.roomplan.capturedroom.read_capturedroom`."""
        room = cls()
        read_capturedroom(data, room, where=where, problems=problems)
        return room

    def to_text(self) -> str:
        """The compact canonical text form. See :mod:`vqkit.roomplan.text`."""
        return room_to_text(self)

    @classmethod
    def from_text(cls, text: str) -> tuple[Room, list[str]]:
        """Parse the text form tolerantly: ``(room, problems)``; never raises. See
        :func:`vqkit.roomplan.text.read_text`."""
        room = cls()
        return room, read_text(text, room)

    def quantized(self) -> Room:
        """This room as its text form stores it: ``Room.from_text(self.to_text())[0]``."""
        return self.from_text(self.to_text())[0]
