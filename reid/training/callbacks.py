"""Lightning callbacks: progress bar, embedding histograms and figures, a guard against non-finite losses."""

from pathlib import Path

import matplotlib.pyplot as plt
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import RichProgressBar
from pytorch_lightning.loggers import TensorBoardLogger
from torch import Tensor

from reid.errors import ReidError
from reid.reporting.figures import embedding_scatter


def tensorboard_of(trainer: pl.Trainer):
    """The SummaryWriter of the trainer's TensorBoard logger, or None when it has none."""
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            return logger.experiment
    return None


class ProgressBar(RichProgressBar):
    """Lightning's rich progress bar; a run counted in steps (`max_epochs: -1`) reads "Epoch 2", where
    Lightning writes "Epoch 2/-2", and an epoch resumed mid-way reads "5/6", where Lightning writes "5/4"."""

    def _get_train_description(self, current_epoch: int) -> str:
        if self.trainer.max_epochs == -1:
            return f"Epoch {current_epoch}".ljust(len(self.validation_description))
        return super()._get_train_description(current_epoch)

    @property
    def total_train_batches(self) -> int | float:
        """The batches of this epoch, counted from its first as the bar counts them: Lightning caps them by
        the steps left from now, which in an epoch resumed mid-way leaves out the batches done before."""
        trainer = self.trainer
        if trainer.max_epochs != -1 or trainer.max_steps <= 0:
            return trainer.num_training_batches
        done = trainer.fit_loop.epoch_loop.batch_progress.current.processed
        left = (trainer.max_steps - trainer.global_step) * trainer.accumulate_grad_batches
        return min(trainer.num_training_batches, done + left)


class EmbeddingHistograms(pl.Callback):
    """Every `every_n_steps` training steps, histograms of embedding entries and of embedding norms
    (as the seed logs them) under `train/embedding_values` and `train/embedding_norms`."""

    def __init__(self, every_n_steps: int = 50):
        self.every_n_steps = every_n_steps

    def on_train_batch_end(
        self, trainer, pl_module, outputs: dict[str, Tensor], batch, batch_idx: int
    ) -> None:
        writer = tensorboard_of(trainer)
        step = trainer.global_step
        if writer is None or step % self.every_n_steps:
            return
        embeddings = outputs["embeddings"].float()
        writer.add_histogram("train/embedding_values", embeddings, step)
        writer.add_histogram("train/embedding_norms", embeddings.norm(dim=1), step)


class EmbeddingFigures(pl.Callback):
    """After each validation, the test embedding drawn coloured by class.

    Writes `<dirpath>/epoch_NNN.png` and the same figure as the TensorBoard image `val/embedding`; with
    more than 2 dimensions the plot is a PCA projection and TensorBoard's projector also gets up to
    `projector_points` test embeddings with their labels. Drawn only for data with at most `max_classes`
    classes (digits, clothes): a scatter of hundreds of re-ID identities tells nothing.
    """

    def __init__(self, dirpath: str, projector_points: int = 2000, max_classes: int = 20):
        self.dirpath = Path(dirpath)
        self.projector_points = projector_points
        self.max_classes = max_classes

    def on_validation_end(self, trainer, pl_module) -> None:
        result = getattr(pl_module, "last_validation", None)
        if not trainer.is_global_zero or trainer.sanity_checking or result is None:
            return
        if result.step != trainer.global_step:
            return
        if len(result.labels.unique()) > self.max_classes:
            return
        class_names = getattr(trainer.datamodule, "class_names", ())
        embeddings, labels = result.embeddings.numpy(), result.labels.numpy()
        metrics = ", ".join(f"{name} {value:.3f}" for name, value in result.metrics.items())
        figure = embedding_scatter(embeddings, labels, class_names, f"epoch {result.epoch}: {metrics}")
        self.dirpath.mkdir(parents=True, exist_ok=True)
        figure.savefig(self.dirpath / f"epoch_{result.epoch:03d}.png")
        writer = tensorboard_of(trainer)
        if writer is not None:
            writer.add_figure("val/embedding", figure, result.step)
            if embeddings.shape[1] > 2:
                picked = torch.linspace(0, len(labels) - 1, min(len(labels), self.projector_points)).long()
                names = [class_names[i] if i < len(class_names) else str(i) for i in labels[picked.numpy()]]
                writer.add_embedding(
                    result.embeddings[picked], metadata=names, global_step=result.step, tag="val"
                )
        plt.close(figure)


class NonFiniteLossError(ReidError):
    """Training produced a NaN or infinite loss."""


class NonFiniteLossGuard(pl.Callback):
    """Stops training at the first non-finite loss, before it reaches the weights.

    The check runs before the backward pass, so the weights are still those of the last good step;
    they are saved to `<dirpath>/last_good_step_NNNNNN.ckpt` and the error names the step and the file.
    """

    def __init__(self, dirpath: str):
        self.dirpath = Path(dirpath)

    def on_before_backward(self, trainer, pl_module, loss: Tensor) -> None:
        if torch.isfinite(loss).all():
            return
        path = self.dirpath / f"last_good_step_{trainer.global_step:06d}.ckpt"
        trainer.save_checkpoint(path)
        raise NonFiniteLossError(
            f"The loss became {loss.item()} at step {trainer.global_step} (epoch {trainer.current_epoch}); "
            f"training stopped. The weights before this step are saved in '{path}'. Lower the learning "
            "rate (optimizer.lr) or check the input data, then resume with ckpt_path=<that file>."
        )
