import json

import numpy as np
import pytest
import torch
from helpers import make_corpus
from torch.utils.data import DistributedSampler

from vqkit.config import DataConfig, GeometryConfig, SourceConfig, config_from_dict
from vqkit.data.dataset import (
    MixedDataset,
    RecordDataset,
    ShardedSampler,
    build_dataloader,
    build_dataset,
    choose_views,
    set_epoch,
)
from vqkit.data.schema import load_records
from vqkit.errors import DataError


def _cfg(path, **kw) -> DataConfig:
    base = dict(train=[SourceConfig(path=str(path))], val=[SourceConfig(path=str(path))], image_size=28,
                num_views=2)
    base.update(kw)
    return DataConfig(**base)


def test_choose_views_rules():
    rng = np.random.default_rng(0)
    assert choose_views(10, 4, "uniform", 0.0, True, rng) == [0, 3, 6, 9]
    assert choose_views(10, 4, "first", 0.0, True, rng) == [0, 1, 2, 3]
    assert choose_views(3, 4, "uniform", 0.0, True, rng) == [0, 1, 2]  # fewer: kept as they are
    assert choose_views(10, 4, "random", 0.0, False, rng) == [0, 3, 6, 9]  # random is training only
    picks = {tuple(choose_views(10, 4, "random", 0.0, True, np.random.default_rng(s))) for s in range(20)}
    assert len(picks) > 10 and all(list(p) == sorted(set(p)) and len(p) == 4 for p in picks)
    # Dropout: training only, never empty, drops about the asked fraction.
    kept = [len(choose_views(8, 8, "uniform", 0.5, True, np.random.default_rng(s))) for s in range(400)]
    assert min(kept) >= 1 and 3.5 < np.mean(kept) < 4.7
    assert choose_views(8, 8, "uniform", 0.9, False, rng) == list(range(8))
    assert all(len(choose_views(5, 5, "uniform", 0.99, True, np.random.default_rng(s))) == 1 for s in range(20))


def test_sample_contents_and_geometry_follow_views(tiny_records):
    cfg = _cfg(tiny_records.path, num_views=2, load_depth=True)
    ds = build_dataset(cfg, "val", geometry_cfg=GeometryConfig(), seed=0)
    assert isinstance(ds, RecordDataset) and len(ds) == 4
    s = ds[0]
    assert s["meta"]["views"] == [0, 2]  # uniform of 3
    # 56x42 -> width 28, height round(21 / 14) * 14 = 28 (Python's round, as VGGT)
    assert s["images"].shape == (2, 3, 28, 28) and 0 <= s["images"].min() and s["images"].max() <= 1
    raw = tiny_records.records[0]["geom_token"]
    assert torch.allclose(s["R"], torch.tensor(raw["R"])[[0, 2]].float())
    assert torch.allclose(s["depth_hist"], torch.tensor(raw["depth_hist"])[[0, 2]].float())
    # K of a 56x42 image resized to 28x28: x scaled by 1/2, y by 2/3.
    K = torch.tensor(raw["K"][0]).float()
    assert torch.allclose(s["K"][0, 0], K[0] / 2, atol=1e-5) and torch.allclose(s["K"][0, 1], K[1] * 2 / 3, atol=1e-5)
    assert s["depths"].shape == (2, 28, 28)
    assert s["has_geometry"] and s["answer"] == tiny_records.records[0]["answer"]
    seed = ds[3]  # geom_token null: zeros and the flag off
    assert not seed["has_geometry"] and torch.all(seed["K"] == 0) and "depths" not in seed


def test_items_are_deterministic_per_seed_epoch_index(tmp_path):
    corpus = make_corpus(tmp_path / "d", n=6, views=6, size=(28, 28))
    cfg = _cfg(corpus.path, num_views=3, view_sampling="random", view_dropout=0.3)

    def views(seed, epoch):
        ds = build_dataset(cfg, "train", seed=seed)
        return [ds[(epoch, i, False)]["meta"]["views"] for i in range(len(ds))]

    assert views(1, 0) == views(1, 0)
    assert views(1, 0) != views(1, 1) and views(1, 0) != views(2, 0)
    ds = build_dataset(cfg, "train", seed=1)
    ds.set_epoch(1)  # plain integer indices use the dataset's epoch
    assert [ds[i]["meta"]["views"] for i in range(len(ds))] == views(1, 1)
    val = build_dataset(cfg, "val", seed=1)  # no randomness outside training
    assert all(val[(e, 0, False)]["meta"]["views"] == [0, 2, 5] for e in range(3))


