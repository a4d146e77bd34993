"""ScanNet frames -> views: exact round trip of poses, K and depth_hist in both layouts, and failures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from prep_trees import COLOR_WH, INVALID, N_FRAMES, copy_tree

from vqkit import cameras as G
from vqkit.errors import DataError
from vqkit.prep import scannet


@pytest.mark.parametrize("scene_id", ["scene0000_00", "scene0002_00"])  # SensReader, posed_images
def test_round_trip_reproduces_poses_intrinsics_and_depth_hist(scannet_tree, tmp_path, scene_id):
    info = scannet_tree["scenes"][scene_id]
    r = scannet.convert_scene(scene_id, str(scannet_tree["root"]), str(tmp_path), num_views=5,
                              image_size=112, depth_bins=16)
    assert r.error is None and not r.reused
    m = r.manifest
    assert m["layout"] == info["layout"]
    assert m["frames_valid"] == N_FRAMES - len(INVALID)
    assert len(m["images"]) == len(m["frames"]) == 5
    g = {k: np.asarray(v) for k, v in m["geom_token"].items()}
    assert g["R"].shape == (5, 3, 3) and g["t"].shape == (5, 3) and g["K"].shape == (5, 3, 3)
    assert g["depth_hist"].shape == (5, 16)
    # Written size: width 112, height by the aspect ratio.
    out_wh = (112, round(COLOR_WH[1] * 112 / COLOR_WH[0]))
    K_expected = G.resize_intrinsics(info["K_color"], COLOR_WH, out_wh)
    frames = [int(f) for f in m["frames"]]
    assert frames == sorted(frames) and not set(frames) & set(INVALID)
    for j, f in enumerate(frames):
        R, t = info["scene"].w2c(f)  # world-to-camera of the frame the converter says it used
        np.testing.assert_allclose(g["R"][j], R, atol=1e-5)
        np.testing.assert_allclose(g["t"][j], t, atol=1e-5)
        assert G.is_rotation(g["R"][j])
        np.testing.assert_allclose(g["K"][j], K_expected, atol=1e-4)
        with Image.open(tmp_path / m["images"][j]) as im:
            assert im.size == out_wh and im.format == "JPEG"
        depth_png = Path(info["folder"]) / (f"depth/{f}.png" if info["layout"] == "sens" else f"{f:05d}.png")
        expected_hist = G.depth_histogram(G.depth_png_to_metres(np.asarray(Image.open(depth_png))))
        np.testing.assert_allclose(g["depth_hist"][j], expected_hist, atol=1e-6)
        assert abs(g["depth_hist"][j].sum() - 1) < 1e-5


def test_written_view_agrees_with_the_geometry(scannet_tree, tmp_path):
    """A room corner projected with the stored (R, t, K) lands where the colour image changes face."""
    info = scannet_tree["scenes"]["scene0001_00"]
    m = scannet.convert_scene("scene0001_00", str(scannet_tree["root"]), str(tmp_path), 4, 224, 16).manifest
    scene = info["scene"]
    for j in range(4):
        R, t, K = (np.asarray(m["geom_token"][k][j]) for k in ("R", "t", "K"))
        img = np.asarray(Image.open(tmp_path / m["images"][j])).astype(float)
        # Re-render the view with the stored geometry: it must match the written JPEG closely.
        c2w_R, c2w_t = G.invert_pose(R, t)
        scene_view = type(scene)(scene.room, G.pose_matrix(c2w_R, c2w_t)[None], scene.boxes)
        expected, _ = scene_view.render(0, K, (img.shape[1], img.shape[0]))
        assert np.mean(np.abs(img - expected)) < 12  # JPEG + resampling; a wrong K/pose gives > 40


def test_view_selection_skips_invalid_poses_even_when_far(tmp_path):
    """An -inf frame is never picked, even if its (garbage) pose would be the farthest one."""
    import prep_fixtures as F

    scene = F.make_scene(seed=5, n_frames=8, with_boxes=False)
    F.export_scannet(scene, tmp_path / "sc", "scene0100_00", "sens", color_wh=(64, 48), depth_wh=(32, 24),
                     invalid_frames=(0,))
    (tmp_path / "sc/scene0100_00/pose/5.txt").write_text("nan " * 16)
    r = scannet.convert_scene("scene0100_00", str(tmp_path / "sc"), str(tmp_path / "out"), 8, 64, 16)
    assert r.manifest["frames"] == ["1", "2", "3", "4", "6", "7"]
    assert "frames with an invalid (-inf/NaN) pose skipped" in r.warnings


def test_reuses_a_finished_scene_and_rebuilds_on_new_options(scannet_tree, tmp_path):
    args = ("scene0001_00", str(scannet_tree["root"]), str(tmp_path))
    first = scannet.convert_scene(*args, 3, 112, 16)
    again = scannet.convert_scene(*args, 3, 112, 16)
    assert again.reused and again.manifest == first.manifest
    other = scannet.convert_scene(*args, 4, 112, 16)
    assert not other.reused and len(other.manifest["images"]) == 4
    # A deleted view makes the manifest stale: the scene is rebuilt, not trusted.
    (tmp_path / other.manifest["images"][0]).unlink()
    assert not scannet.convert_scene(*args, 4, 112, 16).reused


def test_missing_scene_and_broken_files_are_data_errors(scannet_tree, tmp_path):
    with pytest.raises(DataError, match="scene folder not found"):
        scannet.read_scene(scannet_tree["root"], "scene0999_00")
    root = copy_tree(scannet_tree["root"], tmp_path / "sc")
    (root / "scene0000_00/intrinsic/intrinsic_color.txt").unlink()
    with pytest.raises(DataError, match="intrinsic_color.txt"):
        scannet.read_scene(root, "scene0000_00")
    (root / "scene0001_00/pose/0.txt").write_text("1 2 3\n")
    with pytest.raises(DataError, match=r"0\.txt: expected a 4x4 matrix"):
        scannet.convert_scene("scene0001_00", str(root), str(tmp_path / "out"), 4, 112, 16)


def test_check_root_gives_one_line_errors(scannet_tree, tmp_path):
    with pytest.raises(DataError, match="not a folder"):
        scannet.check_root(tmp_path / "nope", ["scene0000_00"])
    with pytest.raises(DataError, match="none of the 1 scenes") as e:
        scannet.check_root(tmp_path, ["scene0000_00"])
    assert "\n" not in str(e.value)
    scannet.check_root(scannet_tree["root"], ["scene0000_00", "scene0999_00"])  # one found is enough


def test_rescales_intrinsics_written_for_another_image_size(tmp_path):
    """A 640x480 colour export that kept the 1296x968 intrinsic_color.txt gets K rescaled."""
    import prep_fixtures as F

    scene = F.make_scene(seed=6, n_frames=4, with_boxes=False)
    info = F.export_scannet(scene, tmp_path / "sc", "scene0200_00", "sens", color_wh=(160, 120), depth_wh=(32, 24))
    big = G.resize_intrinsics(info["K_color"], (160, 120), (1296, 968))
    (tmp_path / "sc/scene0200_00/intrinsic/intrinsic_color.txt").write_text(
        "\n".join(" ".join(str(v) for v in row) for row in G.pose_matrix(big, np.zeros(3))))
    r = scannet.convert_scene("scene0200_00", str(tmp_path / "sc"), str(tmp_path / "out"), 2, 160, 16)
    assert "colour intrinsics rescaled to the colour image size" in r.warnings
    np.testing.assert_allclose(r.manifest["geom_token"]["K"][0], info["K_color"], rtol=2e-3)
    json.dumps(r.manifest)  # plain JSON types only
