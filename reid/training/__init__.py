"""The Lightning glue: the LightningModule, datamodules, callbacks, results files, schedules, checkpoints."""

from reid.training.callbacks import EmbeddingFigures, EmbeddingHistograms, NonFiniteLossGuard, ProgressBar
from reid.training.module import EmbeddingModule
from reid.training.results import ResultsWriter
from reid.training.schedules import constant_then_exponential, warmup_cosine

__all__ = [
    "EmbeddingFigures",
    "EmbeddingHistograms",
    "EmbeddingModule",
    "NonFiniteLossGuard",
    "ProgressBar",
    "ResultsWriter",
    "constant_then_exponential",
    "warmup_cosine",
]
