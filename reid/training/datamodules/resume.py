"""Training batches that resume mid-epoch: the datamodules' PK sampler keeps its place in checkpoints."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch import Tensor

from reid.data.samplers import PKSampler
from reid.training.datamodules.sharding import rank_and_world_size

LIGHTNING_RESTART_WARNING = "You're resuming from a checkpoint that ended before the epoch ended"


class ResumablePKDataModule(pl.LightningDataModule):
    """Base of the datamodules: builds the training `PKSampler` and saves in checkpoints where it stands.

    Every checkpoint gets {"epoch", "batch"}: the sampler's epoch and how many of its batches training has
    finished, by Lightning's own count (`batch_progress.current.processed`: a checkpoint written after a
    step counts its batch, the NaN guard's one written before the bad step's update does not). Restored
    from it, the datamodule makes its next sampler start there (`PKSampler.start_at`), so a run resumed
    mid-epoch trains on the very batches, in the same order, that the first run would have trained on
    next; Lightning resumes its step and batch counters at the same point. Lightning's warning that the
    loader restarts its epoch does not hold here and is silenced.

    Subclasses set `P`, `K`, `batches_per_epoch` and `seed`, and pass `pk_loader_args` to the training
    DataLoader.
    """

    P: int
    K: int
    batches_per_epoch: int | None
    seed: int
    _train_sampler: PKSampler | None = None
    _resume_at: tuple[int, int] | None = None

    def pk_loader_args(self, labels: Sequence[int] | np.ndarray | Tensor) -> dict[str, Any]:
        """DataLoader arguments for PK training batches of `labels` (N,): `batch_sampler`, this rank's
        `PKSampler` (resumed where a restored checkpoint stood), and `generator`, the loader's own for
        worker seeds, so that iterating it leaves the global RNG (restored from checkpoints) alone."""
        shard = rank_and_world_size(self.trainer)
        sampler = PKSampler(labels, self.P, self.K, self.batches_per_epoch, seed=self.seed, **shard)
        if self._resume_at is not None:
            sampler.start_at(*self._resume_at)
            self._resume_at = None
        self._train_sampler = sampler
        return {"batch_sampler": sampler, "generator": torch.Generator().manual_seed(self.seed)}

    def state_dict(self) -> dict[str, int]:
        if self._train_sampler is None or self.trainer is None:
            return {}
        done = self.trainer.fit_loop.epoch_loop.batch_progress.current.processed
        return {"epoch": self._train_sampler.epoch, "batch": done}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        self._resume_at = state_dict["epoch"], state_dict["batch"]
        warnings.filterwarnings("ignore", message=LIGHTNING_RESTART_WARNING)
