"""LuNet: shapes, the parameter and multiply-add counts recomputed by hand from the table, gradients, modes.

Measured (embed_dim=128, 128 x 64 input): 4,996,224 parameters, 740,884,480 multiply-adds per image.
"""

from __future__ import annotations

import pytest
import torch

from reid.models.lunet import LuNet, count_flops

# Spatial positions per stage: 128 x 64 input, stride-1 stem, a 3x3/2 max pool after each of 5 stages.
POSITIONS = [128 * 64, 64 * 32, 32 * 16, 16 * 8, 8 * 4, 4 * 2]


def conv(i: int, o: int, k: int) -> int:
    """Parameters of a bias-free k x k conv i -> o plus its batch norm (scale and shift)."""
    return i * o * k * k + 2 * o


def res(a: int, b: int, c: int) -> int:
    """Bottleneck a, b, c: 1x1 a -> b, 3x3 b -> b, 1x1 b -> c, and a 1x1 projection when a != c."""
    return conv(a, b, 1) + conv(b, b, 3) + conv(b, c, 1) + (conv(a, c, 1) if a != c else 0)


def res_macs(a: int, b: int, c: int) -> int:
    """Multiply-adds per position of a bottleneck block."""
    return a * b + 9 * b * b + b * c + (a * c if a != c else 0)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return LuNet()


def test_output_shape(model):
    model.train()
    assert model(torch.rand(2, 3, 128, 64)).shape == (2, 128)
    assert LuNet(embed_dim=32, in_channels=1).eval()(torch.rand(1, 1, 128, 64)).shape == (1, 32)


def test_parameter_count_matches_the_table(model):
    stem = conv(3, 128, 7)  # 19,072
    stages = (
        3 * res(128, 32, 128)  # stage 1 (one), stage 2 (two)
        + res(128, 64, 256)  # stage 2, projection
        + 4 * res(256, 64, 256)  # stages 3 and 4
        + res(256, 128, 512)  # stage 4, projection
        + 2 * res(512, 128, 512)  # stage 5
    )
    head = conv(512, 512, 3) + conv(512, 128, 3) + conv(512, 128, 1)  # plain residual block + projection
    linear = 1024 * 512 + 2 * 512 + 512 * 128 + 128  # 1024 -> 512 (no bias, BN), 512 -> 128 (bias)
    assert stem + stages + head + linear == 4_996_224
    assert sum(p.numel() for p in model.parameters()) == 4_996_224


def test_count_flops_matches_the_table(model):
    p = POSITIONS
    macs = (
        p[0] * 3 * 128 * 49
        + p[0] * res_macs(128, 32, 128)
        + p[1] * (2 * res_macs(128, 32, 128) + res_macs(128, 64, 256))
        + p[2] * 2 * res_macs(256, 64, 256)
        + p[3] * (2 * res_macs(256, 64, 256) + res_macs(256, 128, 512))
        + p[4] * 2 * res_macs(512, 128, 512)
        + p[5] * (512 * 512 * 9 + 512 * 128 * 9 + 512 * 128)
        + 1024 * 512
        + 512 * 128
    )
    model.train()
    assert count_flops(model, (3, 128, 64)) == macs == 740_884_480
    assert model.training  # mode restored


def test_gradient_reaches_every_parameter(model):
    model.train()
    model.zero_grad()
    model(torch.rand(2, 3, 128, 64)).pow(2).sum().backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
    assert model.features[0][0].weight.grad.abs().sum() > 0


def test_eval_batch_of_one_and_channels_last(model):
    model.eval()
    x = torch.rand(1, 3, 128, 64)
    with torch.no_grad():
        out = model(x)
        model_cl = LuNet().eval()
        model_cl.load_state_dict(model.state_dict())
        model_cl = model_cl.to(memory_format=torch.channels_last)
        out_cl = model_cl(x.to(memory_format=torch.channels_last))
    assert out.shape == (1, 128)
    torch.testing.assert_close(out_cl, out, rtol=1e-4, atol=1e-4)
