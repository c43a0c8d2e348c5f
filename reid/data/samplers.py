"""Batch samplers for metric learning."""

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch import Tensor

from reid.errors import ConfigError


class SeededBatch(list):
    """A batch of dataset indices with `seed`, an int for the batch's own randomness (augmentation).

    A dataset seeding its random transforms from it per batch draws the same for the batch wherever it
    is built (which DataLoader worker, after which batches), so a resumed run draws what the first did.
    """

    def __init__(self, indices: list[int], seed: int):
        super().__init__(indices)
        self.seed = seed


class PKSampler(torch.utils.data.Sampler[list[int]]):
    """Yields batches of P distinct labels x K samples each, as lists of dataset indices.

    Batch-hard triplet mining needs every anchor to have positives and negatives in its batch; P x K
    batches guarantee both. The sampler only sees the label of each dataset index, so it serves any
    dataset (MNIST digits, MARS frames) and is used as a DataLoader's `batch_sampler`.

    - Labels: the P labels of a batch are read off back-to-back random permutations of all distinct
      labels, so over an epoch every label is used equally often (counts differ by at most 1). With as
      many labels as P (MNIST, P=10) every batch holds every label. A batch that straddles two
      permutations still has P distinct labels: the labels it already took from the old permutation
      are moved to the end of the new one.
    - Samples: K distinct indices of the label (uniform, without replacement) when it has at least K;
      otherwise K draws with replacement, so some indices repeat.
    - Epoch length: `len(labels) // (P * K * world_size)` batches per rank (at least 1), i.e. about one
      pass over the data across all ranks; `batches_per_epoch` overrides it.
    - Randomness: a private `torch.Generator` seeded from (seed, epoch): the same seed and epoch give the
      same batches, another epoch gives others, and the global RNG is left alone. Call `set_epoch` each
      epoch; without it every iteration repeats epoch 0. Lightning calls `set_epoch` only on
      `loader.sampler` and `loader.batch_sampler.sampler`, never on a batch sampler itself, so the sampler
      is its own `.sampler`: used as `batch_sampler`, it gets each epoch's number (resumes included).
      Each batch is a `SeededBatch`: its seed, drawn from the same generator, seeds the batch's
      augmentation.
    - Resume: `start_at(epoch, batch)` makes iterations of `epoch` begin at this rank's batch `batch`
      (the batches before it were trained on before a checkpoint); another epoch starts at batch 0.
    - DDP: every rank builds the same `world_size * len(self)` batches and keeps every `world_size`-th
      one from index `rank`: the shards are disjoint slices of that list, equally long, and interleaved
      (batch i of rank r is batch `i * world_size + r`) they are exactly the batches of one process with
      `batches_per_epoch=world_size * len(self)` and the same seed and epoch. A sample may still recur
      in several batches, as on one process. Use it with `use_distributed_sampler=False`.

    Indices are grouped per label once, with a stable argsort, so 500k labels (MARS frames) are cheap.

    Args:
        labels: (N,) label of every dataset index; any values that `torch.unique` can compare.
        P: distinct labels per batch (`dataset.P`), at least 2 and at most the number of labels.
        K: samples per label (`dataset.K`), at least 2.
        batches_per_epoch: batches each rank yields per epoch; None for the default above.
        seed: base seed of the generator.
        rank: this process's rank in [0, world_size).
        world_size: number of DDP processes.
    """

    def __init__(
        self,
        labels: Sequence[int] | np.ndarray | Tensor,
        P: int,
        K: int,
        batches_per_epoch: int | None = None,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        labels = torch.as_tensor(labels, device="cpu")
        if P < 2 or K < 2:
            raise ConfigError(
                f"PKSampler got dataset.P={P} and dataset.K={K}, but batch-hard mining needs at least 2 "
                "labels and 2 samples per label in every batch. Set dataset.P >= 2 and dataset.K >= 2."
            )
        if labels.ndim != 1 or labels.numel() == 0:
            raise ConfigError(
                f"PKSampler needs a non-empty 1-D list of labels, got shape {tuple(labels.shape)}. Check "
                "that the dataset split was found and parsed (it has no samples, or not one label per item)."
            )
        _, inverse, counts = torch.unique(labels, return_inverse=True, return_counts=True)
        if len(counts) == 1:
            raise ConfigError(
                "PKSampler got labels of a single class, so no batch can hold a negative for batch-hard "
                "mining. Use a dataset split with at least 2 labels (and dataset.P at most their number)."
            )
        if len(counts) < P:
            raise ConfigError(
                f"PKSampler got dataset.P={P} but the labels have only {len(counts)} distinct values. "
                f"Set dataset.P to at most {len(counts)}."
            )
        if batches_per_epoch is not None and batches_per_epoch < 1:
            raise ConfigError(
                f"PKSampler got batches_per_epoch={batches_per_epoch}. Set it to a positive number of "
                "batches, or to null for one pass over the data."
            )
        if world_size < 1 or not 0 <= rank < world_size:
            raise ConfigError(
                f"PKSampler got rank={rank} and world_size={world_size}; rank must lie in [0, world_size) "
                "and world_size must be >= 1. Pass trainer.global_rank and trainer.world_size."
            )
        self.P, self.K = P, K
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.epoch = 0
        self.start = 0  # this rank's first batch in iterations of `self.epoch` (`start_at`)
        self.sampler = self  # where Lightning looks for `set_epoch` (see the class docstring)
        self.num_batches = batches_per_epoch or max(1, len(labels) // (P * K * world_size))
        self._order = torch.argsort(inverse, stable=True)  # (N,) dataset indices grouped by label
        self._counts = counts  # (C,) samples per label
        self._starts = torch.cumsum(counts, 0) - counts  # (C,) where each label's group starts in _order

    def set_epoch(self, epoch: int) -> None:
        """Selects the epoch whose batches the next iteration yields (from batch 0 for a new epoch)."""
        if epoch != self.epoch:
            self.epoch, self.start = epoch, 0

    def start_at(self, epoch: int, batch: int) -> None:
        """Makes iterations of `epoch` yield this rank's batches from `batch` (0-based) on: a run resumed
        after `batch` batches of that epoch continues with the next one. Batches keep their seeds."""
        if not 0 <= batch <= self.num_batches:
            raise ConfigError(
                f"PKSampler.start_at got batch {batch}, but an epoch has {self.num_batches} batches per "
                "rank. Resume with the dataset settings (dataset.P, dataset.K, dataset.batches_per_epoch) "
                "and number of devices of the run that wrote the checkpoint."
            )
        self.epoch, self.start = epoch, batch

    def __len__(self) -> int:
        """Batches this rank yields per epoch (a resumed epoch yields the last `len - start` of them)."""
        return self.num_batches

    def __iter__(self) -> Iterator[SeededBatch]:
        seed = np.random.SeedSequence([self.seed, self.epoch]).generate_state(1, np.uint64)[0]
        generator = torch.Generator().manual_seed(int(seed))
        num_batches = self.num_batches * self.world_size
        slots = self._label_slots(num_batches * self.P, generator)  # (B * P,) label of each slot
        offsets = self._sample_offsets(self._counts[slots], generator)  # (B * P, K) within each label
        indices = self._order[self._starts[slots, None] + offsets].view(num_batches, self.P * self.K)
        seeds = torch.randint(-(2**63), 2**63 - 1, (num_batches,), generator=generator)  # (B,)
        mine = slice(self.rank + self.start * self.world_size, None, self.world_size)
        for batch, batch_seed in zip(indices[mine].tolist(), seeds[mine].tolist(), strict=True):
            yield SeededBatch(batch, batch_seed)

    def _label_slots(self, n: int, generator: torch.Generator) -> Tensor:
        """Returns (n,) label ids from back-to-back permutations; every run of P from 0 is distinct."""
        num_labels = len(self._counts)
        perms = torch.rand(-(-n // num_labels), num_labels, generator=generator).argsort(dim=1)
        for i in range(1, len(perms)):
            taken = (i * num_labels) % self.P  # slots the straddling batch took from permutation i - 1
            if taken:
                clash = torch.isin(perms[i], perms[i - 1, num_labels - taken :])
                perms[i] = torch.cat([perms[i, ~clash], perms[i, clash]])
        return perms.flatten()[:n]

    def _sample_offsets(self, counts: Tensor, generator: torch.Generator) -> Tensor:
        """Returns (S, K) offsets into each slot's label group, given its (S,) sample counts.

        Labels with at least K samples get K distinct offsets by Floyd's algorithm, vectorised over
        slots (step j draws t in [0, n - K + j] and takes n - K + j instead when t is already taken);
        labels with fewer get K independent uniform draws.
        """
        uniform = torch.rand(len(counts), self.K, generator=generator, dtype=torch.float64)
        with_replacement = (uniform * counts[:, None]).long()
        distinct = torch.empty_like(with_replacement)
        for j in range(self.K):
            top = counts - self.K + j  # (S,) largest offset step j may take
            t = (uniform[:, j] * (top + 1)).long()
            distinct[:, j] = torch.where((distinct[:, :j] == t[:, None]).any(dim=1), top, t)
        return torch.where(counts[:, None] >= self.K, distinct, with_replacement)
