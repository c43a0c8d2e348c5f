"""The progress bar, the non-finite loss guard and the embedding figures, on a real Trainer (digits data)."""

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import RichProgressBar
from pytorch_lightning.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from reid.losses import BatchHardTripletLoss
from reid.models.convnet import ConvNet
from reid.models.tta import embed_with_tta
from reid.retrieval.evaluators import UnseenClassEvaluator
from reid.training.callbacks import (
    EmbeddingFigures,
    NonFiniteLossError,
    NonFiniteLossGuard,
    ProgressBar,
    VerificationFigure,
)
from reid.training.datamodules.in_memory import DigitsDataModule
from reid.training.module import EmbeddingModule


class NaNAtCall(BatchHardTripletLoss):
    """The batch-hard loss, but NaN from the `bad_call`-th call on."""

    def __init__(self, bad_call: int):
        super().__init__(margin=0.5)
        self.calls, self.bad_call = 0, bad_call

    def forward(self, embeddings, labels):
        self.calls += 1
        loss, stats = super().forward(embeddings, labels)
        return (loss * float("nan") if self.calls >= self.bad_call else loss), stats


def make_trainer(callbacks, **kwargs) -> pl.Trainer:
    quiet = dict(logger=False, enable_checkpointing=False, enable_progress_bar=False)
    return pl.Trainer(accelerator="cpu", callbacks=callbacks, enable_model_summary=False, **quiet | kwargs)


def test_nan_loss_stops_with_the_step_and_a_checkpoint_of_the_last_good_weights(tmp_path):
    pl.seed_everything(0)
    module = EmbeddingModule(ConvNet(2), NaNAtCall(bad_call=4), lambda p: torch.optim.Adam(p, lr=1e-3))
    trainer = make_trainer([NonFiniteLossGuard(str(tmp_path))], max_epochs=1, limit_val_batches=0)
    with pytest.raises(NonFiniteLossError, match="at step 3") as error:
        trainer.fit(module, datamodule=DigitsDataModule())
    saved = tmp_path / "last_good_step_000003.ckpt"
    assert str(saved) in str(error.value)
    checkpoint = torch.load(saved, map_location="cpu", weights_only=True)
    assert checkpoint["global_step"] == 3
    for name, value in module.state_dict().items():  # the NaN never reached the weights
        assert torch.isfinite(value.float()).all(), name
        torch.testing.assert_close(checkpoint["state_dict"][name], value)


@pytest.mark.parametrize("embed_dim", [2, 5])
def test_embedding_figure_per_validation(tmp_path, embed_dim):
    pl.seed_everything(0)
    module = EmbeddingModule(ConvNet(embed_dim), BatchHardTripletLoss(0.5), lambda p: torch.optim.Adam(p))
    trainer = make_trainer([EmbeddingFigures(str(tmp_path))], max_epochs=2, limit_train_batches=2)
    trainer.fit(module, datamodule=DigitsDataModule())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch_000.png", "epoch_001.png"]
    assert module.last_validation.embeddings.shape == (540, embed_dim)


class DigitsTestSplit(DigitsDataModule):
    """Digits validated on the test split only (the unseen-class evaluator's one loader)."""

    def val_dataloader(self):
        return super().val_dataloader()[:1]


def test_validation_embeds_with_the_evaluators_tta_and_logs_the_verification_figure(tmp_path):
    pl.seed_everything(0)
    evaluator = UnseenClassEvaluator(tta="flip", nmi=False)
    module = EmbeddingModule(
        ConvNet(4), BatchHardTripletLoss(0.5), lambda p: torch.optim.Adam(p), evaluator=evaluator
    )
    logger = TensorBoardLogger(str(tmp_path), name="", version="")
    trainer = make_trainer(
        [VerificationFigure()], max_epochs=1, limit_train_batches=1, logger=logger, num_sanity_val_steps=0
    )
    datamodule = DigitsTestSplit()
    trainer.fit(module, datamodule=datamodule)
    images = datamodule.val_dataloader()[0].dataset.images[:50]
    with torch.inference_mode():
        expected = embed_with_tta(module.backbone.eval(), images.float().unsqueeze(1) / 255, "flip")
    assert torch.allclose(module.last_validation.embeddings[:50], expected, atol=1e-5)  # views averaged
    assert {"val/recall_at_8", "val/map_at_r", "val/roc_auc", "val/threshold"} <= set(
        trainer.callback_metrics
    )
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    assert events.Tags()["images"] == ["val/verification"]


def test_no_scatter_for_hundreds_of_identities(tmp_path):
    """Re-ID validation sets (hundreds of identities) get no class scatter; 10 classes do."""
    from types import SimpleNamespace

    from reid.training.module import ValidationEmbeddings

    trainer = SimpleNamespace(
        sanity_checking=False, global_step=7, datamodule=None, loggers=[], is_global_zero=True
    )
    for classes, expected in ((300, []), (10, ["epoch_000.png"])):
        result = ValidationEmbeddings(torch.randn(600, 2), torch.arange(600) % classes, 0, 7, {"mAP": 0.5})
        EmbeddingFigures(str(tmp_path / str(classes))).on_validation_end(
            trainer, SimpleNamespace(last_validation=result)
        )
        folder = tmp_path / str(classes)
        assert (sorted(p.name for p in folder.iterdir()) if folder.exists() else []) == expected


@pytest.mark.parametrize("bar_class, shows", [(RichProgressBar, "Epoch 1/-2"), (ProgressBar, "Epoch 1 ")])
def test_progress_bar_of_a_run_counted_in_steps(bar_class, shows):
    """With `max_epochs: -1` (the MARS runs) Lightning's bar reads "Epoch 1/-2"; ours reads "Epoch 1"."""
    bar = bar_class(console_kwargs={"record": True, "force_terminal": True, "width": 150})
    module = EmbeddingModule(ConvNet(2), BatchHardTripletLoss(0.5), lambda p: torch.optim.Adam(p))
    steps = dict(max_epochs=-1, max_steps=4, limit_train_batches=2, limit_val_batches=0)
    trainer = make_trainer([bar], enable_progress_bar=True, **steps)
    trainer.fit(module, datamodule=DigitsDataModule())
    shown = bar._console.export_text()
    assert shows in shown and ("/-2" in shown) == (bar_class is RichProgressBar)
