"""The LightningModule: an embedding backbone trained with a triplet loss, validated by retrieval."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor, nn

from reid.models.tta import embed_with_tta
from reid.retrieval.evaluators import ClassRetrievalEvaluator, ValidationSet


@dataclass(frozen=True)
class ValidationEmbeddings:
    """Embeddings (N, D) and labels (N,) of validation loader 0 at the latest validation, for figures."""

    embeddings: Tensor
    labels: Tensor
    epoch: int
    step: int
    metrics: dict[str, float]


class EmbeddingModule(pl.LightningModule):
    """Backbone + triplet loss + validation metrics; holds no data logic.

    Args:
        backbone: maps images (B, C, H, W) to embeddings (B, D).
        loss: maps (embeddings (B, D), labels (B,)) to (scalar loss, `TripletStats`).
        optimizer: partial optimizer, finished with the parameters (`_partial_: true` in configs).
        scheduler: optional partial `scheduler(optimizer, total_steps)` from `reid.training.schedules`,
            stepped every optimizer step.
        evaluator: turns the embeddings collected from the validation loaders into metrics, logged as
            `val/<name>` (default: `ClassRetrievalEvaluator`, for class-labelled data); its `tta` (if any)
            is the test-time augmentation validation embeds with (`reid.models.tta.embed_with_tta`).
        channels_last: keep the backbone's conv weights and every input batch in channels_last (NHWC)
            memory format, which GPU convolutions run faster in under bf16; the embeddings are the same.
        compile: compile the backbone with `torch.compile` (in place, so checkpoints keep their keys); it
            pays off on a GPU once the first steps have compiled it.

    Batches are `(images, labels, *other fields)`; validation keeps every field after the images. Under
    mixed precision (`trainer.precision=bf16-mixed`) the backbone runs in bf16 but the loss and its
    statistics are computed in float32, and validation embeddings are cast to float32. Validation embeds
    under `torch.inference_mode` (Lightning's validation inside `fit` only disables gradients). A run
    resumed from a checkpoint trains at the configured rate (`on_load_checkpoint`).
    """

    def __init__(
        self,
        backbone: nn.Module,
        loss: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., torch.optim.lr_scheduler.LRScheduler] | None = None,
        evaluator: Callable[[dict[int, ValidationSet]], dict[str, float]] | None = None,
        channels_last: bool = False,
        compile: bool = False,
    ):
        super().__init__()
        self.channels_last = channels_last
        if channels_last:
            backbone.to(memory_format=torch.channels_last)
        if compile:
            backbone.compile()
        self.backbone = backbone
        self.loss = loss
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.evaluator = evaluator or ClassRetrievalEvaluator()
        self._val_batches: dict[int, list[tuple[Tensor, ...]]] = {}
        self.last_validation: ValidationEmbeddings | None = None

    def forward(self, images: Tensor) -> Tensor:
        """Images (B, C, H, W) -> embeddings (B, D)."""
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return self.backbone(images)

    def training_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> dict[str, Tensor]:
        images, labels = batch[0], batch[1]
        embeddings = self(images)
        with torch.autocast(embeddings.device.type, enabled=False):  # distances in float32 under bf16-mixed
            loss, stats = self.loss(embeddings.float(), labels)
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/active_triplets", stats.active_fraction, prog_bar=True)
        self.log("train/hardest_pos", stats.hardest_pos)
        self.log("train/hardest_neg", stats.hardest_neg)
        self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"])
        return {"loss": loss, "embeddings": embeddings.detach()}

    def validation_step(self, batch: tuple[Tensor, ...], batch_idx: int, dataloader_idx: int = 0) -> None:
        images, *fields = batch
        with torch.inference_mode():  # Lightning validates under no_grad only during fit
            embeddings = embed_with_tta(self, images, getattr(self.evaluator, "tta", None)).float().cpu()
        self._val_batches.setdefault(dataloader_idx, []).append((embeddings, *(f.cpu() for f in fields)))

    def _collected(self) -> dict[int, ValidationSet]:
        sets = {}
        for index, batches in self._val_batches.items():
            columns = [torch.cat(column) for column in zip(*batches, strict=True)]
            sets[index] = ValidationSet(columns[0], tuple(columns[1:]))
        return sets

    def on_validation_epoch_end(self) -> None:
        sets = self._collected()
        self._val_batches.clear()
        if self.trainer.sanity_checking or 0 not in sets:
            return
        metrics = self.evaluator(sets)
        # Under DDP every rank validates the whole set and holds the same numbers: "max" syncs them exactly.
        values = {f"val/{name}": value for name, value in metrics.items()}
        self.log_dict(values, add_dataloader_idx=False, sync_dist=True, reduce_fx="max")
        self.last_validation = ValidationEmbeddings(
            sets[0].embeddings, sets[0].fields[0], self.current_epoch, self.global_step, metrics
        )

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Resume at the configured learning rate where it differs from the checkpoint's.

        Lightning restores the optimizer's and schedulers' states, rates included, after this hook; so
        their saved states are rescaled here to the rates `optimizer` configures (`initial_lr`, the
        schedulers' `base_lrs`, and the current rates by the same factor: a schedule keeps its step).
        """
        states = checkpoint.get("optimizer_states")
        if self._trainer is None or self.trainer.state.fn != "fit" or not states:
            return
        configured = [group["lr"] for group in self.optimizer_factory(self.parameters()).param_groups]
        groups = states[0]["param_groups"]
        saved = [group.get("initial_lr", group["lr"]) for group in groups]
        if len(saved) != len(configured) or saved == configured:
            return
        for group, old, new in zip(groups, saved, configured, strict=True):
            group["lr"] *= new / old
            if "initial_lr" in group:
                group["initial_lr"] = new
        for scheduler in checkpoint.get("lr_schedulers", []):
            if "base_lrs" in scheduler:
                scheduler["base_lrs"] = list(configured)
            if "_last_lr" in scheduler:
                scheduler["_last_lr"] = [group["lr"] for group in groups]
        if self.trainer.is_global_zero:
            new, old = (", ".join(f"{lr:g}" for lr in rates) for rates in (configured, saved))
            print(f"Resuming at optimizer.lr={new}, not the checkpoint's {old}; the schedule keeps its step.")

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(
            optimizer, total_steps=int(self.trainer.estimated_stepping_batches)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
