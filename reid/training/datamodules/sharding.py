"""Which share of the training batches this process draws: (rank, world size) from a Lightning Trainer."""

from __future__ import annotations

import pytorch_lightning as pl


def rank_and_world_size(trainer: pl.Trainer | None) -> dict[str, int]:
    """`{"rank": r, "world_size": w}` for `PKSampler`: the Trainer's global rank and process count under
    DDP, rank 0 of 1 without a Trainer (a datamodule used on its own)."""
    if trainer is None:
        return {"rank": 0, "world_size": 1}
    return {"rank": trainer.global_rank, "world_size": trainer.world_size}
