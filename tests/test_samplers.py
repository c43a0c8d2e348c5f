"""Tests of PKSampler: batch composition, reproducibility, DDP sharding, balance and config errors."""

import numpy as np
import pytest
import torch

from reid.data.samplers import PKSampler, SeededBatch
from reid.errors import ConfigError


def make_labels(sizes: list[int], seed: int = 0) -> torch.Tensor:
    """Shuffled labels with sizes[c] samples of label 10 * c (non-contiguous label values)."""
    labels = torch.repeat_interleave(10 * torch.arange(len(sizes)), torch.tensor(sizes))
    return labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))]


LAYOUTS = {
    "balanced": [20] * 10,
    "uneven": [50, 3, 7, 1, 12, 2, 30, 4, 9, 5, 6],
    "tiny_classes": [1, 2, 1, 3, 2, 1],
    "many_classes": [4] * 97,
}


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize(("P", "K"), [(2, 2), (3, 4), (5, 2), (6, 5)])
def test_every_batch_has_P_labels_with_K_samples(layout, P, K):
    sizes = LAYOUTS[layout]
    labels = make_labels(sizes)
    sampler = PKSampler(labels, P, K, batches_per_epoch=40, seed=1)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 40
    for batch in batches:
        assert len(batch) == P * K
        index = torch.tensor(batch)
        assert ((index >= 0) & (index < len(labels))).all()
        values, counts = torch.unique(labels[index], return_counts=True)
        assert len(values) == P
        assert (counts == K).all()
        for value in values:
            picked = index[labels[index] == value]
            if sizes[int(value) // 10] >= K:
                assert len(picked.unique()) == K, "samples of a label with >= K samples must be distinct"


def test_labels_from_list_numpy_and_tensor_give_the_same_batches():
    labels = make_labels([5, 6, 7, 8])
    as_tensor = list(PKSampler(labels, 2, 3, seed=4))
    assert list(PKSampler(labels.tolist(), 2, 3, seed=4)) == as_tensor
    assert list(PKSampler(labels.numpy(), 2, 3, seed=4)) == as_tensor


def test_all_labels_in_every_batch_when_P_equals_the_number_of_labels():
    labels = make_labels([30] * 10)
    for batch in PKSampler(labels, 10, 3):
        assert set(labels[batch].tolist()) == set(range(0, 100, 10))


def test_distinct_samples_are_uniform_over_the_label():
    """Floyd's algorithm must reach every sample of a label, not only the last K."""
    labels = make_labels([10, 10])
    picked = torch.tensor(list(PKSampler(labels, 2, 3, batches_per_epoch=300))).flatten()
    counts = torch.bincount(picked, minlength=len(labels))
    assert counts.min() > 0.6 * counts.float().mean()


def test_same_seed_and_epoch_repeat_other_epochs_and_seeds_differ():
    labels = make_labels([8] * 12)
    sampler = PKSampler(labels, 4, 2, seed=7)
    first = list(sampler)
    assert list(sampler) == first
    assert list(PKSampler(labels, 4, 2, seed=7)) == first
    sampler.set_epoch(1)
    second = list(sampler)
    assert second != first
    sampler.set_epoch(0)
    assert list(sampler) == first
    assert list(PKSampler(labels, 4, 2, seed=8)) != first


def test_sampler_starts_at_a_batch_of_the_epoch_with_the_same_batches_and_seeds():
    labels = make_labels([12] * 10)
    full = PKSampler(labels, 3, 2, seed=5, rank=1, world_size=2)
    full.set_epoch(3)
    batches = list(full)
    assert all(isinstance(b, SeededBatch) for b in batches) and len({b.seed for b in batches}) == len(batches)
    resumed = PKSampler(labels, 3, 2, seed=5, rank=1, world_size=2)
    resumed.start_at(3, 4)
    resumed.set_epoch(3)  # Lightning sets the epoch again: the resume point stays
    for _ in range(2):
        tail = list(resumed)
        assert tail == batches[4:] and [b.seed for b in tail] == [b.seed for b in batches[4:]]
    resumed.set_epoch(4)  # the next epoch starts at its first batch
    full.set_epoch(4)
    assert list(resumed) == list(full)


def test_start_beyond_the_epoch_is_a_config_error():
    sampler = PKSampler(make_labels([4] * 6), 2, 2, batches_per_epoch=5)
    sampler.start_at(0, 5)  # an epoch resumed after its last batch yields nothing
    assert list(sampler) == []
    with pytest.raises(ConfigError, match="batch 6, but an epoch has 5 batches"):
        sampler.start_at(0, 6)


def test_does_not_touch_the_global_rng():
    state = torch.get_rng_state()
    list(PKSampler(make_labels([6] * 5), 3, 2))
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.parametrize(
    ("n", "P", "K", "world_size", "expected"),
    [
        (200, 5, 4, 1, 10),  # len(labels) // (P * K)
        (199, 5, 4, 1, 9),
        (10, 5, 4, 1, 1),  # at least one batch
        (200, 5, 4, 2, 5),  # per rank: one pass over the data across all ranks
        (200, 5, 4, 3, 3),
    ],
)
def test_default_length(n, P, K, world_size, expected):
    labels = torch.arange(n) % 10
    sampler = PKSampler(labels, P, K, world_size=world_size)
    assert len(sampler) == len(list(sampler)) == expected
    assert len(PKSampler(labels, P, K, batches_per_epoch=17, world_size=world_size)) == 17


@pytest.mark.parametrize("world_size", [2, 3, 4])
def test_ddp_shards_are_disjoint_equal_and_interleave_to_the_single_process_epoch(world_size):
    labels = make_labels([12] * 10)  # 120 samples, P * K = 6: 20 batches on one process
    shards = []
    for rank in range(world_size):
        sampler = PKSampler(labels, 3, 2, seed=3, rank=rank, world_size=world_size)
        sampler.set_epoch(2)
        shards.append(list(sampler))
    assert all(len(shard) == len(shards[0]) == 20 // world_size for shard in shards)
    seen = [tuple(batch) for shard in shards for batch in shard]
    assert len(set(seen)) == len(seen)
    interleaved = [batch for group in zip(*shards, strict=True) for batch in group]
    single = PKSampler(labels, 3, 2, seed=3, batches_per_epoch=len(interleaved))
    single.set_epoch(2)
    assert interleaved == list(single)
    if 20 % world_size == 0:  # the default lengths line up: same batches as the single-process epoch
        default = PKSampler(labels, 3, 2, seed=3)
        default.set_epoch(2)
        assert interleaved == list(default)


@pytest.mark.parametrize(("sizes", "P"), [([5] * 7, 3), ([3, 9, 1, 4, 6], 2), ([2] * 625, 32)])
def test_label_usage_is_balanced_over_an_epoch(sizes, P):
    labels = make_labels(sizes)
    batches = torch.tensor(list(PKSampler(labels, P, 2, batches_per_epoch=53)))
    per_batch = labels[batches[:, ::2]]  # K = 2: every second entry is one slot
    counts = torch.bincount(per_batch.flatten() // 10, minlength=len(sizes))
    assert counts.sum() == 53 * P
    assert counts.max() - counts.min() <= 1


def test_large_label_list_is_fast():
    labels = np.random.default_rng(0).integers(0, 625, 500_000)
    sampler = PKSampler(labels, 32, 4)
    assert len(sampler) == 500_000 // 128
    batch = next(iter(sampler))
    assert len(np.unique(labels[batch])) == 32


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"labels": [0, 0, 1, 1], "P": 1, "K": 2}, ["dataset.P=1", "at least 2 labels and 2 samples"]),
        ({"labels": [0, 0, 1, 1], "P": 2, "K": 1}, ["dataset.K=1", "at least 2 labels and 2 samples"]),
        ({"labels": [], "P": 2, "K": 2}, ["non-empty"]),
        ({"labels": [[0, 1], [1, 0]], "P": 2, "K": 2}, ["1-D"]),
        ({"labels": [3, 3, 3], "P": 2, "K": 2}, ["single class"]),
        ({"labels": [0, 1, 2, 0], "P": 4, "K": 2}, ["dataset.P=4", "only 3 distinct", "at most 3"]),
        ({"labels": [0, 1], "P": 2, "K": 2, "batches_per_epoch": 0}, ["batches_per_epoch=0"]),
        ({"labels": [0, 1], "P": 2, "K": 2, "rank": 2, "world_size": 2}, ["rank=2", "[0, world_size)"]),
        ({"labels": [0, 1], "P": 2, "K": 2, "rank": -1}, ["rank=-1"]),
        ({"labels": [0, 1], "P": 2, "K": 2, "rank": 0, "world_size": 0}, ["world_size=0"]),
    ],
)
def test_config_errors_name_the_key(kwargs, words):
    with pytest.raises(ConfigError) as info:
        PKSampler(**kwargs)
    for word in words:
        assert word in str(info.value)
