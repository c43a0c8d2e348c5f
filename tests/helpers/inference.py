"""Checkpoints and image files for the inference tests: a tiny real training, hand-made checkpoints of any
backbone with random (non-trivial) weights, and images of random pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from reid.tasks.train import train
from reid.training.checkpoints import MODEL_CARD, build_backbone, model_card
from tests.helpers.configs import compose_train

CONVNET = {"_target_": "reid.models.convnet.ConvNet", "embed_dim": 8, "in_channels": 1, "input_size": 28}
CONVNET_RGB = {
    "_target_": "reid.models.convnet.ConvNet",
    "embed_dim": 4,
    "in_channels": 3,
    "input_size": [32, 16],
}
LUNET = {"_target_": "reid.models.lunet.LuNet", "embed_dim": 16, "in_channels": 3}


def train_tiny(run_dir: Path) -> Path:
    """`last.ckpt` of the quickstart (digits, ConvNet, 2-D embedding) trained for 2 steps in-process."""
    short = ["trainer.max_steps=2", "trainer.max_epochs=1", "dataset.P=5", "dataset.K=4"]
    train(compose_train(run_dir, "experiment=quickstart", *short, "dataset.batches_per_epoch=2", "~logger"))
    return run_dir / "checkpoints" / "last.ckpt"


def input_shape(model: dict) -> tuple[int, int, int]:
    """(C, H, W) of a backbone config of this file (LuNet: 128 x 64)."""
    size = model.get("input_size", [128, 64])
    return (model["in_channels"], *([size, size] if isinstance(size, int) else size))


def write_checkpoint(path: Path, model: dict, seed: int = 0) -> Path:
    """A checkpoint as train.py writes it (weights under `backbone.`, a model card) of the backbone `model`
    with random weights and random batch-norm statistics, so that eval-mode batch norm is no identity."""
    torch.manual_seed(seed)
    backbone = build_backbone({"model": model}, path)
    for module in backbone.modules():
        if isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            nn.init.uniform_(module.weight, 0.5, 1.5)
            nn.init.uniform_(module.bias, -0.5, 0.5)
    state = {f"backbone.{key}": value for key, value in backbone.state_dict().items()}
    torch.save(
        {"state_dict": state, MODEL_CARD: model_card(model, input_shape(model), {"model": model})}, path
    )
    return path


def write_images(folder: Path, names: list[str], seed: int = 0) -> list[Path]:
    """PNG files of random RGB pixels and random sizes (20-60 x 15-45) at `folder/name`."""
    rng = np.random.default_rng(seed)
    paths = []
    for name in names:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        shape = (int(rng.integers(20, 60)), int(rng.integers(15, 45)), 3)
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(path)
        paths.append(path)
    return paths
