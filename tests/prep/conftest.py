"""Synthetic ScanNet / ScanQA / SQA3D / ARKitScenes trees shared by the converter tests.

Sizes are tiny (colour 324x242 = ScanNet's aspect at 1/4, depth 160x120, 12 frames per scene) so the
whole folder builds in a few seconds; the converters do not care about the resolution.
"""

from __future__ import annotations

import prep_fixtures as F
import pytest
from prep_trees import COLOR_WH, DEPTH_WH, INVALID, N_FRAMES


@pytest.fixture(scope="session")
def scannet_tree(tmp_path_factory) -> dict:
    """Two scenes in the SensReader layout, one in posed_images, plus ScanQA and SQA3D files.

    ScanQA and SQA3D also name ``scene0009_00``, which is not on disk (a missing scene).
    """
    root = tmp_path_factory.mktemp("scannet")
    scenes = {}
    for k, (sid, layout) in enumerate([("scene0000_00", "sens"), ("scene0001_00", "sens"),
                                       ("scene0002_00", "posed")]):
        scene = F.make_scene(seed=10 + k, n_frames=N_FRAMES, with_boxes=(k == 0))
        info = F.export_scannet(scene, root / "scannet", sid, layout, color_wh=COLOR_WH, depth_wh=DEPTH_WH,
                                invalid_frames=INVALID)
        scenes[sid] = {"scene": scene, "layout": layout, **info}
    ann = root / "scanqa"
    F.write_scanqa(ann / "ScanQA_v1.0_train.json", ["scene0000_00", "scene0002_00", "scene0009_00"], per_scene=3)
    F.write_scanqa(ann / "ScanQA_v1.0_val.json", ["scene0001_00"], per_scene=2, seed=1)
    F.write_scanqa(ann / "ScanQA_v1.0_test_wo_obj.json", ["scene0001_00"], per_scene=2, with_answers=False)
    sqa = root / "sqa3d"
    F.write_sqa3d(sqa, "train", ["scene0000_00", "scene0002_00", "scene0009_00"], per_scene=4)
    F.write_sqa3d(sqa, "val", ["scene0001_00"], per_scene=2, seed=3)
    return {"root": root / "scannet", "scanqa": ann, "sqa3d": sqa, "scenes": scenes}


@pytest.fixture(scope="session")
def arkit_tree(tmp_path_factory) -> dict:
    """Two ARKitScenes 3DOD scans (Training, world shifted so the floor is at z = 0.7) + one Validation."""
    root = tmp_path_factory.mktemp("arkit") / "3dod"
    scans = {}
    for vid, fold, offset, seed in [("41254925", "Training", (0.4, -1.3, 0.7), 20),
                                    ("41254926", "Training", (0.0, 0.0, 0.0), 21),
                                    ("42445173", "Validation", (-2.0, 0.5, -0.2), 22)]:
        scene = F.make_scene(seed=seed, n_frames=N_FRAMES, with_boxes=True)
        info = F.export_arkit(scene, root, vid, fold=fold, world_offset=offset)
        scans[vid] = {"scene": scene, "offset": offset, "fold": fold, **info}
    return {"root": root, "scans": scans}
