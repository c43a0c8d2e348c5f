"""The global random states in checkpoints, so a resumed run draws what the first run drew after them."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch

RANDOM_STATES = "reid_random_states"


def capture_random_states() -> dict[str, Any]:
    """torch's CPU and (once initialised) CUDA generators, numpy's and Python's global ones, as tensors
    and plain values (what `torch.load(weights_only=True)` reads)."""
    name, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
        "numpy": [name, keys.tolist(), position, has_gauss, cached_gaussian],
        "python": random.getstate(),
    }


def restore_random_states(states: dict[str, Any]) -> None:
    """Set the generators `capture_random_states` saved (CUDA ones only when this process has as many
    devices)."""
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available() and torch.cuda.device_count() == len(states["cuda"]):
        torch.cuda.set_rng_state_all(states["cuda"])
    name, keys, position, has_gauss, cached_gaussian = states["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), position, has_gauss, cached_gaussian))
    version, internal, gauss_next = states["python"]
    random.setstate((version, tuple(internal), gauss_next))


class RandomStates(pl.Callback):
    """Saves the global random states in every checkpoint and restores them when a run resumed from it
    starts training.

    They are restored at `on_train_start`, after everything a resumed run sets up anew (weights
    initialised, loaders built), so what draws after it (any layer that draws, validation loaders) draws
    what the first run drew after the checkpoint. Under DDP every rank restores rank 0's states, which
    equal its own: every rank is seeded alike and draws alike.
    """

    def __init__(self):
        self._loaded: dict[str, Any] | None = None

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        checkpoint[RANDOM_STATES] = capture_random_states()

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        self._loaded = checkpoint.get(RANDOM_STATES)

    def on_train_start(self, trainer, pl_module) -> None:
        if self._loaded is not None:
            restore_random_states(self._loaded)
            self._loaded = None
