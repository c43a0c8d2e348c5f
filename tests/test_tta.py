"""Test-time augmentation against hand-made views."""

import pytest
import torch
import torch.nn.functional as F

from reid.errors import ConfigError
from reid.models.tta import embed_with_tta


def backbone(images: torch.Tensor) -> torch.Tensor:
    """A position-sensitive 'network': each image's pixels weighted by a fixed ramp, per channel."""
    ramp = torch.linspace(0, 1, images[0].numel()).reshape(images.shape[1:])
    return (images * ramp).flatten(2).sum(2)


def test_flip_is_the_mean_with_the_mirror():
    images = torch.rand(3, 2, 8, 6)
    expected = (backbone(images) + backbone(images.flip(-1))) / 2
    assert torch.allclose(embed_with_tta(backbone, images, "flip"), expected)
    assert torch.equal(embed_with_tta(backbone, images, None), backbone(images))


def test_flip_crops_averages_ten_hand_made_views():
    images = torch.rand(2, 3, 16, 8)
    big = F.interpolate(images, size=(18, 9), mode="bilinear", align_corners=False)  # 1.125 x (16, 8)
    crops = [big[..., :16, :8], big[..., :16, 1:], big[..., 2:, :8], big[..., 2:, 1:], big[..., 1:17, 0:8]]
    views = crops + [c.flip(-1) for c in crops]
    expected = torch.stack([backbone(v) for v in views]).mean(0)
    assert torch.allclose(embed_with_tta(backbone, images, "flip_crops"), expected, atol=1e-6)


def test_unknown_mode_names_the_key():
    with pytest.raises(ConfigError, match="evaluator.tta=flip_crops"):
        embed_with_tta(backbone, torch.rand(1, 1, 4, 4), "crops")
