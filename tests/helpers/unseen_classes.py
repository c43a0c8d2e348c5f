"""A tiny unseen-class dataset for tests: coloured PNGs in one folder per class, served as the unseen-class
datamodules serve theirs (`kind`, `test_paths`, one test loader of (uint8 images (B, 3, H, W), labels))."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from PIL import Image
from torch.utils.data import DataLoader, TensorDataset

from reid.data.image_files import decode_image, list_image_files
from reid.models import ConvNet
from reid.training.checkpoints import MODEL_CARD, model_card


def write_coloured_images(root: Path, classes: int = 4, per_class: int = 5, seed: int = 0) -> Path:
    """`root/class_K/img_I.png`: each class a colour, each image that colour with noise, 20 x 12 pixels."""
    rng = np.random.default_rng(seed)
    for label in range(classes):
        colour = rng.integers(0, 256, 3)
        folder = root / f"class_{label}"
        folder.mkdir(parents=True)
        for i in range(per_class):
            pixels = np.clip(colour + rng.normal(0, 40, (20, 12, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"img_{i}.png")
    return root


class ColouredImagesDataModule(pl.LightningDataModule):
    """The images under `root` (labels: their folders, in sorted order) at `height` x `width`."""

    kind = "unseen_classes"

    def __init__(self, root: str, height: int = 32, width: int = 16, batch_size: int = 8):
        super().__init__()
        self.root, self.height, self.width, self.batch_size = Path(root), height, width, batch_size
        self.test_paths: list[str] = []

    def setup(self, stage: str | None = None) -> None:
        self.test_paths = [str(p) for p in list_image_files(self.root)]

    def test_dataloader(self) -> DataLoader:
        folders = sorted({Path(p).parent.name for p in self.test_paths})
        labels = torch.tensor([folders.index(Path(p).parent.name) for p in self.test_paths])
        images = np.stack([decode_image(p, self.height, self.width) for p in self.test_paths])
        dataset = TensorDataset(torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), labels)
        return DataLoader(dataset, batch_size=self.batch_size)

    val_dataloader = test_dataloader


def write_checkpoint(path: Path, embed_dim: int = 8, input_size: tuple[int, int] = (32, 16)) -> Path:
    """A checkpoint of a randomly initialised RGB ConvNet with its model card, as train.py writes them."""
    torch.manual_seed(0)
    config = {"_target_": "reid.models.convnet.ConvNet", "embed_dim": embed_dim, "in_channels": 3}
    backbone = ConvNet(embed_dim, 3, input_size)
    config["input_size"] = list(input_size)
    state = {f"backbone.{k}": v for k, v in backbone.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": state, MODEL_CARD: model_card(config, (3, *input_size), None)}, path)
    return path
