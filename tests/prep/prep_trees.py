"""Sizes of the synthetic converter fixtures and a tree-copy helper (importable by test modules)."""

from __future__ import annotations

from pathlib import Path

COLOR_WH = (324, 242)
DEPTH_WH = (160, 120)
N_FRAMES = 12
INVALID = (2, 7)  # frames written with an all -inf pose


def copy_tree(src: Path, dst: Path) -> Path:
    """A private copy of a session tree for a test that damages files."""
    import shutil

    shutil.copytree(src, dst)
    return dst
