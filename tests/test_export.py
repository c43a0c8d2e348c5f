"""export.py: ONNX (run by onnxruntime) and TorchScript files give PyTorch's embeddings, for any batch size,
and carry the preprocessing in their metadata."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

import reid
from reid.errors import ConfigError
from reid.inference.export import FORMATS, export, load_exported, read_exported_meta
from reid.tasks.export import export_checkpoint
from tests.helpers.inference import CONVNET, LUNET, write_checkpoint, write_images

RESNET = {  # ResNet-18 with TriNet's head (reid.models.EmbeddingNet), normalising inside
    "_target_": "reid.models.EmbeddingNet",
    "name": "resnet18",
    "embed_dim": 8,
    "head_dim": 32,
    "in_channels": 3,
    "input_size": [64, 32],
}
BACKBONES = {"convnet": CONVNET, "lunet": LUNET, "resnet": RESNET}
SLOW = pytest.mark.slow  # LuNet's 128 x 64 crops, ResNet-18's 11 M weights: seconds per export on a CPU
TOLERANCE = 1e-4


@pytest.fixture(
    scope="module", params=["convnet", pytest.param("lunet", marks=SLOW), pytest.param("resnet", marks=SLOW)]
)
def model(request, tmp_path_factory):
    """A checkpoint of each backbone with random weights and batch-norm statistics, loaded on the CPU."""
    path = write_checkpoint(tmp_path_factory.mktemp(request.param) / "model.ckpt", BACKBONES[request.param])
    return reid.load_model(path, device="cpu")


@pytest.mark.parametrize("file_format", FORMATS)
def test_exported_file_matches_pytorch_on_random_and_real_images(model, file_format, tmp_path):
    path = tmp_path / f"model.{file_format}"
    export(model, path, file_format)
    run = load_exported(path, file_format)
    files = write_images(tmp_path / "images", [f"{i}.png" for i in range(5)])
    real = torch.stack([model.pixels(p) for p in files]).float() / model.meta["pixel_scale"]
    height, width = model.meta["input_size"]
    random = torch.rand(1, model.meta["channels"], height, width)
    for batch in (random, real):  # batch sizes 1 and 5 of one file: its batch dimension is dynamic
        with torch.no_grad():
            expected = model(batch).numpy()
        got = run(batch)
        assert got.shape == expected.shape == (len(batch), model.meta["embed_dim"])
        assert np.abs(got - expected).max() <= TOLERANCE
    meta = read_exported_meta(path, file_format)
    assert meta["input_size"] == [height, width] and meta["channels"] == model.meta["channels"]
    assert (
        meta["layout"] == "NCHW"
        and meta["pixel_scale"] == 255
        and meta["embed_dim"] == model.meta["embed_dim"]
    )
    assert meta["checkpoint_sha256"] == model.meta["sha256"] and meta["mean"] == model.meta["mean"]


def test_export_never_writes_over_a_file(tmp_path):
    ckpt = write_checkpoint(tmp_path / "model.ckpt", CONVNET)
    taken = tmp_path / "model.onnx"
    taken.write_bytes(b"someone's file")
    cfg = OmegaConf.create(
        {"ckpt_path": str(ckpt), "format": "onnx", "output": str(taken), "seed": 0, "paths": {}}
    )
    with pytest.raises(ConfigError, match="already exists and is left untouched"):
        export_checkpoint(cfg)
    assert taken.read_bytes() == b"someone's file"
    with pytest.raises(ConfigError, match="format='tflite' is not one of onnx, torchscript"):
        export_checkpoint(OmegaConf.merge(cfg, {"format": "tflite"}))


def test_onnx_without_the_export_extra_says_how_to_install_it(tmp_path, monkeypatch):
    """With onnx not installed (None in sys.modules makes its import fail), format=onnx stops with the extra
    to install, and writes nothing."""
    monkeypatch.setitem(sys.modules, "onnx", None)
    model = reid.load_model(write_checkpoint(tmp_path / "model.ckpt", CONVNET), device="cpu")
    with pytest.raises(ConfigError, match=r'pip install -e "\.\[export\]"'):
        export(model, tmp_path / "model.onnx", "onnx")
    assert not (tmp_path / "model.onnx").exists()
