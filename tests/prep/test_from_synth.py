"""Round trip through real ``vqkit synth`` scenes: export to ScanNet / ARKitScenes layouts, convert back.

The synthetic renderer's cameras and RoomPlan layout are the ground truth; converting the exports
must give the same poses, K (scaled to the written size), depth histograms and objects.
"""

from __future__ import annotations

import math

import numpy as np
import prep_fixtures as F
import pytest

from vqkit import cameras as G
from vqkit.prep import arkit, scannet

synth = pytest.importorskip("vqkit.synth.benchmark")


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    synth.generate(out, scenes=2, views=6, image_size=112, seed=0, workers=1, tokenizer=False, progress=False)
    return out


@pytest.mark.parametrize("layout", ["sens", "posed"])
def test_synth_scene_through_scannet_layouts(synth_dir, tmp_path, layout):
    info = F.export_synth_scannet(synth_dir, "scene00000", tmp_path / "sc", layout, invalid_frames=(1,))
    r = scannet.convert_scene("scene00000", str(tmp_path / "sc"), str(tmp_path / "out"), 4, 84, 16)
    assert r.error is None and len(r.manifest["images"]) == 4
    g = r.manifest["geom_token"]
    for j, f in enumerate(int(x) for x in r.manifest["frames"]):
        assert f != 1
        cam = info["cameras"][f]
        np.testing.assert_allclose(g["R"][j], cam["R"], atol=1e-5)
        np.testing.assert_allclose(g["t"][j], cam["t"], atol=1e-5)
        np.testing.assert_allclose(g["K"][j], G.resize_intrinsics(cam["K"], (112, 112), (84, 84)), atol=1e-4)
        # depth_hist from the depth PNG equals the one synth computed from its float depth (to 1 mm).
        np.testing.assert_allclose(g["depth_hist"][j], cam["depth_hist"], atol=5e-3)
        assert abs(sum(g["depth_hist"][j]) - 1) < 1e-5


def test_synth_scene_through_arkit_layout(synth_dir, tmp_path):
    from vqkit.roomplan import Room

    offset = (1.5, -0.5, 0.8)
    info = F.export_synth_arkit(synth_dir, "scene00001", tmp_path / "3dod", "40000001", world_offset=offset)
    r = arkit.convert_scene("40000001", str(info["folder"]), str(tmp_path / "out"), 6, 448, 16)
    assert r.error is None
    m = r.manifest
    np.testing.assert_allclose(m["world_offset"], [0, 0, -offset[2]], atol=2e-3)
    shift = np.asarray(offset) + np.asarray(m["world_offset"])
    stamps = [f"{ts:.3f}" for ts in info["timestamps"]]
    for j, frame in enumerate(m["frames"]):
        cam = info["cameras"][stamps.index(frame)]
        R = F.nearest_rotation(cam["R"])  # .traj stores an axis-angle: an exact rotation
        np.testing.assert_allclose(m["geom_token"]["R"][j], R, atol=1e-5)
        np.testing.assert_allclose(m["geom_token"]["t"][j], np.asarray(cam["t"]) - R @ shift, atol=1e-5)
        np.testing.assert_allclose(m["geom_token"]["K"][j], cam["K"], atol=1e-4)  # 112 px: not resized
    # Objects: same categories, centres, heights and footprints as synth's RoomPlan layout.
    got = Room.from_capturedroom(m["roomplan"]).objects
    want = [o for o in info["layout"]["objects"] if o["category"] in F.ROOMPLAN_TO_ARKIT]
    assert [o.category for o in got] == [o["category"] for o in want]
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g.center, np.asarray(w["center"]) + shift, atol=1e-6)
        ww, hh, dd = w["size"]
        assert g.size[1] == pytest.approx(hh) and sorted(g.size[::2]) == pytest.approx(sorted([ww, dd]))
        yaw = w["yaw"] if ww >= dd else w["yaw"] + math.pi / 2  # the longer side sets the yaw
        assert math.cos(2 * (g.yaw - yaw)) == pytest.approx(1.0, abs=1e-9)
    if any(o["category"] == "stairs" for o in info["layout"]["objects"]):
        assert m["unmapped_labels"] == {"stairs": 1}


def test_arkit_prompt_matches_the_synthetic_stage2_records():
    assert arkit.ROOMPLAN_QUESTION == synth.ROOMPLAN_QUESTION
