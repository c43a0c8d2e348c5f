"""Export a checkpoint's backbone to ONNX or TorchScript: `python export.py ckpt_path=... format=onnx`.

The file (`reid.inference.export`) is written to `output`, by default `model.onnx` or `model.pt` in its own
run folder, and never over an existing file. The command then runs the file (onnxruntime or
`torch.jit.load`) and the PyTorch model on the same random batch and prints the largest difference.
"""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig

from reid.errors import ConfigError
from reid.inference.export import FORMATS, example_input, export, load_exported
from reid.inference.model import load_model

SUFFIXES = {"onnx": ".onnx", "torchscript": ".pt"}


def export_checkpoint(cfg: DictConfig) -> dict[str, float]:
    """Export `cfg.ckpt_path` as `cfg.format` to `cfg.output`; returns the parity check's max abs diff."""
    if cfg.format not in FORMATS:
        raise ConfigError(f"format={cfg.format!r} is not one of {', '.join(FORMATS)}; e.g. format=onnx.")
    if not cfg.ckpt_path:
        raise ConfigError(
            "export.py needs ckpt_path=<run>/checkpoints/<file>.ckpt, a checkpoint written by train.py."
        )
    output = Path(cfg.output) if cfg.output else Path(cfg.paths.output_dir) / f"model{SUFFIXES[cfg.format]}"
    if output.exists():
        raise ConfigError(
            f"output='{output}' already exists and is left untouched. Pass a new output=... (or leave "
            "it out: each export gets its own run folder)."
        )
    model = load_model(cfg.ckpt_path, device="cpu")
    export(model, output, cfg.format)
    images = example_input(model, seed=cfg.seed)
    with torch.no_grad():
        expected = model(images).numpy()
    difference = float(abs(load_exported(output, cfg.format)(images) - expected).max())
    print(
        f"Wrote '{output}' ({cfg.format}, input (batch, {model.meta['channels']}, "
        f"{', '.join(map(str, model.meta['input_size']))}) = pixels / {model.meta['pixel_scale']}, "
        f"{model.meta['embed_dim']}-dimensional output). Max abs difference to PyTorch on a random batch "
        f"of {len(images)}: {difference:.2e}."
    )
    return {"max_abs_diff": difference}
