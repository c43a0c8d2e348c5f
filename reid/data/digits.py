"""scikit-learn's bundled 8x8 digits, upsampled to 28x28: an offline dataset for the quickstart and tests."""

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from reid.data.images import ImageSplits


def load_digits_splits(test_fraction: float = 0.3, size: int = 28) -> ImageSplits:
    """1,797 handwritten digits (UCI) as uint8 `size` x `size` images, like MNIST so the same convnet applies.

    The train/test split is fixed (stratified, `test_fraction` of each class, random_state 0) so runs
    compare across seeds.
    """
    digits = load_digits()
    images = torch.from_numpy(digits.images).float().unsqueeze(1) / 16.0
    images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
    images = (images.squeeze(1).clamp(0, 1) * 255).round().to(torch.uint8)
    labels = torch.from_numpy(digits.target).long()
    train, test = train_test_split(
        torch.arange(len(labels)).numpy(), test_size=test_fraction, stratify=labels.numpy(), random_state=0
    )
    return ImageSplits(images[train], labels[train], images[test], labels[test])
