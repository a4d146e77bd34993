"""Tests for VGGT's heads and the whole model (vqkit.vggt.camera_head, dpt_head, model, and the
whole-model side of weights): shapes on tiny configs, the official key list at full size (meta device),
strict loading of official-layout files, precision, view masks, and numerical parity with the
official package when it is importable."""

from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path

import pytest
import torch
from helpers import official_aggregator
from safetensors.torch import save_file

from vqkit.config import EncoderConfig
from vqkit.errors import CheckpointError, ConfigError
from vqkit.vggt import (
    VGGT,
    Aggregator,
    CameraHead,
    DPTHead,
    default_dpt_layers,
    load_vggt_weights,
)

KEYS_FIXTURE = Path(__file__).with_name("vggt_model_keys.tsv")
TINY_AGG = {"img_size": 28, "patch_size": 14, "embed_dim": 64, "depth": 2, "num_heads": 4, "patch_embed": "conv"}
TINY_HEADS = {"dpt_features": 32, "dpt_out_channels": (16, 32, 64, 64), "camera_trunk_depth": 2, "camera_num_heads": 4}
TINY_DPT = {"features": 32, "out_channels": [16, 32, 64, 64], "intermediate_layer_idx": [0, 0, 1, 1]}


def randomize(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Make the parameters that start at 0 or 1 (LayerScale, empty pose, special tokens) matter."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in module.named_parameters():
            if "gamma" in name or "token" in name:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.5)
    return module


def tiny_vggt(seed: int = 0, **overrides) -> VGGT:
    torch.manual_seed(seed)
    return randomize(VGGT(**{**TINY_AGG, **TINY_HEADS, **overrides}), seed).eval()


def images(B=2, S=3, H=28, W=42, seed=0) -> torch.Tensor:
    return torch.rand(B, S, 3, H, W, generator=torch.Generator().manual_seed(seed))


def tokens(B=2, S=3, grid=(2, 3), dim=128, layers=2, seed=0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(B, S, 5 + grid[0] * grid[1], dim, generator=gen) for _ in range(layers)]


def official_layout(model: VGGT, track_keys: int = 3) -> dict[str, torch.Tensor]:
    """What an official model.pt holds: the model's tensors plus a few track_head.* ones."""
    state = {k: v.clone() for k, v in model.state_dict().items()}
    for i in range(track_keys):
        state[f"track_head.feature_extractor.projects.{i}.weight"] = torch.zeros(2, 2)
    return state


# --------------------------------------------------------------------------------------------
# Shapes
# --------------------------------------------------------------------------------------------


def test_camera_head_shapes_and_iterations():
    head = randomize(CameraHead(dim_in=128, trunk_depth=2, num_heads=4)).eval()
    estimates = head(tokens())
    assert len(estimates) == 4 and all(e.shape == (2, 3, 9) for e in estimates)
    assert (estimates[-1][..., 7:] >= 0).all()  # relu on the fields of view
    assert not torch.allclose(estimates[0], estimates[-1])  # the iterations refine
    assert len(head(tokens(), num_iterations=2)) == 2
    # only the last layer's camera token is read
    changed = tokens()
    changed[0] += 1.0
    changed[1][:, :, 1:] += 1.0
    torch.testing.assert_close(head(changed)[-1], estimates[-1])


