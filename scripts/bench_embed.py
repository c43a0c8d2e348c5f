"""Benchmark embed.py's pipeline: images/s of decoding JPEG files in workers and embedding them, against
the bare forward pass on the same images already decoded (the peer: what the model alone allows).

Generates 128 x 64 JPEG crops (smooth random colour blobs, about 2 KB each, like person crops), writes a
checkpoint with random weights for each backbone (convnet: mars_smoke's 3 x 64 x 32 ConvNet, D=32; lunet:
LuNet 3 x 128 x 64, D=128), then times `reid.inference.images.embed_files` (what embed.py runs after
loading the model) and `EmbeddingModel.embed_batch` on pre-decoded uint8 batches of the same size.
ratio = pipeline / forward: near 1 means decoding is hidden behind the model.

Usage:
    python scripts/bench_embed.py                               # 2,048 images (convnet), 256 (lunet)
    python scripts/bench_embed.py --images 512 --workers 0 2
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from reid.inference.images import embed_files
from reid.inference.model import load_model
from reid.training.checkpoints import MODEL_CARD, build_backbone, model_card

CONVNET = {"_target_": "reid.models.ConvNet", "embed_dim": 32, "in_channels": 3, "input_size": [64, 32]}
LUNET = {"_target_": "reid.models.LuNet", "embed_dim": 128, "in_channels": 3}
BACKBONES = {"convnet": (CONVNET, (3, 64, 32)), "lunet": (LUNET, (3, 128, 64))}


def write_jpegs(folder: Path, count: int, seed: int = 0) -> list[str]:
    """`count` 128 x 64 JPEGs of smooth random colours (8 x 4 noise upsampled), quality 90."""
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        small = Image.fromarray(rng.integers(0, 256, (8, 4, 3), dtype=np.uint8))
        path = folder / f"{i:05d}.jpg"
        small.resize((64, 128), Image.Resampling.BICUBIC).save(path, quality=90)
        paths.append(str(path))
    return paths


def write_checkpoint(path: Path, model: dict, input_shape: tuple[int, int, int]) -> Path:
    """A checkpoint as train.py writes it (weights under `backbone.`, a model card), random weights."""
    state = {f"backbone.{k}": v for k, v in build_backbone({"model": model}, path).state_dict().items()}
    torch.save({"state_dict": state, MODEL_CARD: model_card(model, input_shape, None)}, path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=None, help="images per backbone (default 2048 / 256)")
    parser.add_argument("--workers", type=int, nargs="+", default=[2], help="decoding processes to compare")
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'model':>8} {'images':>6} {'workers':>7} {'pipeline/s':>10} {'forward/s':>10} {'ratio':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name, (config, shape) in BACKBONES.items():
            count = args.images or (2048 if name == "convnet" else 256)
            (folder / name).mkdir()
            paths = write_jpegs(folder / name, count)
            model = load_model(write_checkpoint(folder / f"{name}.ckpt", config, shape), device="cpu")
            pixels = torch.stack([model.pixels(p) for p in paths])
            model.embed_batch(pixels[: args.batch_size])  # warm-up
            start = time.perf_counter()
            for first in range(0, count, args.batch_size):
                model.embed_batch(pixels[first : first + args.batch_size])
            forward = count / (time.perf_counter() - start)
            for workers in args.workers:
                start = time.perf_counter()
                embedded = embed_files(model, paths, args.batch_size, workers)
                pipeline = len(embedded.indices) / (time.perf_counter() - start)
                ratio = pipeline / forward
                print(f"{name:>8} {count:>6} {workers:>7} {pipeline:>10.1f} {forward:>10.1f} {ratio:>8.3f}")


if __name__ == "__main__":
    main()