def test_geometry_dropout_is_training_only_and_deterministic(tmp_path):
    corpus = make_corpus(tmp_path / "d", n=41, views=2, size=(28, 28))
    assert all(r.get("geom_token") for r in corpus.records[:40])  # the last one has none
    cfg = _cfg(corpus.path, geometry_dropout=0.5)

    def flags(split, seed=1, epoch=0):
        ds = build_dataset(cfg, split, seed=seed)
        return [bool(ds[(epoch, i, False)]["has_geometry"]) for i in range(40)]

    kept = flags("train")
    assert 8 <= sum(kept) <= 32  # about half of 40 keep their geometry
    assert kept == flags("train") and kept != flags("train", epoch=1)  # a function of (seed, epoch, index)
    ds = build_dataset(cfg, "train", seed=1)
    dropped = next(i for i, k in enumerate(kept) if not k)
    assert torch.all(ds[(0, dropped, False)]["R"] == 0)  # no geometry at all, as for a record without poses
    assert all(flags("val"))  # never at evaluation
    # without dropout nothing changes, the views drawn included
    plain = _cfg(corpus.path, view_sampling="random", num_views=1)
    with_zero = _cfg(corpus.path, view_sampling="random", num_views=1, geometry_dropout=0.0)
    a, b = build_dataset(plain, "train", seed=1), build_dataset(with_zero, "train", seed=1)
    assert all(a[i]["meta"]["views"] == b[i]["meta"]["views"] and b[i]["has_geometry"] for i in range(40))
    with pytest.raises(Exception, match="geometry_dropout"):
        _cfg(corpus.path, geometry_dropout=1.5)


def test_mixing_by_weight_is_deterministic(tmp_path):
    a = make_corpus(tmp_path / "a", n=10, views=1, size=(28, 28), seed=1)
    b = make_corpus(tmp_path / "b", n=4, views=1, size=(28, 28), seed=2)
    cfg = DataConfig(train=[SourceConfig(path=str(a.path), weight=0.7), SourceConfig(path=str(b.path), weight=0.3)],
                     image_size=28, num_views=1)
    ds = build_dataset(cfg, "train", seed=0)
    assert isinstance(ds, MixedDataset) and len(ds) == 14 and ds.counts() == [10, 4]
    big = MixedDataset(ds.datasets, [0.7, 0.3], samples_per_epoch=1000, seed=0)
    assert big.counts() == [700, 300]
    src, rec = big.epoch_plan(0)
    assert np.bincount(src).tolist() == [700, 300]
    assert np.bincount(rec[src == 1]).tolist() == [75] * 4  # permutations: every record equally often
    assert np.array_equal(rec, MixedDataset(ds.datasets, [0.7, 0.3], samples_per_epoch=1000, seed=0).epoch_plan(0)[1])
    assert not np.array_equal(rec, big.epoch_plan(1)[1])
    # A small source with a large weight repeats its records; each position is still distinct.
    skew = MixedDataset(ds.datasets, [0.3, 0.7], seed=0)
    assert skew.counts() == [4, 10]
    ids = [skew[(0, i, False)]["meta"]["id"] for i in range(len(skew))]
    sources = [skew[(0, i, False)]["meta"]["source"] for i in range(len(skew))]
    assert sources.count(str(a.path)) == 4 and sources.count(str(b.path)) == 10
    assert len(set(ids[4:])) == 4  # the 4 records of b, repeated
    val = build_dataset(DataConfig(val=cfg.train, image_size=28, num_views=1), "val")
    assert len(val) == 14 and [val[i]["meta"]["id"] for i in range(14)] == \
        [f"s1-q{i}" for i in range(9)] + ["records:10"] + [f"s2-q{i}" for i in range(3)] + ["records:4"]


@pytest.mark.parametrize("world_size, length, drop_last", [(2, 14, False), (3, 14, False), (4, 14, True)])
def test_sharded_sampler_partitions_each_epoch(world_size, length, drop_last):
    shards = [ShardedSampler(length, rank=r, world_size=world_size, seed=5, drop_last=drop_last)
              for r in range(world_size)]
    for epoch in (0, 1):
        for s in shards:
            s.set_epoch(epoch)
        items = [list(s) for s in shards]
        assert len({len(x) for x in items}) == 1  # equal shares: no rank waits for another
        real = [(i) for x in items for (_, i, pad) in x if not pad]
        assert len(real) == len(set(real))  # no duplicates except the flagged padding
        if not drop_last:
            assert sorted(real) == list(range(length))
        assert all(e == epoch for x in items for (e, _, _) in x)
    orders = [[i for (_, i, _) in ShardedSampler(length, seed=5, epoch=e)] for e in (0, 1)]
    assert orders[0] != orders[1] and sorted(orders[0]) == list(range(length))


def test_works_with_torch_distributed_sampler(tmp_path):
    corpus = make_corpus(tmp_path / "d", n=5, views=2, size=(28, 28))
    ds = build_dataset(_cfg(corpus.path, num_views=1), "train", seed=0)
    seen = []
    for rank in range(2):
        sampler = DistributedSampler(ds, num_replicas=2, rank=rank, shuffle=True, seed=0)
        sampler.set_epoch(3)
        ds.set_epoch(3)
        seen += [ds[i]["meta"]["id"] for i in sampler]
    assert len(seen) == 6 and len(set(seen)) == 5  # 5 records + 1 documented padding duplicate


