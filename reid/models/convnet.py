"""The seed's small convnet for 28x28 grey images (MNIST family, digits) and small RGB crops (MARS smoke)."""

from collections.abc import Sequence

from torch import Tensor, nn


class ConvNet(nn.Module):
    """Two conv blocks and two fully connected layers, as in the TensorFlow seed.

    conv 5x5 32 -> BN -> ReLU -> maxpool 2, conv 5x5 64 -> BN -> ReLU -> maxpool 2,
    FC 256 -> BN -> ReLU, FC embed_dim. Input (B, in_channels, H, W) -> embeddings (B, embed_dim), where
    `input_size` is H = W (28 for MNIST) or [H, W] (e.g. [64, 32] for the CPU MARS smoke run).
    """

    def __init__(self, embed_dim: int = 2, in_channels: int = 1, input_size: int | Sequence[int] = 28):
        super().__init__()
        if embed_dim < 1:
            raise ValueError(f"embed_dim must be >= 1, got {embed_dim}")
        self.embed_dim = embed_dim
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 32, 5, padding=2, bias=False),
            nn.BatchNorm2d(32),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 5, padding=2, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Flatten(),
        )
        height, width = (input_size, input_size) if isinstance(input_size, int) else input_size
        self.head = nn.Sequential(
            nn.Linear(64 * (height // 4) * (width // 4), 256, bias=False),
            nn.BatchNorm1d(256),
            nn.ReLU(inplace=True),
            nn.Linear(256, embed_dim),
        )

    def forward(self, images: Tensor) -> Tensor:
        return self.head(self.features(images))