@pytest.mark.parametrize("output_dim,activation", [(2, "exp"), (4, "inv_log")])
def test_dpt_head_shapes(output_dim, activation):
    head = DPTHead(128, output_dim=output_dim, activation=activation, **TINY_DPT).eval()
    prediction, confidence = head(tokens(S=3), images(2, 3, 28, 42), patch_start_idx=5)
    assert prediction.shape == (2, 3, 28, 42, output_dim - 1) and confidence.shape == (2, 3, 28, 42)
    assert (confidence > 1).all()  # expp1
    if activation == "exp":
        assert (prediction > 0).all()
    # frames are decoded in chunks; the result does not depend on the chunk size
    S9 = tokens(B=1, S=9, seed=1)
    whole = head(S9, images(1, 9), 5, frames_chunk_size=None)
    chunked = head(S9, images(1, 9), 5, frames_chunk_size=4)
    torch.testing.assert_close(chunked[0], whole[0], atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(chunked[1], whole[1], atol=1e-6, rtol=1e-6)


def test_dpt_head_feature_only_and_down_ratio():
    features = DPTHead(128, feature_only=True, **TINY_DPT)(tokens(), images(), 5)
    assert features.shape == (2, 3, 32, 28, 42)
    half = DPTHead(128, down_ratio=2, **TINY_DPT)(tokens(), images(), 5)
    assert half[0].shape == (2, 3, 14, 21, 3)


def test_heads_reject_unknown_options():
    with pytest.raises(ConfigError, match="unknown activation"):
        DPTHead(128, activation="softplus")
    with pytest.raises(ConfigError, match="unknown fl_act"):
        CameraHead(128, fl_act="tanh")
    with pytest.raises(ConfigError, match="pose_encoding_type"):
        CameraHead(128, pose_encoding_type="relT_quaR_OneFLM1")
    with pytest.raises(ConfigError, match="no track head"):
        VGGT(enable_track=True)
    with pytest.raises(ConfigError, match="dpt_layers"):
        VGGT(**TINY_AGG, **{**TINY_HEADS, "dpt_layers": [0, 1, 2, 3]})


def test_vggt_forward_shapes_and_float32_heads():
    model = tiny_vggt()
    x = images(2, 3, 28, 42)
    out = model(x)
    assert out.pose_enc.shape == (2, 3, 9) and len(out.pose_enc_list) == 4
    assert out.depth.shape == (2, 3, 28, 42, 1) and out.depth_conf.shape == (2, 3, 28, 42)
    assert out.world_points.shape == (2, 3, 28, 42, 3) and out.world_points_conf.shape == (2, 3, 28, 42)
    assert out.patch_start_idx == 5 and model.head_layers() == [0, 1]
    assert torch.equal(model(x[0]).depth[0], out.depth[0])  # [S, 3, H, W] input = a batch of one
    # bf16 tokens under bf16 autocast (an aggregator run in low precision): the heads still run in float32
    low_tokens = [t.bfloat16() for t in out.tokens]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = model.heads(low_tokens, x, out.patch_start_idx)
    full = model.heads([t.float() for t in low_tokens], x, out.patch_start_idx)
    for name in ("pose_enc", "depth", "depth_conf", "world_points"):
        assert getattr(low, name).dtype == torch.float32
        torch.testing.assert_close(getattr(low, name), getattr(full, name), atol=0, rtol=0)
    # a model without some heads leaves their outputs empty
    camera_only = tiny_vggt(enable_point=False, enable_depth=False)
    out = camera_only(x, layers=[0])
    assert out.depth is None and out.world_points is None and out.pose_enc.shape == (2, 3, 9)
    assert out.tokens[0] is not None  # asked for, beside the camera head's last layer


def test_default_dpt_layers():
    assert default_dpt_layers(24) == [4, 11, 17, 23]
    assert default_dpt_layers(8) == [1, 3, 5, 7]
    assert default_dpt_layers(2) == [0, 0, 0, 1]
    assert default_dpt_layers(1) == [0, 0, 0, 0]


def test_padding_views_do_not_change_the_real_ones():
    model = tiny_vggt()
    x = images(1, 3)
    alone = model(x[:, :2])
    padded = torch.cat([x[:, :2], torch.rand(1, 1, 3, 28, 42)], dim=1)
    masked = model(padded, view_mask=torch.tensor([[True, True, False]]))
    torch.testing.assert_close(masked.pose_enc[:, :2], alone.pose_enc, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(masked.depth[:, :2], alone.depth, atol=1e-5, rtol=1e-5)
    unmasked = model(padded)
    assert not torch.allclose(unmasked.pose_enc[:, :2], alone.pose_enc, atol=1e-4)


def test_heads_train_with_a_frozen_aggregator():
    model = tiny_vggt()
    model.aggregator.freeze()
    out = model(images(1, 2))
    loss = out.pose_enc_list[0].sum() + out.pose_enc.sum() + out.depth.mean() + out.world_points.mean()
    loss.backward()
    assert model.camera_head.embed_pose.weight.grad is not None
    assert model.depth_head.projects[0].weight.grad is not None
    assert all(p.grad is None for p in model.aggregator.parameters())
    model.freeze()
    assert not model.training and not model(images(1, 2)).depth.requires_grad


# --------------------------------------------------------------------------------------------
# Full-size structure (meta device)
# --------------------------------------------------------------------------------------------


def reference_rows() -> tuple[str, int, list[tuple[str, str]]]:
    """(sha256 of the aggregator lines, their count, the other rows) from the test fixture."""
    text = KEYS_FIXTURE.read_text()
    match = re.search(r"aggregator\.\*: (\d+) keys, .*: ([0-9a-f]{64})", text)
    rows = [tuple(line.split("\t")) for line in text.splitlines() if line and not line.startswith("#")]
    return match.group(2), int(match.group(1)), rows


@pytest.fixture(scope="module")
def full_meta() -> VGGT:
    with torch.device("meta"):
        return VGGT()


def test_full_size_keys_and_shapes_equal_the_official_checkpoint(full_meta):
    digest, num_aggregator, others = reference_rows()
    ours = [(k, str(tuple(v.shape))) for k, v in full_meta.state_dict().items()]
    aggregator = [row for row in ours if row[0].startswith("aggregator.")]
    assert len(aggregator) == num_aggregator == 1210
    lines = "".join(f"{k}\t{s}\n" for k, s in aggregator)
    assert hashlib.sha256(lines.encode()).hexdigest() == digest
    heads = [row for row in others if not row[0].startswith("track_head.")]
    assert ours[len(aggregator):] == heads  # same keys, shapes and order
    assert len(ours) == 1403 and len(others) - len(heads) == 394


def test_full_size_parameter_counts(full_meta):
    def millions(module):
        return round(sum(p.numel() for p in module.parameters()) / 1e6, 1)

    assert millions(full_meta.camera_head) == 216.2
    assert millions(full_meta.depth_head) == 32.7
    assert millions(full_meta.point_head) == 32.7
    assert full_meta.depth_head.intermediate_layer_idx == [4, 11, 17, 23]


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def test_official_layout_file_loads_strictly_and_drops_the_track_head(tmp_path, caplog):
    source = tiny_vggt(seed=1)
    torch.save(official_layout(source), tmp_path / "model.pt")
    with caplog.at_level(logging.INFO, logger="vqkit.vggt.weights"):
        loaded = VGGT.from_pretrained(tmp_path / "model.pt", **TINY_AGG, **TINY_HEADS).eval()
    report = loaded.weights_report
    assert report.loaded == len(source.state_dict())
    assert set(report.dropped) == {f"track_head.feature_extractor.projects.{i}.weight" for i in range(3)}
    assert "dropped 3 track_head.* keys" in caplog.text
    assert not any(t.is_meta for t in [*loaded.parameters(), *loaded.buffers()])
    x = images(1, 2)
    expected, got = source(x), loaded(x)
    for name in ("pose_enc", "depth", "depth_conf", "world_points", "world_points_conf"):
        torch.testing.assert_close(getattr(got, name), getattr(expected, name), atol=0, rtol=0)
    # safetensors and a folder work too; the aggregator alone still loads from the same files
    save_file(official_layout(source), str(tmp_path / "model.safetensors"))
    from_folder = VGGT.from_pretrained(tmp_path, **TINY_AGG, **TINY_HEADS)
    assert torch.equal(from_folder.camera_head.empty_pose_tokens, source.camera_head.empty_pose_tokens)
    aggregator = Aggregator.from_pretrained(tmp_path / "model.pt", **TINY_AGG)
    assert torch.equal(aggregator.camera_token, source.aggregator.camera_token)


def test_a_disabled_head_is_dropped_and_dtype_casts_only_the_aggregator(tmp_path):
    source = tiny_vggt(seed=2)
    state = official_layout(source, track_keys=0)
    no_point = VGGT(**TINY_AGG, **TINY_HEADS, enable_point=False)
    report = load_vggt_weights(no_point, state)
    assert {k.split(".")[0] for k in report.dropped} == {"point_head"}
    assert "point_head.* keys" in report.summary()
    torch.save(state, tmp_path / "model.pt")
    low = VGGT.from_pretrained(tmp_path / "model.pt", dtype=torch.bfloat16, **TINY_AGG, **TINY_HEADS)
    assert low.aggregator.camera_token.dtype == torch.bfloat16
    assert all(p.dtype == torch.float32 for p in low.depth_head.parameters())


def test_wrong_head_keys_are_named(tmp_path):
    state = official_layout(tiny_vggt())
    missing = dict(state)
    del missing["camera_head.pose_branch.fc2.bias"]
    with pytest.raises(CheckpointError, match=r"missing 1 key\(s\): camera_head\.pose_branch\.fc2\.bias"):
        load_vggt_weights(VGGT(**TINY_AGG, **TINY_HEADS), missing)
    extra = dict(state)
    extra["depth_head.scratch.refinenet5.out_conv.weight"] = torch.zeros(1)
    extra["confidence_head.weight"] = torch.zeros(1)
    torch.save(extra, tmp_path / "extra.pt")
    with pytest.raises(CheckpointError, match=r"extra\.pt: .*unexpected 2 key\(s\): confidence_head\.weight, "
                                              r"depth_head\.scratch\.refinenet5\.out_conv\.weight"):
        VGGT.from_pretrained(tmp_path / "extra.pt", **TINY_AGG, **TINY_HEADS)
    wrong = dict(state)
    wrong["point_head.norm.weight"] = torch.ones(7)
    with pytest.raises(CheckpointError, match=r"point_head\.norm\.weight has shape \(7,\)"):
        load_vggt_weights(VGGT(**TINY_AGG, **TINY_HEADS), wrong)
    # a file whose heads were trained without the point head, into a model that has one
    no_point = {k: v for k, v in state.items() if not k.startswith("point_head.")}
    with pytest.raises(CheckpointError, match=r"missing \d+ key\(s\): point_head\..*enable_point"):
        load_vggt_weights(VGGT(**TINY_AGG, **TINY_HEADS), no_point)
    bare = {k[len("aggregator."):]: v for k, v in state.items() if k.startswith("aggregator.")}
    with pytest.raises(CheckpointError, match="no aggregator.* keys"):
        load_vggt_weights(VGGT(**TINY_AGG, **TINY_HEADS), bare)


def test_from_config_shares_the_aggregator_init_and_loads_weights(tmp_path):
    cfg = EncoderConfig(**TINY_AGG, seed=5, layers=[-2])
    model = VGGT.from_config(cfg, **TINY_HEADS)
    alone = Aggregator.from_config(cfg)
    for (key, a), b in zip(model.aggregator.state_dict().items(), alone.state_dict().values(), strict=True):
        assert torch.equal(a, b), key
    assert not any(p.requires_grad for p in model.aggregator.parameters())
    assert all(p.requires_grad for p in model.camera_head.parameters())
    assert model.aggregator.default_layers == [-2]
    torch.save(official_layout(model), tmp_path / "model.pt")
    loaded = VGGT.from_config(EncoderConfig(**TINY_AGG, weights=str(tmp_path / "model.pt")), **TINY_HEADS)
    assert torch.equal(loaded.depth_head.norm.weight, model.depth_head.norm.weight)


# --------------------------------------------------------------------------------------------
# Parity with the official implementation (only where the vggt package is importable)
# --------------------------------------------------------------------------------------------


def _max_diff(a, b) -> float:
    return max((x - y).abs().max().item() for x, y in zip(a, b, strict=True))


def test_parity_camera_head_with_official():
    official_module = pytest.importorskip("vggt.heads.camera_head")
    torch.manual_seed(0)
    official = randomize(official_module.CameraHead(dim_in=128, trunk_depth=2, num_heads=4)).eval()
    ours = CameraHead(dim_in=128, trunk_depth=2, num_heads=4).eval()
    ours.load_state_dict(official.state_dict(), strict=True)
    assert list(ours.state_dict()) == list(official.state_dict())
    x = tokens(seed=3)
    with torch.no_grad():
        expected = official(x)
    got = ours(x)
    assert len(got) == len(expected) and _max_diff(got, expected) <= 1e-5


@pytest.mark.parametrize("output_dim,activation", [(2, "exp"), (4, "inv_log")], ids=["depth", "point"])
def test_parity_dpt_head_with_official(output_dim, activation):
    official_module = pytest.importorskip("vggt.heads.dpt_head")
    torch.manual_seed(0)
    kwargs = dict(output_dim=output_dim, activation=activation, conf_activation="expp1", **TINY_DPT)
    official = official_module.DPTHead(dim_in=128, **kwargs).eval()
    ours = DPTHead(128, **kwargs).eval()
    ours.load_state_dict(official.state_dict(), strict=True)
    assert list(ours.state_dict()) == list(official.state_dict())
    for S, (H, W) in [(3, (28, 42)), (9, (42, 28))]:  # 9 views: decoded in chunks of 8
        x = tokens(S=S, grid=(H // 14, W // 14), seed=S)
        with torch.no_grad():
            expected = official([t.clone() for t in x], images(2, S, H, W), 5)
        got = ours(x, images(2, S, H, W), 5)
        assert _max_diff(got, expected) <= 1e-5


def test_parity_whole_vggt_with_official():
    """The official VGGT's forward over tiny official parts against vqkit's VGGT holding the same
    weights. (The official constructor always builds the 1.2B-parameter model, and cannot on the meta
    device, so the instance is created bare and given tiny parts; its forward is the official one.)"""
    vggt_module = pytest.importorskip("vggt.models.vggt")
    from vggt.heads.camera_head import CameraHead as OfficialCameraHead
    from vggt.heads.dpt_head import DPTHead as OfficialDPTHead
    from vggt.models.aggregator import Aggregator as OfficialAggregator

    official = vggt_module.VGGT.__new__(vggt_module.VGGT)
    torch.nn.Module.__init__(official)
    torch.manual_seed(0)
    dpt = {"features": 32, "out_channels": [16, 32, 64, 64], "intermediate_layer_idx": default_dpt_layers(2)}
    # The official VGGT keeps the layers its DPT heads read (4, 11, 17, 23 at full size); a tiny one reads others.
    official.aggregator = official_aggregator(OfficialAggregator, dpt["intermediate_layer_idx"], **TINY_AGG)
    official.camera_head = OfficialCameraHead(dim_in=128, trunk_depth=2, num_heads=4)
    official.point_head = OfficialDPTHead(dim_in=128, output_dim=4, activation="inv_log", **dpt)
    official.depth_head = OfficialDPTHead(dim_in=128, output_dim=2, activation="exp", **dpt)
    official.track_head = None
    official = randomize(official).eval()
    ours = VGGT(**TINY_AGG, **TINY_HEADS).eval()
    ours.load_state_dict(official.state_dict(), strict=True)
    x = images(2, 3, 28, 42)
    with torch.no_grad():
        expected = official(x)
    got = ours(x)
    pairs = {"pose_enc": got.pose_enc, "depth": got.depth, "depth_conf": got.depth_conf,
             "world_points": got.world_points, "world_points_conf": got.world_points_conf}
    for name, value in pairs.items():
        assert (value - expected[name]).abs().max().item() <= 1e-5, name
    assert _max_diff(got.pose_enc_list, expected["pose_enc_list"]) <= 1e-5


def test_full_size_head_keys_equal_the_official_heads():
    """The official heads at VGGT-1B size (meta device) against vqkit's, as the official VGGT builds them."""
    pytest.importorskip("vggt.heads.dpt_head")
    from vggt.heads.camera_head import CameraHead as OfficialCameraHead
    from vggt.heads.dpt_head import DPTHead as OfficialDPTHead

    with torch.device("meta"):
        official = {"camera_head": OfficialCameraHead(dim_in=2048),
                    "point_head": OfficialDPTHead(dim_in=2048, output_dim=4, activation="inv_log"),
                    "depth_head": OfficialDPTHead(dim_in=2048, output_dim=2, activation="exp")}
        ours = VGGT()
    for name, head in official.items():
        assert [(k, tuple(v.shape)) for k, v in getattr(ours, name).state_dict().items()] == \
            [(k, tuple(v.shape)) for k, v in head.state_dict().items()], name
