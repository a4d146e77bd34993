"""Fixtures of the synthetic-room tests.

- ``dataset`` (session): ``(folder, stats)`` of a set written by ``vqkit.synth.generate``: 6 rooms,
  3 views of 48 px, seed 3, 10 questions per room, no tokenizer.
- ``scenes`` (session): ``[(layout, cameras), ...]`` of that set's scene folders, in scene order.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

SIZE = 48


@pytest.fixture(scope="session")
def dataset(tmp_path_factory) -> tuple[Path, dict]:
    from vqkit import synth

    out = tmp_path_factory.mktemp("synth")
    stats = synth.generate(out, scenes=6, views=3, image_size=SIZE, seed=3, workers=1,
                           questions_per_scene=10, tokenizer=False, progress=False)
    return out, stats


@pytest.fixture(scope="session")
def scenes(dataset) -> list[tuple[dict, list[dict]]]:
    out, _ = dataset
    return [(json.loads((folder / "layout.json").read_text()), json.loads((folder / "cameras.json").read_text()))
            for folder in sorted((out / "scenes").iterdir())]
