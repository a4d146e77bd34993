"""The heads' figures: one room's predicted and true cameras and depth maps."""

from __future__ import annotations

import numpy as np
import pytest

from vqkit import viz
from vqkit.errors import DataError


def test_predicted_room_shares_view_0_and_draws(tiny_vggt_file, synth_dir):
    import matplotlib

    matplotlib.use("Agg")
    scene = sorted((synth_dir / "scenes").iterdir())[0]
    prediction = viz.predict_room(tiny_vggt_file, scene)
    assert prediction.scale_source == "depth"  # the synthetic rooms' depth maps fix the scale
    # view 0 is the same camera in both (the prediction is placed through it)
    assert np.allclose(prediction.R_pred[0], prediction.R_true[0], atol=1e-5)
    assert np.allclose(prediction.t_pred[0], prediction.t_true[0], atol=1e-5)
    assert prediction.rotation_error_deg[0] == pytest.approx(0.0, abs=1e-3)
    assert prediction.depth_pred.shape == (2, 56, 56) and prediction.depth_true[0].shape == (56, 56)
    # metric after the scale: the median over valid pixels matches the truth's
    valid = np.concatenate([(d > 0).ravel() for d in prediction.depth_true])
    pred = prediction.depth_pred.reshape(-1)[valid]
    true = np.concatenate([d.ravel() for d in prediction.depth_true])[valid]
    assert np.median(pred) == pytest.approx(np.median(true), rel=1e-3)
    cameras = viz.plot_predicted_cameras(prediction)
    legend = [t.get_text() for t in cameras.axes[1].get_legend().get_texts()]
    assert legend[:2] == ["view 0 true", "view 0 predicted (0 deg off)"]
    depth = viz.plot_predicted_depth(prediction)
    assert len(depth.axes) >= 8


def test_a_room_without_cameras_is_refused(tiny_vggt_file, tmp_path):
    from PIL import Image

    Image.new("RGB", (56, 56)).save(tmp_path / "a.png")
    with pytest.raises(DataError, match="no cameras to compare"):
        viz.predict_room(tiny_vggt_file, {"images": [str(tmp_path / "a.png")], "question": "q", "answer": "a"})
