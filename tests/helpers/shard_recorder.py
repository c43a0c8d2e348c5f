"""A test-only callback that writes, at each training epoch start, the batches this rank's PK sampler
will draw: `<folder>/rank<R>_epoch<E>.json` = {"rank", "world_size", "batches"}."""

import json
from pathlib import Path

import pytorch_lightning as pl


class ShardRecorder(pl.Callback):
    def __init__(self, folder: str):
        self.folder = Path(folder)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        sampler = trainer.train_dataloader.batch_sampler
        self.folder.mkdir(parents=True, exist_ok=True)
        record = {"rank": sampler.rank, "world_size": sampler.world_size, "batches": list(sampler)}
        path = self.folder / f"rank{trainer.global_rank}_epoch{trainer.current_epoch}.json"
        path.write_text(json.dumps(record))
