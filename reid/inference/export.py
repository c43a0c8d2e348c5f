"""A loaded model as a file that runs without this project: ONNX (onnxruntime, any language) or TorchScript
(`torch.jit.load`). Both take images (B, C, H, W) float32 = uint8 pixels / pixel_scale, with any batch
size B, and give embeddings (B, D); the preprocessing travels inside the file as JSON (`export_meta`):
ONNX metadata_props key `reid_meta`, TorchScript extra file `reid_meta.json`.
"""

from __future__ import annotations

import importlib
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from reid.errors import ConfigError
from reid.files import atomic_file
from reid.inference.model import EmbeddingModel

FORMATS = ("onnx", "torchscript")
META_KEY = "reid_meta"
TORCHSCRIPT_META = "reid_meta.json"
INPUT_NAME, OUTPUT_NAME = "images", "embeddings"
OPSET = 17


def onnx_module(name: str) -> Any:
    """`onnx` or `onnxruntime`, imported; a `ConfigError` naming the extra that installs them when missing."""
    try:
        return importlib.import_module(name)
    except ImportError:
        raise ConfigError(
            f"format=onnx needs the {name} package, which is not installed: pip install -e \".[export]\" "
            "(onnx and onnxruntime), or export with format=torchscript."
        ) from None


def export_meta(model: EmbeddingModel) -> dict[str, Any]:
    """How to feed the exported network, and which checkpoint it came from."""
    meta = model.meta
    return {
        "input_name": INPUT_NAME,
        "output_name": OUTPUT_NAME,
        "layout": "NCHW",
        "dtype": "float32",
        "channels": meta["channels"],
        "color": "grey (ITU-R 601-2 luma, PIL mode L)" if meta["channels"] == 1 else "RGB",
        "input_size": list(meta["input_size"]),
        "resize": "bilinear",
        "pixel_scale": meta["pixel_scale"],
        "input": "uint8 pixels / pixel_scale",
        "mean": meta["mean"],
        "std": meta["std"],
        "normalisation": "mean and std are applied inside the model: do not apply them again",
        "embed_dim": meta["embed_dim"],
        "model": meta["model"],
        "checkpoint": Path(meta["checkpoint"]).name,
        "checkpoint_sha256": meta["sha256"],
    }


def example_input(model: EmbeddingModel, batch_size: int = 2, seed: int = 0) -> Tensor:
    """Random images (batch_size, C, H, W) in [0, 1] on the CPU, of the model's input shape."""
    height, width = model.meta["input_size"]
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch_size, model.meta["channels"], height, width, generator=generator)


def export(model: EmbeddingModel, path: str | Path, file_format: str) -> None:
    """Writes `model` (moved to the CPU) to `path` as `file_format` ("onnx" or "torchscript"), atomically."""
    model = model.cpu()
    buffer = io.BytesIO()
    if file_format == "onnx":
        write_onnx(model, buffer)
    else:
        write_torchscript(model, buffer)
    with atomic_file(path) as file:
        file.write(buffer.getbuffer())


def write_onnx(model: EmbeddingModel, buffer: io.BytesIO) -> None:
    """The model as ONNX (opset `OPSET`, batch dimension `batch` dynamic) with `META_KEY` metadata.

    Uses the TorchScript-based exporter (`dynamo=False`): it needs only the `onnx` package, where the
    torch.export-based one also needs `onnxscript`."""
    onnx = onnx_module("onnx")

    traced = io.BytesIO()
    torch.onnx.export(
        model.backbone,
        (example_input(model),),
        traced,
        dynamo=False,
        opset_version=OPSET,
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
    )
    proto = onnx.load_from_string(traced.getvalue())
    onnx.helper.set_model_props(proto, {META_KEY: json.dumps(export_meta(model))})
    onnx.checker.check_model(proto)
    buffer.write(proto.SerializeToString())


def write_torchscript(model: EmbeddingModel, buffer: io.BytesIO) -> None:
    """The backbone traced to TorchScript (any batch size) with `TORCHSCRIPT_META` as an extra file (the
    trace is not checked by re-running it here: the export task compares the file with PyTorch)."""
    with torch.no_grad():
        traced = torch.jit.trace(model.backbone, example_input(model), check_trace=False)
    torch.jit.save(traced, buffer, _extra_files={TORCHSCRIPT_META: json.dumps(export_meta(model))})


def load_exported(path: str | Path, file_format: str) -> Callable[[Tensor], np.ndarray]:
    """The exported file at `path` as a function: images (B, C, H, W) in [0, 1] -> embeddings (B, D), run by
    onnxruntime (CPU) or `torch.jit.load`."""
    if file_format == "onnx":
        session = onnx_module("onnxruntime").InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return lambda images: session.run(None, {INPUT_NAME: images.numpy()})[0]
    module = torch.jit.load(str(path), map_location="cpu")

    def run(images: Tensor) -> np.ndarray:
        with torch.no_grad():
            return module(images).numpy()

    return run


def read_exported_meta(path: str | Path, file_format: str) -> dict[str, Any]:
    """The preprocessing JSON an exported file carries (`export_meta`)."""
    if file_format == "onnx":
        proto = onnx_module("onnx").load(str(path), load_external_data=False)
        props = {prop.key: prop.value for prop in proto.metadata_props}
        return json.loads(props[META_KEY])
    extra = {TORCHSCRIPT_META: ""}
    torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    return json.loads(extra[TORCHSCRIPT_META])
