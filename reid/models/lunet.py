"""LuNet: the small residual embedding network of Hermans, Beyer & Leibe (2017), appendix.

Input (B, 3, 128, 64) in [0, 1] -> embeddings (B, embed_dim). Leaky ReLU (slope 0.3) everywhere, batch norm
after every convolution (bias-free convs), bottleneck residual blocks, five 3x3/2 max pools that take
128 x 64 down to 4 x 2, a plain residual head block with 128 channels (4 x 2 x 128 = 1024 features), then
linear 1024 -> 512, batch norm, leaky ReLU (as the seed; the paper writes ReLU), linear 512 -> embed_dim.

Measured with embed_dim=128: 4,996,224 parameters and 0.74 G multiply-adds per 128 x 64 image
(`count_flops(LuNet(), (3, 128, 64))` = 740,884,480, a fifth of them in the 7x7 stem); tests/test_lunet.py
recomputes both numbers by hand from the table.
"""

from __future__ import annotations

import torch
from torch import nn

SLOPE = 0.3

# Stages of the table in docs/mars.md: each is a list of bottleneck blocks (in, bottleneck, out), then a pool.
STAGES = [
    [(128, 32, 128)],
    [(128, 32, 128), (128, 32, 128), (128, 64, 256)],
    [(256, 64, 256), (256, 64, 256)],
    [(256, 64, 256), (256, 64, 256), (256, 128, 512)],
    [(512, 128, 512), (512, 128, 512)],
]


def conv_bn(in_channels: int, out_channels: int, kernel_size: int) -> nn.Sequential:
    """Bias-free 'same' convolution followed by batch norm (the activation is left to the caller)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_channels),
    )


class Residual(nn.Module):
    """`act(body(x) + shortcut(x))`, the shortcut a 1x1 conv + BN projection when channels change."""

    def __init__(self, body: nn.Module, in_channels: int, out_channels: int):
        super().__init__()
        self.body = body
        same = in_channels == out_channels
        self.shortcut = nn.Identity() if same else conv_bn(in_channels, out_channels, 1)
        self.act = nn.LeakyReLU(SLOPE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.shortcut(x))


def bottleneck(a: int, b: int, c: int) -> Residual:
    """Bottleneck block "a, b, c": 1x1 conv a -> b, 3x3 conv b -> b, 1x1 conv b -> c, plus the shortcut."""
    body = nn.Sequential(
        conv_bn(a, b, 1),
        nn.LeakyReLU(SLOPE),
        conv_bn(b, b, 3),
        nn.LeakyReLU(SLOPE),
        conv_bn(b, c, 1),
    )
    return Residual(body, a, c)


class LuNet(nn.Module):
    """LuNet embedding network: (B, in_channels, 128, 64) -> (B, embed_dim).

    The head's flatten assumes a 4 x 2 map, i.e. a 128 x 64 input. Works in channels_last memory format.
    """

    def __init__(self, embed_dim: int = 128, in_channels: int = 3):
        super().__init__()
        layers: list[nn.Module] = [conv_bn(in_channels, 128, 7), nn.LeakyReLU(SLOPE)]
        for blocks in STAGES:
            layers += [bottleneck(*abc) for abc in blocks]
            layers.append(nn.MaxPool2d(3, stride=2, padding=1))
        head_body = nn.Sequential(conv_bn(512, 512, 3), nn.LeakyReLU(SLOPE), conv_bn(512, 128, 3))
        layers.append(Residual(head_body, 512, 128))
        self.features = nn.Sequential(*layers)
        self.embed = nn.Sequential(
            nn.Flatten(),
            nn.Linear(4 * 2 * 128, 512, bias=False),
            nn.BatchNorm1d(512),
            nn.LeakyReLU(SLOPE),
            nn.Linear(512, embed_dim),
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, C, 128, 64) -> embeddings (B, embed_dim)."""
        return self.embed(self.features(images))


def count_flops(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-adds per sample of the Conv2d and Linear layers, measured with forward hooks.

    `input_shape` excludes the batch dimension, e.g. (3, 128, 64). Runs one sample in eval mode without
    gradients and restores the model's mode. (Counted: MACs, not 2x; norms, activations, pools ignored.)
    """
    total = 0

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            total += output.numel() * (module.in_channels // module.groups) * kh * kw
        else:
            total += output.numel() * module.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    was_training = model.training
    try:
        model.eval()
        param = next(model.parameters())
        with torch.no_grad():
            model(torch.zeros(1, *input_shape, dtype=param.dtype, device=param.device))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return total