def test_dataloader_batches_are_identical_across_worker_counts(tiny_tokenizer, tmp_path):
    corpus = make_corpus(tmp_path / "d", n=6, views=4, size=(28, 28))
    cfg = config_from_dict({"data": {"train": [{"path": str(corpus.path)}], "image_size": 28, "num_views": 3,
                                     "view_sampling": "random", "view_dropout": 0.3,
                                     "prompt_template": "{question}\n<image>\n{answer}"},
                            "model": {"projector": {"num_latents": 2}}})

    def batches(workers, epoch):
        cfg.data.num_workers = workers
        cfg.data.persistent_workers = workers > 0
        loader = build_dataloader(cfg, "train", tiny_tokenizer, batch_size=2, shuffle=True)
        set_epoch(loader, epoch)
        return [(b["input_ids"], b["images"], [m["views"] for m in b["meta"]]) for b in loader]

    ref = batches(0, 1)
    assert len(ref) == 3
    for got in (batches(2, 1),):
        for (i0, im0, v0), (i1, im1, v1) in zip(ref, got, strict=True):
            assert torch.equal(i0, i1) and torch.equal(im0, im1) and v0 == v1
    assert [v for (_, _, v) in batches(0, 2)] != [v for (_, _, v) in ref]


def test_persistent_workers_see_the_epoch(tiny_tokenizer, tmp_path):
    corpus = make_corpus(tmp_path / "d", n=4, views=4, size=(28, 28))
    cfg = config_from_dict({"data": {"train": [{"path": str(corpus.path)}], "image_size": 28, "num_views": 2,
                                     "view_sampling": "random", "num_workers": 1, "persistent_workers": True,
                                     "prompt_template": "{question}\n<image>\n{answer}"},
                            "model": {"projector": {"num_latents": 2}}})
    loader = build_dataloader(cfg, "train", tiny_tokenizer, batch_size=4, shuffle=False)
    ds = loader.dataset
    epochs = []
    for epoch in range(3):
        set_epoch(loader, epoch)
        (batch,) = list(loader)
        epochs.append([m["views"] for m in batch["meta"]])
        assert epochs[-1] == [ds[(epoch, i, False)]["meta"]["views"] for i in range(4)]
    assert epochs[0] != epochs[1] or epochs[1] != epochs[2]


def test_corrupt_image_raises_or_is_replaced(tiny_records):
    bad = tiny_records.root / tiny_records.records[1]["images"][0]
    bad.write_bytes(bad.read_bytes()[:60])  # a truncated PNG: exists, so it passes the build checks
    ds = build_dataset(_cfg(tiny_records.path, num_views=3), "train", seed=0)
    # the record's field is named (it used to name only the file)
    with pytest.raises(DataError, match=r"records.jsonl:2: record 's0-q1': field 'images\[0\]': .*r0_1_0.png: "
                                        r"cannot decode the image"):
        ds[1]
    ds = build_dataset(_cfg(tiny_records.path, num_views=3, on_error="skip"), "train", seed=0)
    s = ds[(0, 1, False)]
    assert s["meta"]["replaced_from"] == "s0-q1" and s["meta"]["id"] != "s0-q1"
    assert ds[(0, 1, False)]["meta"]["id"] == s["meta"]["id"]  # the same replacement every time
    assert ds.num_replaced == 2
    assert ds[0]["meta"]["id"] == "s0-q0" and "replaced_from" not in ds[0]["meta"]


def test_exclude_qtypes_leaves_those_records_out_of_every_split(tiny_records):
    """data.exclude_qtypes drops a source's records of those qtypes (the demo's blind baseline leaves out
    the describe question); a source left with nothing is an error naming the file."""
    rows = [json.loads(line) for line in tiny_records.path.read_text().splitlines()]
    for k, row in enumerate(rows):
        row["qtype"] = "describe" if k % 2 else "colour"
    tiny_records.path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    kept = [r["id"] for r in rows if r["qtype"] == "colour"]
    for split in ("train", "val"):
        ds = build_dataset(_cfg(tiny_records.path, exclude_qtypes=["describe"]), split)
        assert [ds[(0, i, False)]["meta"]["id"] for i in range(len(ds))] == kept
    assert len(build_dataset(_cfg(tiny_records.path), "val")) == len(rows)
    with pytest.raises(DataError, match=r"records.jsonl: every record's qtype is in data.exclude_qtypes"):
        build_dataset(_cfg(tiny_records.path, exclude_qtypes=["describe", "colour"]), "train")


