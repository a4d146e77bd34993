"""Fixtures of the figure tests: matplotlib draws off screen, and every figure a test opens is closed.

- ``synth`` (session): a synthetic set of 3 rooms, 2 views of 56 px, seed 5, no tokenizer.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


@pytest.fixture(scope="session")
def synth(tmp_path_factory) -> Path:
    from vqkit.synth.benchmark import generate

    out = tmp_path_factory.mktemp("synth_viz")
    generate(out, scenes=3, views=2, image_size=56, seed=5, workers=1, tokenizer=False, progress=False)
    return out


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")
