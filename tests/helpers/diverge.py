"""A test-only callback that makes one step diverge while the learning rate is too high: at the start of
step `step`, when the optimizer's rate is above `max_lr`, the batch's images turn NaN (so do the loss and
the batch-norm statistics of that forward pass, as with a rate that blows up); at a lower rate the step
passes."""

import pytorch_lightning as pl


class DivergeAboveLr(pl.Callback):
    def __init__(self, step: int, max_lr: float):
        self.step = step
        self.max_lr = max_lr

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch, batch_idx: int
    ) -> None:
        if trainer.global_step == self.step and trainer.optimizers[0].param_groups[0]["lr"] > self.max_lr:
            batch[0].fill_(float("nan"))
