"""Lightning callbacks: progress bar, embedding histograms and figures, a guard against non-finite losses."""

import math
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import RichProgressBar
from pytorch_lightning.loggers import TensorBoardLogger
from torch import Tensor

from reid.errors import ReidError
from reid.files import atomic_file
from reid.reporting.figures import embedding_scatter, verification_histograms
from reid.training.command import rerun_command


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
        with atomic_file(self.dirpath / f"epoch_{result.epoch:03d}.png") as file:
            figure.savefig(file, format="png")
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


class VerificationFigure(pl.Callback):
    """After each validation, the distance histograms of same- and different-identity pairs with the
    verification threshold (`reid.reporting.figures.verification_histograms`) as the TensorBoard image
    `val/verification`, from the evaluator's `last_verification`."""

    def on_validation_end(self, trainer, pl_module) -> None:
        result = getattr(pl_module, "last_validation", None)
        verification = getattr(getattr(pl_module, "evaluator", None), "last_verification", None)
        writer = tensorboard_of(trainer)
        if not trainer.is_global_zero or trainer.sanity_checking or writer is None:
            return
        if result is None or verification is None or result.step != trainer.global_step:
            return
        figure = verification_histograms(verification, f"epoch {result.epoch}, step {result.step}")
        writer.add_figure("val/verification", figure, result.step)


class NonFiniteLossError(ReidError):
    """Training produced a NaN or infinite loss."""


class LossExplosionWarning(UserWarning):
    """The training loss grew by orders of magnitude without becoming NaN: training is diverging."""


class NonFiniteLossGuard(pl.Callback):
    """Stops training at the first non-finite loss, before it reaches the weights; warns once when the loss
    explodes while still finite.

    The check runs before the backward pass, so the weights are still those of the last good step, but the
    bad step's forward pass has already updated the batch-norm running statistics: the module's buffers,
    copied at every batch start (they are small), are put back before `<dirpath>/last_good_step_NNNNNN.ckpt`
    is saved. The file thus holds the state before the bad step, and a run resumed from it starts with the
    bad step's batch. The error names the step, the file and, under Hydra, the command that resumes from it
    at a tenth of the rate (a resumed run trains at the `optimizer.lr` it is given).

    A finite loss above `explosion_factor` times the first positive loss gives one `LossExplosionWarning`
    naming the step; training goes on.

    Args:
        dirpath: where the checkpoint of the last good step goes.
        explosion_factor: how many times its first positive value the loss may reach before the warning.
    """

    def __init__(self, dirpath: str, explosion_factor: float = 1e6):
        self.dirpath = Path(dirpath)
        self.explosion_factor = explosion_factor
        self.first_loss: float | None = None
        self._warned = False
        self._buffers: list[Tensor] = []

    def state_dict(self) -> dict[str, float | None]:
        return {"first_loss": self.first_loss}

    def load_state_dict(self, state_dict: dict[str, float | None]) -> None:
        self.first_loss = state_dict["first_loss"]

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        self._buffers = [buffer.detach().clone() for buffer in pl_module.buffers()]

    def on_before_backward(self, trainer, pl_module, loss: Tensor) -> None:
        value = float(loss.detach())
        if math.isfinite(value):
            self._watch(value, trainer.global_step)
            return
        with torch.no_grad():
            for buffer, saved in zip(pl_module.buffers(), self._buffers, strict=True):
                buffer.copy_(saved)
        path = self.dirpath / f"last_good_step_{trainer.global_step:06d}.ckpt"
        trainer.save_checkpoint(path)
        raise NonFiniteLossError(
            f"The loss became {value} at step {trainer.global_step} (epoch {trainer.current_epoch}); "
            "training stopped. The weights and batch-norm statistics before this step are saved in "
            f"'{path}'. Lower the learning rate (optimizer.lr) or check the input data, then resume from "
            f"that file; {self._resume_advice(trainer, path)}"
        )

    @staticmethod
    def _resume_advice(trainer: pl.Trainer, path: Path) -> str:
        """How to resume from `path` at a tenth of the configured rate: the whole command under Hydra."""
        group = trainer.optimizers[0].param_groups[0]
        changes = {"ckpt_path": str(path), "optimizer.lr": f"{group.get('initial_lr', group['lr']) / 10:g}"}
        command = rerun_command(changes)
        if command is None:
            return f"add `{' '.join(f'{k}={v}' for k, v in changes.items())}` to this run's overrides."
        return f"at a tenth of the rate: `{command}`"

    def _watch(self, value: float, step: int) -> None:
        """Keep the first positive loss; warn once when a later one exceeds `explosion_factor` times it."""
        if self.first_loss is None:
            self.first_loss = value if value > 0 else None
        elif not self._warned and value > self.explosion_factor * self.first_loss:
            self._warned = True
            warnings.warn(
                f"The loss reached {value:.3g} at step {step}, {value / self.first_loss:.2g} times its first "
                f"value ({self.first_loss:.3g}): training is diverging. Lower the learning rate "
                "(optimizer.lr) if it keeps growing.",
                LossExplosionWarning,
                stacklevel=2,
            )
