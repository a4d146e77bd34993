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
    assert legend[:2] == ["view 0 true", "view 0 predicted (0 deg, 0.0 m off)"]
    # Another view: how far off in rotation and in position, the distance between the two centres.
    centre = (lambda R, t: -R.T @ t)  # noqa: E731
    metres = np.linalg.norm(centre(prediction.R_pred[1], prediction.t_pred[1])
                            - centre(prediction.R_true[1], prediction.t_true[1]))
    assert prediction.position_error_m[1] == pytest.approx(metres, abs=1e-6)
    assert legend[3] == (f"view 1 predicted ({prediction.rotation_error_deg[1]:.0f} deg, {metres:.1f} m off)")
    depth = viz.plot_predicted_depth(prediction)
    assert len(depth.axes) >= 8


def test_a_room_without_cameras_is_refused(tiny_vggt_file, tmp_path):
    from PIL import Image

    Image.new("RGB", (56, 56)).save(tmp_path / "a.png")
    with pytest.raises(DataError, match="no cameras to compare"):
        viz.predict_room(tiny_vggt_file, {"images": [str(tmp_path / "a.png")], "question": "q", "answer": "a"})



def test_the_figures_draw_the_true_and_predicted_cameras_and_depths_in_place(tiny_vggt_file, synth_dir):
    """From above, each view's true camera centre (o) is at -R^T t of the record and its predicted one (x)
    at -R^T t of the prediction; the depth panels show the true depth (blank where invalid) and the
    predicted depth in metres, on one colour scale."""
    from matplotlib.colors import to_hex

    from vqkit.viz.scene import VIEW_COLOURS

    scene = sorted((synth_dir / "scenes").iterdir())[1]
    prediction = viz.predict_room(tiny_vggt_file, scene)
    above = viz.plot_predicted_cameras(prediction).axes[1]
    for v in range(len(prediction.images)):
        colour = VIEW_COLOURS[v]
        for marker, R, t in (("o", prediction.R_true[v], prediction.t_true[v]),
                             ("x", prediction.R_pred[v], prediction.t_pred[v])):
            (mark,) = [ln for ln in above.lines if ln.get_marker() == marker and to_hex(ln.get_color()) == colour]
            np.testing.assert_allclose(mark.get_xydata()[0], (-R.T @ t)[:2], atol=1e-6)
    depth = viz.plot_predicted_depth(prediction)
    V = len(prediction.images)
    grid = np.array(depth.axes[:4 * V]).reshape(4, V)
    for v in range(V):
        true = prediction.depth_true[v]
        shown_true = grid[1, v].images[0].get_array()
        np.testing.assert_allclose(np.ma.filled(shown_true, np.nan), np.where(true > 0, true, np.nan), equal_nan=True)
        np.testing.assert_allclose(np.asarray(grid[2, v].images[0].get_array()), prediction.depth_pred[v])
        assert grid[1, v].images[0].get_clim() == grid[2, v].images[0].get_clim()
        assert grid[3, v].get_title().startswith("AbsRel ")