def test_skip_mode_build_reports_bad_records(tiny_records):
    lines = tiny_records.path.read_text().splitlines()
    lines.insert(1, '{"images": ["img/nope.png"], "question": "q", "answer": "a"}')
    lines.insert(2, "{not json")
    tiny_records.path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"records.jsonl:2: field 'images\[0\]'"):
        build_dataset(_cfg(tiny_records.path), "train")
    ds = build_dataset(_cfg(tiny_records.path, on_error="skip"), "train")
    assert len(ds) == 4 and ds.report.num_skipped == 2 and ds.report.num_loaded == 4


def test_views_of_different_sizes_are_padded_and_k_shifted(tmp_path):
    corpus = make_corpus(tmp_path / "d", n=2, views=2, size=(56, 28))
    # Make view 1 portrait: in crop mode it becomes 28x28 while view 0 is 28x14.
    from PIL import Image
    Image.new("RGB", (28, 56), (0, 0, 0)).save(corpus.root / corpus.records[0]["images"][1])
    ds = RecordDataset(load_records(str(corpus.path), check_files=True), _cfg(corpus.path), train=False)
    s = ds[0]
    assert s["images"].shape == (2, 3, 28, 28)
    assert torch.all(s["images"][0, :, :7] == 1.0)  # white band above the landscape view
    # Landscape view: 56x28 -> 28x14, centred at y offset 7: cy = 14/2 * ... + 7.
    K0 = np.array(corpus.records[0]["geom_token"]["K"][0])
    assert s["K"][0, 1, 2].item() == pytest.approx(K0[1, 2] * 14 / 28 + 7, abs=1e-4)


def test_semantic_maps_load_with_the_views_and_collate_padded_unlabelled(tmp_path):
    from PIL import Image

    from vqkit.data.collate import collate_views

    corpus = make_corpus(tmp_path / "d", n=2, views=3, size=(56, 42))
    records = []
    for k, rec in enumerate(corpus.records):
        maps = []
        for v in range(3):
            name = f"sem_{k}_{v}.png"
            Image.fromarray(np.full((42, 56), 10 * k + v, np.uint8)).save(corpus.root / name)
            maps.append(name)
        records.append({**rec, "semantics": maps} if k == 0 else rec)  # the second record has none
    corpus.path.write_text("".join(json.dumps(r) + "\n" for r in records))
    ds = build_dataset(_cfg(corpus.path, num_views=2, load_semantics=True), "val", seed=0)
    s = ds[0]
    assert s["semantics"].shape == (2, 28, 28) and s["semantics"].dtype == torch.int64
    assert [int(m.unique()) for m in s["semantics"]] == [0, 2]  # the chosen views' maps, in their order
    assert "semantics" not in ds[1]
    batch = collate_views([ds[1], ds[0]])
    assert batch["semantics"].shape == (2, 2, 28, 28) and torch.all(batch["semantics"][0] == 255)
    assert "semantics" not in build_dataset(_cfg(corpus.path, num_views=2), "val", seed=0)[0]


def test_grounding_targets_are_written_in_the_first_views_frame(tiny_records):
    """data.box_frame first_view writes the box as the sample's first view sees it (the record's box is in
    the scene frame), so a training sample that starts at another view gets another text."""
    from vqkit.roomplan.grounding import first_view_frame, read_box

    path = tiny_records.root / "g.jsonl"
    box = {"label": "chair", "center": [0.5, 0.8, 0.45], "size": [0.45, 0.9, 0.5], "yaw": 0.3}
    recs = [dict(r, answer=None, answers=None, task="grounding", box=box) for r in tiny_records.records[:3]]
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    scene = build_dataset(_cfg(path, num_views=3), "val", geometry_cfg=GeometryConfig(), seed=0)
    first = build_dataset(_cfg(path, num_views=3, box_frame="first_view", box_step_cm=5), "val",
                          geometry_cfg=GeometryConfig(), seed=0)
    assert scene[0]["answer"] == "chair x=50 y=80 w=45 h=90 d=50 yaw=17"
    s = first[0]
    R, t = (np.asarray(v) for v in s["meta"]["view_pose"])
    assert np.allclose(R, recs[0]["geom_token"]["R"][0], atol=1e-6)
    back, problems = read_box(s["answer"], first_view_frame(R, t))
    assert not problems and np.allclose(back.center, box["center"], atol=0.04)
    assert all(int(v.split("=")[1]) % 5 == 0 for v in s["answer"].split()[1:-1])
    with pytest.raises(DataError, match="data.box_frame first_view .* needs the record's camera geometry"):
        no_pose = tiny_records.root / "g2.jsonl"
        no_pose.write_text(json.dumps({**recs[0], "geom_token": None}) + "\n")
        build_dataset(_cfg(no_pose, box_frame="first_view"), "val", geometry_cfg=GeometryConfig(), seed=0)
