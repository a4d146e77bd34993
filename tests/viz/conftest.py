"""Fixtures of the figure tests: matplotlib draws off screen, and every figure a test opens is closed.

- ``synth`` (session): a synthetic set of 3 rooms, 2 views of 56 px, seed 5, no tokenizer.
- ``grounding_predictions``: grounding rows of those rooms as ``vqkit eval`` writes them (its grounding
  files added to the set).
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


@pytest.fixture(scope="session")
def grounding_predictions(synth) -> list[dict]:
    """Grounding rows of the synthetic rooms as vqkit eval writes them (first-view frame): the first
    answers with its gold box, the second with a box 1 m off, the third with no box."""
    from vqkit.data.schema import load_records
    from vqkit.eval.results import prediction_row
    from vqkit.roomplan import RoomObject
    from vqkit.roomplan.grounding import box_text, first_view_frame
    from vqkit.synth.benchmark import add_grounding

    add_grounding(synth)
    rows = []
    for i, rec in enumerate(load_records(str(synth / "grounding_train.jsonl"))[:3]):
        meta = rec.meta()
        R, t = rec.first_view_pose(0)
        meta["view_pose"] = [R.tolist(), t.tolist()]
        box = rec.box
        off = RoomObject("p", box.category, (box.center[0] + 1.0, *box.center[1:]), box.size, box.yaw)
        text = [box_text(rec.box, first_view_frame(R, t)), box_text(off, first_view_frame(R, t)), "sofa x="][i]
        rows.append(prediction_row(i, meta, text, False, box_frame="first_view"))
    return rows
