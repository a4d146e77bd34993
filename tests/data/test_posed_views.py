"""vqkit.data.posed_views: the view sets VGGT's heads learn from: one per distinct list of images, only
those with what the objective needs (counted in the report when left out), loaded with their depth maps
and never with their poses dropped."""

from __future__ import annotations

import pytest
import torch
from helpers import write_jsonl

from vqkit.config import DataConfig, SourceConfig
from vqkit.data.posed_views import ViewSetReport, build_view_set_dataset, collate_view_sets, load_view_sets
from vqkit.errors import ConfigError, DataError


def test_view_sets_are_distinct_and_have_poses_and_depth(corpus):
    """The corpus: 6 records (the last without geometry), then 2 more questions on record 0's views."""
    report = ViewSetReport()
    kept = load_view_sets([str(corpus.path)], DataConfig(), report=report)
    assert [r.id for r in kept] == [r["id"] for r in corpus.records[:5]]  # file order
    assert all(r.geometry is not None and r.depths is not None for r in kept)
    assert (report.records, report.kept, report.repeated, report.without_poses) == (8, 5, 2, 1)
    assert report.summary() == (f"5 view sets with poses and depth from 8 records of {corpus.path} (2 repeated "
                                f"views, 1 without poses, 0 without depth maps, 0 without semantic maps)")
    assert [r.id for r in load_view_sets([str(corpus.path)], DataConfig(), limit=2)] == [r["id"] for r in
                                                                                      corpus.records[:2]]


def test_records_without_depth_or_semantic_maps_are_counted_and_left_out(corpus):
    """The corpus's 6 records again (no repeats), the second without its depth maps."""
    write_jsonl(corpus.path, [dict(r, depths=None) if i == 1 else r for i, r in enumerate(corpus.records)])
    report = ViewSetReport()
    assert len(load_view_sets([str(corpus.path)], DataConfig(), report=report)) == 4 and report.without_depth == 1
    report = ViewSetReport()
    assert load_view_sets([str(corpus.path)], DataConfig(), geometry=False, semantics=True, report=report) == []
    assert report.without_semantics == 6 and report.wanted == "semantic maps"
    with pytest.raises(DataError, match=r"^no record with semantic maps \(semantics\): 0 view sets with semantic maps "
                                        r"from 6 records"):
        build_view_set_dataset(DataConfig(), [str(corpus.path)], train=True, geometry=False, semantics=True)
    with pytest.raises(ConfigError, match="data.val lists no sources of view sets"):
        build_view_set_dataset(DataConfig(), [], train=False)


def test_samples_carry_depth_and_keep_their_poses(corpus):
    """geometry_dropout would blank the poses the heads learn from: the view-set dataset never applies it."""
    cfg = DataConfig(image_size=28, num_views=2, view_sampling="uniform", geometry_dropout=1.0, view_dropout=0.0)
    dataset = build_view_set_dataset(cfg, [SourceConfig(path=str(corpus.path))], train=True, seed=1)
    assert len(dataset) == 5 and dataset.view_set_report.kept == 5
    samples = [dataset[i] for i in range(2)]
    for s in samples:
        assert s["has_geometry"] and s["depths"].shape == (2, 28, 28) and s["R"].shape == (2, 3, 3)
        record = int(s["meta"]["id"].split("q")[-1])
        for k, view in enumerate([0, 2]):  # 2 of 3 views, evenly spaced
            depth = s["depths"][k]
            valid = depth[depth > 0]  # the fixture's depth of this view, in metres, left of its invalid strip
            assert valid.numel() > depth.numel() / 2 and bool((depth[:, :3] == 0).all())
            torch.testing.assert_close(valid, torch.full_like(valid, 1.0 + 0.5 * view + 0.25 * record), atol=1e-3,
                                       rtol=0)
    batch = collate_view_sets(samples)
    assert batch["ids"] == [r["id"] for r in corpus.records[:2]]
    assert batch["images"].shape == (2, 2, 3, 28, 28) and batch["depths"].shape == (2, 2, 28, 28)
    assert bool(batch["geom_mask"].all()) and torch.equal(batch["geometry"]["R"][0], samples[0]["R"])


def test_several_sources_mix_and_a_limit_counts_across_them(corpus):
    sources = [SourceConfig(path=str(corpus.path), weight=3.0), SourceConfig(path=str(corpus.root / "val.jsonl"))]
    mixed = build_view_set_dataset(DataConfig(image_size=28, num_views=2), sources, train=False)
    assert len(mixed) == 5 + 2  # each source's own distinct view sets, concatenated in evaluation
    assert [d.name for d in mixed.datasets] == ["records", "val"]
    limited = build_view_set_dataset(DataConfig(image_size=28, num_views=2), sources, train=False, limit=6)
    assert len(limited) == 6
