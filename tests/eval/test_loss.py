"""vqkit.eval.loss: the shuffled-views control swaps every question's visual input (images or
features, view mask and geometry) for another sample's of the same view count and geometry presence,
and leaves the text alone."""

from __future__ import annotations

import torch

from vqkit.eval.loss import shuffle_views


def batch_of(view_counts: list[int], geometry: list[bool], features: bool = False) -> dict:
    B, S = len(view_counts), max(view_counts)
    mask = torch.zeros(B, S, dtype=torch.bool)
    for b, n in enumerate(view_counts):
        mask[b, :n] = True
    sample_id = torch.arange(B, dtype=torch.float32)  # every visual tensor carries its sample's number
    visual = sample_id.view(B, 1, 1, 1, 1).expand(B, S, 3, 4, 4).clone()
    batch = {"view_mask": mask, "geom_mask": torch.tensor(geometry),
             "input_ids": torch.arange(B)[:, None].expand(B, 6).clone(), "labels": torch.arange(B)[:, None] * 10,
             "geometry": {"R": sample_id.view(B, 1, 1, 1).expand(B, S, 3, 3).clone(),
                          "depth_hist": sample_id.view(B, 1, 1).expand(B, S, 8).clone(), "image_hw": (4, 4)}}
    batch["features" if features else "images"] = visual
    return batch


def source_of(shuffled: dict, key: str = "images") -> list[int]:
    return [int(x) for x in shuffled[key][:, 0].flatten(1)[:, 0]]


def test_every_sample_gets_another_samples_views_within_its_group():
    # groups: 3 views with geometry {0, 1, 4}, 3 views without {2}, 2 views with {3, 5}
    batch = batch_of([3, 3, 3, 2, 3, 2], [True, True, False, True, True, True])
    for seed in range(20):
        out = shuffle_views(batch, torch.Generator().manual_seed(seed))
        src = source_of(out)
        assert sorted(src) == list(range(6))  # a permutation
        assert src[2] == 2  # alone in its group: keeps its own
        for b in (0, 1, 3, 4, 5):
            assert src[b] != b  # everyone else sees another room
            assert batch["view_mask"][src[b]].sum() == batch["view_mask"][b].sum()
            assert bool(batch["geom_mask"][src[b]]) == bool(batch["geom_mask"][b])
        assert torch.equal(out["view_mask"], batch["view_mask"][src]) and torch.equal(out["geom_mask"],
                                                                                      batch["geom_mask"][src])
        assert [int(r) for r in out["geometry"]["R"][:, 0, 0, 0]] == src  # geometry goes with its views
        assert [int(h) for h in out["geometry"]["depth_hist"][:, 0, 0]] == src
        assert out["geometry"]["image_hw"] == (4, 4)
        assert out["input_ids"] is batch["input_ids"] and out["labels"] is batch["labels"]  # the text stays
    assert source_of(batch) == list(range(6))  # the batch itself is not changed


def test_cached_features_are_shuffled_like_images_and_the_shuffle_is_seeded():
    batch = batch_of([2, 2, 2, 2], [False] * 4, features=True)
    first = source_of(shuffle_views(batch, torch.Generator().manual_seed(3)), "features")
    assert first == source_of(shuffle_views(batch, torch.Generator().manual_seed(3)), "features")
    assert all(s != b for b, s in enumerate(first)) and "images" not in shuffle_views(batch, torch.Generator())
    rolls = {tuple(source_of(shuffle_views(batch, torch.Generator().manual_seed(s)), "features")) for s in range(30)}
    assert len(rolls) == 3  # the three non-trivial rolls of four samples
