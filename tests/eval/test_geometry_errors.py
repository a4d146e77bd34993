"""vqkit eval-geometry: the pose and depth errors by hand, and the command on a tiny pretrained VGGT."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from vqkit.cameras import axis_angle_to_matrix, look_at
from vqkit.eval.geometry_errors import (
    depth_abs_rel,
    format_geometry_table,
    relative_pose_errors,
    rotation_angle_deg,
)


def _cameras(n: int = 3) -> torch.Tensor:
    poses = [look_at([3 * math.cos(a), 3 * math.sin(a), 1.5], [0.0, 0.2, 1.0]) for a in np.linspace(0, 2, n)]
    return torch.tensor(np.stack([np.concatenate([R, t[:, None]], axis=1) for R, t in poses]), dtype=torch.float64)


def _move_world(ext: torch.Tensor, R_w: np.ndarray, t_w: np.ndarray, scale: float) -> torch.Tensor:
    """The same cameras in another world frame (x_new = R_w x + t_w) and another unit (x scale)."""
    R, t = ext[..., :3], ext[..., 3]
    R_w, t_w = torch.tensor(R_w), torch.tensor(t_w)
    R_new = R @ R_w.T
    t_new = (t - (R_new @ t_w[:, None])[..., 0]) * scale
    return torch.cat([R_new, t_new[..., None]], dim=-1)


def test_relative_pose_errors_ignore_the_world_frame_and_scale():
    true = _cameras()
    moved = _move_world(true, axis_angle_to_matrix([0.3, -1.0, 0.4]), np.array([5.0, -2.0, 1.0]), 0.37)
    rotation, translation = relative_pose_errors(moved, true)
    assert rotation.shape == translation.shape == (3,)
    assert torch.all(rotation < 1e-3) and torch.all(translation < 1e-3)


def test_relative_pose_errors_measure_a_turned_camera_and_a_reversed_direction():
    true = _cameras()
    pred = true.clone()
    pred[2, :, :3] = torch.tensor(axis_angle_to_matrix([0.0, math.radians(20), 0.0])) @ true[2, :, :3]
    rotation, _ = relative_pose_errors(pred, true)
    # pairs (0, 1), (0, 2), (1, 2): only those with camera 2 turned 20 degrees
    assert rotation.tolist() == pytest.approx([0.0, 20.0, 20.0], abs=1e-4)
    two = true[:2].clone()
    flipped = two.clone()
    flipped[1, :, 3] = two[1, :, 3] - 2 * (two[1, :, 3] - (two[1, :, :3] @ two[0, :, :3].T @ two[0, :, 3]))
    _, translation = relative_pose_errors(flipped, two)
    assert translation.item() == pytest.approx(180.0, abs=1e-3)  # no sign folding
    assert rotation_angle_deg(torch.eye(3)[None], torch.eye(3)[None]).item() == 0.0


def test_depth_abs_rel_after_median_scaling_by_hand():
    true = torch.tensor([[1.0, 2.0, 4.0, 0.0]])
    valid = true > 0
    assert depth_abs_rel(true * 3.0, true, valid) == pytest.approx(0.0)  # a scale error costs nothing
    pred = torch.tensor([[1.0, 1.0, 4.0, 9.0]])  # medians 1 (pred) and 2 (true): pred x 2 = 2, 2, 8
    assert depth_abs_rel(pred, true, valid) == pytest.approx((1.0 + 0.0 + 1.0) / 3)
    assert depth_abs_rel(pred, true, torch.zeros_like(valid)) is None


def test_eval_geometry_command_on_a_tiny_pretrained_vggt(tiny_vggt_file, synth_dir, tmp_path, capsys):
    from vqkit.commands import main

    out = tmp_path / "geometry.json"
    assert main(["eval-geometry", "--encoder", str(tiny_vggt_file), "--data", str(synth_dir / "train.jsonl"),
                 "--rooms", "5", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "rotation error (median, deg)" in text and "untrained" in text and "5 rooms, 5 view pairs" in text
    result = json.loads(out.read_text())
    for column in ("trained", "untrained"):
        figures = result[column]
        assert figures["rooms"] == 5 and figures["pairs"] == 5 and figures["views"] == 10
        assert 0 <= figures["rotation_error_deg"] <= 180 and 0 <= figures["translation_error_deg"] <= 180
        assert figures["depth_abs_rel"] >= 0
    # the two columns are different models
    assert result["trained"]["rotation_error_deg"] != result["untrained"]["rotation_error_deg"]
    assert format_geometry_table(result).splitlines()[0].split() == ["trained", "untrained"]


def test_eval_geometry_refuses_a_file_without_heads(tmp_path, tiny_vggt_file, synth_dir, capsys):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from vqkit.commands import main

    state = {k: v for k, v in load_file(str(tiny_vggt_file)).items() if not k.startswith("camera_head.")}
    with safe_open(str(tiny_vggt_file), "pt") as f:
        metadata = f.metadata()
    bare = tmp_path / "model.safetensors"
    save_file(state, str(bare), metadata=metadata)  # a vqkit file that lost its camera head
    assert main(["eval-geometry", "--encoder", str(bare), "--data", str(synth_dir / "val.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "has no camera and depth heads" in err and len(err.strip().splitlines()) == 1
